#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: workstation_linux_facts
short_description: What a Debian radiology workstation has, and the plan of its patch run (read-only)
description:
  - The hardware (PCI display controllers from sysfs with their vendor:device and the kernel driver in
    use, memory, free disk), whether dpkg is locked and by which process, whether a reboot is pending,
    the catalogue packages (viewer, display driver) installed against their target versions, and the
    exact plan of the patch run, computed by apt itself (C(apt-get -s)) without locking or changing
    anything.
  - The plan is every upgrade the policy admits (C(security) takes only upgrades whose candidate comes
    from a security suite, C(all) every upgrade, C(none) none), never a held package, plus the catalogue
    packages at their exact versions; apt then simulates that one install to add the dependencies it needs.
  - Every reason not to go ahead is a sentence in C(problems), saying what to fix: dpkg locked, a
    removal in the plan, a held package the plan would move, a display driver the catalogue does not
    list for the GPU found.
options:
  updates:
    description: Which OS updates to take.
    type: str
    choices: [none, security, all]
    default: security
  packages:
    description: The catalogue packages (viewer, tools) at their exact target versions, name to version.
    type: dict
    default: {}
  hold:
    description: Packages that must not move unless named in I(packages) or a driver's packages.
    type: list
    elements: str
    default: []
  display_drivers:
    description:
      - The catalogue entry's display drivers, each C({gpu: "vvvv:dddd", packages: {name: version}}).
    type: list
    elements: dict
    default: []
  display_driver:
    description:
      - The display driver package the site runs on this workstation (empty, none). It must be listed in
        I(display_drivers) for every GPU found, or the workstation is refused.
    type: str
    default: ""
  sysfs_root:
    description: Where sysfs is (tests point it to a copy).
    type: path
    default: /sys
  dpkg_lock:
    description: dpkg's front-end lock file.
    type: path
    default: /var/lib/dpkg/lock-frontend
"""

RETURN = r"""
gpus:
  description: "Display controllers: slot, vendor, device, id (vendor:device), class, driver in use."
  type: list
  returned: always
hardware_report: {description: One sentence for the evidence, type: str, returned: always}
memory_mb: {description: Total memory, type: int, returned: always}
disk_free_mb: {description: Free MB on / and /var, type: dict, returned: always}
dpkg_lock: {description: "{held, pid, command}", type: dict, returned: always}
reboot: {description: "{required, packages}", type: dict, returned: always}
installed:
  description: Installed version of each catalogue, held and driver package (null when absent).
  type: dict
  returned: always
plan:
  description: "Each package the run installs: name, from, to, origin, security, reason."
  type: list
  returned: always
plan_download_bytes: {description: What apt would download for the plan, type: int, returned: always}
driver_packages: {description: The display driver packages to install at their versions, type: dict, returned: always}
problems: {description: Reasons not to go ahead, each saying what to fix, type: list, returned: always}
"""

import fcntl
import os
import re
import struct

from ansible.module_utils.basic import AnsibleModule

# `Inst libssl3 [3.0.19-1~deb12u2] (3.0.22-1~deb12u2 Debian-Security:12/oldstable-security [amd64])`
INST = re.compile(r"^Inst (?P<name>\S+) (?:\[(?P<old>[^\]]+)\] )?\((?P<new>\S+) (?P<origin>[^\[]*?)\s*\[[^\]]*\]\)")
REMV = re.compile(r"^Remv (?P<name>\S+)(?: \[(?P<old>[^\]]+)\])?")
APT_ENV = {"LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"}


def parse_simulation(text: str) -> dict:
    """apt-get -s output: the packages it would install (with origins) and remove, and the download size."""
    installs, removals = [], []
    for line in text.splitlines():
        match = INST.match(line)
        if match:
            origin = match.group("origin").strip()
            installs.append(
                {
                    "name": match.group("name"),
                    "from": match.group("old"),
                    "to": match.group("new"),
                    "origin": origin,
                    "security": is_security_origin(origin),
                }
            )
            continue
        match = REMV.match(line)
        if match:
            removals.append({"name": match.group("name"), "from": match.group("old")})
    return {"installs": installs, "removals": removals}


def parse_print_uris(text: str) -> int:
    """The bytes apt would download: `apt-get --print-uris` lines `'<url>' <file> <size> <hash>`
    (files already in apt's cache are not listed)."""
    total = 0
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[0].startswith("'") and fields[2].isdigit():
            total += int(fields[2])
    return total


def is_security_origin(origin: str) -> bool:
    """Debian's and Ubuntu's security suites: 'Debian-Security:12/oldstable-security', 'Ubuntu:22.04/jammy-security'."""
    labels = [part.strip() for part in origin.split(",")]
    return any(label.split(":")[0].lower().endswith("security") or label.endswith("-security") for label in labels)


def select_upgrades(candidates: list, updates: str, hold: set) -> list:
    """The upgrades the policy admits (candidates from a full upgrade's simulation), held packages left out."""
    if updates == "none":
        return []
    chosen = []
    for item in candidates:
        if item["from"] is None or item["name"] in hold:
            continue
        if updates == "all" or item["security"]:
            chosen.append(item)
    return chosen


def driver_plan(gpus: list, display_drivers: list, display_driver: str) -> tuple[dict, list]:
    """The driver packages to install for the GPUs found, and the problems (a driver not catalogued for a GPU)."""
    if not display_driver:
        return {}, []
    if not gpus:
        return {}, []
    packages, problems = {}, []
    for gpu in gpus:
        listed = [entry for entry in display_drivers if str(entry.get("gpu", "")).lower() == gpu["id"]]
        names = {name for entry in listed for name in (entry.get("packages") or {})}
        if display_driver not in names:
            catalogued = ", ".join(sorted(names)) or "none"
            problems.append(
                f"the display driver {display_driver} is not catalogued for the GPU {gpu['id']} at {gpu['slot']} "
                f"(catalogued for it: {catalogued}); add it to the catalogue entry's display_drivers after testing it "
                "on that GPU, or set workstation_linux_display_driver to a catalogued one"
            )
            continue
        for entry in listed:
            version = (entry.get("packages") or {}).get(display_driver)
            if version:
                packages[display_driver] = str(version)
    return packages, problems


def read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def display_controllers(sysfs_root: str) -> list:
    """PCI devices of class 0x03 (display) from sysfs: what lspci -nn shows, without needing pciutils."""
    base = os.path.join(sysfs_root, "bus", "pci", "devices")
    gpus = []
    try:
        slots = sorted(os.listdir(base))
    except OSError:
        return gpus
    for slot in slots:
        device_dir = os.path.join(base, slot)
        klass = read(os.path.join(device_dir, "class"))
        if not klass.lower().startswith("0x03"):
            continue
        vendor = read(os.path.join(device_dir, "vendor")).lower().removeprefix("0x")
        device = read(os.path.join(device_dir, "device")).lower().removeprefix("0x")
        driver_link = os.path.join(device_dir, "driver")
        driver = os.path.basename(os.readlink(driver_link)) if os.path.islink(driver_link) else None
        gpus.append(
            {
                "slot": slot,
                "vendor": vendor,
                "device": device,
                "id": f"{vendor}:{device}",
                "class": klass,
                "driver": driver,
            }
        )
    return gpus


def lock_holder(path: str) -> dict:
    """Who holds dpkg's front-end lock (an fcntl lock, as apt and dpkg take it), without taking it."""
    if not os.path.exists(path):
        return {"held": False, "pid": None, "command": None}
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError as exc:
        return {"held": None, "pid": None, "command": None, "error": str(exc)}
    try:
        query = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
        kind, _, _, _, pid = struct.unpack("hhqqi", answer)
    finally:
        os.close(fd)
    if kind == fcntl.F_UNLCK:
        return {"held": False, "pid": None, "command": None}
    command = read(f"/proc/{pid}/cmdline").replace("\x00", " ").strip() or None
    return {"held": True, "pid": pid, "command": command}


def memory_mb() -> int:
    match = re.search(r"^MemTotal:\s+(\d+) kB", read("/proc/meminfo"), re.MULTILINE)
    return int(match.group(1)) // 1024 if match else 0


def free_mb(path: str) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize // (1024 * 1024)


def hardware_report(gpus: list, memory: int, disk: dict) -> str:
    if gpus:
        cards = "; ".join(f"GPU {g['id']} at {g['slot']}, driver {g['driver'] or 'none bound'}" for g in gpus)
    else:
        cards = "no GPU found (no PCI display controller: a container, or a VM without a passed-through GPU)"
    return f"{cards}; {memory} MB of memory; {disk['/']} MB free on /, {disk['/var']} MB on /var"


class Facts:
    def __init__(self, module):
        self.module = module
        self.p = module.params

    def apt(self, args, mode="-s"):
        argv = ["apt-get", mode, "-o", "Debug::NoLocking=1"] + args
        rc, out, err = self.module.run_command(argv, environ_update=APT_ENV)
        if rc != 0:
            detail = " ".join((err or out).split())[-600:]
            self.module.fail_json(msg=f"apt-get {mode} {' '.join(args[:2])} (changes nothing) failed: {detail}")
        return out

    def installed(self, names):
        versions = {}
        for name in sorted(set(names)):
            rc, out, _ = self.module.run_command(
                ["dpkg-query", "-W", "-f=${db:Status-Abbrev}|${Version}", name], environ_update=APT_ENV
            )
            status, _, version = out.partition("|")
            # db:Status-Abbrev: wanted state, then current state ("ii " installed, "hi " installed and held).
            versions[name] = version.strip() if rc == 0 and status[1:2] == "i" else None
        return versions

    def gather(self):
        p = self.p
        problems = []
        gpus = display_controllers(p["sysfs_root"])
        memory = memory_mb()
        disk = {"/": free_mb("/"), "/var": free_mb("/var")}
        lock = lock_holder(p["dpkg_lock"])
        if lock["held"]:
            problems.append(
                f"dpkg is locked by process {lock['pid']} ({lock['command'] or 'command unknown'}): another package "
                "run is under way (unattended-upgrades, a user's apt); wait for it to end, or stop it, then run again"
            )
        elif lock["held"] is None:
            problems.append(f"cannot read dpkg's lock {p['dpkg_lock']}: {lock['error']}")
        drivers, driver_problems = driver_plan(gpus, p["display_drivers"], p["display_driver"])
        problems += driver_problems
        pins = dict(p["packages"] or {})
        pins.update(drivers)
        hold = set(p["hold"]) - set(pins)
        installed = self.installed(list(pins) + list(hold))

        candidates = parse_simulation(self.apt(["dist-upgrade"]))["installs"]
        upgrades = select_upgrades(candidates, p["updates"], hold)
        wanted = {item["name"]: item["to"] for item in upgrades}
        wanted.update({name: version for name, version in pins.items() if installed.get(name) != version})
        plan, download = {"installs": [], "removals": []}, 0
        if wanted:
            install = ["install", "--no-install-recommends"] + [f"{n}={v}" for n, v in sorted(wanted.items())]
            plan = parse_simulation(self.apt(install))
            download = parse_print_uris(self.apt(["-qq"] + install, mode="--print-uris"))
        for item in plan["installs"]:
            item["reason"] = (
                "catalogue" if item["name"] in pins else ("policy" if item["name"] in wanted else "dependency")
            )
        moved = sorted(item["name"] for item in plan["installs"] if item["name"] in hold)
        if moved:
            problems.append(
                f"the plan would move held package(s) {', '.join(moved)}; name them in the catalogue entry "
                "to move them, or find which upgrade depends on them (apt-get -s install)"
            )
        if plan["removals"]:
            problems.append(
                "the plan would remove "
                + ", ".join(r["name"] for r in plan["removals"])
                + ": a patch run never removes "
                "packages; resolve the conflict by hand or in the catalogue"
            )
        reboot_file = read("/run/reboot-required")
        reboot_pkgs = read("/run/reboot-required.pkgs").split()
        return {
            "changed": False,
            "gpus": gpus,
            "hardware_report": hardware_report(gpus, memory, disk),
            "memory_mb": memory,
            "disk_free_mb": disk,
            "dpkg_lock": lock,
            "reboot": {
                "required": bool(reboot_file) or os.path.exists("/run/reboot-required"),
                "packages": reboot_pkgs,
            },
            "installed": installed,
            "plan": plan["installs"],
            "plan_download_bytes": download,
            "driver_packages": drivers,
            "problems": problems,
        }


def main():
    module = AnsibleModule(
        argument_spec=dict(
            updates=dict(type="str", choices=["none", "security", "all"], default="security"),
            packages=dict(type="dict", default={}),
            hold=dict(type="list", elements="str", default=[]),
            display_drivers=dict(type="list", elements="dict", default=[]),
            display_driver=dict(type="str", default=""),
            sysfs_root=dict(type="path", default="/sys"),
            dpkg_lock=dict(type="path", default="/var/lib/dpkg/lock-frontend"),
        ),
        supports_check_mode=True,
    )
    module.exit_json(**Facts(module).gather())


if __name__ == "__main__":
    main()
