# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""Filters of the snapshot role: the logic its tasks used to spell in long Jinja loops.

Pure functions of what the probes returned; tests in tests/unit/test_snapshot_filters.py.

- snapshot_lvm_size_bytes(size, origin_bytes): bytes one LVM snapshot of ``size`` (``N%ORIGIN``,
  ``512m``, ``4g``, ``1.5g``, a bare number = MiB as lvcreate reads it) takes for an origin LV.
- snapshot_lvm_plan(lvs_results, size, name, boot_sources): one entry per origin LV (from the
  registered ``lvs`` loop: origin, snapshot name, size, bytes, paths, whether it holds / or /boot).
- snapshot_lvol_calls(volumes, vg, **args): the ``community.general.lvol`` calls for each volume.
- snapshot_lvm_merge_plan(lvs_results): per recorded snapshot, whether it exists, is invalid, and
  whether its origin is open (the merge then needs a reboot).
- snapshot_lvm_merge_commands(merge, vg): the revert's commands, with ``reboot`` when one is needed.
- snapshot_paths_overlap(paths, directory): the paths that contain or lie inside ``directory``.
- snapshot_podman_settings(inspect): from one ``podman container inspect`` entry (as
  containers.podman.podman_container_info returns it), what recreating the container takes: settings
  named as containers.podman.podman_container's options, named volumes, running, image id.
- snapshot_podman_link_plan / snapshot_podman_export_plan: where the freeze step puts each volume's
  tree of links or export; snapshot_podman_volumes(volumes, frozen): the recorded volumes, exported
  (with their checksums) or protected by hard links (with their link trees and manifests).
- snapshot_podman_bad_exports(stat_results): exports that are missing or changed since the record.
- snapshot_records(controller, host, hostname, now): one list of a host's records, the controller's
  copy first where both exist, each with ``age_s``, ``size_bytes`` and ``stored`` (where it was
  found), newest first.
"""

from __future__ import annotations

import datetime as _dt
import math
import re

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # pragma: no cover
    AnsibleFilterError = ValueError

# lvcreate's size units (binary, as lvcreate reads them); a bare number is MiB.
LVM_UNITS = {"b": 1, "s": 512, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5, "e": 1024**6}
_ORIGIN_RE = re.compile(r"^([0-9]{1,3})%ORIGIN$")
_ABSOLUTE_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([bBsSkKmMgGtTpPeE]?)$")
RECORD_TIME = "%Y-%m-%dT%H:%M:%SZ"


def snapshot_lvm_size_bytes(size, origin_bytes=0) -> int:
    """Bytes an LVM snapshot of ``size`` needs: N%ORIGIN rounds up, absolute sizes round down."""
    text = str(size).strip()
    match = _ORIGIN_RE.match(text)
    if match:
        return math.ceil(int(origin_bytes) * int(match.group(1)) / 100)
    match = _ABSOLUTE_RE.match(text)
    if not match:
        raise AnsibleFilterError(
            f'snapshot_lvm_size "{size}" is not understood: use N%ORIGIN (for example 20%ORIGIN) or an absolute '
            "lvcreate size such as 512m or 4g."
        )
    number, unit = match.groups()
    return int(float(number) * LVM_UNITS[(unit or "m").lower()])


def _fields(line: str) -> list[str]:
    return [field.strip() for field in str(line).strip().split("|")]


def snapshot_lvm_plan(lvs_results, size, name, boot_sources=()) -> list[dict]:
    """One entry per registered ``lvs -o lv_size,lv_path,lv_dm_path,lv_attr`` result (item = origin LV)."""
    boot = {str(source).strip() for source in boot_sources or () if str(source).strip()}
    plan = []
    for result in lvs_results or []:
        fields = _fields(result.get("stdout", "")) + ["", "", "", ""]
        origin_bytes = int(fields[0] or 0)
        path, dm_path = fields[1], fields[2]
        plan.append({
            "origin": result["item"],
            "snapshot": f"{name}.{result['item']}",
            "size": size,
            "origin_bytes": origin_bytes,
            "bytes": snapshot_lvm_size_bytes(size, origin_bytes),
            "path": path,
            "dm_path": dm_path,
            "boot": bool(path and path in boot) or bool(dm_path and dm_path in boot),
        })
    return plan


def snapshot_lvol_calls(volumes, vg, **args) -> list[dict]:
    """``community.general.lvol`` calls, one per volume, with ``args`` added to each.

    ``create=True`` builds the create calls (lv = origin, snapshot, size); otherwise lv = the snapshot.
    """
    create = args.pop("create", False)
    calls = []
    for volume in volumes or []:
        if create:
            call_args = {"vg": vg, "lv": volume["origin"], "snapshot": volume["snapshot"], "size": volume["size"]}
        else:
            call_args = {"vg": vg, "lv": volume["snapshot"]}
        call_args.update(args)
        calls.append({"module": "community.general.lvol", "args": call_args})
    return calls


def snapshot_lvm_merge_plan(lvs_results) -> list[dict]:
    """Per registered ``lvs -o lv_name,lv_attr,origin,data_percent SNAP ORIGIN`` result (item = volume)."""
    merge = []
    for result in lvs_results or []:
        rows = {}
        for line in result.get("stdout_lines") or str(result.get("stdout", "")).splitlines():
            fields = _fields(line)
            if fields and fields[0]:
                fields += [""] * (4 - len(fields))
                rows[fields[0]] = {"attr": fields[1], "origin": fields[2], "data_percent": fields[3]}
        item = result["item"]
        snap = rows.get(item["snapshot"], {})
        orig = rows.get(item["origin"], {})
        snap_attr, orig_attr = snap.get("attr", ""), orig.get("attr", "")
        merge.append({
            "snapshot": item["snapshot"],
            "origin": item["origin"],
            "exists": bool(snap),
            # lv_attr: 5th character "I" = invalid (overflowed) snapshot; 6th "o" = open (in use)
            "invalid": len(snap_attr) > 4 and snap_attr[4] == "I",
            "data_percent": snap.get("data_percent", ""),
            "origin_open": len(orig_attr) > 5 and orig_attr[5] == "o",
        })
    return merge


def snapshot_lvm_merge_commands(merge, vg) -> list[str]:
    commands = [f"lvconvert --merge --yes {vg}/{m['snapshot']}" for m in merge or []]
    if any(m.get("origin_open") for m in merge or []):
        commands.append("reboot")
    return commands


def _norm(path) -> str:
    text = str(path)
    stripped = text.rstrip("/")
    return stripped if stripped or not text else "/"


def snapshot_paths_overlap(paths, directory) -> list:
    """The ``paths`` equal to ``directory``, above it or inside it (trailing slashes ignored)."""
    d = _norm(directory)
    out = []
    for path in paths or []:
        p = _norm(path)
        if d == p or d.startswith(p.rstrip("/") + "/") or p.startswith(d.rstrip("/") + "/"):
            out.append(path)
    return out


def snapshot_files_link_plan(link_paths, copy_paths, link_dir, name) -> list[dict]:
    """Where the files provider keeps the hard links of each write-once directory of ``link_paths``.

    Each becomes ``{path, links, manifest, exclude}``: the tree of links at
    ``<link_dir>/<name>/<path with / as _>`` (``link_dir`` empty: ``<parent of path>/.clinical-upgrade-snapshots``,
    on the path's own file system as a rule), its manifest beside it, and the ``copy_paths`` inside the
    path (a database index kept among the stored files), which are copied, never linked.
    A copy path equal to or above a link path is refused: its copy would hold the stored files again.
    """
    plan = []
    for path in link_paths or []:
        p = _norm(path)
        above = [c for c in copy_paths or [] if p == _norm(c) or p.startswith(_norm(c).rstrip("/") + "/")]
        if above:
            raise AnsibleFilterError(
                f"snapshot_files_paths {above} hold the write-once directory {path} of snapshot_files_link_paths: "
                "list the copied paths beside or inside it (for Orthanc /etc/orthanc and "
                "/var/lib/orthanc/db-v6/index), not above it, or its files would be copied too"
            )
        base = _norm(link_dir) if link_dir else p.rsplit("/", 1)[0] + "/.clinical-upgrade-snapshots"
        leaf = p.strip("/").replace("/", "_")
        plan.append({
            "path": p,
            "links": f"{base}/{name}/{leaf}",
            "manifest": f"{base}/{name}/{leaf}.links.json",
            "exclude": [_norm(c) for c in copy_paths or [] if _norm(c).startswith(p.rstrip("/") + "/")],
        })
    return plan


def snapshot_link_records(results) -> list[dict]:
    """The files provider's record of its link trees, from the registered ``snapshot_links`` loop."""
    return [
        {
            **r["item"],
            "files": r.get("files", 0),
            "linked_bytes": r.get("bytes", 0),
            "bytes": r.get("manifest_bytes", 0),
        }
        for r in results or []
        if not r.get("skipped")
    ]


# Environment entries podman sets itself on every start; carrying them over would pin stale values.
PODMAN_RUNTIME_ENV = ("HOSTNAME", "container", "container_uuid", "HOME", "TERM")


def snapshot_podman_settings(inspect) -> dict:
    """Recreate settings of a container from its inspect data: {settings, volumes, running, image_id}."""
    if not isinstance(inspect, dict) or not inspect:
        raise AnsibleFilterError("snapshot_podman_settings needs one container's podman inspect data")
    config = inspect.get("Config") or {}
    host = inspect.get("HostConfig") or {}
    publish = []
    for container_port, bindings in sorted((host.get("PortBindings") or {}).items()):
        for binding in bindings or []:
            prefix = f"{binding['HostIp']}:" if binding.get("HostIp") else ""
            publish.append(f"{prefix}{binding.get('HostPort', '')}:{container_port}")
    volume, volumes = [], []
    for mount in inspect.get("Mounts") or []:
        mode = "rw" if mount.get("RW", True) else "ro"
        if mount.get("Type") == "volume":
            volume.append(f"{mount['Name']}:{mount['Destination']}:{mode}")
            volumes.append({"name": mount["Name"], "destination": mount["Destination"]})
        elif mount.get("Type") == "bind":
            volume.append(f"{mount['Source']}:{mount['Destination']}:{mode}")
    env = {}
    for item in config.get("Env") or []:
        key, _, value = item.partition("=")
        if key not in PODMAN_RUNTIME_ENV:
            env[key] = value
    networks = sorted((inspect.get("NetworkSettings") or {}).get("Networks") or {})
    entrypoint = config.get("Entrypoint")
    if not isinstance(entrypoint, list):
        entrypoint = [entrypoint] if entrypoint else []
    settings = {
        "name": inspect.get("Name"),
        "image": inspect.get("ImageName") or config.get("Image"),
        "command": list(config.get("Cmd") or []),
        "entrypoint": list(entrypoint),
        "hostname": config.get("Hostname"),
        "publish": publish,
        "volume": sorted(volume),  # podman lists the mounts in no fixed order
        "label": dict(config.get("Labels") or {}),
        "env": env,
        "systemd": "always" if config.get("SystemdMode") else "false",
        "privileged": bool(host.get("Privileged")),
        "cap_add": list(host.get("CapAdd") or []),
        "network": networks if networks and networks != ["podman"] else [],
        "user": config.get("User") or "",
        "workdir": config.get("WorkingDir") or "/",
    }
    return {
        "settings": settings,
        "volumes": sorted(volumes, key=lambda v: v["name"]),
        "running": bool((inspect.get("State") or {}).get("Running")),
        "image_id": inspect.get("Image"),
    }


def snapshot_podman_link_plan(volume_info_results, link_dir, host, name) -> list[dict]:
    """Where each write-once volume's tree of links goes, from a registered ``podman_volume_info`` loop.

    ``<link_dir>/<host>/<name>/<volume>`` (and its ``.links.json`` manifest); ``link_dir`` empty: the
    directory ``clinical-upgrade-links`` beside podman's graph root, found from the volume's mount point
    ``<graphroot>/volumes/<volume>/_data``, so on the file system of the volumes as a rule.
    """
    plan = []
    for result in volume_info_results or []:
        volume = result["item"]["name"]
        mountpoint = _norm(((result.get("volumes") or [{}])[0]).get("Mountpoint", ""))
        if not mountpoint.startswith("/"):
            raise AnsibleFilterError(f"podman gave no mount point for volume {volume}: {result.get('msg', '')}")
        base = _norm(link_dir) if link_dir else mountpoint.rsplit("/", 4)[0] + "/clinical-upgrade-links"
        dest = f"{base}/{host}/{name}/{volume}"
        plan.append({"src": mountpoint, "dest": dest, "manifest": f"{dest}.links.json"})
    return plan


def snapshot_podman_export_plan(volumes, export_dir) -> list[dict]:
    """The tar file of each exported volume: ``<export_dir>/<volume>.tar``."""
    return [{"volume": v, "dest": f"{str(export_dir).rstrip('/')}/{v}.tar"} for v in volumes or []]


def snapshot_podman_volumes(volumes, frozen) -> list[dict]:
    """The recorded volumes: the container's named volumes with how each was kept, from the result of
    ``snapshot_podman_freeze`` (exports with their size and sha256; links with their tree and manifest)."""
    frozen = frozen or {}
    exports = {e["volume"]: e for e in frozen.get("exports") or []}
    links = {e["dest"].rsplit("/", 1)[-1]: e for e in frozen.get("links") or []}
    out = []
    for volume in volumes or []:
        name = volume["name"]
        if name in links:
            e = links[name]
            out.append({
                **volume,
                "method": "link",
                "links": e["dest"],
                "manifest": e["manifest"],
                "files": e.get("files", 0),
                "linked_bytes": e.get("bytes", 0),
                "bytes": e.get("manifest_bytes", 0),
            })
        elif name in exports:
            e = exports[name]
            out.append({**volume, "method": "export", "export": e["dest"], "sha256": e.get("sha256", ""),
                        "bytes": e.get("bytes", 0), "root": e.get("root")})
    return out


def snapshot_podman_bad_exports(stat_results) -> list[str]:
    return [
        r["item"]["export"]
        for r in stat_results or []
        if r["item"].get("method", "export") == "export"
        and (r.get("stat") or {}).get("checksum", "") != r["item"].get("sha256")
    ]


def _as_datetime(value) -> _dt.datetime:
    if isinstance(value, _dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=_dt.UTC)
    return _dt.datetime.strptime(str(value), RECORD_TIME).replace(tzinfo=_dt.UTC)


def snapshot_records(controller, host=(), hostname=None, now=None) -> list[dict]:
    """One list of a host's snapshot records from the controller's registry and the host's copies.

    A record found in both places is the controller's, with ``stored: [controller, host]``. Host copies
    of another host's records (``hostname`` given; hosts may share a directory) are left out; the
    controller's registry is per host already. Each gets ``age_s`` (from ``now``, default the current
    UTC time) and an integer ``size_bytes``; newest first.
    """
    now_dt = _as_datetime(now) if now is not None else _dt.datetime.now(_dt.UTC)
    merged: dict[str, dict] = {}
    for source, records in (("controller", controller or []), ("host", host or [])):
        for record in records:
            if not isinstance(record, dict) or "id" not in record:
                continue
            if source == "host" and hostname is not None and record.get("host", hostname) != hostname:
                continue
            if record["id"] in merged:
                merged[record["id"]]["stored"].append(source)
                continue
            merged[record["id"]] = {**record, "stored": [source]}
    out = []
    for record in merged.values():
        created = record.get("created")
        age = int((now_dt - _as_datetime(created)).total_seconds()) if created else 0
        out.append({**record, "age_s": age, "size_bytes": int(record.get("size_bytes") or 0)})
    return sorted(out, key=lambda r: (r.get("created") or "", r["id"]), reverse=True)


class FilterModule:
    def filters(self):
        return {
            "snapshot_lvm_size_bytes": snapshot_lvm_size_bytes,
            "snapshot_lvm_plan": snapshot_lvm_plan,
            "snapshot_lvol_calls": snapshot_lvol_calls,
            "snapshot_lvm_merge_plan": snapshot_lvm_merge_plan,
            "snapshot_lvm_merge_commands": snapshot_lvm_merge_commands,
            "snapshot_paths_overlap": snapshot_paths_overlap,
            "snapshot_podman_settings": snapshot_podman_settings,
            "snapshot_podman_volumes": snapshot_podman_volumes,
            "snapshot_podman_link_plan": snapshot_podman_link_plan,
            "snapshot_podman_export_plan": snapshot_podman_export_plan,
            "snapshot_files_link_plan": snapshot_files_link_plan,
            "snapshot_link_records": snapshot_link_records,
            "snapshot_podman_bad_exports": snapshot_podman_bad_exports,
            "snapshot_records": snapshot_records,
        }
