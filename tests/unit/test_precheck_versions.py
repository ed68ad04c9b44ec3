"""filter_plugins/precheck.py and the role: PRE-005 and PRE-006 when the current version could not be read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "filter_plugins"))

from precheck import precheck_discovery, target_problems, target_summary, upgrade_needed  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

CATALOGUE = {"orthanc": {"1.10.1": {"upgrade_from": []}, "1.12.7": {"upgrade_from": ["1.10.1"]}}}
NOT_READ = {
    "product": "orthanc",
    "version": "",
    "package": "orthanc",
    "package_version": "",
    "problems": [
        "the orthanc API at http://127.0.0.1:18042 did not answer: timed out (check endpoint_rest_url)",
        "package orthanc is not installed on the host: check the host and pacs_server_product",
    ],
}


@pytest.mark.parametrize("version", ["", " ", "\n", None, [], {}])
def test_an_unread_version_is_empty_text_and_a_problem(version):
    got = precheck_discovery({"version": version, "package": "orthanc", "problems": []}, "pacs_server discover")
    assert got["version"] == "" and got["package_version"] == "" and got["source"] == "pacs_server discover"
    assert got["problems"] == [
        f"pacs_server discover returned no version (got {version!r}) and no problem saying "
        "why: check that it reads the running version"
    ]


def test_discovery_keeps_what_it_found():
    found = {"version": " 1.10.1\n", "package_version": "1.10.1+dfsg-2+deb12u1", "database_version": 6, "problems": []}
    got = precheck_discovery(found, "pacs_server discover")
    assert (got["version"], got["package_version"], got["database_version"], got["problems"]) == (
        "1.10.1",
        "1.10.1+dfsg-2+deb12u1",
        6,
        [],
    )
    assert precheck_discovery(NOT_READ)["problems"] == NOT_READ["problems"], "the reasons given are kept, none added"
    assert precheck_discovery(None, "x y")["problems"][0].startswith("x y returned no version (got None)")


@pytest.mark.parametrize(
    ("current", "target", "entry", "needed"),
    [
        ("1.10.1", "1.12.7", {"os": {}}, True),
        ("1.12.7", "1.12.7", {"os": {}}, False),
        ("1.12.7", "1.12.7", {}, True),  # target not catalogued
        ("", "1.12.7", {"os": {}}, True),
        (" ", "1.12.7", {"os": {}}, True),  # the role's Jinja raised "a version must not be empty" here
        (None, "1.12.7", {"os": {}}, True),
        ("not a version", "1.12.7", {"os": {}}, True),
    ],
)
def test_upgrade_needed_never_raises(current, target, entry, needed):
    assert upgrade_needed(current, target, entry) is needed


@pytest.mark.parametrize("current", ["", " ", "\t\n", None])
def test_pre006_an_unread_current_version_is_a_finding_not_an_internal_error(current):
    found = precheck_discovery(NOT_READ, "pacs_server discover")
    got = target_problems(CATALOGUE, "orthanc", current, "1.12.7", False, found, "pacs1")
    assert got == [
        "cannot check the upgrade path to orthanc 1.12.7: the installed version of orthanc on pacs1 could not be read "
        "(the version discovered is empty). pacs_server discover (PRE-005) looked at the running orthanc's API and "
        "the installed package orthanc and found: the orthanc API at http://127.0.0.1:18042 did not answer: timed "
        "out (check endpoint_rest_url); package orthanc is not installed on the host: check the host and "
        "pacs_server_product. Fix that first: check that package orthanc is installed on pacs1 (dpkg -l orthanc) "
        "and that orthanc runs and answers on its API (for the PACS: REST at endpoint_rest_url, with "
        "pacs_server_rest_user/pacs_server_rest_password), then run the precheck again"
    ]


def test_pre006_an_unread_version_and_an_uncatalogued_target_are_both_said():
    got = target_problems(CATALOGUE, "orthanc", " ", "2.0", False, {}, "pacs1")
    assert len(got) == 2
    assert got[0].startswith("target version 2.0 of orthanc is not in release_catalogue.orthanc (known: 1.10.1, ")
    assert "installed version of orthanc on pacs1 could not be read" in got[1]
    assert "the discover entry point (PRE-005) looked at" in got[1] and "found: no version and no problem." in got[1]


def test_pre006_paths():
    assert target_problems(CATALOGUE, "orthanc", "1.10.1", "1.12.7") == []
    assert target_problems(CATALOGUE, "orthanc", " 1.12.7 ", "1.12.7") == []
    assert "refusing a downgrade" in target_problems(CATALOGUE, "orthanc", "1.12.7", "1.10.1")[0]
    assert target_problems(CATALOGUE, "orthanc", "1.12.7", "1.10.1", True) == []
    assert "can be reached from 1.10.1 only" in target_problems(CATALOGUE, "orthanc", "1.9.0", "1.12.7")[0]
    assert target_problems(CATALOGUE, "orthanc", "x1", "1.12.7")[0].startswith("cannot compare versions 'x1'")


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        ("1.10.1", "1.10.1 -> 1.12.7 is a catalogued upgrade path"),
        ("1.12.7", "already at 1.12.7: nothing to upgrade"),
        ("1.13.0", "1.13.0 -> 1.12.7 is a catalogued downgrade, allowed by pacs_server_allow_downgrade"),
        (" ", "the current version is unknown; target 1.12.7"),
        ("x1", "x1 -> 1.12.7"),
    ],
)
def test_pre006_summary_never_raises(current, expected):
    assert target_summary(current, "1.12.7") == expected


# --------------------------------------------------------------------------- the role on this machine


VERSION_PLAY = """\
- name: The precheck's PRE-005 and PRE-006 on this machine, after a discover that read no version
  hosts: localhost
  connection: local
  gather_facts: false
  vars_files: [{repo}/inventories/lab/group_vars/all/catalogue.yml]
  vars:
    precheck_product: orthanc
    precheck_target_version: "1.12.7"
    precheck_discover: {{role: fake_product, tasks_from: discover, result: fake_product_discovered}}
    precheck_snapshot_paths: [{repo}/filter_plugins]
    precheck_snapshot_dest: {dest}/
  tasks:
    - name: Read the OS and memory
      ansible.builtin.setup:
        gather_subset: ["!all", "!min", distribution, hardware]
    - name: PRE-005
      ansible.builtin.include_role: {{name: precheck, tasks_from: discover}}
    - name: PRE-001 to PRE-004
      ansible.builtin.include_role: {{name: precheck, tasks_from: host}}
    - name: PRE-006
      ansible.builtin.include_role: {{name: precheck, tasks_from: target}}
    - name: Write what happened
      ansible.builtin.copy:
        dest: {out}
        content: "{{{{ {{'pre005': __precheck_pre005, 'pre006': __precheck_pre006,
                    'needed': precheck_upgrade_needed, 'current': precheck_current_version}} | to_json }}}}"
        mode: "0600"
"""


@pytest.mark.parametrize("version", ["", " "])
def test_pre006_reports_an_unread_version_through_the_role(tmp_path, version):
    """The discover step read no version: PRE-005 and PRE-006 fail with findings, nothing raises."""
    tasks = tmp_path / "roles" / "fake_product" / "tasks"
    tasks.mkdir(parents=True)
    (tasks / "discover.yml").write_text(
        "- name: Discover | Read nothing\n  ansible.builtin.set_fact:\n    fake_product_discovered:\n"
        f"      product: orthanc\n      version: {json.dumps(version)}\n      package: orthanc\n"
        "      package_version: ''\n      problems: []\n"
    )
    play = tmp_path / "play.yml"
    out = tmp_path / "out.json"
    play.write_text(VERSION_PLAY.format(repo=REPO, dest=tmp_path / "backups", out=out))
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_ROLES_PATH=f"{REPO / 'roles'}:{tmp_path / 'roles'}",
    )
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            "localhost,",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            str(play),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = json.loads(out.read_text())
    assert got["current"] == "" and got["needed"] is True
    assert got["pre005"]["failed"] is True
    assert got["pre005"]["msg"] == (
        f"fake_product discover returned no version (got {version!r}) and no problem "
        "saying why: check that it reads the running version"
    )
    assert got["pre006"]["failed"] is True
    assert "must not be empty" not in got["pre006"]["msg"]
    assert got["pre006"]["msg"].startswith(
        "cannot check the upgrade path to orthanc 1.12.7: the installed version of orthanc on localhost could not be "
        "read (the version discovered is empty). fake_product discover (PRE-005) looked at"
    )
    assert "check that package orthanc is installed on localhost" in got["pre006"]["msg"]
