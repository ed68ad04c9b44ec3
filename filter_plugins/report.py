# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""The evidence people read: one view of a run for the HTML report and the JUnit XML file.

- ``hostvars | report_evidences(hosts, run)``: each host's evidence of this run, by host name.
- ``evidences | upgrade_report_view(hosts, run, sla, in_service_hours)``: from the hosts' evidence
  (the upgrade_report role's ``upgrade_report_evidence``, by host name; a host without one was never
  attempted): per host its outcome, versions, snapshot, downtime, the timeline of its steps grouped
  in phases (precheck, snapshot, stage, switch, verify, rollback) with their offsets from the run's
  start, every check (precheck, verification, verification after a rollback) with status and timing,
  and the findings with their SLA severity (filter_plugins/sla.py); and the run's totals.
- ``hostvars | monitor_view(hosts, run, sla, in_service_hours)``: the same view of a monitoring run
  (playbooks/monitor.yml): each host's health checks and their findings, no timeline.
- ``view | report_metrics(epoch)``: Prometheus text format for node_exporter's textfile collector.
- ``results | report_digests``: the sha256 line of each evidence file a looped copy wrote.
- ``view | report_junit``: JUnit XML, one test suite per host and one test case per check (and one
  for the host's outcome), for CI and AWX.

Pure functions on the evidence; nothing is read from a host.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import sys
from collections.abc import Mapping
from xml.sax.saxutils import escape, quoteattr

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sla import sla_findings, sla_table, sla_worst, upgrade_findings  # noqa: E402

# Which phase of the timeline each step of roles/upgrade belongs to.
PHASES = {
    "precheck": "precheck", "lock": "snapshot", "mark": "snapshot", "snapshot": "snapshot",
    "stage": "stage", "switch": "switch", "verify": "verify", "remove_snapshot": "verify",
    "preserve": "rollback", "revert": "rollback", "redeliver": "rollback",
    "verify_after_rollback": "rollback", "check_after_rollback": "rollback",
}
PHASE_ORDER = ("precheck", "snapshot", "stage", "switch", "verify", "rollback")
# The profile of a host by its inventory group (dicom_verify's default), most specific first.
GROUP_PROFILES = (("workstations_windows", "workstation_windows"), ("workstations", "workstation"), ("ris", "ris"),
                  ("pacs", "pacs"))
BAD_OUTCOMES = ("refused", "failed_unchanged", "rolled_back", "rollback_failed", "unknown", "not_attempted")


def _epoch(iso):
    if not iso:
        return None
    try:
        return datetime.datetime.fromisoformat(str(iso)).timestamp()  # "...Z", with or without a fraction
    except ValueError:
        return None


def _checks(evidence) -> list:
    rows = []
    for record in evidence.get("precheck") or []:
        if isinstance(record, Mapping):
            rows.append({"phase": "precheck", "check": f"{record.get('id', '?')} {record.get('title', '')}".strip(),
                         "status": record.get("status"), "elapsed_ms": None,
                         "message": str(record.get("message") or "")})
    for phase, key in (("verify", "verification"), ("rollback", "rollback_verification")):
        for record in evidence.get(key) or []:
            if isinstance(record, Mapping):
                rows.append({"phase": phase, "check": str(record.get("check", "?")), "status": record.get("status"),
                             "elapsed_ms": record.get("elapsed_ms"), "message": str(record.get("message") or "")})
    return rows


def _timeline(evidence, origin, span) -> list:
    steps = []
    for step in evidence.get("steps") or []:
        if not isinstance(step, Mapping):
            continue
        start, end = _epoch(step.get("started")), _epoch(step.get("ended"))
        duration = step.get("duration_s")
        if start is None:
            continue
        if end is None:
            end = start + float(duration or 0)
        steps.append({"name": step.get("name"), "phase": PHASES.get(step.get("name"), "other"),
                      "status": step.get("status"), "started": step.get("started"), "duration_s": duration,
                      "message": step.get("message"),
                      "offset_s": round(start - origin, 2),
                      "left_pct": round(100.0 * (start - origin) / span, 2) if span else 0.0,
                      "width_pct": max(round(100.0 * (end - start) / span, 2), 0.3) if span else 100.0})
    return steps


def _view(run, rows, findings, table, in_service_hours, phases, span_s, ok) -> dict:
    """What the HTML report, report_junit and report_metrics read, whichever run built the rows."""
    counts = {}
    for row in rows:
        counts[row["outcome"]] = counts.get(row["outcome"], 0) + 1
    return {
        "run": dict(run or {}),
        "hosts": rows,
        "counts": counts,
        "ok": ok,
        "findings": sorted(findings, key=lambda f: (f["severity"], f["host"], f["check"])),
        "worst_severity": sla_worst(findings),
        "sla": [{"severity": level, **entry} for level, entry in table.items()],
        "in_service_hours": bool(in_service_hours),
        "phases": phases,
        "span_s": span_s,
    }


def report_digests(results) -> list:
    """``<path> sha256 <hex>`` of each file a looped copy task wrote (its registered results, each
    item with ``content``): the lines a run log prints to tie its evidence files to the job."""
    return [f"{r['dest']} sha256 {hashlib.sha256(str(r['item']['content']).encode('utf-8')).hexdigest()}"
            for r in results or []]


def report_evidences(hostvars, hosts, run=None) -> dict:
    """The evidence of each host of the run (``upgrade_report_evidence``), by host name; hosts of
    another run or without evidence are left out (the view shows them as never attempted)."""
    run_id = (run or {}).get("id")
    out = {}
    for host in hosts or []:
        try:
            evidence = hostvars[host].get("upgrade_report_evidence") if host in hostvars else None
        except (KeyError, TypeError):
            evidence = None
        if isinstance(evidence, Mapping) and (run_id is None or (evidence.get("run") or {}).get("id") == run_id):
            out[host] = evidence
    return out


def upgrade_report_view(evidences, hosts=None, run=None, sla=None, in_service_hours=True) -> dict:
    """The run as the HTML report and the JUnit file show it (see the module's docstring)."""
    evidences = evidences or {}
    if not isinstance(evidences, Mapping):
        raise ValueError("upgrade_report_view needs the evidence of each host, by host name")
    hosts = list(hosts or evidences.keys())
    table = sla_table(sla)
    moments = [_epoch(s.get("started")) for e in evidences.values() if isinstance(e, Mapping)
               for s in e.get("steps") or [] if isinstance(s, Mapping)]
    moments += [_epoch(s.get("ended")) for e in evidences.values() if isinstance(e, Mapping)
                for s in e.get("steps") or [] if isinstance(s, Mapping)]
    moments = [m for m in moments if m is not None]
    origin = min(moments) if moments else 0.0
    span = (max(moments) - origin) if moments else 0.0
    rows, findings = [], []
    for host in hosts:
        evidence = evidences.get(host)
        if not isinstance(evidence, Mapping):
            row = {"host": host, "outcome": "not_attempted", "product": None, "versions": {}, "snapshot": None,
                   "downtime": None, "timeline": [], "checks": [], "findings": [], "failed_step": None,
                   "message": "never attempted: an earlier batch failed or the run stopped", "evidence": None}
        else:
            host_findings = upgrade_findings(evidence, sla, in_service_hours)
            downtime = evidence.get("downtime") or {}
            row = {"host": host, "outcome": evidence.get("outcome") or "unknown", "product": evidence.get("product"),
                   "versions": {k: (evidence.get("versions") or {}).get(k) for k in ("before", "target", "after")},
                   "snapshot": (evidence.get("snapshot") or {}).get("id"),
                   "snapshot_reverted": bool(evidence.get("snapshot_reverted")),
                   "downtime": {"measured": bool(downtime.get("measured")), "total_s": downtime.get("total_s"),
                                "longest_s": downtime.get("longest_s"), "complete": downtime.get("complete"),
                                "reason": downtime.get("reason")},
                   "timeline": _timeline(evidence, origin, span), "checks": _checks(evidence),
                   "findings": host_findings, "failed_step": evidence.get("failed_step"),
                   "message": evidence.get("message"), "evidence": evidence.get("evidence_file")}
            findings += host_findings
        rows.append(row)
    return _view(run, rows, findings, table, in_service_hours, list(PHASE_ORDER), round(span, 1),
                 ok=bool(rows) and not any(r["outcome"] in BAD_OUTCOMES for r in rows))


def monitor_view(hostvars, hosts, run=None, sla=None, in_service_hours=True) -> dict:
    """The view of a monitoring run (playbooks/monitor.yml): each host's health checks
    (``dicom_verify_results``, by its ``dicom_verify_profile``) and their findings; a host without
    results could not be checked (unreachable) and is a finding of its own. Same shape as
    upgrade_report_view, so the HTML report and report_junit read it alike."""
    table = sla_table(sla)
    rows, findings = [], []
    for host in hosts or []:
        try:
            facts = hostvars[host]
            results, profile = facts.get("dicom_verify_results"), facts.get("dicom_verify_profile")
            groups = facts.get("group_names") or []
        except (KeyError, TypeError):
            results, profile, groups = None, None, []
        if not profile:  # a host that could not be checked: what it is, from its groups
            profile = next((p for g, p in GROUP_PROFILES if g in groups), "pacs")
        if not isinstance(results, list):
            results = [{"check": "host_reachable", "status": "failed", "elapsed_ms": None, "details": {},
                        "message": "no results: the host was unreachable or its checks stopped early"}]
        host_findings = sla_findings(results, host, str(profile).strip(), sla, in_service_hours,
                                     source="monitor")
        outcome = "healthy" if not any(r.get("status") == "failed" for r in results if isinstance(r, Mapping)) \
            else "unhealthy"
        checks = [{"phase": "verify", "check": str(r.get("check", "?")), "status": r.get("status"),
                   "elapsed_ms": r.get("elapsed_ms"), "message": str(r.get("message") or "")}
                  for r in results if isinstance(r, Mapping)]
        rows.append({"host": host, "outcome": outcome, "product": str(profile).strip(), "versions": {},
                     "snapshot": None, "downtime": None, "timeline": [], "checks": checks,
                     "findings": host_findings, "failed_step": None, "message": None, "evidence": None})
        findings += host_findings
    return _view(run, rows, findings, table, in_service_hours, ["verify"], 0.0,
                 ok=bool(rows) and all(r["outcome"] == "healthy" for r in rows))


def _label(value) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def report_metrics(view, epoch) -> str:
    """Prometheus text format (node_exporter's textfile collector) of a view: each check's status and
    latency, the findings per severity, the hosts per outcome, and when the run ended."""
    if not isinstance(view, Mapping) or "hosts" not in view:
        raise ValueError("report_metrics needs the view monitor_view or upgrade_report_view builds")
    lines = [
        "# HELP clinical_check_up 1 when the check passed, 0 when it failed (skipped checks are left out).",
        "# TYPE clinical_check_up gauge",
    ]
    latency = []
    for row in view["hosts"]:
        for check in row.get("checks") or []:
            if check.get("status") not in ("passed", "failed"):
                continue
            labels = f'host="{_label(row["host"])}",check="{_label(check["check"])}",phase="{_label(check["phase"])}"'
            lines.append(f"clinical_check_up{{{labels}}} {1 if check['status'] == 'passed' else 0}")
            if isinstance(check.get("elapsed_ms"), (int, float)):
                latency.append(f"clinical_check_latency_seconds{{{labels}}} {check['elapsed_ms'] / 1000.0:.6f}")
    lines += ["# HELP clinical_check_latency_seconds How long the check took.",
              "# TYPE clinical_check_latency_seconds gauge", *latency]
    lines += ["# HELP clinical_findings Findings of the run by SLA severity (1 is the worst).",
              "# TYPE clinical_findings gauge"]
    for level in (1, 2, 3, 4):
        count = sum(1 for f in view.get("findings") or [] if f.get("severity") == level)
        lines.append(f'clinical_findings{{severity="{level}"}} {count}')
    lines += ["# HELP clinical_hosts Hosts of the run by outcome.", "# TYPE clinical_hosts gauge"]
    for outcome, count in sorted((view.get("counts") or {}).items()):
        lines.append(f'clinical_hosts{{outcome="{_label(outcome)}"}} {count}')
    lines += ["# HELP clinical_run_timestamp_seconds When the run wrote these metrics (Unix time).",
              "# TYPE clinical_run_timestamp_seconds gauge", f"clinical_run_timestamp_seconds {float(epoch):.3f}"]
    return "\n".join(lines) + "\n"


def _case(classname, name, status, seconds=None, message="", severity=None) -> str:
    attrs = f"classname={quoteattr(classname)} name={quoteattr(name)}"
    if isinstance(seconds, (int, float)):
        attrs += f' time="{seconds:.3f}"'
    if status == "failed":
        text = message + (f" (SLA severity {severity})" if severity else "")
        return (f"    <testcase {attrs}>\n      <failure message={quoteattr(text[:500])}>{escape(text)}</failure>\n"
                "    </testcase>\n")
    if status in ("skipped", "not_attempted"):
        return f"    <testcase {attrs}>\n      <skipped message={quoteattr(message[:500])}/>\n    </testcase>\n"
    return f"    <testcase {attrs}/>\n"


def report_junit(view) -> str:
    """JUnit XML of a report view: a test suite per host, a test case per check and one for the outcome."""
    if not isinstance(view, Mapping) or "hosts" not in view:
        raise ValueError("report_junit needs the view upgrade_report_view builds")
    run_id = (view.get("run") or {}).get("id") or "?"
    suites, total, failed, skipped = [], 0, 0, 0
    for row in view["hosts"]:
        severity = {f["check"]: f["severity"] for f in row.get("findings") or []}
        cases = []
        outcome_status = ("not_attempted" if row["outcome"] == "not_attempted"
                          else "failed" if row["outcome"] in BAD_OUTCOMES else "passed")
        cases.append(_case(f"{row['host']}.outcome", row["outcome"], outcome_status, None,
                           " - ".join(str(x) for x in (row.get("failed_step"), row.get("message")) if x),
                           severity.get("outcome")))
        statuses = [outcome_status]
        for check in row.get("checks") or []:
            status = check.get("status") or "failed"
            elapsed = check.get("elapsed_ms")
            cases.append(_case(f"{row['host']}.{check['phase']}", check["check"], status,
                               elapsed / 1000.0 if isinstance(elapsed, (int, float)) else None,
                               check.get("message") or "", severity.get(check["check"])))
            statuses.append(status)
        n_failed = sum(1 for s in statuses if s == "failed")
        n_skipped = sum(1 for s in statuses if s in ("skipped", "not_attempted"))
        total, failed, skipped = total + len(statuses), failed + n_failed, skipped + n_skipped
        suites.append(f"  <testsuite name={quoteattr(row['host'])} tests=\"{len(statuses)}\" failures=\"{n_failed}\" "
                      f"errors=\"0\" skipped=\"{n_skipped}\">\n" + "".join(cases) + "  </testsuite>\n")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<testsuites name={quoteattr('clinical-upgrade ' + run_id)} tests=\"{total}\" failures=\"{failed}\" "
            f"errors=\"0\" skipped=\"{skipped}\">\n" + "".join(suites) + "</testsuites>\n")


class FilterModule:
    def filters(self):
        return {
            "report_evidences": report_evidences,
            "upgrade_report_view": upgrade_report_view,
            "report_junit": report_junit,
            "monitor_view": monitor_view,
            "report_metrics": report_metrics,
            "report_digests": report_digests,
        }
