"""filter_plugins/release_artifact.py on real tar archives built here (one bad member per case)."""

from __future__ import annotations

import io
import sys
import tarfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "filter_plugins"))

from ansible.errors import AnsibleFilterError  # noqa: E402
from release_artifact import archive_problems, artifact_commands, artifact_source  # noqa: E402

SHA = "a" * 64


def archive(tmp_path, *members, name="r.tar.gz"):
    path = tmp_path / name
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return str(path)


def member(name, data=b"x", kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, (data if kind == tarfile.REGTYPE else None)


def test_a_clean_release_has_no_problems(tmp_path):
    path = archive(tmp_path, member("p-1.0/release.json", b'{"version": "1.0"}'), member("p-1.0/bin/run"),
                   member("p-1.0/lib/link", kind=tarfile.SYMTYPE, link="../bin/run"))
    assert archive_problems(path, "1.0") == []


@pytest.mark.parametrize(
    ("members", "fragment"),
    [
        ([member("/etc/passwd")], "is absolute or climbs out"),
        ([member("p/../../x")], "is absolute or climbs out"),
        ([member("p/a", kind=tarfile.SYMTYPE, link="/etc/shadow")], "points outside the release"),
        ([member("p/a/b", kind=tarfile.SYMTYPE, link="../../q/x")], "points outside the release"),
        ([member("p/a", kind=tarfile.LNKTYPE, link="q/x")], "hard link"),
        ([member("p/dev", kind=tarfile.CHRTYPE)], "device, FIFO"),
        ([member("p/x"), member("q/y")], "one top directory"),
        ([member("p/release.json", b'{"version": "2.0"}')], "release.json says version '2.0'"),
        ([member("p/release.json", b"{not json")], "release.json is not valid JSON"),
    ],
)
def test_unsafe_or_wrong_archives(tmp_path, members, fragment):
    problems = archive_problems(archive(tmp_path, *members), "1.0")
    assert any(fragment in p for p in problems), problems


def test_not_an_archive(tmp_path):
    path = tmp_path / "x.tar.gz"
    path.write_bytes(b"garbage")
    assert "is not a readable tar archive" in archive_problems(str(path), "1.0")[0]


def catalogue(**artifact):
    entry = {"install_method": "artifact", "artifacts": [{"name": "p-1.0.tar.gz", "sha256": SHA, **artifact}],
             "database_migration": "command", "migration_command": "bin/migrate {previous_version} {version}",
             "pre_commands": ["bin/backup {previous_dir}", "bin/check"], "post_commands": ["bin/warm {release_dir}"]}
    return {"p": {"1.0": entry}}


def test_artifact_source_stays_in_the_store(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    src = artifact_source(catalogue(), "p", "1.0", str(store))
    assert src["path"] == str(store / "p-1.0.tar.gz") and src["sha256"] == SHA and src["url"] is None
    (store / "p-1.0.tar.gz").symlink_to("/etc/hostname")
    with pytest.raises(AnsibleFilterError, match="outside the artifact store"):
        artifact_source(catalogue(), "p", "1.0", str(store))
    with pytest.raises(AnsibleFilterError, match="must be the absolute controller directory"):
        artifact_source(catalogue(), "p", "1.0", "relative/store")
    with pytest.raises(AnsibleFilterError, match=r"url: must be an https:// URL"):
        artifact_source(catalogue(url="http://x/p.tar.gz"), "p", "1.0", str(store))
    with pytest.raises(AnsibleFilterError, match=r"release_catalogue.p\['9.9'\] is not in the release catalogue"):
        artifact_source(catalogue(), "p", "9.9", str(store))
    package = {"p": {"1.0": {"install_method": "package"}}}
    with pytest.raises(AnsibleFilterError, match="not artifact"):
        artifact_source(package, "p", "1.0", str(store))


def test_commands_in_order_with_placeholders():
    cmds = artifact_commands(catalogue(), "p", "1.0", "/opt/p", "0.9")
    assert [(c["phase"], c["command"], c["skip"]) for c in cmds] == [
        ("pre", "bin/backup /opt/p/releases/0.9", False),
        ("pre", "bin/check", False),
        ("migration", "bin/migrate 0.9 1.0", False),
        ("post", "bin/warm /opt/p/releases/1.0", False),
    ]
    assert cmds[2]["where"] == "release_catalogue.p['1.0'].migration_command"
    first = artifact_commands(catalogue(), "p", "1.0", "/opt/p", None)
    assert [c["skip"] for c in first] == [True, False, True, False]  # nothing to back up or migrate from


def test_commands_must_be_strings():
    bad = catalogue()
    bad["p"]["1.0"]["post_commands"] = [""]
    with pytest.raises(AnsibleFilterError, match=r"post_commands\[0\]: must be a non-empty command string"):
        artifact_commands(bad, "p", "1.0", "/opt/p", "0.9")


def test_the_products_own_placeholders():
    entry = catalogue()
    entry["p"]["1.0"]["migration_command"] = "runuser -u {user} -- bin/migrate --db {db} --from {previous_version}"
    cmds = artifact_commands(entry, "p", "1.0", "/opt/p", "0.9", {"db": "/var/lib/p/p.db", "user": "p"})
    assert cmds[2]["command"] == "runuser -u p -- bin/migrate --db /var/lib/p/p.db --from 0.9"
    with pytest.raises(AnsibleFilterError, match="not a usable placeholder name"):
        artifact_commands(entry, "p", "1.0", "/opt/p", "0.9", {"version": "x"})
