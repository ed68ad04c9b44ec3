#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: workstation_linux_facts
short_description: What a Linux radiology workstation has, and the plan of its patch run (read-only)
description:
  - The hardware (PCI display controllers from sysfs with their vendor:device and the kernel driver in
    use, memory, free disk), whether dpkg is locked and by which process, whether a reboot is pending,
    the catalogue packages (viewer, display driver) installed against their target versions, and the
    exact plan of the patch run, computed by apt itself (C(apt-get -s)) without locking or changing
    anything.
  - The plan is every upgrade the policy admits (C(security) takes only upgrades whose candidate comes
    from a security suite, C(all) every upgrade, C(none) none), never a held package, plus the catalogue
    packages at their exact versions; apt then simulates that one install to add the dependencies it needs.
  - Every reason not to go ahead is a sentence in C(problems) that says what to fix (dpkg, or dnf/rpm,
    locked; a removal in the plan; a held package the plan would move; a display driver the catalogue
    does not list for the GPU found; with dnf, a catalogue version no enabled repository has).
  - The same facts and plan, with the same keys, for dnf (RHEL, Rocky, AlmaLinux; see I(package_manager)).
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
      - 'The catalogue entry''s display drivers, each C({gpu: "vvvv:dddd", packages: {name: version}}).'
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
    description: dpkg's front-end lock file (apt only).
    type: path
    default: /var/lib/dpkg/lock-frontend
  package_manager:
    description:
      - C(apt) (Debian) or C(dnf) (RHEL, Rocky, AlmaLinux; dnf 4). C(auto) takes apt when C(apt-get) is
        found, else dnf. The role passes the package manager of the host's facts.
      - With dnf the plan is dnf's own resolution (its Python API, as C(ansible.builtin.dnf) uses it,
        from the metadata in dnf's cache, plugins not loaded, so versionlock does not hide the
        catalogue's versions); the held packages are I(hold) plus the names in versionlock's list; the
        lock is dnf's C(rpmdb_lock.pid) (a live pid) or rpm's C(.rpm.lock) (an fcntl lock); a pending
        reboot is C(dnf needs-restarting -r) exiting 1. Versions are C([epoch:]version-release).
    type: str
    choices: [auto, apt, dnf]
    default: auto
  installroot:
    description: dnf only; the root dnf and rpm work in, as ansible.builtin.dnf's installroot (tests).
    type: path
    default: /
"""

RETURN = r"""
gpus:
  description: "Display controllers: slot, vendor, device, id (vendor:device), class, driver in use."
  type: list
  returned: always
hardware_report: {description: One sentence for the evidence, type: str, returned: always}
memory_mb: {description: Total memory, type: int, returned: always}
disk_free_mb: {description: Free MB on / and /var, type: dict, returned: always}
dpkg_lock:
  description: "{held, pid, command} of dpkg's lock (apt), or of dnf's or rpm's (dnf)"
  type: dict
  returned: always
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

import configparser
import fcntl
import os
import re
import shutil
import struct

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.respawn import has_respawned, probe_interpreters_for_module, respawn_module

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



def host_resources(sysfs_root):
    """The display controllers, the memory and the free disk of / and /var (both package managers)."""
    return display_controllers(sysfs_root), memory_mb(), {"/": free_mb("/"), "/var": free_mb("/var")}


def catalogue_pins(p, gpus):
    """(name -> version of the catalogue's packages and of the display driver catalogued for the GPUs,
    the driver's packages alone, the driver's problems)."""
    drivers, problems = driver_plan(gpus, p["display_drivers"], p["display_driver"])
    pins = dict(p["packages"] or {})
    pins.update(drivers)
    return pins, drivers, problems


def judge_plan(plan, pins, wanted, hold, simulate) -> list:
    """Why each package of the plan is in it (catalogue, policy or dependency), set on the plan's
    installs; and the plan's problems: a held package that would move, a package that would be removed.
    simulate: the package manager's command that shows the plan, named in the message."""
    for item in plan["installs"]:
        item["reason"] = (
            "catalogue" if item["name"] in pins else ("policy" if item["name"] in wanted else "dependency")
        )
    problems = []
    moved = sorted(item["name"] for item in plan["installs"] if item["name"] in hold)
    if moved:
        problems.append(
            f"the plan would move held package(s) {', '.join(moved)}; name them in the catalogue entry "
            f"to move them, or find which upgrade depends on them ({simulate})"
        )
    if plan["removals"]:
        problems.append(
            "the plan would remove "
            + ", ".join(r["name"] for r in plan["removals"])
            + ": a patch run never removes packages; resolve the conflict by hand or in the catalogue"
        )
    return problems

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
        gpus, memory, disk = host_resources(p["sysfs_root"])
        lock = lock_holder(p["dpkg_lock"])
        if lock["held"]:
            problems.append(
                f"dpkg is locked by process {lock['pid']} ({lock['command'] or 'command unknown'}): another package "
                "run is under way (unattended-upgrades, a user's apt); wait for it to end, or stop it, then run again"
            )
        elif lock["held"] is None:
            problems.append(f"cannot read dpkg's lock {p['dpkg_lock']}: {lock['error']}")
        pins, drivers, driver_problems = catalogue_pins(p, gpus)
        problems += driver_problems
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
        problems += judge_plan(plan, pins, wanted, hold, "apt-get -s install")
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


# ---- dnf (RHEL, Rocky, AlmaLinux) ------------------------------------------------------------------
DNF_INTERPRETERS = ["/usr/libexec/platform-python", "/usr/bin/python3", "/usr/bin/python"]
NEEDS_RESTARTING_ITEM = re.compile(r"^\s*\*\s+(?P<name>\S+)")


def rpm_evr(epoch, version, release) -> str:
    """An RPM version as the catalogue writes it: [epoch:]version-release, the epoch left out when 0."""
    epoch = str(epoch or "0")
    return f"{version}-{release}" if epoch == "0" else f"{epoch}:{version}-{release}"


def versionlock_names(text: str) -> list:
    """The package names versionlock's list locks (`name-epoch:version-release.*`, as `dnf versionlock add`
    writes them, or a bare name). `!` lines exclude versions: they lock no package."""
    names = []
    for line in text.splitlines():
        entry = line.strip()
        if not entry or entry.startswith("#") or entry.startswith("!"):
            continue
        entry = entry.removesuffix(".*")
        parts = entry.rsplit("-", 2)
        name = parts[0] if len(parts) == 3 and re.match(r"^(\d+:)?\d", parts[1]) else entry
        if name not in names:
            names.append(name)
    return names


def parse_needs_restarting(rc: int, text: str) -> dict:
    """`dnf needs-restarting -r`: exit 1 when a reboot is needed, listing the core packages updated since boot."""
    packages = [m.group("name") for m in map(NEEDS_RESTARTING_ITEM.match, text.splitlines()) if m]
    return {"required": rc == 1, "packages": packages if rc == 1 else []}


def pid_file_holder(path: str) -> dict:
    """dnf 4's process lock (dnf/lock.py): a file holding the pid of the dnf that runs, removed when it
    ends; a pid whose process is gone is a stale file dnf itself takes over."""
    text = read(path)
    if not text:
        return {"held": False, "pid": None, "command": None}
    try:
        pid = int(text)
    except ValueError:
        return {"held": None, "pid": None, "command": None, "error": f"{path} does not hold a pid: {text[:40]!r}"}
    if not os.path.exists(f"/proc/{pid}"):
        return {"held": False, "pid": None, "command": None}
    command = read(f"/proc/{pid}/cmdline").replace("\x00", " ").strip() or None
    return {"held": True, "pid": pid, "command": command}


def in_root(root: str, path: str) -> str:
    if root in ("", "/") or path.startswith(root.rstrip("/") + "/"):
        return path
    return os.path.join(root, path.lstrip("/"))


class DnfFacts(Facts):
    """The same facts and plan as Facts, from dnf: its resolver (the API ansible.builtin.dnf uses) gives
    the plan's exact versions, read-only, from the metadata `dnf makecache` left in dnf's cache."""

    def __init__(self, module):
        super().__init__(module)
        try:
            import dnf  # noqa: F401 - only on the workstation's system Python
        except ImportError:
            if not has_respawned():
                interpreter = probe_interpreters_for_module(DNF_INTERPRETERS, "dnf")
                if interpreter:
                    respawn_module(interpreter)
            tried = ", ".join(DNF_INTERPRETERS)
            module.fail_json(msg=f"no Python with dnf's bindings (tried {tried}): install python3-dnf")

    def base(self):
        """A dnf Base configured as the dnf command configures itself (dnf/cli/cli.py _read_conf_file):
        configuration and repositories inside the installroot first; cache only; no plugin loaded."""
        import dnf

        root = self.p["installroot"]
        base = dnf.Base(dnf.conf.Conf())  # as the dnf command: releasever from the installroot, not the host
        conf = base.conf
        conf.installroot = root
        conf._search_inside_installroot("config_file_path")
        conf.read(priority=dnf.conf.PRIO_MAINCONFIG)
        from_root = conf._search_inside_installroot("reposdir")
        conf.substitutions.update_from_etc(from_root, varsdir=conf._get_value("varsdir"))
        releasever = dnf.rpm.detect_releasever(root) if conf.releasever is None else None
        if releasever is not None:
            conf.releasever = releasever
        for opt in ("cachedir", "logdir", "persistdir"):
            conf.prepend_installroot(opt)
        conf.cacheonly = True
        base.read_all_repos()
        try:
            base.fill_sack(load_system_repo=True, load_available_repos=True)
        except dnf.exceptions.Error as exc:
            self.module.fail_json(msg=f"dnf cannot read its cached metadata (run dnf makecache): {exc}")
        return base

    def resolve(self, base, what):
        import dnf

        try:
            base.resolve(allow_erasing=False)
        except dnf.exceptions.Error as exc:
            detail = " ".join(str(exc).split())[-600:]
            self.module.fail_json(msg=f"dnf cannot resolve {what} (changes nothing): {detail}")
        installed = {}
        for pkg in base.sack.query().installed():
            if pkg.name not in installed or pkg.evr_gt(installed[pkg.name]):
                installed[pkg.name] = pkg
        security = base.sack.query().available().filter(advisory_type="security")
        installs, removals, new_names = [], [], set()
        for pkg in sorted(base.transaction.install_set, key=lambda p: p.name):
            old = installed.get(pkg.name)
            new_names.add(pkg.name)
            installs.append(
                {
                    "name": pkg.name,
                    "from": rpm_evr(old.epoch, old.version, old.release) if old else None,
                    "to": rpm_evr(pkg.epoch, pkg.version, pkg.release),
                    "origin": pkg.reponame,
                    "security": any(
                        fix.name == pkg.name and fix.evr_cmp(pkg) <= 0 and (old is None or fix.evr_gt(old))
                        for fix in security.filter(name=pkg.name)
                    ),
                    "_pkg": pkg,
                }
            )
        for pkg in sorted(base.transaction.remove_set, key=lambda p: p.name):
            if pkg.name not in new_names:
                removals.append({"name": pkg.name, "from": rpm_evr(pkg.epoch, pkg.version, pkg.release)})
        return {"installs": installs, "removals": removals}

    def versionlocked(self, base) -> list:
        """The names in versionlock's list (the plugin's configuration in pluginconfpath, its list path)."""
        parser = configparser.ConfigParser()
        for confdir in base.conf.pluginconfpath:
            parser.read(os.path.join(confdir, "versionlock.conf"))
        if not parser.has_option("main", "locklist"):
            return []
        return versionlock_names(read(parser.get("main", "locklist")))

    def lock(self, base) -> dict:
        import rpm

        holder = pid_file_holder(os.path.join(base.conf.persistdir, "rpmdb_lock.pid"))
        if holder["held"] is False:
            holder = lock_holder(in_root(self.p["installroot"], rpm.expandMacro("%{_rpmlock_path}")))
        return holder

    def reboot(self) -> dict:
        dnf_cmd = shutil.which("dnf") or "dnf"
        rc, out, err = self.module.run_command(
            [dnf_cmd, "-q", f"--installroot={self.p['installroot']}", "needs-restarting", "-r"], environ_update=APT_ENV
        )
        if rc not in (0, 1):
            self.module.warn(
                f"dnf needs-restarting -r failed (exit {rc}): {' '.join((err or out).split())[-300:]}; install "
                "dnf-plugins-core (dnf-utils) to detect a pending reboot"
            )
        return parse_needs_restarting(rc, out)

    def gather(self):
        p = self.p
        problems = []
        gpus, memory, disk = host_resources(p["sysfs_root"])
        base = self.base()
        lock = self.lock(base)
        if lock["held"]:
            problems.append(
                f"dnf/rpm is locked by process {lock['pid']} ({lock['command'] or 'command unknown'}): another package "
                "run is under way (dnf-automatic, a user's dnf); wait for it to end, or stop it, then run again"
            )
        elif lock["held"] is None:
            problems.append(f"cannot read dnf's or rpm's lock: {lock['error']}")
        pins, drivers, driver_problems = catalogue_pins(p, gpus)
        problems += driver_problems
        hold = (set(p["hold"]) | set(self.versionlocked(base))) - set(pins)
        installed_pkgs = {}
        for pkg in base.sack.query().installed().filter(name=sorted(set(pins) | hold)):
            if pkg.name not in installed_pkgs or pkg.evr_gt(installed_pkgs[pkg.name]):
                installed_pkgs[pkg.name] = pkg
        installed = {
            name: rpm_evr(installed_pkgs[name].epoch, installed_pkgs[name].version, installed_pkgs[name].release)
            if name in installed_pkgs
            else None
            for name in sorted(set(pins) | hold)
        }

        # Every upgrade dnf would make (`dnf upgrade`, or `dnf upgrade --security`: to the newest version
        # once an advisory of type security applies), then the policy's choice without the held packages.
        if p["updates"] == "security":
            base.add_security_filters("gte", ("security",))
        base.upgrade_all()
        candidates = self.resolve(base, "the upgrades")["installs"] if p["updates"] != "none" else []
        # versionlock is not loaded: a catalogue package moves to its catalogue version only, never by policy.
        upgrades = select_upgrades(candidates, p["updates"], hold | set(pins))
        wanted = {item["name"]: item["to"] for item in upgrades}
        specs = {item["name"]: f"{item['name']}-{item['to']}.{item['_pkg'].arch}" for item in upgrades}
        base.reset(goal=True)
        base.reset_security_filters()
        for name, version in sorted(pins.items()):
            if installed.get(name) != version:
                wanted[name] = version
                specs[name] = f"{name}-{version}"
        specs = [specs[name] for name in sorted(specs)]
        plan, download = {"installs": [], "removals": []}, 0
        if specs:
            import dnf

            for spec in specs:
                try:
                    base.install(spec)
                except dnf.exceptions.MarkingError:
                    problems.append(
                        f"{spec} is in no enabled repository (dnf makecache ran): check the catalogue's version "
                        "(dnf list --showduplicates) and the workstation's repositories"
                    )
            plan = self.resolve(base, " ".join(specs))
            download = sum(
                item["_pkg"].downloadsize or 0
                for item in plan["installs"]
                if not os.path.exists(item["_pkg"].localPkg())
            )
        for item in plan["installs"]:
            del item["_pkg"]
        problems += judge_plan(plan, pins, wanted, hold, "dnf install --assumeno")
        base.close()
        return {
            "changed": False,
            "gpus": gpus,
            "hardware_report": hardware_report(gpus, memory, disk),
            "memory_mb": memory,
            "disk_free_mb": disk,
            "dpkg_lock": lock,
            "reboot": self.reboot(),
            "installed": installed,
            "plan": plan["installs"],
            "plan_download_bytes": download,
            "driver_packages": drivers,
            "problems": problems,
        }


def package_manager(choice: str) -> str:
    if choice != "auto":
        return choice
    return "apt" if shutil.which("apt-get") else ("dnf" if shutil.which("dnf") else "apt")


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
            package_manager=dict(type="str", choices=["auto", "apt", "dnf"], default="auto"),
            installroot=dict(type="path", default="/"),
        ),
        supports_check_mode=True,
    )
    if package_manager(module.params["package_manager"]) == "dnf":
        module.exit_json(**DnfFacts(module).gather())
    module.exit_json(**Facts(module).gather())


if __name__ == "__main__":
    main()
