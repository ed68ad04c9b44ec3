"""filter_plugins/precheck.py: the problems of PRE-001 to PRE-004, the disk plan from mount facts."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "filter_plugins"))

from precheck import (  # noqa: E402
    AnsibleFilterError,
    FilterModule,
    apt_download_mb,
    disk_plan,
    disk_problems,
    du_total_mb,
    memory_problems,
    os_support_problems,
    precheck_record,
    reboot_problems,
)

MB = 1048576
BOOKWORM = {"os_family": "Debian", "distribution_major_version": "12", "distribution_release": "bookworm",
            "memtotal_mb": 2000}
TARGET = {"os": {"family": "Debian", "major_versions": ["12", "13"]}, "min_memory_mb": 1024,
          "os_release_upgrade": {"from": "bookworm", "to": "trixie"}}
CURRENT = {"os": {"family": "Debian", "major_versions": ["12"]}, "min_memory_mb": 512}
SKIPPED = {"changed": False, "skipped": True, "skip_reason": "Conditional result was False"}


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {
        "du_total_mb", "apt_download_mb", "disk_plan", "disk_problems", "os_support_problems", "memory_problems",
        "reboot_problems", "precheck_record", "precheck_discovery", "upgrade_needed", "target_problems",
        "target_summary", "podman_volume_paths", "podman_snapshot_estimate",
        "disk_plan_merge", "discovered_host_check",
    }


# --------------------------------------------------------------------------- PRE-001


def os_problems(facts=BOOKWORM, target=TARGET, current=CURRENT):
    return os_support_problems(facts, "pacs1", "orthanc", "1.12.7", target, "1.10.1", current)


def test_supported_os_has_no_problem():
    assert os_problems() == []
    assert os_problems(current={}) == []
    assert os_problems(facts=dict(BOOKWORM, distribution_release="trixie", distribution_major_version="13"),
                       current={}) == []


def test_target_not_in_the_catalogue():
    assert os_problems(target={}, current={}) == [
        "cannot check the OS: target 1.12.7 is not in release_catalogue.orthanc (see PRE-006)"
    ]


def test_os_the_target_does_not_support():
    facts = {"os_family": "RedHat", "distribution_major_version": "9", "distribution_release": "Plow"}
    assert os_problems(facts=facts, target=dict(TARGET, os_release_upgrade={}), current={}) == [
        "pacs1 runs RedHat 9 (Plow) but orthanc 1.12.7 supports Debian 12/13 (release_catalogue.orthanc['1.12.7'].os): "
        "choose another pacs_server_target_version"
    ]


def test_major_version_the_target_does_not_support():
    facts = dict(BOOKWORM, distribution_major_version="11", distribution_release="bullseye")
    problems = os_problems(facts=facts, target={"os": {"family": "Debian", "major_versions": ["12"]}}, current={})
    assert problems == [
        "pacs1 runs Debian 11 (bullseye) but orthanc 1.12.7 supports Debian 12 "
        "(release_catalogue.orthanc['1.12.7'].os): choose another pacs_server_target_version"
    ]


def test_target_without_os_says_unknown():
    assert os_problems(target={"min_memory_mb": 1}, current={}) == [
        "pacs1 runs Debian 12 (bookworm) but orthanc 1.12.7 supports ?  (release_catalogue.orthanc['1.12.7'].os): "
        "choose another pacs_server_target_version"
    ]


def test_installed_version_catalogued_for_another_os():
    current = {"os": {"family": "Debian", "major_versions": ["11"]}}
    assert os_problems(current=current) == [
        "pacs1 runs Debian 12 (bookworm) but the catalogue says the installed orthanc 1.10.1 runs on Debian 11 "
        "(release_catalogue.orthanc['1.10.1'].os): fix the catalogue entry or the host"
    ]


def test_release_upgrade_from_another_release():
    facts = dict(BOOKWORM, distribution_release="bullseye")
    assert os_problems(facts=facts, current={}) == [
        "orthanc 1.12.7 carries the release upgrade bookworm -> trixie but pacs1 runs bullseye "
        "(release_catalogue.orthanc['1.12.7'].os_release_upgrade)"
    ]
    half = dict(TARGET, os_release_upgrade={"from": "buster"})
    assert os_problems(target=half, current={}) == [
        "orthanc 1.12.7 carries the release upgrade buster -> ? but pacs1 runs bookworm "
        "(release_catalogue.orthanc['1.12.7'].os_release_upgrade)"
    ]


def test_every_os_problem_at_once_in_order():
    facts = {"os_family": "Suse", "distribution_major_version": 15, "distribution_release": "sp5"}
    problems = os_problems(facts=facts)
    assert [p.split(" (")[0][:30] for p in problems] == [
        "pacs1 runs Suse 15", "pacs1 runs Suse 15", "orthanc 1.12.7 carries the rel"
    ]
    assert "supports Debian 12/13" in problems[0] and "runs on Debian 12" in problems[1]


def test_major_versions_are_compared_as_written():
    # the catalogue holds strings (catalogue_problems checks it); an int entry does not match
    assert os_problems(target=dict(TARGET, os={"family": "Debian", "major_versions": [12]}), current={}) != []


# --------------------------------------------------------------------------- PRE-002


def test_memory_enough_short_and_unknown_target():
    assert memory_problems(BOOKWORM, "pacs1", "orthanc", "1.12.7", TARGET) == []
    assert memory_problems(BOOKWORM, "pacs1", "orthanc", "1.12.7", {"min_memory_mb": 2000}) == []
    assert memory_problems(BOOKWORM, "pacs1", "orthanc", "1.12.7", {"min_memory_mb": "4096"}) == [
        "pacs1 has 2000 MB of memory; orthanc 1.12.7 needs 4096 MB "
        "(release_catalogue.orthanc['1.12.7'].min_memory_mb): add memory to the host first"
    ]
    assert memory_problems(BOOKWORM, "pacs1", "orthanc", "9.9", {}) == [
        "cannot check memory: target 9.9 is not in release_catalogue.orthanc (see PRE-006)"
    ]
    assert memory_problems(BOOKWORM, "pacs1", "orthanc", "1.12.7", {"os": {}}) == [], "no minimum, no problem"


# --------------------------------------------------------------------------- PRE-003


def b64(text: str) -> dict:
    return {"content": base64.b64encode(text.encode()).decode()}


@pytest.mark.parametrize(
    ("flag", "pkgs", "needrestart", "expected"),
    [
        (False, SKIPPED, SKIPPED, []),
        (False, SKIPPED, {"stdout": "NEEDRESTART-KCUR: 6.1\nNEEDRESTART-KSTA: 1\n"}, []),
        (True, b64("linux-image-amd64\nlibc6\nlinux-image-amd64\n"), SKIPPED,
         ["/run/reboot-required exists (packages: linux-image-amd64, libc6)"]),
        (True, {"failed": False, "msg": "file not found: /run/reboot-required.pkgs"}, SKIPPED,
         ["/run/reboot-required exists"]),
        (True, b64(""), {"stdout": ""}, ["/run/reboot-required exists"]),
        (True, {"content": "%%%not base64"}, None, ["/run/reboot-required exists"]),
        (False, SKIPPED, {"stdout": "NEEDRESTART-KSTA: 2\n"},
         ["needrestart reports a newer kernel than the running one (NEEDRESTART-KSTA: 2)"]),
        (True, b64("linux-image-amd64"), {"stdout": "NEEDRESTART-KSTA:3"},
         ["/run/reboot-required exists (packages: linux-image-amd64)",
          "needrestart reports a newer kernel than the running one (NEEDRESTART-KSTA: 3)"]),
        (False, SKIPPED, {"stdout": "NEEDRESTART-KSTA: 0"}, []),
    ],
)
def test_reboot_problems(flag, pkgs, needrestart, expected):
    assert reboot_problems({"stat": {"exists": flag}}, pkgs, needrestart) == expected


# --------------------------------------------------------------------------- PRE-004: the plan


def mount(point, device, free_mb=None, **extra):
    entry = {"mount": point, "device": device, "fstype": "ext4", "options": "rw", **extra}
    if free_mb is not None:
        entry["size_available"] = free_mb * MB + 12345
        entry["size_total"] = 10 * free_mb * MB
    return entry


NEEDS = [
    {"path": "/var/backups/clinical-upgrade", "what": "snapshot", "mb": 100.5},
    {"path": "/var/cache/apt/archives", "what": "packages", "mb": 200},
]


def test_both_paths_on_root_are_one_filesystem():
    plan = disk_plan([mount("/", "/dev/sda1", 1000), mount("/boot", "/dev/sda2", 50)], NEEDS, 20)
    assert plan == [{
        "mount": "/", "mounts": ["/"], "device": "/dev/sda1",
        "what": ["snapshot (/var/backups/clinical-upgrade: 100.5 MB)", "packages (/var/cache/apt/archives: 200 MB)"],
        "needed_mb": 361, "available_mb": 1000, "ok": True,
        "message": "/ (/dev/sda1): needed 361 MB for snapshot (/var/backups/clinical-upgrade: 100.5 MB) + packages "
                   "(/var/cache/apt/archives: 200 MB) + 20% margin, available 1000 MB",
    }]


def test_nested_mounts_the_longest_mount_point_holds_the_path():
    mounts = [mount("/", "/dev/sda1", 5000), mount("/var", "/dev/sdb1", 300),
              mount("/var/backups", "/dev/sdc1", 100), mount("/var/backups/clinical", "/dev/sdd1", 1)]
    plan = disk_plan(mounts, NEEDS, 0)
    assert [(e["mount"], e["device"], e["needed_mb"], e["available_mb"], e["ok"]) for e in plan] == [
        ("/var/backups", "/dev/sdc1", 101, 100, False),  # the tightest first
        ("/var", "/dev/sdb1", 200, 300, True),
    ], "/var/backups/clinical is not a parent of /var/backups/clinical-upgrade"


def test_trailing_slashes_and_double_slashes_are_the_same_path():
    mounts = [mount("/", "/dev/sda1", 5000), mount("/var/backups/", "/dev/sdc1", 100)]
    needs = [{"path": "/var/backups/", "what": "snapshot", "mb": 10}, {"path": "//var//cache/apt/", "what": "packages",
                                                                       "mb": 1}]
    plan = disk_plan(mounts, needs, 0)
    assert {e["mount"]: e["what"] for e in plan} == {
        "/var/backups/": ["snapshot (/var/backups/: 10 MB)"],
        "/": ["packages (//var//cache/apt/: 1 MB)"],
    }


def test_bind_mounts_of_one_device_share_their_free_space():
    mounts = [mount("/", "/dev/sda1", 5000), mount("/srv", "/dev/sdb1", 250),
              mount("/var/backups", "/dev/sdb1", 250, options="rw,bind"),
              mount("/var/cache/apt", "/dev/sdb1", 250, options="rw,bind")]
    plan = disk_plan(mounts, NEEDS, 0)
    assert len(plan) == 1
    entry = plan[0]
    assert entry["mounts"] == ["/var/backups", "/var/cache/apt"] and entry["mount"] == "/var/backups"
    assert entry["needed_mb"] == 301 and entry["available_mb"] == 250 and entry["ok"] is False
    assert entry["message"].startswith("/var/backups, /var/cache/apt (/dev/sdb1): needed 301 MB for snapshot")
    # apart, each would fit: only together they do not
    assert all(disk_plan(mounts, [need], 0)[0]["ok"] for need in NEEDS)


def test_pseudo_devices_are_one_filesystem_per_mount_point():
    mounts = [mount("/", "overlay", 1000, fstype="overlay"), mount("/var/backups", "tmpfs", 150, fstype="tmpfs"),
              mount("/var/cache", "tmpfs", 150, fstype="tmpfs")]
    plan = disk_plan(mounts, NEEDS, 0)
    assert sorted((e["mount"], e["ok"]) for e in plan) == [("/var/backups", True), ("/var/cache", False)]


def test_the_container_root_overlay_holds_the_paths():
    # a podman container: / is overlay, the host's files are bind-mounted from its disk
    mounts = [mount("/", "overlay", 700, fstype="overlay"), mount("/etc/hosts", "/dev/vda", 80000),
              mount("/run/.containerenv", "tmpfs", 10), mount("/proc", "proc", 0, fstype="proc")]
    plan = disk_plan(mounts, NEEDS, 20)
    assert [(e["mount"], e["device"], e["available_mb"], e["ok"]) for e in plan] == [("/", "overlay", 700, True)]


def test_the_last_mount_on_a_mount_point_is_the_visible_one():
    mounts = [mount("/", "/dev/sda1", 5000), mount("/var", "/dev/old", 1), mount("/var", "/dev/new", 900)]
    assert [e["device"] for e in disk_plan(mounts, NEEDS, 0)] == ["/dev/new"]


def test_mount_points_mapping_of_mount_facts_is_accepted():
    points = {"/": mount("/", "/dev/sda1", 5000), "/var": mount("/var", "/dev/sdb1", 900)}
    assert [e["mount"] for e in disk_plan(points, NEEDS, 0)] == ["/var"]


def test_free_space_unknown_when_the_facts_have_no_size():
    mounts = [mount("/", "/dev/sda1", 5000), mount("/var", "nfs1:/export", None,
                                                   note="Could not get extra information due to timeout"), "N/A"]
    plan = disk_plan(mounts, NEEDS, 0)
    assert plan[0] == {
        "mount": "/var", "mounts": ["/var"], "device": "nfs1:/export",
        "what": ["snapshot (/var/backups/clinical-upgrade: 100.5 MB)", "packages (/var/cache/apt/archives: 200 MB)"],
        "needed_mb": 301, "available_mb": None, "ok": False,
        "message": "/var (nfs1:/export): the mount facts have no size_available (Could not get extra information "
                   "due to timeout); needed 301 MB for snapshot (/var/backups/clinical-upgrade: 100.5 MB) + packages "
                   "(/var/cache/apt/archives: 200 MB) + 0% margin",
    }


def test_no_mount_holds_the_path():
    plan = disk_plan([mount("/boot", "/dev/sda2", 50)], NEEDS[:1], 10)
    assert plan == [{
        "mount": None, "mounts": [], "device": None, "what": ["snapshot (/var/backups/clinical-upgrade: 100.5 MB)"],
        "needed_mb": 111, "available_mb": None, "ok": False,
        "message": "no mount in the mount facts holds /var/backups/clinical-upgrade; needed 111 MB for snapshot "
                   "(/var/backups/clinical-upgrade: 100.5 MB) + 10% margin",
    }]
    assert disk_plan(None, [{"path": "relative/path", "what": "x", "mb": 0}], 0)[0]["available_mb"] is None


@pytest.mark.parametrize("needs", [None, "x", [{"path": "/"}, "oops"]])
def test_needs_must_be_a_list_of_mappings(needs):
    with pytest.raises(AnsibleFilterError, match="needs must be a list"):
        disk_plan([], needs)


# --------------------------------------------------------------------------- PRE-004: the problems


def problems(plan, du=SKIPPED, target=TARGET):
    return disk_problems(plan, "pacs1", "orthanc", "1.12.7", target, du)


def test_disk_without_problems():
    plan = disk_plan([mount("/", "/dev/sda1", 5000)], NEEDS, 20)
    assert problems(plan) == []
    assert problems(plan, du={"rc": 0, "stdout": "12\t/etc/orthanc", "stderr": ""}) == []


def test_every_disk_problem_in_order():
    mounts = [mount("/", "/dev/sda1", 10), mount("/var/cache", "/dev/sdb1", None)]
    plan = disk_plan(mounts, NEEDS, 0)
    du = {"rc": 1, "stdout": "", "stderr": "du: cannot access '/var/lib/orthanc/db-v6': No such file or directory\n"}
    assert problems(plan, du=du, target={}) == [
        "cannot measure the snapshot data: du failed: du: cannot access '/var/lib/orthanc/db-v6': No such file or "
        "directory (check precheck_snapshot_paths)",
        "cannot read the free space: /var/cache (/dev/sdb1): the mount facts have no size_available; needed 200 MB "
        "for packages (/var/cache/apt/archives: 200 MB) + 0% margin (check precheck_snapshot_dest and "
        "precheck_package_cache_path)",
        "cannot size the packages: target 1.12.7 is not in release_catalogue.orthanc (see PRE-006)",
        "not enough free disk on pacs1 / (/dev/sda1): needed 101 MB for snapshot (/var/backups/clinical-upgrade: "
        "100.5 MB) + 0% margin, available 10 MB",
    ]


def test_a_skipped_du_is_no_problem():
    assert problems([], du=SKIPPED) == [] and problems([], du=None) == []


# --------------------------------------------------------------------------- probes and records


def test_du_and_apt_sizes():
    assert du_total_mb("1024\t/var/lib/orthanc\n512\t/etc/orthanc\ndu: warning\n") == 1.5
    assert du_total_mb(None) == 0
    uris = ("'http://deb.debian.org/pool/o/orthanc_1.12.7.deb' orthanc_1.12.7_amd64.deb 2097152 SHA256:ab\n"
            "'http://deb.debian.org/pool/l/libx.deb' libx_1_amd64.deb 1048576 SHA256:cd\nnot a uri line 5\n")
    assert apt_download_mb(uris) == 3.0


def test_precheck_record():
    assert precheck_record({"failed": True, "msg": "no"}, "PRE-004", "disk") == {
        "id": "PRE-004", "title": "disk", "status": "failed", "message": "no"}
    assert precheck_record({"msg": "ok"}, "PRE-001", "os")["status"] == "passed"
    assert precheck_record({"skipped": True, "false_condition": "x"}, "PRE-003", "r")["message"] == "not run: x"
    assert precheck_record(None, "PRE-002", "m")["message"] == "the check did not run"


# --------------------------------------------------------------------------- the role's tasks on this machine

REPO = Path(__file__).resolve().parents[2]
HOST_PLAY = """\
- name: The precheck role's host checks on this machine
  hosts: localhost
  connection: local
  gather_facts: false
  vars_files: [{repo}/inventories/lab/group_vars/all/catalogue.yml]
  vars:
    precheck_product: orthanc
    precheck_target_version: "1.12.7"
    precheck_current_version: "1.10.1"
    precheck_snapshot_paths: [{repo}/filter_plugins]
    precheck_snapshot_dest: {dest}/
    precheck_disk_margin_pct: 100000000
  tasks:
    - name: Read the OS and memory
      ansible.builtin.setup:
        gather_subset: ["!all", "!min", distribution, hardware]
    - name: PRE-001 to PRE-004
      ansible.builtin.include_role: {{name: precheck, tasks_from: host}}
    - name: Write what happened
      ansible.builtin.copy:
        dest: {out}
        content: "{{{{ {{'pre': [__precheck_pre001, __precheck_pre002, __precheck_pre003, __precheck_pre004],
                    'disk': precheck_disk}} | to_json }}}}"
        mode: "0600"
"""


def test_host_checks_run_on_this_machine_and_pre004_reads_the_mounts(tmp_path):
    play = tmp_path / "play.yml"
    out = tmp_path / "out.json"
    play.write_text(HOST_PLAY.format(repo=REPO, dest=tmp_path / "backups", out=out))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,",
         "-e", f"ansible_python_interpreter={sys.executable}", str(play)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = json.loads(out.read_text())
    assert all(isinstance(r.get("msg"), str) and r["msg"] for r in got["pre"]), "every check gave a message"
    pre004, disk = got["pre"][3], got["disk"]
    assert pre004["failed"] is True, "a margin of 100000000% cannot be met"
    assert pre004["msg"].startswith("not enough free disk on localhost ")
    assert "+ 100000000% margin, available " in pre004["msg"]
    assert disk and all(isinstance(e["available_mb"], int) and e["available_mb"] > 0 for e in disk)
    # the mount holding the snapshot directory (which does not exist yet) is a parent of it
    holder = next(e for e in disk if any("snapshot" in w for w in e["what"]))
    assert any(str(tmp_path).startswith(m.rstrip("/") + "/") or m == "/" for m in holder["mounts"])
