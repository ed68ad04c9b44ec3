"""filter_plugins/versions.py: Debian version ordering, upstream versions, the release catalogue."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "filter_plugins"))

from versions import (  # noqa: E402
    FilterModule,
    catalogue_entry,
    catalogue_problems,
    compare_debian,
    parse_debian_version,
    upgrade_path_error,
    upstream_version,
    version_compare_debian,
)

LAB_CATALOGUE = yaml.safe_load((REPO / "inventories/lab/group_vars/all/catalogue.yml").read_text())["release_catalogue"]


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("1.10.1", "1.9.9", 1),
        ("1.12.7+dfsg-4", "1.10.1+dfsg-2+deb12u1", 1),
        ("1.0~rc1", "1.0", -1),
        ("1.0", "1.0-0", 0),
        ("1:0.1", "9.9", 1),
        ("1.0a", "1.0", 1),
        ("1.0-1", "1.0-1~bpo1", 1),
        ("1.0+a", "1.0.a", -1),
        ("2.0", "2.0", 0),
        ("1.10.1+dfsg-2+deb12u1", "1.10.1+dfsg-2", 1),
    ],
)
def test_known_orderings(a, b, expected):
    assert version_compare_debian(a, b) == expected
    assert version_compare_debian(b, a) == -expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1:1.12.7+dfsg-1", "1.12.7"),
        ("1.10.1+dfsg-2+deb12u1", "1.10.1"),
        ("1.12.7", "1.12.7"),
        ("2.0~rc1-1", "2.0"),
        ("3.6.9-5", "3.6.9"),
    ],
)
def test_upstream_version(value, expected):
    assert upstream_version(value) == expected


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("", "empty"),
        ("a1.0", "start with a digit"),
        ("x:1.0", "epoch"),
        ("1.0-", "revision"),
        ("1 0", "whitespace"),
        (None, "string"),
    ],
)
def test_invalid_versions_say_why(value, words):
    with pytest.raises(ValueError, match=words):
        parse_debian_version(value)


def test_filter_raises_ansible_errors_for_invalid_versions():
    from ansible.errors import AnsibleFilterError

    with pytest.raises(AnsibleFilterError, match="version_compare_debian"):
        version_compare_debian("", "1.0")


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {
        "version_compare_debian",
        "upstream_version",
        "catalogue_entry",
        "catalogue_problems",
        "upgrade_path_error",
    }


# ---- properties

part = st.text(alphabet="0123456789abz.+~", min_size=0, max_size=6)
versions = st.builds(
    lambda epoch, first, rest, rev: (
        (f"{epoch}:" if epoch is not None else "") + first + rest + (f"-{rev}" if rev else "")
    ),
    st.one_of(st.none(), st.integers(0, 3)),
    st.sampled_from("0123456789"),
    part,
    st.one_of(st.none(), st.text(alphabet="0123456789a.+~", min_size=1, max_size=4)),
)


@given(versions, versions)
def test_antisymmetric(a, b):
    assert compare_debian(a, b) == -compare_debian(b, a)


@given(versions)
def test_reflexive(a):
    assert compare_debian(a, a) == 0


@given(versions, versions, versions)
def test_transitive(a, b, c):
    if compare_debian(a, b) <= 0 and compare_debian(b, c) <= 0:
        assert compare_debian(a, c) <= 0


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="dpkg is not installed")
@settings(max_examples=60, deadline=None)
@given(versions, versions)
def test_agrees_with_dpkg(a, b):
    ours = compare_debian(a, b)
    for op, expected in (("lt", ours < 0), ("eq", ours == 0), ("gt", ours > 0)):
        rc = subprocess.run(["dpkg", "--compare-versions", a, op, b], capture_output=True, check=False).returncode
        assert (rc == 0) == expected, f"dpkg --compare-versions {a} {op} {b}"


# ---- catalogue


def test_lab_catalogue_is_valid():
    assert catalogue_problems(LAB_CATALOGUE) == []
    assert catalogue_problems({"release_catalogue": None}.get("x")) == [
        "release_catalogue is not defined: put it in the inventory "
        "(group_vars/all/catalogue.yml, see docs/catalogue.md)"
    ]


def test_catalogue_entry_lookup():
    assert catalogue_entry(LAB_CATALOGUE, "orthanc", "1.12.7")["packages"]["orthanc"] == "1.12.7+dfsg-4"
    assert catalogue_entry(LAB_CATALOGUE, "orthanc", "1.10.1+dfsg-2+deb12u1")["min_memory_mb"] == 256
    assert catalogue_entry(LAB_CATALOGUE, "orthanc", "9.9", {}) == {}
    from ansible.errors import AnsibleFilterError

    with pytest.raises(AnsibleFilterError, match=r"has no version '9.9' \(known: 1.10.1, 1.12.7\)"):
        catalogue_entry(LAB_CATALOGUE, "orthanc", "9.9")


def broken(change):
    cat = copy.deepcopy(LAB_CATALOGUE)
    change(cat["orthanc"])
    return catalogue_problems(cat, "orthanc")


def test_display_drivers_are_checked_per_gpu():
    def drivers(value):
        return lambda o: o["1.12.7"].update(display_drivers=value)

    where = "release_catalogue.orthanc['1.12.7'].display_drivers"
    assert broken(drivers([{"gpu": "10de:1eb8", "packages": {"nvidia-driver": "535.183.01-1~deb12u1"}}])) == []
    windows = {"path": "x.inf", "sha256": "a" * 64, "inf": "x.inf"}
    assert broken(drivers([{"gpu": "10de:1eb8", "driver": windows}])) == []
    (problem,) = broken(drivers({"gpu": "10de:1eb8"}))
    assert problem.startswith(f"{where}: must be a list of {{gpu, packages}} or {{gpu, driver}}, got ")
    assert broken(drivers([{"gpu": "10DE:1EB8", "packages": {"nvidia-driver": 535}}])) == [
        f"{where}[0].gpu: must be the PCI vendor:device in lower-case hex (lspci -nn), such as 10de:1eb8, "
        "got '10DE:1EB8'",
        f"{where}[0].packages.nvidia-driver: must be a quoted Debian version, got 535",
    ]
    assert broken(drivers([{"gpu": "10de:1eb8"}])) == [
        f"{where}[0]: must have exactly one of packages (Linux) or driver (Windows)"
    ]
    assert broken(drivers([{"gpu": "10de:1eb8", "driver": {"path": "x.inf", "sha256": "A1"}}])) == [
        f"{where}[0].driver.inf: missing or not a string",
        f"{where}[0].driver.sha256: must be 64 lower-case hex digits",
    ]


def test_schema_errors_are_named():
    assert broken(lambda o: o["1.12.7"].update(install_method="rpm")) == [
        "release_catalogue.orthanc['1.12.7'].install_method: unknown install method 'rpm'; "
        "use one of package, artifact, windows_installer"
    ]
    assert broken(lambda o: o["1.12.7"].pop("min_memory_mb")) == [
        "release_catalogue.orthanc['1.12.7']: missing key min_memory_mb (see docs/catalogue.md)"
    ]
    assert broken(lambda o: o["1.12.7"].update(upgrade_from=["1.9.0"])) == [
        "release_catalogue.orthanc['1.12.7'].upgrade_from: 1.9.0 is not a version of orthanc in the catalogue "
        "(known: 1.10.1, 1.12.7); add release_catalogue.orthanc['1.9.0'] or remove it"
    ]
    assert broken(lambda o: o["1.10.1"].update(min_free_disk_mb="1G")) == [
        "release_catalogue.orthanc['1.10.1'].min_free_disk_mb: must be a whole number of MB (0 or more), got '1G' (str)"
    ]
    assert broken(lambda o: o["1.10.1"]["os"].update(major_versions=[12])) == [
        "release_catalogue.orthanc['1.10.1'].os.major_versions: must be a list of major versions such as '12' "
        "(quoted strings), got 12 (int)"
    ]
    assert broken(lambda o: o.update({1.2: o["1.10.1"]})) == [
        'release_catalogue.orthanc: version key 1.2 is a float; quote it ("1.2") so YAML keeps it a string'
    ]
    assert broken(lambda o: o["1.12.7"]["packages"].update(orthanc="1.12.6+dfsg-1")) == [
        "release_catalogue.orthanc['1.12.7'].packages.orthanc: '1.12.6+dfsg-1' is upstream version 1.12.6, "
        "not 1.12.7; fix the package version or the catalogue key"
    ]
    assert broken(lambda o: o["1.12.7"].update(min_ram_mb=1)) == [
        "release_catalogue.orthanc['1.12.7']: unknown key 'min_ram_mb'; known keys: artifacts, database_migration, "
        "display_drivers, install_method, installer, migration_command, min_free_disk_mb, min_memory_mb, notes, os, "
        "os_release_upgrade, "
        "packages, post_commands, pre_commands, upgrade_from"
    ]
    assert broken(lambda o: o["1.10.1"].update(upgrade_from=["1.12.7"])) == [
        "release_catalogue.orthanc['1.10.1'].upgrade_from: 1.12.7 is newer than "
        "1.10.1; a downgrade is not an upgrade path"
    ]
    assert catalogue_problems(LAB_CATALOGUE, "dcm4chee") == [
        "release_catalogue has no product 'dcm4chee' (known: cu-ris, dcmtk, orthanc); add it (see docs/catalogue.md)"
    ]


@given(
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5)),
        lambda children: st.one_of(
            st.lists(children, max_size=3), st.dictionaries(st.text(max_size=8), children, max_size=4)
        ),
        max_leaves=20,
    )
)
def test_catalogue_problems_never_raise(value):
    assert isinstance(catalogue_problems(value), list)
    assert isinstance(catalogue_problems({"orthanc": value}, "orthanc"), list)


def test_upgrade_paths():
    assert upgrade_path_error(LAB_CATALOGUE, "orthanc", "1.10.1", "1.12.7") == ""
    assert upgrade_path_error(LAB_CATALOGUE, "orthanc", "1.12.7", "1.12.7") == ""
    assert "refusing a downgrade" in upgrade_path_error(LAB_CATALOGUE, "orthanc", "1.12.7", "1.10.1")
    assert upgrade_path_error(LAB_CATALOGUE, "orthanc", "1.12.7", "1.10.1", True) == ""
    assert "can be reached from 1.10.1 only" in upgrade_path_error(LAB_CATALOGUE, "orthanc", "1.9.0", "1.12.7")
    assert "is not in release_catalogue.orthanc" in upgrade_path_error(LAB_CATALOGUE, "orthanc", "1.10.1", "2.0")
    assert "unknown" in upgrade_path_error(LAB_CATALOGUE, "orthanc", "", "1.12.7")


@pytest.mark.parametrize("current", [None, "", " ", "\n\t"])
def test_an_unread_current_version_is_unknown_not_invalid(current):
    assert upgrade_path_error(LAB_CATALOGUE, "orthanc", current, "1.12.7") == (
        "the current version of orthanc is unknown, so the upgrade path to 1.12.7 cannot be checked"
    )
    assert upgrade_path_error(LAB_CATALOGUE, "orthanc", " 1.10.1\n", "1.12.7") == ""


def test_an_artifact_release_may_name_exact_os_packages():
    """cu-ris names the DCMTK worklist SCP it runs with; the versions are checked like a package release's."""
    catalogue = copy.deepcopy(LAB_CATALOGUE)
    assert set(catalogue["cu-ris"]["1.1"]["packages"]) == {"dcmtk"}
    catalogue["cu-ris"]["1.1"]["packages"] = {"dcmtk": 3.6, "libx": "not a version!"}
    problems = catalogue_problems(catalogue, "cu-ris")
    assert ("release_catalogue.cu-ris['1.1'].packages.dcmtk: must be a quoted Debian version string, got float"
            in problems)
    assert any(p.startswith("release_catalogue.cu-ris['1.1'].packages.libx:") for p in problems), problems
    # An artifact release's package is not the product: its version is DCMTK's, not cu-ris's.
    catalogue["cu-ris"]["1.1"]["packages"] = {"cu-ris": "3.6.7-9"}
    assert catalogue_problems(catalogue, "cu-ris") == []
