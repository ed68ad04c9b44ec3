"""workstation_linux_facts: apt's plan, the dpkg lock, the display controllers and the driver check.

The apt lines are apt-get's own output on Debian 12 (captured with a throw-away state directory);
the lock is a real fcntl lock held by another process, as apt holds it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "roles" / "workstation_linux" / "library"))
import workstation_linux_facts as facts  # noqa: E402

SIMULATION = """\
Reading package lists...
Building dependency tree...
Reading state information...
The following packages will be upgraded:
   openssl (3.0.19-1~deb12u2 => 3.0.22-1~deb12u2)
3 upgraded, 1 newly installed, 1 to remove and 136 not upgraded.
Remv libfoo1 [1.0-1]
Inst libssl-dev [3.0.19-1~deb12u2] (3.0.22-1~deb12u2 Debian-Security:12/oldstable-security [amd64]) []
Inst libssl3 [3.0.19-1~deb12u2] (3.0.22-1~deb12u2 Debian-Security:12/oldstable-security [amd64])
Inst tzdata [2025b-0+deb12u2] (2026b-0+deb12u1 Debian:12.15/oldstable [all])
Inst libdcmtk17 (3.6.7-9~deb12u4 Debian:12.15/oldstable [amd64])
Conf libssl3 (3.0.22-1~deb12u2 Debian-Security:12/oldstable-security [amd64])
"""


def test_the_simulation_gives_installs_with_origins_and_removals():
    plan = facts.parse_simulation(SIMULATION)
    assert plan["removals"] == [{"name": "libfoo1", "from": "1.0-1"}]
    by_name = {item["name"]: item for item in plan["installs"]}
    assert list(by_name) == ["libssl-dev", "libssl3", "tzdata", "libdcmtk17"]
    assert by_name["libssl3"] == {
        "name": "libssl3",
        "from": "3.0.19-1~deb12u2",
        "to": "3.0.22-1~deb12u2",
        "origin": "Debian-Security:12/oldstable-security",
        "security": True,
    }
    assert by_name["tzdata"]["security"] is False
    assert by_name["libdcmtk17"]["from"] is None  # a new package


@pytest.mark.parametrize(
    ("origin", "security"),
    [
        ("Debian-Security:12/oldstable-security", True),
        ("Ubuntu:22.04/jammy-security", True),
        ("Debian:12.15/oldstable", False),
        ("Debian:12.15/oldstable-updates", False),
    ],
)
def test_security_origins(origin, security):
    assert facts.is_security_origin(origin) is security


def test_the_policy_selects_upgrades_and_never_a_held_package():
    candidates = facts.parse_simulation(SIMULATION)["installs"]
    names = lambda items: [i["name"] for i in items]  # noqa: E731
    assert names(facts.select_upgrades(candidates, "security", set())) == ["libssl-dev", "libssl3"]
    assert names(facts.select_upgrades(candidates, "security", {"libssl3"})) == ["libssl-dev"]
    assert names(facts.select_upgrades(candidates, "all", {"tzdata"})) == ["libssl-dev", "libssl3"]
    assert names(facts.select_upgrades(candidates, "all", set())) == ["libssl-dev", "libssl3", "tzdata"]
    assert facts.select_upgrades(candidates, "none", set()) == []


def test_print_uris_counts_the_bytes_to_download():
    text = (
        "'http://deb.debian.org/debian-security/pool/updates/main/o/openssl/libssl3_3.0.22-1~deb12u2_amd64.deb' "
        "libssl3_3.0.22-1~deb12u2_amd64.deb 2032376 SHA256:ab\n"
        "'http://deb.debian.org/debian/pool/main/t/tzdata/tzdata_2026b-0+deb12u1_all.deb' "
        "tzdata_2026b-0+deb12u1_all.deb 258084 SHA256:cd\n"
    )
    assert facts.parse_print_uris(text) == 2032376 + 258084
    assert facts.parse_print_uris("") == 0


GPU = {
    "slot": "0000:01:00.0",
    "vendor": "10de",
    "device": "1eb8",
    "id": "10de:1eb8",
    "class": "0x030000",
    "driver": "nouveau",
}
CATALOGUE_DRIVERS = [{"gpu": "10de:1eb8", "packages": {"nvidia-driver": "535.183.01-1~deb12u1"}}]


def test_a_catalogued_driver_for_the_gpu_is_planned():
    assert facts.driver_plan([GPU], CATALOGUE_DRIVERS, "nvidia-driver") == (
        {"nvidia-driver": "535.183.01-1~deb12u1"},
        [],
    )


def test_a_driver_not_catalogued_for_the_gpu_is_refused_naming_both():
    other = dict(GPU, id="1002:73ff", vendor="1002", device="73ff")
    packages, problems = facts.driver_plan([other], CATALOGUE_DRIVERS, "nvidia-driver")
    assert packages == {}
    assert "nvidia-driver is not catalogued for the GPU 1002:73ff at 0000:01:00.0" in problems[0]
    assert "catalogued for it: none" in problems[0]


def test_no_gpu_or_no_driver_asked_plans_nothing():
    assert facts.driver_plan([], CATALOGUE_DRIVERS, "nvidia-driver") == ({}, [])
    assert facts.driver_plan([GPU], CATALOGUE_DRIVERS, "") == ({}, [])


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def test_display_controllers_come_from_sysfs_with_their_driver(tmp_path):
    devices = tmp_path / "bus" / "pci" / "devices"
    write(devices / "0000:00:02.0" / "class", "0x030000")
    write(devices / "0000:00:02.0" / "vendor", "0x8086")
    write(devices / "0000:00:02.0" / "device", "0x46A6")
    (tmp_path / "bus" / "pci" / "drivers" / "i915").mkdir(parents=True)
    os.symlink(tmp_path / "bus" / "pci" / "drivers" / "i915", devices / "0000:00:02.0" / "driver")
    write(devices / "0000:00:1f.3" / "class", "0x040300")  # audio: not a display controller
    write(devices / "0000:00:1f.3" / "vendor", "0x8086")
    write(devices / "0000:00:1f.3" / "device", "0x51c8")
    gpus = facts.display_controllers(str(tmp_path))
    assert gpus == [
        {
            "slot": "0000:00:02.0",
            "vendor": "8086",
            "device": "46a6",
            "id": "8086:46a6",
            "class": "0x030000",
            "driver": "i915",
        }
    ]
    assert "GPU 8086:46a6 at 0000:00:02.0, driver i915" in facts.hardware_report(gpus, 16000, {"/": 100, "/var": 50})


def test_no_sysfs_pci_means_no_gpu_and_says_so(tmp_path):
    assert facts.display_controllers(str(tmp_path)) == []
    assert facts.hardware_report([], 512, {"/": 1, "/var": 1}).startswith("no GPU found (no PCI display controller")


def test_the_lock_holder_is_found_without_taking_the_lock(tmp_path):
    lock = tmp_path / "lock-frontend"
    lock.touch()
    assert facts.lock_holder(str(lock)) == {"held": False, "pid": None, "command": None}
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import fcntl, sys, time
                fh = open({str(lock)!r}, "r+")
                fcntl.lockf(fh, fcntl.LOCK_EX)
                print("locked", flush=True)
                time.sleep(30)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        found = facts.lock_holder(str(lock))
        assert found["held"] is True and found["pid"] == holder.pid
        assert "fcntl" in found["command"]
    finally:
        holder.kill()
        holder.wait()
    deadline = time.monotonic() + 5
    while facts.lock_holder(str(lock))["held"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert facts.lock_holder(str(lock))["held"] is False
    assert facts.lock_holder(str(tmp_path / "absent"))["held"] is False
