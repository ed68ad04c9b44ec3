"""workstation_linux_facts, dnf side: the pure parts (versionlock's list, needs-restarting's answer, RPM
versions, dnf's pid lock file). dnf's own resolution is tested with real dnf in
tests/integration/test_workstation_dnf.py.

The versionlock lines are what `dnf versionlock add` (dnf-plugins-core 4.3) writes; the needs-restarting
text is its output on RHEL 9 after a kernel and glibc update. The lock is a pid file naming a real process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "roles" / "workstation_linux" / "library"))
import workstation_linux_facts as facts  # noqa: E402

VERSIONLOCK_LIST = """\

# Added lock on Wed Dec  2 22:31:07 2026
cu-viewer-0:2.0-1.*
# Added lock on Wed Dec  2 22:31:08 2026
nvidia-driver-3:535.183.01-1.el9.*
kernel-core-0:5.14.0-427.13.1.el9_4.*
kernel-core-0:5.14.0-427.20.1.el9_4.*
!cu-os-0:1.1-1.*
bash
"""

NEEDS_RESTARTING = """\
Core libraries or services have been updated since boot-up:
  * glibc
  * kernel

Reboot is required to fully utilize these updates.
More information: https://access.redhat.com/solutions/27943
"""


def test_versionlock_names_are_the_locked_packages_once_each_and_not_the_excluded_ones():
    assert facts.versionlock_names(VERSIONLOCK_LIST) == ["cu-viewer", "nvidia-driver", "kernel-core", "bash"]
    assert facts.versionlock_names("") == []


def test_a_name_with_dashes_is_kept_whole():
    assert facts.versionlock_names("python3-dnf-plugin-versionlock-0:4.3.0-13.el9.*\n") == [
        "python3-dnf-plugin-versionlock"
    ]


@pytest.mark.parametrize(
    ("rc", "text", "expected"),
    [
        (1, NEEDS_RESTARTING, {"required": True, "packages": ["glibc", "kernel"]}),
        (
            0,
            "No core libraries or services have been updated since boot-up.\nReboot should not be necessary.\n",
            {"required": False, "packages": []},
        ),
        (2, "", {"required": False, "packages": []}),  # no needs-restarting: not known, not claimed
    ],
)
def test_needs_restarting_exit_1_means_a_reboot(rc, text, expected):
    assert facts.parse_needs_restarting(rc, text) == expected


@pytest.mark.parametrize(
    ("epoch", "version", "release", "text"),
    [(0, "2.0", "1", "2.0-1"), (None, "2.0", "1.el9", "2.0-1.el9"), (3, "535.183.01", "1.el9", "3:535.183.01-1.el9")],
)
def test_rpm_versions_are_written_as_the_catalogue_writes_them(epoch, version, release, text):
    assert facts.rpm_evr(epoch, version, release) == text


def test_dnf_pid_lock_names_a_live_process_and_ignores_a_stale_one(tmp_path):
    pid_file = tmp_path / "rpmdb_lock.pid"
    assert facts.pid_file_holder(str(pid_file)) == {"held": False, "pid": None, "command": None}
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(30)  # dnf stand-in"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        pid_file.write_text(str(holder.pid))
        found = facts.pid_file_holder(str(pid_file))
        assert found["held"] is True and found["pid"] == holder.pid
        assert "dnf stand-in" in found["command"]
    finally:
        holder.kill()
        holder.wait()
    assert facts.pid_file_holder(str(pid_file)) == {"held": False, "pid": None, "command": None}
    pid_file.write_text("garbage")
    assert facts.pid_file_holder(str(pid_file))["held"] is None


def test_paths_are_taken_inside_the_installroot_once():
    assert facts.in_root("/", "/var/lib/rpm/.rpm.lock") == "/var/lib/rpm/.rpm.lock"
    assert facts.in_root("/srv/root", "/var/lib/rpm/.rpm.lock") == "/srv/root/var/lib/rpm/.rpm.lock"
    assert facts.in_root("/srv/root", "/srv/root/var/lib/rpm/.rpm.lock") == "/srv/root/var/lib/rpm/.rpm.lock"


def test_an_explicit_package_manager_is_kept():
    assert facts.package_manager("dnf") == "dnf"
    assert facts.package_manager("apt") == "apt"


def test_the_documentation_parses_and_names_the_dnf_options():
    """ansible-doc reads DOCUMENTATION as YAML (it did not parse before: a ': ' inside a plain scalar)."""
    import yaml

    options = yaml.safe_load(facts.DOCUMENTATION)["options"]
    assert options["package_manager"]["choices"] == ["auto", "apt", "dnf"]
    assert options["installroot"]["default"] == "/"
    assert set(yaml.safe_load(facts.RETURN)) >= {"plan", "dpkg_lock", "reboot", "installed", "problems"}
