# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""Filters of the precheck role: turn the output of read-only probes into numbers and problems.

Each ``*_problems`` filter returns the list of problems of one check (empty when it passes), every
message saying what is wrong and what to change; the role's assert joins them.

- os_support_problems(facts, host, product, target_version, target_entry, current_version, current_entry):
  PRE-001, the host's OS against the catalogue entries of the target and the installed version.
- memory_problems(facts, host, product, target_version, target_entry): PRE-002.
- reboot_problems(reboot_flag, reboot_pkgs, needrestart): PRE-003, from the registered results of
  ``stat /run/reboot-required``, ``slurp /run/reboot-required.pkgs`` and ``needrestart -b -r l -k``.
- du_total_mb(stdout): MB in the output of ``du -sk PATH...``.
- apt_download_mb(stdout): MB apt would download, from ``apt-get install --print-uris -qq``.
- disk_plan(mounts, needs, margin_pct): per filesystem, MB needed (with margin) and available, from
  mount facts (``ansible_facts.mounts`` or ``mount_facts``' ``aggregate_mounts``/``mount_points``).
- podman_volume_paths(inspect), podman_snapshot_estimate(inspect, du, records, graph_root, export_dir, linked):
  PRE-004 for provider podman, what one more snapshot keeps on the controller (image layer, volume exports).
- disk_plan_merge(plan, other): two plans (the host's, the controller's) as one, the tightest first.
- disk_problems(plan, host, product, target_version, target_entry, du, snapshot): PRE-004.
- precheck_discovery(discovered, source): PRE-005, the product's discover result with the versions as text
  ("" when not read) and a problem for a version that is missing although nothing says why.
- upgrade_needed(current, target, target_entry): False only when both versions are read and equal.
- target_problems(catalogue, product, current, target, allow_downgrade, discovered, host): PRE-006.
- target_summary(current, target): PRE-006's message when it passes (never raises).
- precheck_record(result, check_id, title): one record of precheck_results from a registered assert.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import posixpath
import re
import sys

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # pragma: no cover
    AnsibleFilterError = ValueError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from versions import compare_debian, upgrade_path_error  # noqa: E402


def du_total_mb(stdout) -> float:
    total_kb = 0
    for line in str(stdout or "").splitlines():
        fields = line.split()
        if fields and fields[0].isdigit():
            total_kb += int(fields[0])
    return round(total_kb / 1024.0, 1)


def apt_download_mb(stdout) -> float:
    """Sum of the sizes in apt's --print-uris lines: 'URI' FILENAME SIZE HASH."""
    total = 0
    for line in str(stdout or "").splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[0].startswith("'") and fields[2].isdigit():
            total += int(fields[2])
    return round(total / 1048576.0, 1)


def _get(value, key, default=None):
    """value[key] when value is a mapping that has it (Jinja's ``value.key | default(default)``)."""
    if isinstance(value, dict) and key in value:
        return value[key]
    return default


def _int(value) -> int:
    """Jinja's ``| int``: a number, a numeric string, else 0."""
    try:
        return int(value)
    except (TypeError, ValueError):
        try:
            return int(float(value))
        except (TypeError, ValueError):
            return 0


def _join(values, sep: str) -> str:
    if isinstance(values, (list, tuple, str)):
        return sep.join(str(v) for v in values)
    return ""


# --------------------------------------------------------------------------- PRE-001, PRE-002, PRE-003


def os_support_problems(facts, host, product, target_version, target_entry, current_version="", current_entry=None):
    """PRE-001: the OS is one the target version and the installed version support."""
    facts = facts if isinstance(facts, dict) else {}
    family = facts.get("os_family")
    major = facts.get("distribution_major_version")
    release = facts.get("distribution_release")
    os_text = f"{family} {major} ({release})"
    where = f"release_catalogue.{product}"
    problems = []
    if not target_entry:
        problems.append(f"cannot check the OS: target {target_version} is not in {where} (see PRE-006)")

    def unsupported(os_):
        return family != _get(os_, "family", "") or str(major) not in _get(os_, "major_versions", [])

    target_os = _get(target_entry, "os", {})
    if target_entry and unsupported(target_os):
        problems.append(
            f"{host} runs {os_text} but {product} {target_version} supports {_get(target_os, 'family', '?')} "
            f"{_join(_get(target_os, 'major_versions', []), '/')} ({where}['{target_version}'].os): "
            "choose another pacs_server_target_version"
        )
    current_os = _get(current_entry, "os", {})
    if current_entry and unsupported(current_os):
        problems.append(
            f"{host} runs {os_text} but the catalogue says the installed {product} {current_version} runs on "
            f"{_get(current_os, 'family', '?')} {_join(_get(current_os, 'major_versions', []), '/')} "
            f"({where}['{current_version}'].os): fix the catalogue entry or the host"
        )
    upgrade = _get(target_entry, "os_release_upgrade", {})
    if upgrade and release not in [_get(upgrade, "from", ""), _get(upgrade, "to", "")]:
        problems.append(
            f"{product} {target_version} carries the release upgrade {_get(upgrade, 'from', '?')} -> "
            f"{_get(upgrade, 'to', '?')} but {host} runs {release} ({where}['{target_version}'].os_release_upgrade)"
        )
    return problems


def memory_problems(facts, host, product, target_version, target_entry):
    """PRE-002: the host has the memory the target version needs."""
    if not target_entry:
        return [f"cannot check memory: target {target_version} is not in release_catalogue.{product} (see PRE-006)"]
    memtotal = _get(facts, "memtotal_mb")
    needed = _get(target_entry, "min_memory_mb")
    if _int(memtotal) < _int(needed):
        return [
            f"{host} has {memtotal} MB of memory; {product} {target_version} needs {needed} MB "
            f"(release_catalogue.{product}['{target_version}'].min_memory_mb): add memory to the host first"
        ]
    return []


_KSTA = re.compile(r"NEEDRESTART-KSTA: *([0-9])")


def reboot_problems(reboot_flag, reboot_pkgs=None, needrestart=None) -> list[str]:
    """PRE-003: /run/reboot-required (with the packages that asked for it) and needrestart's kernel status.

    Takes the registered results of the stat, slurp and needrestart tasks; skipped or failed ones count
    as nothing found.
    """
    problems = []
    if _get(_get(reboot_flag, "stat", {}), "exists", False):
        try:
            text = base64.b64decode(_get(reboot_pkgs, "content", "") or "").decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            text = ""
        packages = ", ".join(dict.fromkeys(text.split()))
        problems.append("/run/reboot-required exists" + (f" (packages: {packages})" if packages else ""))
    found = _KSTA.findall(str(_get(needrestart, "stdout", "") or ""))
    kernel_status = found[0] if found else "0"
    if _int(kernel_status) in (2, 3):
        problems.append(f"needrestart reports a newer kernel than the running one (NEEDRESTART-KSTA: {kernel_status})")
    return problems


# --------------------------------------------------------------------------- PRE-005, PRE-006


def _version_text(value) -> str:
    """A discovered version as text: "" when it was not read (None, "", blanks, not a scalar)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return ""
    return str(value).strip()


def precheck_discovery(discovered, source="the discover entry point") -> dict:
    """PRE-005: the product's discover result as the precheck uses it.

    version and package_version become text ("" = not read: None and blanks too, so that no later
    comparison meets a version it cannot parse); problems becomes a list of strings, and gets one
    when the version is missing although the entry point reported nothing. source (the entry point,
    e.g. "pacs_server discover") is kept for the messages of PRE-006.
    """
    record = dict(discovered) if isinstance(discovered, dict) else {}
    problems = record.get("problems")
    if isinstance(problems, (list, tuple)):
        problems = [str(p) for p in problems if str(p).strip()]
    else:
        problems = [str(problems)] if problems not in (None, "") else []
    version = _version_text(record.get("version"))
    if not version and not problems:
        problems.append(
            f"{source} returned no version (got {record.get('version')!r}) and no problem saying why: "
            "check that it reads the running version"
        )
    record.update(
        version=version,
        package_version=_version_text(record.get("package_version")),
        problems=problems,
        source=source,
    )
    return record


HOST_CHECKS = ("PRE-001", "PRE-002", "PRE-003", "PRE-004")


def discovered_host_check(discovered, check_id, source="the discover entry point") -> dict:
    """One of PRE-001 to PRE-004 as a product's discover made it (precheck_host_checks: discover).

    A host that runs no Python modules (a Windows workstation) is read by its plug-in's own discover,
    whose result carries host_checks: {check id: {problems: [str], summary: str, disk: [...]}}. A check
    it did not make is a problem naming the entry point, never a pass."""
    if check_id not in HOST_CHECKS:
        raise AnsibleFilterError(f"discovered_host_check: {check_id!r} is not one of {', '.join(HOST_CHECKS)}")
    checks = discovered.get("host_checks") if isinstance(discovered, dict) else None
    check = checks.get(check_id) if isinstance(checks, dict) else None
    if not isinstance(check, dict):
        return {
            "problems": [
                f"{source} made no {check_id} (host_checks.{check_id} is missing from its result): the product's "
                "discover must read the host when precheck_host_checks is discover"
            ],
            "summary": "",
            "disk": [],
        }
    problems = check.get("problems")
    problems = [str(p) for p in problems if str(p).strip()] if isinstance(problems, (list, tuple)) else []
    disk = check.get("disk") if isinstance(check.get("disk"), list) else []
    return {"problems": problems, "summary": str(check.get("summary") or ""), "disk": disk}


def upgrade_needed(current, target, target_entry=None) -> bool:
    """False only when the current version is read, the target is catalogued and both are the same version.

    An unknown or unparsable current version counts as needing the upgrade: PRE-006 then says why it
    cannot go ahead (nothing here raises).
    """
    current, target = _version_text(current), _version_text(target)
    if not target_entry or not current or not target:
        return True
    try:
        return compare_debian(current, target) != 0
    except ValueError:
        return True


def target_problems(catalogue, product, current, target, allow_downgrade=False, discovered=None, host="the host"):
    """PRE-006: the catalogue allows current -> target; an unread current version is a finding, not an error.

    discovered: the result of precheck_discovery (what the discover step looked at and found).
    """
    current_text = _version_text(current)
    if current_text:
        error = upgrade_path_error(catalogue, product, current_text, target, allow_downgrade)
        return [error] if error else []
    # The product and the target are checked all the same: from current == target only their own errors remain.
    target_error = upgrade_path_error(catalogue, product, target, target)
    found = discovered if isinstance(discovered, dict) else {}
    package = _get(found, "package") or product
    source = _get(found, "source") or "the discover entry point"
    reported = [str(p) for p in _get(found, "problems") or [] if str(p).strip()]
    return ([target_error] if target_error else []) + [
        f"cannot check the upgrade path to {product} {target}: the installed version of {product} on {host} "
        f"could not be read (the version discovered is empty). {source} (PRE-005) looked at the running {product}'s "
        f"API and the installed package {package} and found: "
        + ("; ".join(reported) if reported else "no version and no problem")
        + f". Fix that first: check that package {package} is installed on {host} (dpkg -l {package}) and that "
        f"{product} runs and answers on its API (for the PACS: REST at endpoint_rest_url, with "
        "pacs_server_rest_user/pacs_server_rest_password), then run the precheck again"
    ]


def target_summary(current, target) -> str:
    """PRE-006's message when it passed: already at the target, an upgrade path or an allowed downgrade."""
    current, target = _version_text(current), _version_text(target)
    if not current:
        return f"the current version is unknown; target {target}"
    try:
        order = compare_debian(current, target)
    except ValueError:
        return f"{current} -> {target}"
    if order == 0:
        return f"already at {target}: nothing to upgrade"
    if order > 0:
        return f"{current} -> {target} is a catalogued downgrade, allowed by pacs_server_allow_downgrade"
    return f"{current} -> {target} is a catalogued upgrade path"


# --------------------------------------------------------------------------- PRE-004


def _normpath(path) -> str:
    text = str(path or "")
    if not text.startswith("/"):
        return ""
    return posixpath.normpath("/" + text.lstrip("/"))


def _mount_table(mounts) -> list[dict]:
    """The visible mounts: one per mount point, the last listed one (mounted over the others)."""
    if isinstance(mounts, dict):
        mounts = list(mounts.values())
    if not isinstance(mounts, list):
        return []
    table: dict[str, dict] = {}
    for mount in mounts:
        if not isinstance(mount, dict):
            continue  # setup reports "N/A" for a mount it could not read
        point = _normpath(mount.get("mount"))
        if point:
            table.pop(point, None)
            table[point] = mount
    return [dict(m, _point=p) for p, m in table.items()]


def _mount_of(path: str, table: list[dict]):
    """The mount holding path: the longest mount point that is path or a parent of it."""
    best = None
    for mount in table:
        point = mount["_point"]
        if (point == "/" or path == point or path.startswith(point + "/")) and (
            best is None or len(point) > len(best["_point"])
        ):
            best = mount
    return best


def disk_plan(mounts, needs, margin_pct=20, where="") -> list[dict]:
    """Group needs by filesystem and compare with the free space the mount facts report.

    mounts: ``ansible_facts.mounts``, or ``aggregate_mounts``/``mount_points`` of ansible.builtin.mount_facts
    (entries with mount, device, size_available in bytes). needs: list of {path, what, mb}. The mount of a
    path is the longest mount point that is the path or a parent of it (symbolic links are not followed).
    Mounts of the same block device (bind mounts, btrfs subvolumes) share their free space and are one
    filesystem; pseudo devices (overlay, tmpfs) are one filesystem per mount point.

    Returns one dict per filesystem, unknown free space and then the least headroom first: mount,
    mounts, device, what (list), needed_mb (margin included, rounded up), available_mb (None when the
    facts do not say), ok, message. where (e.g. "the controller"), when given, says whose mounts these
    are: each entry gets it as ``where`` and its message starts with "on <where>, ".
    """
    if not isinstance(needs, list) or not all(isinstance(n, dict) for n in needs):
        raise AnsibleFilterError("disk_plan: needs must be a list of {path, what, mb}")
    table = _mount_table(mounts)
    plan: dict[tuple, dict] = {}
    for need in needs:
        path = _normpath(need.get("path"))
        mount = _mount_of(path, table) if path else None
        if mount is None:
            entry = plan.setdefault(
                ("none", path),
                {"mount": None, "mounts": [], "device": None, "what": [], "raw_mb": 0.0, "available_mb": None,
                 "_unknown": f"no mount in the mount facts holds {need.get('path')}"},
            )
        else:
            device = mount.get("device")
            real_device = isinstance(device, str) and device.startswith("/")
            key = ("device", device) if real_device else ("mount", mount["_point"])
            size = mount.get("size_available")
            known = isinstance(size, (int, float)) and not isinstance(size, bool)
            entry = plan.setdefault(
                key,
                {"mount": mount.get("mount"), "mounts": [], "device": device, "what": [], "raw_mb": 0.0,
                 "available_mb": int(size) // 1048576 if known else None, "_unknown": None},
            )
            if not known:
                note = mount.get("note")
                entry["_unknown"] = (
                    f"{mount.get('mount')} ({device}): the mount facts have no size_available"
                    + (f" ({note})" if note else "")
                )
            elif entry["available_mb"] is not None:
                entry["available_mb"] = min(entry["available_mb"], int(size) // 1048576)
            if mount.get("mount") not in entry["mounts"]:
                entry["mounts"].append(mount.get("mount"))
        entry["what"].append(f"{need.get('what')} ({need.get('path')}: {need.get('mb')} MB)")
        entry["raw_mb"] += float(need.get("mb") or 0)
    out = []
    for entry in plan.values():
        needed = int(math.ceil(entry.pop("raw_mb") * (1 + float(margin_pct) / 100.0)))
        unknown = entry.pop("_unknown")
        entry["needed_mb"] = needed
        if unknown or entry["available_mb"] is None:
            entry["available_mb"] = None
            entry["ok"] = False
            entry["message"] = f"{unknown}; needed {needed} MB for {' + '.join(entry['what'])} + {margin_pct}% margin"
        else:
            entry["ok"] = entry["available_mb"] >= needed
            entry["message"] = (
                f"{', '.join(entry['mounts'])} ({entry['device']}): needed {needed} MB for {' + '.join(entry['what'])} "
                f"+ {margin_pct}% margin, available {entry['available_mb']} MB"
            )
        if where:
            entry["where"] = where
            entry["message"] = f"on {where}, {entry['message']}"
        out.append(entry)
    # Unknown free space first, then the tightest filesystem (least headroom).
    return _tightest_first(out)


def _tightest_first(plan: list[dict]) -> list[dict]:
    """Unknown free space first, then the least headroom."""
    return sorted(
        plan, key=lambda e: (e["available_mb"] is not None, (e["available_mb"] or 0) - e["needed_mb"])
    )


def disk_plan_merge(plan, other) -> list[dict]:
    """Two disk plans (e.g. the host's and the controller's) as one, unknown free space and then the tightest first."""
    return _tightest_first([e for e in (plan or []) + (other or []) if isinstance(e, dict)])


def disk_problems(plan, host, product, target_version, target_entry, du=None, snapshot=None) -> list[str]:
    """PRE-004: du failed, snapshot not sized, free space unknown, packages not catalogued, not enough free disk.

    snapshot: podman_snapshot_estimate's result for provider podman (its problems are the sizing ones);
    plan entries with a ``where`` (the controller's) are reported as such.
    """
    problems = []
    if isinstance(du, dict) and not du.get("skipped") and _int(du.get("rc", 0)) != 0:
        problems.append(
            f"cannot measure the snapshot data: du failed: {str(du.get('stderr') or '').strip()} "
            "(check precheck_snapshot_paths)"
        )
    problems.extend(str(p) for p in _get(snapshot, "problems", []) or [])
    plan = plan if isinstance(plan, list) else []
    for entry in plan:
        if entry.get("available_mb") is None:
            hint = (
                "check precheck_snapshot_podman_export_dir and podman's graph root"
                if entry.get("where")
                else "check precheck_snapshot_dest and precheck_package_cache_path"
            )
            problems.append(f"cannot read the free space: {entry.get('message')} ({hint})")
    if not target_entry:
        problems.append(
            f"cannot size the packages: target {target_version} is not in release_catalogue.{product} (see PRE-006)"
        )
    for entry in plan:
        if entry.get("available_mb") is not None and not entry.get("ok"):
            on_host = "" if entry.get("where") else f"on {host} "
            problems.append(f"not enough free disk {on_host}{entry.get('message')}")
    return problems


# --------------------------------------------------------------------------- PRE-004, provider podman


def _json(value):
    """A parsed JSON value: value itself unless it is a string (then parsed; None when it is not JSON)."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return None


def _podman_container(inspect) -> dict:
    """The container's inspect data from the registered ``podman container inspect --size`` (or its JSON)."""
    data = _json(inspect.get("stdout") if isinstance(inspect, dict) and "stdout" in inspect else inspect)
    if isinstance(data, list):
        data = data[0] if data else None
    return data if isinstance(data, dict) else {}


def podman_volume_paths(inspect) -> list[str]:
    """Where the container's named volumes live on the controller (their Source), to measure with ``du -sk``."""
    mounts = _podman_container(inspect).get("Mounts") or []
    return [
        str(m["Source"]) for m in mounts if isinstance(m, dict) and m.get("Type") == "volume" and m.get("Source")
    ]


def du_sizes_kb(stdout) -> dict:
    """{path: KB} from the output of ``du -sk PATH...`` (one line per path)."""
    sizes = {}
    for line in str(stdout or "").splitlines():
        kb, _, path = line.partition("\t")
        if kb.strip().isdigit() and path:
            sizes[path] = int(kb)
    return sizes


def _last_podman_record(records) -> dict:
    """The newest podman snapshot record (by created) of a list of records (dicts or JSON text)."""
    podman = [r for r in (_json(r) for r in records or []) if isinstance(r, dict) and isinstance(r.get("podman"), dict)]
    podman = [r for r in podman if r.get("provider", "podman") == "podman" and not r.get("check_mode")]
    return max(podman, key=lambda r: (str(r.get("created") or ""), str(r.get("id") or ""))) if podman else {}


def _mb(size_bytes) -> float:
    return round(_int(size_bytes) / 1048576.0, 1)


def _volume_is_linked(volume: dict, linked) -> bool:
    """True when the snapshot protects this named volume with hard links instead of exporting it.

    Such a volume keeps ~0 bytes on the controller and counts 0 MB. The mark is the volume's name in
    ``linked`` (the role passes none today) or ``linked: true`` on the volume (as the snapshot record may
    say once the podman provider links volumes); everything else is exported as a tar and counted.
    """
    return bool(volume.get("linked")) or volume.get("name") in (linked or [])


def podman_snapshot_estimate(inspect, du=None, records=None, graph_root="", export_dir="", linked=None) -> dict:
    """PRE-004 for snapshot provider podman: what one more snapshot keeps on the controller.

    A podman snapshot commits the container: the committed image's own layer is a copy of the container's
    writable layer, written to podman's graph root (the layers below it are the container's image, already
    there). Each named volume is exported as a tar to the export directory. So the estimate is:

    - image layer: the container's writable layer now (``SizeRw`` of ``podman container inspect --size``);
      when podman does not say, the ``layer_bytes`` of the host's last podman snapshot record. (Not the
      image's ``image_bytes``: that counts the shared base layers too.)
    - each named volume: ``du -sk`` of its directory now, else the ``bytes`` of its export in the last
      record; 0 when it is linked (see _volume_is_linked).

    inspect: registered ``podman container inspect --size <container>``; du: registered ``du -sk -- <volume
    sources>`` (or skipped); records: the host's snapshot records (dicts or JSON text); graph_root: podman's
    store.graphRoot; export_dir: snapshot_podman_export_dir. Returns {needs (for disk_plan), layer_mb,
    layer_basis, volumes [{name, source, mb, basis, linked}], problems}.
    """
    container = _podman_container(inspect)
    last = _last_podman_record(records)
    last_podman = last.get("podman") or {}
    last_name = f"snapshot {last.get('id')} of {last.get('created')}"
    problems = []

    size_rw = container.get("SizeRw")
    if isinstance(size_rw, int) and not isinstance(size_rw, bool) and size_rw >= 0:
        layer_mb, layer_basis = _mb(size_rw), "the container's writable layer now"
    elif "layer_bytes" in last_podman:
        layer_mb, layer_basis = _mb(last_podman["layer_bytes"]), f"the layer of the last {last_name}"
    else:
        layer_mb, layer_basis = None, ""
        if not container:
            why = str(_get(inspect, "stderr", "") or _get(inspect, "msg", "") or "no output").strip()
        else:
            why = "no SizeRw in its output" if size_rw is None else f"SizeRw {size_rw!r}"
        problems.append(
            f"cannot size the podman snapshot's image layer: podman container inspect --size gave nothing usable "
            f"({why}) and the snapshot registry has no earlier podman snapshot of this host "
            "(check precheck_snapshot_podman_container and precheck_snapshot_podman_containers_conf)"
        )

    du_kb = du_sizes_kb(_get(du, "stdout", "")) if isinstance(du, dict) and not du.get("skipped") else {}
    recorded = {v.get("name"): v for v in last_podman.get("volumes") or [] if isinstance(v, dict)}
    volumes = []
    for mount in container.get("Mounts") or []:
        if not isinstance(mount, dict) or mount.get("Type") != "volume":
            continue
        volume = {"name": mount.get("Name"), "source": mount.get("Source"), "linked": False}
        if _volume_is_linked(dict(mount, name=mount.get("Name")), linked):
            volume.update(linked=True, mb=0.0, basis="linked, not exported")
        elif volume["source"] in du_kb:
            volume.update(mb=round(du_kb[volume["source"]] / 1024.0, 1), basis="du of the volume now")
        elif "bytes" in recorded.get(volume["name"], {}):
            volume.update(mb=_mb(recorded[volume["name"]]["bytes"]), basis=f"its export in the last {last_name}")
        else:
            volume.update(mb=None, basis="unknown")
            problems.append(
                f"cannot size the export of podman volume {volume['name']} ({volume['source']}): du failed "
                f"({str(_get(du, 'stderr', '') or 'no output').strip()}) and no earlier snapshot exported it"
            )
        volumes.append(volume)

    needs = []
    if not graph_root:
        problems.append(
            "cannot tell where podman keeps its images (podman system info gave no store.graphRoot): "
            "check precheck_snapshot_podman_containers_conf"
        )
    elif layer_mb is not None:
        needs.append({"path": graph_root, "what": f"snapshot image layer ({layer_basis})", "mb": layer_mb})
    exported = [v for v in volumes if not v["linked"]]
    if exported:
        names = ", ".join(str(v["name"]) for v in exported)
        needs.append(
            {
                "path": export_dir,
                "what": f"snapshot volume exports ({names})",
                "mb": round(sum(v["mb"] or 0 for v in exported), 1),
            }
        )
    return {"needs": needs, "layer_mb": layer_mb, "layer_basis": layer_basis, "volumes": volumes, "problems": problems}


def precheck_record(result, check_id: str, title: str) -> dict:
    """{id, title, status, message} from a registered assert (ignore_errors: true) or a skipped task."""
    if not isinstance(result, dict):
        return {"id": check_id, "title": title, "status": "failed", "message": "the check did not run"}
    if result.get("skipped"):
        return {
            "id": check_id,
            "title": title,
            "status": "skipped",
            "message": "not run: " + str(result.get("false_condition", "condition false")),
        }
    status = "failed" if result.get("failed") else "passed"
    return {"id": check_id, "title": title, "status": status, "message": str(result.get("msg", ""))}


class FilterModule:
    def filters(self):
        return {
            "du_total_mb": du_total_mb,
            "apt_download_mb": apt_download_mb,
            "disk_plan": disk_plan,
            "disk_problems": disk_problems,
            "disk_plan_merge": disk_plan_merge,
            "os_support_problems": os_support_problems,
            "memory_problems": memory_problems,
            "reboot_problems": reboot_problems,
            "precheck_record": precheck_record,
            "precheck_discovery": precheck_discovery,
            "discovered_host_check": discovered_host_check,
            "upgrade_needed": upgrade_needed,
            "target_problems": target_problems,
            "target_summary": target_summary,
            "podman_volume_paths": podman_volume_paths,
            "podman_snapshot_estimate": podman_snapshot_estimate,
        }
