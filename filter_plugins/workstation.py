# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""Filters of the Linux workstation product (roles/workstation_linux) and of the fleet run.

* ``workstation_linux_discovery``: the discover entry point's result (precheck PRE-005) from what
  workstation_linux_facts read and whether the package lists could be refreshed.
* ``workstation_linux_switched``: the switch's result from the versions before and after.
* ``fleet_summary``: every workstation of a fleet run with its outcome, those never attempted included.
* ``windows_workstation_baseline`` / ``windows_workstation_compare``: dicom_verify's profile
  workstation_windows (a C-ECHO of the viewer's PACS from the controller, the viewer's version and the
  display adapters read by the workstation_windows role's discover).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from versions import upstream_version  # noqa: E402


def _tail(text, limit=400) -> str:
    return " ".join(str(text or "").split())[-limit:]


def workstation_linux_discovery(facts, product, update=None, package_manager="apt") -> dict:
    """PRE-005 for a workstation: the viewer's version (the product package's upstream version) and
    every change the run would make (``pending_changes``: one line per package of apt's plan).

    A workstation is current when its viewer is at the target and apt's plan is empty, so the flow
    patches a workstation whose viewer is current but which has pending updates. ``update`` is the
    metadata refresh (apt-get update, or dnf makecache with ``package_manager`` dnf)."""
    facts = facts if isinstance(facts, dict) else {}
    problems = []
    if update is not None and update.get("rc", 0) != 0:
        refresh, fix = {
            "dnf": ("dnf makecache", "check the workstation's dnf repositories (/etc/yum.repos.d)"),
        }.get(
            package_manager,
            ("apt-get update", "check the workstation's apt sources and the site package cache "
             "(workstation_linux_package_cache_url)"),
        )
        problems.append(
            "{} failed (exit {}): {}; {}".format(
                refresh, update.get("rc"), _tail(update.get("stderr") or update.get("stdout")), fix
            )
        )
    if facts.get("failed"):
        problems.append(f"workstation_linux_facts failed: {facts.get('msg', 'no message')}")
    problems += [str(p) for p in facts.get("problems") or []]
    installed = facts.get("installed") or {}
    package_version = installed.get(product)
    version = upstream_version(package_version) if package_version else ""
    if not package_version and not facts.get("failed"):
        problems.append(
            f"the viewer package {product} is not installed: install the catalogue version first "
            "(the workstation_linux role, entry point main)"
        )
    plan = facts.get("plan") or []
    pending = [
        "{} {} -> {} ({})".format(
            item["name"],
            item.get("from") or "new",
            item["to"],
            item.get("reason", "?") + (", security" if item.get("security") else ""),
        )
        for item in plan
    ]
    return {
        "product": product,
        "version": version,
        "package": product,
        "package_version": package_version or "",
        "database_version": None,
        "problems": problems,
        "pending_changes": pending,
        "plan": plan,
        "download_bytes": facts.get("plan_download_bytes", 0),
        "hardware": {
            "report": facts.get("hardware_report", ""),
            "gpus": facts.get("gpus", []),
            "memory_mb": facts.get("memory_mb"),
            "disk_free_mb": facts.get("disk_free_mb"),
        },
        "dpkg_lock": facts.get("dpkg_lock"),
        "reboot": facts.get("reboot"),
        "installed": installed,
        "driver_packages": facts.get("driver_packages", {}),
    }


def _delta_seconds(delta) -> float:
    """A command result's delta, '0:01:02.345678', in seconds."""
    hours, minutes, seconds = (str(delta or "0:0:0").split(":") + ["0", "0"])[:3]
    try:
        return round(int(hours) * 3600 + int(minutes) * 60 + float(seconds), 1)
    except ValueError:
        return 0.0


def workstation_linux_switched(plan, after, product, reboot, install_delta="0:00:00") -> dict:
    """The switch's result: each planned package with the version installed now; a package whose
    installed version is not the planned one is a problem the switch fails on."""
    if isinstance(after, (list, tuple)):  # dpkg-query -W -f='${Package}\t${Version}\n' lines
        after = dict(line.split("\t", 1) for line in after if "\t" in line)
    after = after if isinstance(after, dict) else {}
    changed, wrong = [], []
    for item in plan or []:
        now = after.get(item["name"])
        changed.append({"name": item["name"], "from": item.get("from"), "to": now, "planned": item["to"]})
        if now != item["to"]:
            wrong.append(f"{item['name']} is {now or 'not installed'}, the plan said {item['to']}")
    package_version = after.get(product)
    return {
        "version": upstream_version(package_version) if package_version else None,
        "package_version": package_version,
        "database_version": None,
        "packages": changed,
        "count": len(changed),
        "problems": wrong,
        "reboot": reboot,
        "downtime_s": None,
        "phases": {"install_s": _delta_seconds(install_delta)},
    }


def fleet_summary(hostvars, hosts, play_hosts_failed=()) -> list:
    """Every host of the fleet with its outcome; a host the run never reached is ``not_attempted``
    (a batch over max_fail_percentage stopped the run before its batch)."""
    rows = []
    failed = set(play_hosts_failed or ())
    for host in hosts:
        result = (hostvars.get(host) or {}).get("upgrade_result")
        if isinstance(result, dict):
            rows.append(
                {
                    "host": host,
                    "outcome": result.get("outcome"),
                    "failed_step": result.get("failed_step"),
                    "message": result.get("message"),
                    "versions": result.get("versions"),
                    "changes": len(((result.get("switch") or {}).get("packages")) or []),
                    "reboot": (result.get("switch") or {}).get("reboot"),
                }
            )
        else:
            rows.append(
                {
                    "host": host,
                    "outcome": "unreachable" if host in failed else "not_attempted",
                    "failed_step": None,
                    "message": "not reached: the run stopped before this host's batch, or the host was unreachable",
                    "versions": None,
                    "changes": 0,
                    "reboot": None,
                }
            )
    return rows


def _packages(lines) -> dict:
    """dpkg-query -W -f='${db:Status-Abbrev}\t${Package}\t${Version}\n' lines: the installed ones."""
    out = {}
    for line in lines or []:
        parts = line.split("\t")
        if len(parts) == 3 and parts[0][1:2] == "i":  # installed: "ii " or, held, "hi "
            out[parts[1]] = parts[2]
    return out


def _check(name, passed, message, details=None, elapsed_ms=None) -> dict:
    return {
        "check": name,
        "status": "passed" if passed else "failed",
        "elapsed_ms": elapsed_ms,
        "message": message,
        "details": details or {},
    }


def _echo_check(echo, pacs) -> dict:
    echo = echo or {}
    ok = echo.get("rc") == 0
    return _check(
        "pacs_echo_from_workstation",
        ok,
        f"the workstation's echoscu reached {pacs}"
        if ok
        else f"the workstation's echoscu could not reach {pacs} (exit {echo.get('rc')}): {_tail(echo.get('stderr'))}",
    )


def _image_check(image, baseline_image=None) -> dict:
    image = image or {}
    if image.get("failed") or "image" not in image:
        return _check(
            "image_load",
            False,
            f"no image loaded ({image.get('reason', 'not run')}): {image.get('msg', '')}".strip(),
            {"reason": image.get("reason"), "removed": image.get("removed")},
        )
    picture = image["image"]
    details = {
        "study_digest": image.get("study_digest"),
        "instances_retrieved": image.get("instances_retrieved"),
        "rows": picture["rows"],
        "columns": picture["columns"],
        "grey_levels": picture["grey_levels"],
        "removed": image.get("removed"),
    }
    problems = []
    if baseline_image:
        for key in ("study_digest", "rows", "columns"):
            if baseline_image.get(key) != details[key]:
                problems.append(f"{key} is {details[key]}, the baseline's was {baseline_image.get(key)}")
        if (baseline_image.get("instances_retrieved") or 0) > (details["instances_retrieved"] or 0):
            problems.append(
                f"{details['instances_retrieved']} instance(s) retrieved, the baseline retrieved "
                f"{baseline_image.get('instances_retrieved')}"
            )
    if not image.get("removed"):
        problems.append("the temporary copy of the study was not removed")
    message = (
        f"study {details['study_digest']}: {details['instances_retrieved']} instance(s) retrieved with C-GET, "
        f"one rendered by dcmj2pnm at {picture['columns']}x{picture['rows']} with {picture['grey_levels']} grey levels"
    )
    return _check(
        "image_load",
        not problems,
        message + ("; " + "; ".join(problems) if problems else ""),
        details,
        image.get("elapsed_ms"),
    )


def workstation_baseline(results, host="", recorded="", pacs="the PACS") -> dict:
    """The baseline of a workstation: its PACS answers its C-ECHO, an image loads, and the versions of
    its catalogue and held packages. Returns {baseline, problems} like ris_baseline."""
    results = results or {}
    echo = _echo_check(results.get("echo"), pacs)
    image = _image_check(results.get("image"))
    packages = _packages(results.get("packages"))
    problems = [c["message"] for c in (echo, image) if c["status"] == "failed"]
    baseline = {
        "profile": "workstation",
        "host": host,
        "recorded": recorded,
        "version": None,
        "database_version": None,
        "image_load": image["details"] if image["status"] == "passed" else None,
        "packages": packages,
    }
    baseline["summary"] = (
        f"{pacs} answers the workstation's C-ECHO: {echo['status']}; image load: {image['message']}; "
        f"{len(packages)} catalogue/held package(s) recorded"
    )
    return {"baseline": baseline, "problems": problems}


def workstation_compare(results, baseline, expected_version="", product="", catalogue_packages=None, pacs="the PACS"):
    """The verification of a workstation after its patch run, against its baseline: the same C-ECHO and
    image load (the same study, the same size), the viewer at the expected version, every catalogue
    package at its catalogue version, and every other recorded (held) package unmoved."""
    results = results or {}
    baseline = baseline or {}
    catalogue_packages = catalogue_packages or {}
    checks = [_echo_check(results.get("echo"), pacs), _image_check(results.get("image"), baseline.get("image_load"))]
    now = _packages(results.get("packages"))
    version = upstream_version(now[product]) if now.get(product) else None
    checks.append(
        _check(
            "viewer_version",
            bool(version) and (not expected_version or version == str(expected_version)),
            f"{product} {version or 'not installed'} (expected {expected_version or 'any'})",
            {"package_version": now.get(product)},
        )
    )
    wrong = []
    for name, before in sorted((baseline.get("packages") or {}).items()):
        want = catalogue_packages.get(name, before)
        if now.get(name) != want:
            wrong.append(f"{name} is {now.get(name) or 'not installed'}, expected {want}")
    for name, want in sorted(catalogue_packages.items()):
        if name not in (baseline.get("packages") or {}) and now.get(name) != want:
            wrong.append(f"{name} is {now.get(name) or 'not installed'}, the catalogue says {want}")
    checks.append(
        _check(
            "held_packages",
            not wrong,
            "; ".join(wrong) if wrong else f"{len(now)} catalogue/held package(s) at their expected versions",
            {"packages": now},
        )
    )
    return checks


def workstation_aet(host) -> str:
    """A workstation's default AE title: its inventory name's letters and digits, upper case, at most 16."""
    return "".join(ch for ch in str(host) if ch.isascii() and ch.isalnum()).upper()[:16]


def workstation_modalities(hosts, port=104) -> list:
    """pacs_server_modalities entries that let these workstations query and retrieve (C-FIND, C-GET).
    The host (the inventory name) is used by a C-MOVE only: a C-GET's answer comes back on the
    workstation's own association."""
    return [{"name": str(h), "aet": workstation_aet(h), "host": str(h), "port": int(port)} for h in hosts or []]


def _controller_echo_check(echo, pacs) -> dict:
    """dicom_echo's result (sent from the controller as the viewer): passed when it answered."""
    echo = echo if isinstance(echo, dict) else {}
    if not echo or echo.get("skipped"):
        return _check(
            "pacs_echo_from_controller",
            False,
            "no PACS to C-ECHO: set workstation_windows_pacs_host or put the PACS in the inventory group pacs",
        )
    ok = "status" in echo and "reason" not in echo and not echo.get("failed")
    return _check(
        "pacs_echo_from_controller",
        ok,
        f"{pacs} answers C-ECHO from the controller"
        if ok
        else f"{pacs} does not answer C-ECHO from the controller: {echo.get('reason') or 'error'}: "
        f"{_tail(echo.get('msg'), 300)}",
        {"latency_ms": echo.get("latency_ms")} if ok else {"reason": echo.get("reason")},
        echo.get("latency_ms"),
    )


def _windows_gpus(discovered) -> list:
    gpus = ((discovered or {}).get("hardware") or {}).get("gpus") or []
    return [
        {
            "id": g.get("id"),
            "name": g.get("name"),
            "driver_version": g.get("driver_version"),
            "driver_inf": g.get("driver_inf"),
            "problem_code": g.get("problem_code") or 0,
        }
        for g in gpus
        if isinstance(g, dict)
    ]


def _windows_read_check(discovered) -> dict | None:
    discovered = discovered if isinstance(discovered, dict) else {}
    if discovered.get("read"):
        return None
    problems = "; ".join(str(p) for p in discovered.get("problems") or []) or "the workstation could not be read"
    return _check("workstation_read", False, problems)


def windows_workstation_baseline(results, host="", recorded="", pacs="the PACS") -> dict:
    """The baseline of a Windows workstation (profile workstation_windows): its PACS answers a C-ECHO
    from the controller, and the viewer's version and the display adapters as the workstation_windows
    role's discover read them. Returns {baseline, problems} like workstation_baseline."""
    results = results or {}
    discovered = results.get("discovered") or {}
    echo = _controller_echo_check(results.get("echo"), pacs)
    read = _windows_read_check(discovered)
    problems = [c["message"] for c in (echo, read) if c and c["status"] == "failed"]
    gpus = _windows_gpus(discovered)
    baseline = {
        "profile": "workstation_windows",
        "host": host,
        "recorded": recorded,
        "version": discovered.get("version") or None,
        "database_version": None,
        "os": {k: (discovered.get("os") or {}).get(k) for k in ("caption", "build", "ubr", "release")},
        "gpus": gpus,
    }
    baseline["summary"] = (
        f"{pacs} answers C-ECHO from the controller: {echo['status']}; viewer "
        f"{baseline['version'] or 'not installed'}; {len(gpus)} GPU(s): "
        + (", ".join(f"{g['id']} {g['driver_version'] or '?'}" for g in gpus) or "none")
    )
    return {"baseline": baseline, "problems": problems}


def windows_workstation_compare(results, baseline, expected_version="", product="", pacs="the PACS") -> list:
    """The checks of a Windows workstation after a change, against its baseline: the same C-ECHO from
    the controller, the viewer at the expected version (any catalogued version without one), and every
    GPU of the baseline still there with no device problem (ConfigManagerErrorCode; 43: Windows
    stopped it). Which driver each GPU runs is the catalogue's business: the workstation_windows
    switch checks it (workstation_windows_compliance) before the verification."""
    results = results or {}
    baseline = baseline if isinstance(baseline, dict) else {}
    discovered = results.get("discovered") or {}
    checks = [_controller_echo_check(results.get("echo"), pacs)]
    read = _windows_read_check(discovered)
    if read:
        return checks + [read]
    version = discovered.get("version") or ""
    expected = str(expected_version or "")
    checks.append(
        _check(
            "viewer_version",
            bool(version) and (not expected or version == expected),
            f"{product or 'the viewer'} {version or 'not installed (no catalogued MSI product code found)'} "
            f"(expected {expected or 'any catalogued version'})",
            {"package": discovered.get("package"), "package_version": discovered.get("package_version")},
        )
    )
    now = {g["id"]: g for g in _windows_gpus(discovered)}
    wrong = [
        f"GPU {g['id']} ({g.get('name') or 'unnamed'}) of the baseline is gone"
        for g in baseline.get("gpus") or []
        if isinstance(g, dict) and g.get("id") not in now
    ]
    wrong += [
        f"GPU {g['id']} ({g['name'] or 'unnamed'}) reports device problem code {g['problem_code']} "
        "(Device Manager; 43: Windows stopped the device)"
        for g in now.values()
        if g["problem_code"]
    ]
    checks.append(
        _check(
            "display_adapters",
            not wrong,
            "; ".join(wrong)
            if wrong
            else f"{len(now)} GPU(s) working: "
            + (", ".join(f"{g['id']} {g['driver_version']}" for g in now.values()) or "none"),
            {"gpus": list(now.values())},
        )
    )
    return checks


class FilterModule:
    def filters(self):
        return {
            "workstation_linux_discovery": workstation_linux_discovery,
            "workstation_linux_switched": workstation_linux_switched,
            "fleet_summary": fleet_summary,
            "workstation_baseline": workstation_baseline,
            "workstation_compare": workstation_compare,
            "workstation_aet": workstation_aet,
            "workstation_modalities": workstation_modalities,
            "windows_workstation_baseline": windows_workstation_baseline,
            "windows_workstation_compare": windows_workstation_compare,
        }
