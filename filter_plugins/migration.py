# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""Filters of the PACS migration (roles/pacs_migration).

* ``migration_cutover``: what the site must repoint from the old PACS to the new one: the modalities
  the old PACS knows (they send to it or query it), the inventory's workstations whose viewer reads from
  it, and the RIS servers; each with where it points now and where it must point.
* ``migration_summary``: the migration's report (one dict) from the results of its steps.
* ``migration_text``: that report as the lines a person reads.
"""

from __future__ import annotations


def _endpoint_text(endpoint) -> str:
    pacs = endpoint.get("pacs", {})
    return f"{pacs.get('aet', '')}@{endpoint.get('host', '')}:{pacs.get('dicom_port', '')}"


def migration_cutover(modalities, source, target, workstations=None, ris=None) -> list:
    """One entry per thing to repoint: {kind, name, now, then, how}.

    ``modalities``: the old PACS's ``/modalities?expand`` (name -> {AET, Host, Port}); ``source`` and
    ``target``: the two clinical_endpoint dicts; ``workstations``: [{name, pacs_aet, pacs_host, product}]
    of the inventory; ``ris``: the RIS host names."""
    now, then = _endpoint_text(source), _endpoint_text(target)
    source_aet = source.get("pacs", {}).get("aet", "")
    out = []
    for name, entry in sorted((modalities or {}).items()):
        entry = entry if isinstance(entry, dict) else {}
        if str(entry.get("AET", "")).upper() == str(source.get("calling_aet", "")).upper():
            continue  # the controller's own verification AE, not a clinical device
        out.append({
            "kind": "modality",
            "name": name,
            "device": f"{entry.get('AET', '')}@{entry.get('Host', '')}:{entry.get('Port', '')}",
            "now": now,
            "then": then,
            "how": (f"on the device, set its storage and query destination to {then}; on {target.get('name')}, "
                    f"add it to pacs_server_modalities (name {name}, aet {entry.get('AET', '')}, "
                    f"host {entry.get('Host', '')}, port {entry.get('Port', '')})"),
        })  # fmt: skip
    for ws in workstations or []:
        if str(ws.get("pacs_aet", "")).upper() != source_aet.upper() and ws.get("pacs_host") != source.get("name"):
            continue
        prefix = "workstation_windows" if ws.get("product") == "windows" else "workstation_linux"
        out.append({
            "kind": "workstation",
            "name": ws.get("name"),
            "now": now,
            "then": then,
            "how": (f"in the inventory set {prefix}_pacs_host, {prefix}_pacs_aet and {prefix}_pacs_port of "
                    f"{ws.get('name')} to the new PACS, configure the viewer likewise, then run "
                    "playbooks/patch_workstations.yml --tags verify"),
        })  # fmt: skip
    for name in ris or []:
        out.append({
            "kind": "ris",
            "name": name,
            "now": now,
            "then": then,
            "how": "point the RIS's PACS interfaces (study status, links to images, reports) at the new PACS",
        })
    return out


def migration_workstations(hosts, hostvars, product) -> list:
    """[{name, pacs_aet, pacs_host, product}] of these workstations, from their inventory variables
    (workstation_linux_pacs_aet and _pacs_host, or workstation_windows_pacs_host)."""
    prefix = f"workstation_{product}"
    out = []
    for name in hosts or []:
        variables = hostvars.get(name, {})
        out.append({
            "name": name,
            "pacs_aet": str(variables.get(f"{prefix}_pacs_aet", "") or ""),
            "pacs_host": str(variables.get(f"{prefix}_pacs_host", "") or ""),
            "product": product,
        })  # fmt: skip
    return out


def migration_summary(parts) -> dict:
    """The migration report from its steps' results (``parts`` is a dict of them, see report.yml)."""
    parts = parts if isinstance(parts, dict) else {}
    gate = parts.get("gate") or {}

    def copy_step(result):
        result = result if isinstance(result, dict) else {}
        if result.get("skipped"):
            return None
        keys = ("to_copy", "copied", "already_stored", "bytes", "retries", "elapsed_s", "instances_per_second",
                "failures", "replaced")
        out = {k: result.get(k) for k in keys if k in result}
        if result.get("failed") and "to_copy" not in result:
            out["error"] = result.get("msg", "")
        return out

    bulk, delta = copy_step(parts.get("bulk")), copy_step(parts.get("delta"))
    copied = sum((s or {}).get("copied") or 0 for s in (bulk, delta))
    total_bytes = sum((s or {}).get("bytes") or 0 for s in (bulk, delta))
    seconds = sum((s or {}).get("elapsed_s") or 0 for s in (bulk, delta))
    failures = parts.get("failures") or []
    listed = ("missing", "extra", "misfiled", "differing", "unreadable", "series_counts")
    reconcile = {k: gate.get(k) for k in ("method", "source", "target", "discrepancies", "discrepancy_percent",
                                          "discrepancy_rate", "max_discrepancy_percent", "passed", "deep_check",
                                          "timings_s", *listed, "report") if k in gate}  # fmt: skip
    if gate.get("skipped"):
        reconcile = {"skipped": True}
    elif "passed" not in gate:
        reconcile["error"] = gate.get("msg", "the reconciliation gave no result")
    passed = not failures and (bool(gate.get("passed")) or bool(gate.get("skipped")))
    return {
        "run": parts.get("run"),
        "stage": parts.get("stage", "full"),
        "started": parts.get("started"),
        "finished": parts.get("finished"),
        "source": parts.get("source"),
        "target": parts.get("target"),
        "change_log_at_start": parts.get("mark"),
        "rate_limit_bytes_per_second": parts.get("rate"),
        "copy": {"bulk": bulk, "delta": delta, "heal": copy_step(parts.get("heal")),
                 "instances": copied, "bytes": total_bytes, "seconds": round(seconds, 2),
                 "instances_per_second": round(copied / seconds, 1) if seconds else 0.0},  # fmt: skip
        "failures": failures,
        "reconciliation": reconcile,
        "passed": passed,
        "cutover": parts.get("cutover") or [],
    }


def migration_text(report) -> str:
    """The report as lines for people: the outcome, the counts, every failure, the cutover list."""
    r = report if isinstance(report, dict) else {}
    src, tgt = r.get("source") or {}, r.get("target") or {}
    rec = r.get("reconciliation") or {}
    copy = r.get("copy") or {}
    lines = [
        f"Migration {src.get('name')} -> {tgt.get('name')} ({r.get('stage', 'full')}): "
        f"{'PASSED' if r.get('passed') else 'FAILED'}",
        f"  run {r.get('run')}, {r.get('started')} to {r.get('finished')}",
        f"  source: Orthanc {src.get('version')}, {src.get('instances')} instances in {src.get('studies')} studies",
        f"  target: Orthanc {tgt.get('version')}",
        f"  copied: {copy.get('instances')} instances, {copy.get('bytes')} bytes in {copy.get('seconds')} s "
        f"({copy.get('instances_per_second')} instances/s); "
        f"rate limit {r.get('rate_limit_bytes_per_second') or 'none'} bytes/s",
    ]
    for step in ("bulk", "delta", "heal"):
        s = copy.get(step)
        if s:
            lines.append(f"    {step}: {s.get('copied', 0)} of {s.get('to_copy', 0)} copied"
                         + (f", {len(s.get('replaced') or [])} replaced" if s.get("replaced") else "")
                         + (f", error: {s['error']}" if s.get("error") else ""))  # fmt: skip
    if "passed" in rec:
        d = rec.get("discrepancies") or {}
        lines.append(
            f"  reconciliation ({rec.get('method')}): rate {rec.get('discrepancy_rate')} % (gate "
            f"{rec.get('max_discrepancy_percent')} %): {d.get('missing_instances')} missing, "
            f"{d.get('extra_instances')} extra, {d.get('differing_instances')} differing, "
            f"{d.get('misfiled_instances')} misfiled; {rec.get('deep_check', {}).get('instances_compared')} "
            f"instances compared file by file in {rec.get('deep_check', {}).get('studies_sampled')} studies"
        )
        for kind in ("missing", "extra", "misfiled", "differing", "unreadable"):
            for e in rec.get(kind) or []:
                lines.append(f"    {kind}: {e.get('sop_instance_uid')} (study {e.get('study_instance_uid')})")
    elif rec.get("skipped"):
        lines.append("  reconciliation: not yet (the copy stage); the cutover stage runs the gate")
    else:
        lines.append(f"  reconciliation: {rec.get('error')}")
    for f in r.get("failures") or []:
        lines.append(f"  not copied: {f.get('sop_instance_uid') or f.get('orthanc_id')}: {f.get('reason')}")
    lines.append("Cutover: repoint these from the old PACS to the new one")
    for c in r.get("cutover") or []:
        lines.append(f"  - {c['kind']} {c['name']}{(' (' + c['device'] + ')') if c.get('device') else ''}: "
                     f"{c['now']} -> {c['then']}; {c['how']}")  # fmt: skip
    if not r.get("cutover"):
        lines.append("  (nothing found in the old PACS's modalities or the inventory)")
    return "\n".join(lines) + "\n"


class FilterModule:
    def filters(self):
        return {
            "migration_cutover": migration_cutover,
            "migration_workstations": migration_workstations,
            "migration_summary": migration_summary,
            "migration_text": migration_text,
        }
