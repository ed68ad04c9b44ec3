"""roles/snapshot/library/snapshot_links.py: protect write-once files with hard links, restore from them.
Real files on the test machine's file system; ansible-doc renders the module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import ansible.module_utils
import pytest
import yaml
from support import REPO, run_module

LIBRARY = REPO / "roles" / "snapshot" / "library"
ROLE_MODULE_UTILS = REPO / "roles" / "snapshot" / "module_utils"  # what Ansible gives the role's modules
if str(ROLE_MODULE_UTILS) not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(str(ROLE_MODULE_UTILS))
sys.path.insert(0, str(LIBRARY))
import snapshot_links  # noqa: E402

RETURN_KEYS = set(yaml.safe_load(snapshot_links.RETURN))


@pytest.fixture
def store(tmp_path):
    """An Orthanc-like storage: write-once files in hex sub-directories, and an index rewritten in place."""
    src = tmp_path / "db-v6"
    for name, body in {"ab/cd/f1": b"one", "ab/cd/f2": b"two" * 1000, "01/23/f3": b"three"}.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(body)
    (src / "index").write_bytes(b"sqlite v1")
    (src / "01").chmod(0o750)
    (src / "link").symlink_to("ab/cd/f1")
    return src


def args(store, tmp_path, **extra):
    return {
        "src": str(store),
        "dest": str(tmp_path / "snap" / "s1" / "db-v6"),
        "manifest": str(tmp_path / "snap" / "s1" / "db-v6.json"),
        "exclude": [str(store / "index")],
        **extra,
    }


def tree(root: Path) -> dict:
    return {
        str(p.relative_to(root)): (
            p.read_bytes()
            if p.is_file() and not p.is_symlink()
            else os.readlink(p)
            if p.is_symlink()
            else oct(p.stat().st_mode)
        )
        for p in sorted(root.rglob("*"))
    }


def test_present_links_every_file_except_the_excluded_and_copies_no_bytes(store, tmp_path):
    result = run_module(snapshot_links, args(store, tmp_path))
    assert result["_rc"] == 0 and result["changed"], result
    # "warnings": Ansible keeps them process-wide, so another test's may show up here
    assert set(result) - {"_rc", "changed", "invocation", "warnings", "deprecations"} <= RETURN_KEYS
    assert result["files"] == 3 and result["bytes"] == 3 + 3000 + 5
    dest = tmp_path / "snap" / "s1" / "db-v6"
    for name in ("ab/cd/f1", "ab/cd/f2", "01/23/f3"):
        assert (dest / name).stat().st_ino == (store / name).stat().st_ino  # the same file, not a copy
    assert not (dest / "index").exists()
    assert os.readlink(dest / "link") == "ab/cd/f1"
    assert oct((dest / "01").stat().st_mode & 0o777) == oct(0o750)
    manifest = json.loads((tmp_path / "snap" / "s1" / "db-v6.json").read_text())
    assert [f[0] for f in manifest["files"]] == ["01/23/f3", "ab/cd/f1", "ab/cd/f2"]
    assert result["manifest_bytes"] == (tmp_path / "snap" / "s1" / "db-v6.json").stat().st_size


def test_restore_removes_what_came_after_and_links_back_what_was_deleted(store, tmp_path):
    before = tree(store)
    assert run_module(snapshot_links, args(store, tmp_path))["_rc"] == 0
    # after the snapshot: the PACS stores new files, deletes one, rewrites its index
    (store / "ab" / "ef").mkdir()
    (store / "ab" / "ef" / "new").write_bytes(b"after")
    (store / "ab" / "cd" / "new2").write_bytes(b"after")
    (store / "ab" / "cd" / "f1").unlink()
    (store / "index").write_bytes(b"sqlite v2")

    planned = run_module(snapshot_links, args(store, tmp_path, state="restored"), check_mode=True)
    assert planned["removed"] == 2 and planned["linked_back"] == 1 and (store / "ab" / "ef" / "new").exists()

    result = run_module(snapshot_links, args(store, tmp_path, state="restored"))
    assert result["_rc"] == 0 and result["changed"], result
    assert (result["removed"], result["linked_back"], result["unchanged"]) == (2, 1, 3)
    assert sorted(result["sample"]) == ["linked back ab/cd/f1", "removed ab/cd/new2", "removed ab/ef/new"]
    after = tree(store)
    assert after.pop("index") == b"sqlite v2"  # excluded: left to the copy of the index
    before.pop("index")
    assert after == before
    again = run_module(snapshot_links, args(store, tmp_path, state="restored"))
    assert again["changed"] is False and again["unchanged"] == 4


def test_a_file_rewritten_in_place_makes_the_snapshot_unusable_and_nothing_changes(store, tmp_path):
    assert run_module(snapshot_links, args(store, tmp_path))["_rc"] == 0
    (store / "extra").write_bytes(b"x")
    with open(store / "ab" / "cd" / "f2", "r+b") as handle:  # the same inode, so the snapshot sees it too
        handle.write(b"XYZW")
        handle.truncate(4)
    result = run_module(snapshot_links, args(store, tmp_path, state="restored"))
    assert result["failed"] and "nothing was changed" in result["msg"]
    assert "ab/cd/f2: rewritten in place (size 4, recorded 3000)" in result["msg"]
    assert (store / "extra").exists()
    verified = run_module(snapshot_links, args(store, tmp_path, state="verified"))
    assert verified["failed"] and "ab/cd/f2" in verified["msg"]


def test_refusals_say_what_to_fix(store, tmp_path):
    first = run_module(snapshot_links, args(store, tmp_path))
    assert first["_rc"] == 0
    again = run_module(snapshot_links, args(store, tmp_path))
    assert again["failed"] and "already exists; choose another snapshot name" in again["msg"]
    inside = run_module(
        snapshot_links, args(store, tmp_path, dest=str(store / "snap"), manifest=str(tmp_path / "m.json"))
    )
    assert inside["failed"] and "must be outside src" in inside["msg"]
    outside = run_module(
        snapshot_links,
        args(store, tmp_path, dest=str(tmp_path / "d2"), manifest=str(tmp_path / "m2.json"), exclude=["/etc"]),
    )
    assert outside["failed"] and "exclude entry /etc is not inside src" in outside["msg"]
    (store / "fifo").parent.mkdir(exist_ok=True)
    os.mkfifo(store / "fifo")
    special = run_module(
        snapshot_links, args(store, tmp_path, dest=str(tmp_path / "d3"), manifest=str(tmp_path / "m3.json"))
    )
    assert special["failed"] and "neither a directory, a regular file nor a symbolic link" in special["msg"]
    missing = run_module(snapshot_links, args(store, tmp_path, dest=str(tmp_path / "nope"), state="restored"))
    assert missing["failed"] and "the tree of links" in missing["msg"] and "is missing" in missing["msg"]


def test_another_file_system_is_refused_naming_both(store, tmp_path):
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(store).st_dev:
        pytest.fail("this test needs /dev/shm on a file system other than the test's tmp_path")
    result = run_module(
        snapshot_links,
        args(store, tmp_path, dest=f"/dev/shm/cu-links-{os.getpid()}/db", manifest=str(tmp_path / "m.json")),
    )
    assert result["failed"] and "hard links cannot cross file systems" in result["msg"]
    assert str(store) in result["msg"]


def test_absent_removes_the_links_not_the_files(store, tmp_path):
    assert run_module(snapshot_links, args(store, tmp_path))["_rc"] == 0
    (tmp_path / "snap" / "s1" / "db-v6" / "01").chmod(0o500)
    result = run_module(snapshot_links, args(store, tmp_path, state="absent"))
    assert result["_rc"] == 0 and result["changed"]
    assert not (tmp_path / "snap" / "s1" / "db-v6").exists()
    assert not (tmp_path / "snap" / "s1" / "db-v6.json").exists()
    assert (store / "ab" / "cd" / "f2").read_bytes() == b"two" * 1000
    assert run_module(snapshot_links, args(store, tmp_path, state="absent"))["changed"] is False


@pytest.mark.parametrize("name", ["snapshot_links", "snapshot_podman_freeze"])
def test_ansible_doc_renders_the_role_modules(name):
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-doc"), "--json", "-M", str(LIBRARY), name],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)[name]
    assert doc["doc"]["options"] and all(o.get("description") for o in doc["doc"]["options"].values())
    if name == "snapshot_links":
        assert set(doc["return"]) == RETURN_KEYS


def test_a_file_being_written_at_the_snapshot_is_in_flight_not_part_of_it(store, tmp_path):
    """A paused container may be in the middle of writing a file: it grows after the snapshot. Its
    application had not acknowledged it, so the restore leaves it out instead of refusing."""
    (store / "ab" / "cd" / "partial").write_bytes(b"first half ")
    assert run_module(snapshot_links, args(store, tmp_path))["_rc"] == 0
    with open(store / "ab" / "cd" / "partial", "ab") as handle:  # the write goes on after the unpause
        handle.write(b"second half")
    verified = run_module(snapshot_links, args(store, tmp_path, state="verified"))
    assert verified["_rc"] == 0 and verified["in_flight"] == ["ab/cd/partial"], verified
    restored = run_module(snapshot_links, args(store, tmp_path, state="restored"))
    assert restored["_rc"] == 0 and "removed ab/cd/partial" in restored["sample"], restored
    assert not (store / "ab" / "cd" / "partial").exists() and (store / "ab" / "cd" / "f1").exists()


def test_an_old_file_that_grew_is_not_in_flight_but_a_broken_rule(store, tmp_path):
    old = store / "ab" / "cd" / "f1"
    os.utime(old, ns=(1_000_000_000, 1_000_000_000))  # written long before the snapshot
    assert run_module(snapshot_links, args(store, tmp_path))["_rc"] == 0
    with open(old, "ab") as handle:
        handle.write(b"appended later")
    result = run_module(snapshot_links, args(store, tmp_path, state="restored"))
    assert result["failed"] and "ab/cd/f1: rewritten in place" in result["msg"], result
