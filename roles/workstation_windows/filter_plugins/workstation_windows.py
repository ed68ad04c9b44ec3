# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""Filters of the Windows radiology workstation (roles/workstation_windows): every decision of the
role, as pure Python (tests/unit/test_workstation_windows_filters.py). The tasks only read the host
and act on what these return.

* ``workstation_windows_input_problems``: what is wrong with the role's inputs for Windows, before any
  host is contacted (the catalogue's schema itself is ``catalogue_problems``'s, filter_plugins/versions.py).
* ``workstation_windows_gpus``: Win32_VideoController rows as GPU records (PCI vendor:device, driver
  version, the INF the running driver came from).
* ``workstation_windows_discovery``: the discover entry point's fact.
* ``workstation_windows_driver_plan``: per GPU, the catalogued driver and whether to install it.
* ``workstation_windows_changes``: what a run would change (viewer, drivers, updates).
* ``workstation_windows_precheck``: why this host must not be changed, each naming what to fix.
* ``workstation_windows_pnputil``: ``pnputil /add-driver <inf> /install``'s outcome.
* ``workstation_windows_update_searched`` / ``_installed`` / ``_rebooted``: the bounded Windows
  Update loop, one state carried from pass to pass.
* ``workstation_windows_compliance``: the verification: what differs from the catalogue.
* ``workstation_windows_flow_discovery``: the discover fact as the upgrade flow's PRE-005 reads it
  (``pending_changes``: what a run would change; the catalogue's refusals among the ``problems``).
* ``workstation_windows_stage_plan`` / ``workstation_windows_staged``: the stage entry point's copies
  (the viewer's MSI, each display driver package to install) and its record.
* ``workstation_windows_switched``: the switch entry point's record, in the shape the fleet summary reads.
"""

from __future__ import annotations

import re

# --------------------------------------------------------------------------- constants

# Win32_VideoController.PNPDeviceID of a PCI display adapter: PCI\VEN_10DE&DEV_1EB8&SUBSYS_...
_PCI_ID = re.compile(r"^PCI\\VEN_([0-9A-F]{4})&DEV_([0-9A-F]{4})", re.IGNORECASE)
# A driver file of InstalledDisplayDrivers lives in the driver store folder named after the
# package's original INF: ...\DriverStore\FileRepository\nv_dispwi.inf_amd64_0b3a6c8f2d1e4f5a\...
_STORE_INF = re.compile(r"\\FileRepository\\([^\\]+?\.inf)_(?:amd64|x86|arm64|arm|ia64)_[0-9a-f]+\\", re.IGNORECASE)
_GPU_ID = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{4}$")
_PRODUCT_CODE = re.compile(r"^\{[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}\}$", re.IGNORECASE)
_DRIVER_VERSION = re.compile(r"^\d+(\.\d+){1,3}$")
_INF_NAME = re.compile(r"^[^\\/:*?\"<>|]+\.inf$", re.IGNORECASE)
# Windows Update categories that carry display drivers: Windows Update would replace the validated one.
_DRIVER_CATEGORIES = {"*", "drivers", "driver"}
# Server releases by their first build; a client (ProductType 1) is 11 from build 22000, else 10.
_SERVER_RELEASES = ((26100, "2025"), (20348, "2022"), (17763, "2019"), (14393, "2016"))
_UNINSTALL_KEYS = (
    r"HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall",
    r"HKLM:\SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall",
)
_ASYNC_TIMEOUT = "did not complete within the requested time"


def _text(value) -> str:
    return "" if value is None else str(value).strip()


def _tail(text, limit=400) -> str:
    return " ".join(str(text or "").split())[-limit:]


def _shown(value) -> str:
    """A value for a message: a string in quotes as it is (a Windows path keeps single backslashes)."""
    return f"'{value}'" if isinstance(value, str) else repr(value)


def _int(value, default=None):
    if isinstance(value, bool):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _where(product, version=None) -> str:
    return f"release_catalogue.{product}" + (f"['{version}']" if version is not None else "")


def _entry(catalogue, product, version):
    """The catalogue entry, or None."""
    versions = catalogue.get(product) if isinstance(catalogue, dict) else None
    entry = versions.get(version) if isinstance(versions, dict) else None
    return entry if isinstance(entry, dict) else None


def _version_key(version):
    """A driver version as numbers (31.0.15.3713 -> (31, 0, 15, 3713)); None when it is not one."""
    text = _text(version)
    if not _DRIVER_VERSION.match(text):
        return None
    return tuple(int(part) for part in text.split("."))


def windows_release(os_info) -> str:
    """The release the catalogue's os.major_versions names: "10", "11", "2016" ... "2025"; "" when older."""
    os_info = os_info if isinstance(os_info, dict) else {}
    build = _int(os_info.get("build"), 0)
    if _int(os_info.get("product_type"), 1) == 1:
        return "11" if build >= 22000 else ("10" if build >= 10240 else "")
    for first_build, name in _SERVER_RELEASES:
        if build >= first_build:
            return name
    return ""


# --------------------------------------------------------------------------- inputs


def _driver_entry_problems(drivers, where: str) -> list[str]:
    """What a Windows workstation needs of display_drivers beyond the catalogue's schema (which
    catalogue_problems checks: a list of {gpu, driver: {path, sha256, inf}}, the gpu as vendor:device,
    the sha256 as 64 hex digits): one driver per GPU, a Windows driver (not Linux packages), an INF to
    give pnputil, and a version as Windows reports it."""
    problems, seen = [], {}
    for i, item in enumerate(drivers if isinstance(drivers, list) else []):
        if not isinstance(item, dict):
            continue
        at = f"{where}.display_drivers[{i}]"
        gpu = item.get("gpu")
        if isinstance(gpu, str) and _GPU_ID.match(gpu):
            if gpu in seen:
                problems.append(
                    f"{at}.gpu: {gpu} is listed already at display_drivers[{seen[gpu]}]; "
                    "list one validated driver per GPU"
                )
            seen.setdefault(gpu, i)
        driver = item.get("driver")
        if "packages" in item and "driver" not in item:
            problems.append(
                f"{at}: has packages (a Linux driver) and no driver: a Windows entry needs "
                "driver: {path, sha256, inf}"
            )
        if not isinstance(driver, dict):
            continue
        path, inf = driver.get("path"), driver.get("inf")
        if isinstance(path, str) and not path.lower().endswith(".inf"):
            problems.append(
                f"{at}.driver.path: must be the package's .inf file (on the host or a share), got {_shown(path)}"
            )
        if isinstance(inf, str) and not _INF_NAME.match(inf):
            problems.append(
                f"{at}.driver.inf: must be the package's original INF file name (nv_dispwi.inf), got {_shown(inf)}"
            )
        if "version" in driver and _version_key(driver.get("version")) is None:
            problems.append(
                f"{at}.driver.version: must be the driver version Windows reports (Win32_VideoController"
                f".DriverVersion, such as 31.0.15.3713), got {_shown(driver.get('version'))}"
            )
    return problems


def workstation_windows_input_problems(catalogue, product, version, categories=None, bounds=None) -> list[str]:
    """Every problem of the inputs for a Windows workstation, each naming the variable or key to fix.

    bounds: {variable name: value} of the counts and timeouts, each a whole number of at least 1.
    """
    product, version = _text(product), _text(version)
    problems = []
    for name, value in (bounds or {}).items():
        if _int(value) is None or _int(value) < 1 or (isinstance(value, float) and not value.is_integer()):
            problems.append(f"{name} must be a whole number of at least 1, got {_shown(value)}")
    for category in categories or []:
        if _text(category).lower() in _DRIVER_CATEGORIES:
            problems.append(
                f"workstation_windows_update_categories contains {_shown(category)}: Windows Update would replace the "
                "display driver validated with the viewer; remove it (display drivers come from the catalogue)"
            )
    if not version:
        return problems
    if not product:
        return problems + [
            f"workstation_windows_target_version is {_shown(version)} but "
            "workstation_windows_product is empty: set it to the viewer's product key in "
            "release_catalogue"
        ]
    versions = catalogue.get(product) if isinstance(catalogue, dict) else None
    if not isinstance(versions, dict):
        return problems  # catalogue_problems(product) says what is wrong with the catalogue itself
    entry = versions.get(version)
    where = _where(product, version)
    if not isinstance(entry, dict):
        known = ", ".join(sorted(map(str, versions))) or "none"
        return problems + [
            f"{where}: not in the catalogue (catalogued: {known}); set "
            "workstation_windows_target_version to a catalogued version"
        ]
    if entry.get("install_method") != "windows_installer":
        problems.append(
            f"{where}.install_method is {_shown(entry.get('install_method'))}: a Windows workstation "
            "installs windows_installer entries only"
        )
    installer = entry.get("installer")
    # Its keys, and the sha256's form, are catalogue_problems' to check.
    if isinstance(installer, dict):
        if isinstance(installer.get("product_id"), str) and not _PRODUCT_CODE.match(installer["product_id"]):
            problems.append(
                f"{where}.installer.product_id: must be the MSI's ProductCode, a GUID in braces "
                f"({{12345678-ABCD-...}}), got {_shown(installer.get('product_id'))}"
            )
        if "arguments" in installer and not isinstance(installer["arguments"], str):
            problems.append(f"{where}.installer.arguments: must be one string of MSI properties (PROP=value ...)")
    os_entry = entry.get("os")
    if isinstance(os_entry, dict) and _text(os_entry.get("family")).lower() != "windows":
        problems.append(f"{where}.os.family is {_shown(os_entry.get('family'))}: a Windows viewer's entry says Windows")
    return problems + _driver_entry_problems(entry.get("display_drivers"), where)


# --------------------------------------------------------------------------- discovery


def workstation_windows_gpus(adapters) -> dict:
    """Win32_VideoController rows -> {gpus: [PCI display adapters], ignored: [the others, by name]}.

    A GPU: {id: "10de:1eb8", name, pnp_device_id, driver_version, driver_inf (the original INF the
    running driver came from, "" when not in the driver store), inf_filename (its published name,
    oem12.inf), problem_code (ConfigManagerErrorCode, 0 = working)}. Adapters that are not PCI
    (Remote Desktop, indirect display, Hyper-V's VMBus) have no driver to validate.
    """
    gpus, ignored = [], []
    for row in adapters if isinstance(adapters, list) else []:
        if not isinstance(row, dict):
            continue
        pnp = _text(row.get("pnp_device_id"))
        match = _PCI_ID.match(pnp)
        if not match:
            ignored.append(_text(row.get("name")) or pnp or "unnamed adapter")
            continue
        files = row.get("installed_display_drivers")
        files = ",".join(map(str, files)) if isinstance(files, list) else _text(files)
        store = _STORE_INF.search(files)
        gpus.append(
            {
                "id": f"{match.group(1)}:{match.group(2)}".lower(),
                "name": _text(row.get("name")),
                "pnp_device_id": pnp,
                "driver_version": _text(row.get("driver_version")),
                "driver_inf": store.group(1).lower() if store else "",
                "inf_filename": _text(row.get("inf_filename")).lower(),
                "problem_code": _int(row.get("config_manager_error_code"), 0),
            }
        )
    return {"gpus": gpus, "ignored": ignored}


def _installed(probe_viewer, versions) -> list[dict]:
    """The catalogued versions whose MSI ProductCode is in an uninstall key of the host."""
    by_code = {}
    for row in probe_viewer if isinstance(probe_viewer, list) else []:
        if isinstance(row, dict) and row.get("product_id"):
            by_code.setdefault(_text(row["product_id"]).upper(), row)
    found = []
    for version, entry in (versions or {}).items():
        installer = entry.get("installer") if isinstance(entry, dict) else None
        code = _text((installer or {}).get("product_id")).upper() if isinstance(installer, dict) else ""
        if code and code in by_code:
            row = by_code[code]
            found.append(
                {
                    "version": str(version),
                    "product_id": _text(installer.get("product_id")),
                    "display_name": _text(row.get("display_name")),
                    "display_version": _text(row.get("display_version")),
                }
            )
    return found


def workstation_windows_product_ids(catalogue, product) -> list[str]:
    """The MSI ProductCodes of every catalogued version of the viewer (discover looks each one up)."""
    versions = catalogue.get(_text(product)) if isinstance(catalogue, dict) else None
    codes = []
    for entry in versions.values() if isinstance(versions, dict) else []:
        installer = entry.get("installer") if isinstance(entry, dict) else None
        code = _text(installer.get("product_id")) if isinstance(installer, dict) else ""
        if code and code not in codes:
            codes.append(code)
    return codes


def _failure(result, what: str, timeout=None, hint: str = "", expect: str = "") -> str:
    """Why a registered task failed, in words ('' when it did not).

    The tasks register with ``failed_when: false`` (a read never fails the host; the filters judge),
    which resets ``failed``: a failure is then told by an async timeout's message, ``unreachable``,
    or the ``expect``ed key of a success missing (or empty).
    """
    if not isinstance(result, dict) or result.get("skipped"):
        return ""
    msg = _tail(result.get("msg") or result.get("module_stderr") or result.get("exception") or "no message")
    if _ASYNC_TIMEOUT in msg or ("async_result" in result and not result.get("finished")):
        return f"{what} did not finish within {timeout or '?'} s and was stopped" + (f": {hint}" if hint else "")
    if result.get("unreachable"):
        return f"{what}: the host did not answer over WinRM ({msg})"
    missing = bool(expect) and (expect not in result or result[expect] is None or result[expect] in ({}, ""))
    if result.get("failed") or missing:
        return f"{what} failed: {msg}" + (f"; {hint}" if hint else "")
    return ""


_SEARCH_HINT = (
    "check that the Windows Update service (wuauserv) runs and that the update source answers (WSUS: "
    "Get-ItemProperty HKLM:\\SOFTWARE\\Policies\\Microsoft\\Windows\\WindowsUpdate; Get-WindowsUpdateLog), "
    "or raise workstation_windows_update_search_timeout"
)


def _update_list(updates) -> list[dict]:
    """win_updates' updates (a mapping id -> update) as [{id, kb, title}], sorted by KB."""
    rows = []
    for update_id, update in (updates or {}).items() if isinstance(updates, dict) else []:
        update = update if isinstance(update, dict) else {}
        kbs = [f"KB{kb}" if not str(kb).upper().startswith("KB") else str(kb).upper() for kb in update.get("kb") or []]
        rows.append(
            {
                "id": str(update.get("id") or update_id),
                "kb": ", ".join(kbs) or "no KB",
                "title": _text(update.get("title")),
            }
        )
    return sorted(rows, key=lambda r: (r["kb"], r["title"]))


def workstation_windows_discovery(probe, search, catalogue, product, host="the host", search_timeout=None) -> dict:
    """The discover entry point's fact, for the upgrade flow's precheck (PRE-005) and this role.

    probe: the registered win_powershell result of files/discover.ps1; search: the registered
    win_updates (state searched) result, or a skipped one. Never raises: what could not be read is a
    problem (a string naming what to check), and ``read`` says whether the host could be read at all.
    """
    product = _text(product)
    problems = []
    failure = _failure(
        probe,
        f"reading {host} (files/discover.ps1 with win_powershell)",
        hint="check WinRM and that the account is a local administrator",
        expect="result",
    )
    info = probe.get("result") if isinstance(probe, dict) and not failure else None
    info = info if isinstance(info, dict) else {}
    read = not failure and bool(info.get("os"))
    if failure:
        problems.append(failure)
    elif not read:
        problems.append(f"reading {host} returned no OS information (files/discover.ps1 set no result): is it Windows?")
    hardware = workstation_windows_gpus(info.get("adapters"))
    memory, disk = info.get("memory") or {}, info.get("disk") or {}
    versions = catalogue.get(product) if isinstance(catalogue, dict) and product else None
    installed = _installed(info.get("viewer"), versions if isinstance(versions, dict) else {})
    version = package = package_version = ""
    if product and not isinstance(versions, dict):
        problems.append(f"release_catalogue has no product {product!r}: the viewer's version cannot be looked up")
    elif installed:
        version, package, package_version = (
            installed[0]["version"],
            installed[0]["display_name"],
            installed[0]["display_version"],
        )
        if len(installed) > 1:
            problems.append(
                f"several catalogued versions of {product} are installed on {host} "
                f"({', '.join(i['version'] for i in installed)}): uninstall all but one"
            )
    elif product and read:
        codes = [
            _text((e.get("installer") or {}).get("product_id"))
            for e in versions.values()
            if isinstance(e, dict) and isinstance(e.get("installer"), dict)
        ]
        problems.append(
            f"no catalogued version of {product} is installed on {host}: none of its MSI product codes "
            f"({', '.join(c for c in codes if c) or 'none catalogued'}) is under "
            f"{' or '.join(_UNINSTALL_KEYS)}"
        )
    pending_updates, pending_kbs = None, []
    if isinstance(search, dict) and not search.get("skipped"):
        search_failure = _failure(
            search, "the Windows Update search", search_timeout, _SEARCH_HINT, expect="found_update_count"
        )
        if search_failure:
            problems.append(search_failure)
        else:
            pending_updates = _int(search.get("found_update_count"), 0)
            pending_kbs = [u["kb"] for u in _update_list(search.get("updates"))]
    os_info = info.get("os") or {}
    return {
        "product": product,
        "version": version,
        "package": package or product,
        "package_version": package_version,
        "database_version": None,
        "problems": problems,
        "read": read,
        "installed": installed,
        "os": {**os_info, "release": windows_release(os_info)} if os_info else {},
        "hardware": {
            "gpus": hardware["gpus"],
            "ignored_adapters": hardware["ignored"],
            "memory_mb": _int(memory.get("total_mb")),
            "memory_free_mb": _int(memory.get("free_mb")),
            "disk_drive": _text(disk.get("drive")),
            "disk_free_mb": _int(disk.get("free_mb")),
            "disk_size_mb": _int(disk.get("size_mb")),
        },
        "pending_updates": pending_updates,
        "pending_update_kbs": pending_kbs,
        "reboot_pending": bool(info.get("reboot_pending")),
        "system_restore": info.get("system_restore") or {},
    }


# --------------------------------------------------------------------------- display drivers


def _runs(gpu, driver) -> bool:
    """Whether the GPU runs this catalogued driver (its INF, and its version when the catalogue gives one)."""
    if _text(gpu.get("driver_inf")).lower() != _text(driver.get("inf")).lower():
        return False
    if driver.get("version") not in (None, ""):
        return _version_key(gpu.get("driver_version")) == _version_key(driver.get("version"))
    return True


def _running(gpu) -> str:
    version = gpu.get("driver_version") or "no driver version"
    return f"{version} ({gpu['driver_inf']})" if gpu.get("driver_inf") else version


def workstation_windows_driver_plan(gpus, entry, where="the catalogue entry", host="the host") -> dict:
    """Per GPU of the host, the driver the catalogue entry lists for it and what to do.

    Returns {drivers: [{gpu, name, running, driver, action: keep | install}], installs: [the
    catalogued drivers to add, each once, with the GPUs it is for], problems: [a GPU the entry lists
    no driver for: the viewer version is not validated with it]}.
    """
    entry = entry if isinstance(entry, dict) else {}
    listed = {}
    for item in entry.get("display_drivers") or []:
        if isinstance(item, dict) and isinstance(item.get("driver"), dict) and isinstance(item.get("gpu"), str):
            listed.setdefault(item["gpu"].lower(), item["driver"])
    drivers, installs, problems = [], {}, []
    for gpu in gpus if isinstance(gpus, list) else []:
        driver = listed.get(gpu.get("id"))
        if driver is None:
            problems.append(
                f"GPU {gpu.get('id')} ({gpu.get('name') or 'unnamed'}) on {host} runs display driver {_running(gpu)}, "
                f"and {where}.display_drivers lists no driver for {gpu.get('id')}: this viewer version is not "
                f"validated with this GPU. Add the validated driver ({{gpu: '{gpu.get('id')}', driver: {{path, sha256, "
                "inf, version}}) once tested, or keep the workstation on its current version"
            )
            continue
        action = "keep" if _runs(gpu, driver) else "install"
        drivers.append(
            {
                "gpu": gpu.get("id"),
                "name": gpu.get("name"),
                "running": _running(gpu),
                "driver": driver,
                "action": action,
            }
        )
        if action == "install":
            installs.setdefault(driver.get("path"), {**driver, "gpus": []})["gpus"].append(gpu.get("id"))
    return {"drivers": drivers, "installs": list(installs.values()), "problems": problems}


# --------------------------------------------------------------------------- changes and precheck


def workstation_windows_changes(
    discovered, catalogue, product, version, apply_updates=True, allow_reboot=True
) -> list[str]:
    """What a run would change, one line each; empty: nothing (no restore point is needed). Updates
    count only when the patch step will install them: not while Windows waits for a restart that is
    not allowed."""
    discovered = discovered if isinstance(discovered, dict) else {}
    changes = []
    version = _text(version)
    entry = _entry(catalogue, _text(product), version) if version else None
    if version and discovered.get("version") != version:
        changes.append(f"viewer {product} {discovered.get('version') or 'not installed'} -> {version}")
    if entry is not None:
        plan = workstation_windows_driver_plan((discovered.get("hardware") or {}).get("gpus"), entry)
        changes += [
            f"display driver of {d['gpu']}: {d['running']} -> {d['driver'].get('version') or d['driver'].get('inf')}"
            for d in plan["drivers"]
            if d["action"] == "install"
        ]
    if apply_updates and (allow_reboot or not discovered.get("reboot_pending")):
        pending = discovered.get("pending_updates")
        if pending is None:
            changes.append("Windows updates: not searched yet (may install some)")
        elif pending:
            kbs = ", ".join(discovered.get("pending_update_kbs") or [])
            changes.append(f"{pending} Windows update(s)" + (f": {kbs}" if kbs else ""))
    return changes


def workstation_windows_host_checks(discovered, catalogue, product, version, host="the host") -> dict:
    """The upgrade flow's PRE-001 to PRE-004 for a Windows workstation, from its discover result (the
    precheck reads no Windows host itself: precheck_host_checks discover). {check id: {problems,
    summary}}, PRE-004 also with ``disk`` (the system drive, in the precheck's disk plan format)."""
    discovered = discovered if isinstance(discovered, dict) else {}
    if not discovered.get("read"):
        unread = [p for p in discovered.get("problems") or []] or [f"{host} could not be read (discover set no result)"]
        return {check: {"problems": unread, "summary": ""} for check in ("PRE-001", "PRE-002", "PRE-003", "PRE-004")}
    os_info = discovered.get("os") or {}
    hardware = discovered.get("hardware") or {}
    version = _text(version)
    entry = (_entry(catalogue, _text(product), version) if version else None) or {}
    where = _where(product, version)
    release = os_info.get("release") or windows_release(os_info)
    running = f"{os_info.get('caption') or 'Windows'} (build {os_info.get('build')}, release {release or 'unknown'})"
    checks = {}

    os_entry = entry.get("os") if isinstance(entry.get("os"), dict) else {}
    majors = [str(v) for v in os_entry.get("major_versions") or []]
    checks["PRE-001"] = {
        "problems": [
            f"{host} runs {running}, and {where}.os.major_versions is {majors}: this viewer version is not "
            "catalogued for it"
        ]
        if majors and release not in majors
        else [],
        "summary": running
        + (f" is supported by {product} {version} ({majors})" if majors else " (no Windows release catalogued)"),
    }

    memory, min_memory = _int(hardware.get("memory_mb")), _int(entry.get("min_memory_mb"))
    checks["PRE-002"] = {
        "problems": [
            f"{host} has {memory} MB memory, and {where}.min_memory_mb is {min_memory} MB: choose another "
            "workstation, or add memory"
        ]
        if memory is not None and min_memory is not None and memory < min_memory
        else [],
        "summary": f"{memory if memory is not None else '?'} MB of memory, {product} {version} needs "
        f"{min_memory if min_memory is not None else '?'} MB",
    }

    checks["PRE-003"] = {
        "problems": [
            f"a reboot is pending on {host} (Windows says so: Component Based Servicing or Windows Update "
            "RebootRequired)"
        ]
        if discovered.get("reboot_pending")
        else [],
        "summary": "no reboot pending",
    }

    drive = _text(hardware.get("disk_drive")) or "(system drive)"
    free, min_free = _int(hardware.get("disk_free_mb")), _int(entry.get("min_free_disk_mb"))
    needed = min_free or 0
    disk = {
        "mount": drive,
        "mounts": [drive],
        "device": None,
        "what": [f"packages ({needed} MB, {where}.min_free_disk_mb)"],
        "needed_mb": needed,
        "available_mb": free,
        "ok": free is not None and free >= needed,
        "message": f"drive {drive} needed {needed} MB for the packages ({where}.min_free_disk_mb), available "
        f"{free if free is not None else 'unknown'} MB",
    }
    problems = []
    if free is None:
        problems.append(f"the free space of drive {drive} on {host} could not be read (files/discover.ps1)")
    elif free < needed:
        problems.append(
            f"{host} has {free} MB free disk on drive {drive}, and {where}.min_free_disk_mb is {min_free} MB: "
            "free space or choose another workstation"
        )
    checks["PRE-004"] = {"problems": problems, "summary": disk["message"], "disk": [disk]}
    return checks


def workstation_windows_precheck(discovered, catalogue, product, version, host="the host") -> list[str]:
    """Why the workstation must not be changed, each problem naming what to fix; [] = go ahead. The host
    checks (Windows release, memory, free disk: workstation_windows_host_checks), then the upgrade path
    and a catalogued driver for every GPU."""
    discovered = discovered if isinstance(discovered, dict) else {}
    if not discovered.get("read"):
        return [p for p in discovered.get("problems") or []] or [f"{host} could not be read (discover set no result)"]
    version = _text(version)
    entry = _entry(catalogue, _text(product), version) if version else None
    if entry is None:
        return []
    checks = workstation_windows_host_checks(discovered, catalogue, product, version, host)
    # A pending reboot is the upgrade flow's PRE-003 (with its override); this role reboots within its switch.
    problems = [p for check_id, check in checks.items() if check_id != "PRE-003" for p in check["problems"]]
    return problems + workstation_windows_path_problems(discovered, catalogue, product, version, host)


def workstation_windows_path_problems(discovered, catalogue, product, version, host="the host") -> list[str]:
    """The refusals beyond the host checks: an upgrade path the catalogue does not list, a GPU without a
    catalogued driver."""
    discovered = discovered if isinstance(discovered, dict) else {}
    version = _text(version)
    entry = _entry(catalogue, _text(product), version) if version else None
    if entry is None or not discovered.get("read"):
        return []
    where = _where(product, version)
    problems = []
    current = _text(discovered.get("version"))
    sources = [str(s) for s in entry.get("upgrade_from") or []]
    if current and current != version and current not in sources:
        problems.append(
            f"{product} {current} is installed on {host}, and {where}.upgrade_from is {sources or 'empty'}: the path "
            f"{current} -> {version} is not catalogued (a downgrade, or an untested path). Upgrade through a "
            "catalogued version, or add the path once tested"
        )
    plan = workstation_windows_driver_plan((discovered.get("hardware") or {}).get("gpus"), entry, where, host)
    return problems + plan["problems"]


# --------------------------------------------------------------------------- restore point


def workstation_windows_restore_plan(discovered, enabled, changes) -> dict:
    """Whether to take a System Restore point: {take, reason}. Client Windows only (ProductType 1),
    and only when the run has something to change (a second run that changes nothing takes none)."""
    discovered = discovered if isinstance(discovered, dict) else {}
    os_info = discovered.get("os") or {}
    if not enabled:
        return {"take": False, "reason": "turned off by workstation_windows_restore_point: false"}
    if _int(os_info.get("product_type"), 1) != 1:
        return {
            "take": False,
            "reason": (
                f"{os_info.get('caption') or 'Windows Server'} has no System Restore: a server is snapshotted by the "
                "snapshot role's hypervisor providers (vmware, proxmox), which the upgrade flow runs before any change"
            ),
        }
    if not changes:
        return {"take": False, "reason": "nothing to change on this run"}
    return {"take": True, "reason": "before: " + "; ".join(changes)}


def workstation_windows_restore_record(plan, result=None) -> dict:
    """The restore point step's record: {created, sequence_number, description, reason} or {failed, message}."""
    plan = plan if isinstance(plan, dict) else {}
    if not plan.get("take"):
        return {"created": False, "failed": False, "reason": plan.get("reason", "")}
    result = result if isinstance(result, dict) else {}
    if result.get("skipped") or (result.get("changed") and not result.get("result")):
        return {
            "created": False,
            "failed": False,
            "reason": "check mode: a restore point would be taken " + plan["reason"],
        }
    point = result.get("result") if isinstance(result.get("result"), dict) else {}
    if point.get("created"):
        return {
            "created": True,
            "failed": False,
            "sequence_number": point.get("sequence_number"),
            "description": point.get("description"),
            "creation_time": point.get("creation_time"),
            "reason": plan["reason"],
        }
    message = (
        point.get("message")
        or _failure(result, "taking the restore point (files/restore_point.ps1)")
        or ("taking the restore point reported nothing")
    )
    return {"created": False, "failed": True, "reason": plan["reason"], "message": message}


# --------------------------------------------------------------------------- viewer


def workstation_windows_viewer_record(package, discovered, product, version) -> dict:
    """The viewer step's record from win_package's result; msiexec's 3010 means installed, restart needed."""
    version = _text(version)
    before = (discovered or {}).get("version") if isinstance(discovered, dict) else None
    if not version:
        return {
            "changed": False,
            "skipped": True,
            "reboot_required": False,
            "message": "workstation_windows_target_version is empty: the viewer is left as it is",
        }
    if before == version:
        return {
            "changed": False,
            "skipped": False,
            "before": before,
            "version": version,
            "reboot_required": False,
            "message": f"{product} {version} is installed already",
        }
    package = package if isinstance(package, dict) else {}
    rc = _int(package.get("rc"))
    reboot = bool(package.get("reboot_required")) or rc == 3010
    message = f"{product} {before or 'none'} -> {version}: installed"
    if reboot:
        message += " (msiexec exit 3010: Windows must restart to finish the installation)"
    if not package.get("changed"):
        message = f"{product} {version}: win_package found its product code installed already"
    return {
        "changed": bool(package.get("changed")),
        "skipped": False,
        "before": before,
        "version": version,
        "rc": rc,
        "reboot_required": reboot,
        "message": message,
    }


# --------------------------------------------------------------------------- display driver records


def workstation_windows_driver_record(plan, pnputil_results=None) -> dict:
    """The driver step's record: the plan per GPU, and each pnputil run's outcome."""
    plan = plan if isinstance(plan, dict) else {}
    runs = []
    results = (pnputil_results or {}).get("results") if isinstance(pnputil_results, dict) else None
    for item in results or []:
        if not isinstance(item, dict) or item.get("skipped"):
            continue
        outcome = workstation_windows_pnputil(item)
        driver = item.get("item") or {}
        runs.append(
            {
                "inf": driver.get("inf"),
                "path": driver.get("path"),
                "version": driver.get("version"),
                "gpus": driver.get("gpus", []),
                **{
                    k: outcome[k]
                    for k in ("rc", "changed", "reboot_required", "published_name", "installed_on", "message")
                },
            }
        )
    return {
        "drivers": [
            {
                "gpu": d["gpu"],
                "name": d["name"],
                "running": d["running"],
                "action": d["action"],
                "inf": d["driver"].get("inf"),
                "version": d["driver"].get("version"),
            }
            for d in plan.get("drivers") or []
        ],
        "installed": runs,
        "changed": any(r["changed"] for r in runs),
        "reboot_required": any(r["reboot_required"] for r in runs),
    }


def workstation_windows_driver_failures(failed_result, host="the host") -> list[str]:
    """The failed items of the driver step's failed loop (ansible_failed_result), each as a sentence:
    a pnputil run names the GPUs, the driver and what pnputil said; another task (the sha256 check)
    gives its own message."""
    results = (failed_result or {}).get("results") if isinstance(failed_result, dict) else None
    messages = []
    for item in results or []:
        if not isinstance(item, dict) or not item.get("failed"):
            continue
        if "rc" not in item:
            messages.append(_text(item.get("msg")) or "failed without a message")
            continue
        driver = item.get("item") or {}
        messages.append(
            f"the display driver {driver.get('inf')} {driver.get('version') or ''} ({driver.get('path')}) for GPU "
            f"{', '.join(driver.get('gpus') or [])} on {host}: {workstation_windows_pnputil(item)['message']}"
        )
    return messages


# --------------------------------------------------------------------------- pnputil

_PNPUTIL_RC = {
    0: "success",
    3010: "success, Windows must restart to finish (ERROR_SUCCESS_REBOOT_REQUIRED)",
    259: (
        "ERROR_NO_MORE_ITEMS: the package is in the driver store, but Windows installed it on no device: its INF "
        "matches no device of this workstation, or the device already uses a driver Windows ranks better or "
        "newer (pnputil /install never downgrades)"
    ),
    1641: "the system restart was started (ERROR_SUCCESS_REBOOT_INITIATED), which the role never asks for",
}


def workstation_windows_pnputil(result) -> dict:
    """``pnputil /add-driver <inf> /install``'s outcome from its exit code and output.

    Exit codes (Microsoft's "PnPUtil return values"): 0 success; 3010 success, restart needed; 259
    no device took the driver - a failure here, because the role installs a driver only for a GPU
    that does not run it yet, so 259 means the GPU still runs another driver; any other code fails.

    Changed: the package was installed on a device ("Driver package installed on device: ..."
    (Windows 11), "... on matching devices" (Windows 10)), or newly added to the driver store
    ("Added driver packages: 1" without "(Already exists in the system)"). Not changed: "Already
    exists in the system" or "Added driver packages: 0" with no device installed. Output in another
    language: the exit code decides and a change is assumed (``recognised`` false).
    """
    result = result if isinstance(result, dict) else {}
    out = "\n".join(str(result.get(k) or "") for k in ("stdout", "stderr"))
    low = out.lower()
    rc = _int(result.get("rc"))
    added = re.search(r"added driver packages:\s*(\d+)", low)
    added = int(added.group(1)) if added else None
    already = "already exists in the system" in low
    devices = re.findall(r"driver package installed on device:\s*(\S+)", out, re.IGNORECASE)
    matching = "driver package installed on matching devices" in low
    up_to_date = re.findall(r"up-to-date on device:\s*(\S+)", out, re.IGNORECASE)
    published = re.search(r"published name\s*:\s*(\S+)", out, re.IGNORECASE)
    failures = [line.strip() for line in out.splitlines() if line.strip().lower().startswith("failed to")]
    recognised = bool(added is not None or already or devices or matching or up_to_date or failures)
    if devices or matching:
        changed = True
    elif already or added == 0:
        changed = False
    else:
        changed = bool(added) or rc == 3010 or not recognised
    failed = rc not in (0, 3010) or bool(failures)
    meaning = _PNPUTIL_RC.get(rc, f"exit code {rc}")
    message = (
        meaning
        if not failed
        else (
            f"pnputil failed ({meaning})"
            + (f": {'; '.join(failures)}" if failures else "")
            + (f"; output: {_tail(out, 300)}" if not failures and out.strip() else "")
            + "; details in %windir%\\inf\\setupapi.dev.log"
        )
    )
    return {
        "rc": rc,
        "changed": changed and rc in (0, 3010),
        "failed": failed,
        "reboot_required": rc == 3010 or "reboot is needed" in low,
        "added": added,
        "already_present": already,
        "installed_on": devices or (["matching devices"] if matching else []),
        "up_to_date_on": up_to_date,
        "published_name": published.group(1) if published else "",
        "recognised": recognised,
        "message": message,
    }


# --------------------------------------------------------------------------- the Windows Update loop


def _initial_state() -> dict:
    """The loop's state before its first pass (the tasks start from {})."""
    return {
        "passes": 0,
        "searches": 0,
        "installed": [],
        "failed": [],
        "pending": [],
        "loops": [],
        "reboot_required": False,
        "rebooted": 0,
        "done": False,
        "outcome": "running",
        "problems": [],
    }


def _state(state) -> dict:
    base = _initial_state()
    if isinstance(state, dict):
        base.update({k: (list(v) if isinstance(v, list) else v) for k, v in state.items()})
    return base


def _kbs(rows) -> str:
    return ", ".join(f"{r['kb']} ({r['title']})" if r.get("title") else r["kb"] for r in rows)


def workstation_windows_update_searched(state, search, pass_no, max_passes, timeout=None, check_mode=False) -> dict:
    """The state after a pass's search (win_updates state searched, run async up to ``timeout`` s).

    Done when nothing is found (complete), when the search failed or hung, when an update that was
    installed in an earlier pass is offered again (an update loop: Windows rolled it back), when
    updates are still found after ``max_passes`` install passes (incomplete; the KBs are named), and
    in check mode after the first search (would_install).
    """
    state = _state(state)
    state["searches"] += 1
    failure = _failure(search, "the Windows Update search", timeout, _SEARCH_HINT, expect="found_update_count")
    if failure:
        return {**state, "done": True, "outcome": "failed", "problems": state["problems"] + [failure]}
    found = _update_list((search or {}).get("updates"))
    installed_ids = {u["id"]: u for u in state["installed"]}
    again = [dict(u, installed_in_pass=installed_ids[u["id"]].get("pass")) for u in found if u["id"] in installed_ids]
    state["pending"] = found
    if again:
        return {
            **state,
            "done": True,
            "outcome": "loop",
            "loops": again,
            "problems": state["problems"]
            + [
                "update loop: "
                + "; ".join(
                    f"{u['kb']} ({u['title']}) was installed in pass {u['installed_in_pass']} and is offered again"
                    for u in again
                )
                + ". Windows rolled it back at the restart: read C:\\Windows\\Logs\\CBS\\CBS.log and "
                "Get-WindowsUpdateLog on the workstation, fix the cause, or add the KB to "
                "workstation_windows_update_reject_list"
            ],
        }
    if not found:
        return {**state, "done": True, "outcome": "complete"}
    if check_mode:
        return {**state, "done": True, "outcome": "would_install"}
    if _int(pass_no, 1) > _int(max_passes, 1):
        return {
            **state,
            "done": True,
            "outcome": "incomplete",
            "problems": state["problems"]
            + [
                f"{len(found)} update(s) still pending after {state['passes']} install pass(es) "
                f"(workstation_windows_update_max_passes {max_passes}): {_kbs(found)}; raise the bound, or look at "
                "Settings > Windows Update on the workstation"
            ],
        }
    return state


def workstation_windows_update_installed(state, install, pass_no, timeout=None, allow_reboot=False) -> dict:
    """The state after a pass's install (win_updates state installed, reboot false, async).

    Installed updates are kept with their pass; failed ones with their HRESULT (an update that
    fails, then installs in a later pass, is no longer failed). The loop ends when the install
    itself failed or hung, when a pass installed nothing and only failures remain, and when a
    restart is needed but not allowed (outcome reboot_needed: not a failure, the restart is left to
    the site).
    """
    state = _state(state)
    state["passes"] += 1
    failure = _failure(
        install,
        "installing Windows updates",
        timeout,
        "raise workstation_windows_update_install_timeout, or look at Settings > Windows Update",
        expect="found_update_count",
    )
    if failure:
        return {**state, "done": True, "outcome": "failed", "problems": state["problems"] + [failure]}
    install = install if isinstance(install, dict) else {}
    new_installed, failed = [], {u["id"]: u for u in state["failed"]}
    updates = install.get("updates") if isinstance(install.get("updates"), dict) else {}
    for row in _update_list(updates):
        update = updates.get(row["id"]) or {}
        if update.get("installed"):
            new_installed.append(dict(row, **{"pass": _int(pass_no, 1)}))
            failed.pop(row["id"], None)
        elif "failure_hresult_code" in update:
            code = _int(update.get("failure_hresult_code"), 0) & 0xFFFFFFFF
            failed[row["id"]] = dict(row, hresult=f"0x{code:08X}", message=_text(update.get("failure_msg")))
    state["installed"] = state["installed"] + new_installed
    state["failed"] = sorted(failed.values(), key=lambda r: r["kb"])
    state["reboot_required"] = bool(install.get("reboot_required"))
    if state["failed"] and not new_installed and not state["reboot_required"]:
        return {
            **state,
            "done": True,
            "outcome": "failed",
            "problems": state["problems"]
            + [
                "Windows updates failed to install: "
                + "; ".join(
                    f"{u['kb']} ({u['title']}): HRESULT {u['hresult']}"
                    + (f" {u['message']}" if u.get("message") else "")
                    for u in state["failed"]
                )
                + ". Look the HRESULT up in Microsoft's Windows Update error code list, and read Get-WindowsUpdateLog"
            ],
        }
    if state["reboot_required"] and not allow_reboot:
        return {**state, "done": True, "outcome": "reboot_needed"}
    if not new_installed and not state["failed"] and not state["reboot_required"]:
        return {
            **state,
            "done": True,
            "outcome": "incomplete",
            "problems": state["problems"]
            + [
                f"Windows Update found {_kbs(state['pending'])} but installed none of them and reported no failure "
                "(an update that needs the user to accept terms, or that is only downloaded): install it on the "
                "workstation, or add it to workstation_windows_update_reject_list"
            ],
        }
    return state


def workstation_windows_update_rebooted(state) -> dict:
    """The state after the restart a pass asked for."""
    state = _state(state)
    return {**state, "reboot_required": False, "rebooted": state["rebooted"] + 1}


def workstation_windows_update_result(state, categories=None) -> dict:
    """The patch step's record: installed and failed KBs, what is pending, and whether to restart."""
    state = _state(state)
    failed_ids = {u["id"] for u in state["failed"]}
    return {
        "outcome": state["outcome"] if state["outcome"] != "running" else "incomplete",
        "passes": state["passes"],
        "categories": list(categories or []),
        "installed_kbs": [u["kb"] for u in state["installed"]],
        "failed_kbs": [u["kb"] for u in state["failed"]],
        "pending_kbs": [u["kb"] for u in state["pending"] if u["id"] not in failed_ids],
        "reboot_required": state["reboot_required"],
        "rebooted": state["rebooted"],
        "installed": state["installed"],
        "failed": state["failed"],
        "problems": state["problems"],
        "message": {
            "complete": f"{len(state['installed'])} update(s) installed; Windows Update finds no more",
            "would_install": (
                f"check mode: {len(state['pending'])} update(s) would be installed: {_kbs(state['pending'])}"
            ),
            "reboot_needed": (
                f"{len(state['installed'])} update(s) installed; Windows must restart to finish them: "
                "restart the workstation when it is free, or set workstation_windows_allow_reboot"
            ),
            "reboot_pending": (
                "Windows waits for a restart from an earlier installation and installs no update "
                "before it: restart the workstation when it is free, or set "
                "workstation_windows_allow_reboot"
            ),
        }.get(state["outcome"], "; ".join(state["problems"]) or "the update loop did not finish"),
    }


# --------------------------------------------------------------------------- verification


def workstation_windows_compliance(discovered, catalogue, product, version, host="the host") -> list[str]:
    """What differs from the catalogue after a run: the viewer's version, each GPU's driver, a GPU
    that Windows reports a problem for (ConfigManagerErrorCode, 43: stopped by Windows)."""
    discovered = discovered if isinstance(discovered, dict) else {}
    if not discovered.get("read"):
        return [p for p in discovered.get("problems") or []] or [f"{host} could not be read"]
    problems = []
    gpus = (discovered.get("hardware") or {}).get("gpus") or []
    version = _text(version)
    entry = _entry(catalogue, _text(product), version) if version else None
    if version and discovered.get("version") != version:
        problems.append(
            f"{product} {version} is not installed on {host} (installed: "
            f"{discovered.get('version') or 'no catalogued version'})"
        )
    if entry is not None:
        where = _where(product, version)
        plan = workstation_windows_driver_plan(gpus, entry, where, host)
        problems += plan["problems"]
        problems += [
            f"GPU {d['gpu']} ({d['name']}) on {host} runs display driver {d['running']}, not the catalogued "
            f"{d['driver'].get('version') or ''} ({d['driver'].get('inf')}) of {where}: Windows kept or chose another "
            "driver (a newer one, or Windows Update replaced it); remove that driver package or catalogue the one "
            "that runs"
            for d in plan["drivers"]
            if d["action"] == "install"
        ]
    problems += [
        f"GPU {g['id']} ({g['name']}) on {host} reports device problem code {g['problem_code']} "
        "(Device Manager; 43: Windows stopped the device); check the driver and the card"
        for g in gpus
        if g.get("problem_code")
    ]
    return problems


def workstation_windows_failure_message(result, task, msg, host="the host") -> str:
    """main's rescue: what failed, and the restore point to go back to (nothing is rolled back
    automatically: going back restarts the workstation and undoes every change since the point).
    The task is named unless it is one of the role's own judgements (``<step> | Fail ...`` or
    ``<step> | Refuse ...``), whose message says it all."""
    point = (result or {}).get("restore_point") if isinstance(result, dict) else None
    point = point if isinstance(point, dict) else {}
    if point.get("created"):
        number = point.get("sequence_number")
        back = (
            f'Restore point #{number} ("{point.get("description")}") was taken before the change: to go back, '
            f"choose it in rstrui.exe on the workstation, or run Restore-Computer -RestorePoint {number} "
            "(Windows restarts)."
        )
    else:
        back = f"No restore point was taken ({point.get('reason') or 'the run stopped before that step'})."
    what = _text(msg) if _text(msg).endswith(".") else _text(msg) + "."
    if not re.search(r"\|\s*(Fail|Refuse)\b", _text(task)):
        what = f"{task} failed on {host}: {what}"
    return f"{what} {back} Nothing was rolled back automatically."


def workstation_windows_verify_record(compliance, echo=None, pacs="", calling_ae="") -> dict:
    """The verify step's record: the catalogue comparison and the C-ECHO of the viewer's PACS."""
    problems = [str(p) for p in compliance or []]
    echo = echo if isinstance(echo, dict) else {}
    if not pacs:
        echo_record = {
            "status": "skipped",
            "message": "no PACS: set workstation_windows_pacs_host or put the PACS in the inventory group pacs",
        }
    elif echo.get("skipped"):
        echo_record = {"status": "skipped", "pacs": pacs, "message": "turned off by workstation_windows_verify_echo"}
    elif "status" in echo and "reason" not in echo:
        echo_record = {
            "status": "passed",
            "pacs": pacs,
            "calling_ae": calling_ae,
            "latency_ms": echo.get("latency_ms"),
            "message": f"{pacs} answers C-ECHO from the controller as {calling_ae}",
        }
    else:
        echo_record = {
            "status": "failed",
            "pacs": pacs,
            "calling_ae": calling_ae,
            "reason": echo.get("reason"),
            "message": f"{pacs} does not answer C-ECHO as {calling_ae}: {echo.get('reason') or 'error'}: "
            f"{_tail(echo.get('msg'), 300)}",
        }
        problems.append(echo_record["message"])
    return {"problems": problems, "passed": not problems, "echo": echo_record}


# --------------------------------------------------------------------------- the upgrade flow


def workstation_windows_flow_discovery(
    discovered, catalogue, product, version, apply_updates=True, allow_reboot=True, host="the host"
) -> dict:
    """The discover fact for the upgrade flow's PRE-005: ``pending_changes`` (what a run would change:
    the viewer, a display driver, pending Windows updates; not empty makes the flow patch a workstation
    whose viewer is at the target, as a Linux workstation's apt plan does) and ``refusals`` (this role's
    precheck: Windows release, upgrade path, disk, memory, a catalogued driver for every GPU), added to
    ``problems`` so that the flow refuses the workstation before its snapshot."""
    record = dict(discovered) if isinstance(discovered, dict) else {}
    refusals = workstation_windows_path_problems(record, catalogue, product, version, host)
    problems = [str(p) for p in record.get("problems") or []]
    record["pending_changes"] = (
        workstation_windows_changes(record, catalogue, product, version, apply_updates, allow_reboot)
        if record.get("read")
        else []
    )
    # PRE-001 to PRE-004 (the precheck reads no Windows host itself: precheck_host_checks discover);
    # the refusals beyond them are PRE-005 problems, so that the flow refuses before the snapshot.
    record["host_checks"] = workstation_windows_host_checks(record, catalogue, product, version, host)
    record["refusals"] = refusals
    record["problems"] = problems + [r for r in refusals if r not in problems]
    return record


def _windows_dirname(path) -> str:
    text = _text(path).rstrip("\\/")
    cut = max(text.rfind("\\"), text.rfind("/"))
    return text[:cut] if cut > 0 else ""


def _windows_basename(path) -> str:
    text = _text(path).rstrip("\\/")
    return text[max(text.rfind("\\"), text.rfind("/")) + 1 :]


def _safe(name) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", _text(name)) or "unnamed"


def workstation_windows_stage_plan(discovered, entry, version, stage_dir, gpus_plan=None) -> dict:
    """What the stage entry point copies onto the workstation, so that the switch installs from local
    files (no share during the downtime): the viewer's MSI when the viewer changes, and the folder of each
    display driver package to install (an INF needs its CAT and SYS beside it).

    Returns {copies: [{what, src, dest, staged, sha256, for}], viewer: staged MSI path or "", drivers:
    {catalogue INF path: staged INF path}}. ``src`` ending in a backslash is a folder whose contents
    win_copy copies into ``dest``."""
    discovered = discovered if isinstance(discovered, dict) else {}
    entry = entry if isinstance(entry, dict) else {}
    version = _text(version)
    root = _text(stage_dir).rstrip("\\/")
    copies, viewer, drivers = [], "", {}
    installer = entry.get("installer") if isinstance(entry.get("installer"), dict) else {}
    if version and discovered.get("version") != version and installer.get("path"):
        dest = f"{root}\\viewer\\{_safe(version)}"
        viewer = f"{dest}\\{_windows_basename(installer['path'])}"
        copies.append(
            {
                "what": "viewer",
                "src": installer["path"],
                "dest": dest + "\\",
                "staged": viewer,
                "sha256": _text(installer.get("sha256")).lower(),
                "for": f"viewer {version}",
            }
        )
    for item in (gpus_plan or {}).get("installs") or []:
        if not isinstance(item, dict) or not item.get("path"):
            continue
        folder = _windows_dirname(item["path"])
        dest = f"{root}\\drivers\\{_safe(item.get('inf'))}-{_safe(item.get('version') or 'catalogued')}"
        staged = f"{dest}\\{_windows_basename(item['path'])}"
        drivers[item["path"]] = staged
        copies.append(
            {
                "what": "driver",
                "src": (folder + "\\") if folder else item["path"],
                "dest": dest + "\\",
                "staged": staged,
                "sha256": _text(item.get("sha256")).lower(),
                "for": "GPU " + ", ".join(item.get("gpus") or []),
            }
        )
    return {"copies": copies, "viewer": viewer, "drivers": drivers}


def workstation_windows_staged(plan, stats=None, download=None, timeout=None, host="the host") -> dict:
    """The stage entry point's record: every copy checked against its catalogued sha256 on the
    workstation, and the updates Windows Update downloaded (win_updates state=downloaded). ``problems``
    names each copy that is missing or differs, and a download that failed or ran out of time."""
    plan = plan if isinstance(plan, dict) else {}
    problems = []
    by_path = {}
    for row in (stats or {}).get("results") or [] if isinstance(stats, dict) else []:
        if isinstance(row, dict) and isinstance(row.get("item"), dict):
            by_path[row["item"].get("staged")] = row.get("stat") or {}
    for copy in plan.get("copies") or []:
        stat = by_path.get(copy["staged"])
        if stat is None:
            continue
        if not stat.get("exists"):
            problems.append(
                f"{copy['staged']} (the {copy['what']} for {copy['for']}) is not on {host} after the copy "
                f"from {copy['src']}"
            )
        elif _text(stat.get("checksum")).lower() != copy["sha256"]:
            problems.append(
                f"{copy['staged']} on {host} has sha256 {stat.get('checksum')}, the catalogue says "
                f"{copy['sha256']}: {copy['src']} is corrupt, or another file"
            )
    updates = {"downloaded": None, "kbs": [], "message": "no download (no update pending, or turned off)"}
    if isinstance(download, dict) and not download.get("skipped"):
        failure = _failure(
            download, "downloading the Windows updates", timeout, _SEARCH_HINT, expect="found_update_count"
        )
        if failure:
            problems.append(failure)
            updates["message"] = failure
        else:
            rows = _update_list(download.get("updates"))
            updates = {
                "downloaded": len(rows),
                "kbs": [r["kb"] for r in rows],
                "message": f"{len(rows)} update(s) downloaded, none installed",
            }
    return {
        "copies": plan.get("copies") or [],
        "viewer": plan.get("viewer") or "",
        "drivers": plan.get("drivers") or {},
        "updates": updates,
        "problems": problems,
    }


def workstation_windows_switched(result, compliance=None, allow_reboot=False) -> dict:
    """The switch entry point's record from workstation_windows_result (restore_point, viewer, driver,
    patch), in the shape the fleet summary reads (``packages``: one line per change; ``reboot``) and
    with ``problems``: what still differs from the catalogue after the switch (the flow then rolls back)."""
    result = result if isinstance(result, dict) else {}
    viewer, driver, patch = (
        result.get(k) if isinstance(result.get(k), dict) else {} for k in ("viewer", "driver", "patch")
    )
    changes = []
    if viewer.get("changed"):
        changes.append(viewer.get("message") or "viewer installed")
    changes += [
        f"display driver {d.get('inf')} {d.get('version') or ''}".strip()
        for d in driver.get("installed") or []
        if isinstance(d, dict) and d.get("changed")
    ]
    changes += [f"Windows update {kb}" for kb in patch.get("installed_kbs") or []]
    # A step that needed a restart restarted Windows itself when allowed (viewer, driver, the update loop).
    required = any(bool(part.get("reboot_required")) for part in (viewer, driver, patch))
    rebooted = (_int(patch.get("rebooted"), 0) or 0) > 0 or (required and bool(allow_reboot))
    pending = required and not allow_reboot
    return {
        "packages": changes,
        "count": len(changes),
        "restore_point": result.get("restore_point"),
        "viewer": viewer,
        "driver": driver,
        "patch": patch,
        "reboot": {
            "required": required or rebooted,
            "done": rebooted,
            "pending": pending,
            "why_pending": "workstation_windows_allow_reboot is false" if pending else None,
        },
        "problems": [str(p) for p in compliance or []],
    }


class FilterModule:
    def filters(self):
        return {
            "workstation_windows_input_problems": workstation_windows_input_problems,
            "workstation_windows_gpus": workstation_windows_gpus,
            "workstation_windows_discovery": workstation_windows_discovery,
            "workstation_windows_driver_plan": workstation_windows_driver_plan,
            "workstation_windows_product_ids": workstation_windows_product_ids,
            "workstation_windows_changes": workstation_windows_changes,
            "workstation_windows_restore_plan": workstation_windows_restore_plan,
            "workstation_windows_restore_record": workstation_windows_restore_record,
            "workstation_windows_viewer_record": workstation_windows_viewer_record,
            "workstation_windows_driver_record": workstation_windows_driver_record,
            "workstation_windows_driver_failures": workstation_windows_driver_failures,
            "workstation_windows_verify_record": workstation_windows_verify_record,
            "workstation_windows_failure_message": workstation_windows_failure_message,
            "workstation_windows_precheck": workstation_windows_precheck,
            "workstation_windows_host_checks": workstation_windows_host_checks,
            "workstation_windows_pnputil": workstation_windows_pnputil,
            "workstation_windows_update_searched": workstation_windows_update_searched,
            "workstation_windows_update_installed": workstation_windows_update_installed,
            "workstation_windows_update_rebooted": workstation_windows_update_rebooted,
            "workstation_windows_update_result": workstation_windows_update_result,
            "workstation_windows_compliance": workstation_windows_compliance,
            "workstation_windows_flow_discovery": workstation_windows_flow_discovery,
            "workstation_windows_stage_plan": workstation_windows_stage_plan,
            "workstation_windows_staged": workstation_windows_staged,
            "workstation_windows_switched": workstation_windows_switched,
        }
