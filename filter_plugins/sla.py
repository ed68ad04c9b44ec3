# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""SLA severities: what each finding of a verification or an upgrade means for the department.

The site's support contract ranks an incident 1 to 4:

1. system-wide outage: the PACS does not answer C-ECHO or C-FIND, the RIS does not acknowledge
   orders or serve its worklist, a PACS or RIS host cannot be reached, a rollback did not complete,
   or images the PACS acknowledged are missing;
2. a major workflow degraded: the store/find/retrieve round trip, the order-to-worklist path, a
   cancel, the canary study, a count lower than before, a version other than expected, or a check
   whose latency is far above its baseline (``latency_factor`` times, and at least ``latency_min_ms``);
3. a limited impact: one workstation fails its checks, or an upgrade was rolled back (the old
   version runs again, verified);
4. cosmetic or documentation: a precheck refused a change (nothing was changed), a downtime that
   was not measured.

Each finding carries the targets of its severity (``sla``: minutes to respond and hours to resolve,
in service hours and out of them; the site's ``clinical_sla`` overrides the defaults key by key).

- ``records | sla_findings(host, profile, sla, in_service_hours, baseline)``: the findings of one
  host's verification records (dicom_verify_results), one per failed check, plus latency findings.
- ``upgrade_result | upgrade_findings(sla, in_service_hours)``: the findings of one host's upgrade
  result (its verification, rollback verification, outcome and downtime).
- ``findings | sla_worst``: the most severe level (1 is the worst), or None without a finding.
- ``sla | sla_table``: the effective table (defaults merged with the site's), for reports.

Patient names and IDs never appear here: messages come from the checks, which mask them.
"""

from __future__ import annotations

from collections.abc import Mapping

SLA_DEFAULTS = {
    1: {"name": "system-wide outage",
        "in_service_hours": {"response_minutes": 15, "resolution_hours": 2},
        "out_of_hours": {"response_minutes": 30, "resolution_hours": 4}},
    2: {"name": "major workflow degraded",
        "in_service_hours": {"response_minutes": 30, "resolution_hours": 8},
        "out_of_hours": {"response_minutes": 60, "resolution_hours": 24}},
    3: {"name": "limited impact",
        "in_service_hours": {"response_minutes": 240, "resolution_hours": 72},
        "out_of_hours": {"response_minutes": 720, "resolution_hours": 120}},
    4: {"name": "cosmetic or documentation",
        "in_service_hours": {"response_minutes": 1440, "resolution_hours": 720},
        "out_of_hours": {"response_minutes": 1440, "resolution_hours": 720}},
}

# The checks without which the department cannot work (a PACS or a RIS profile).
OUTAGE_CHECKS = {
    "dicom_echo": "the PACS does not answer C-ECHO",
    "dicom_query_studies": "the PACS does not answer C-FIND",
    "hl7_order_ack": "the RIS does not acknowledge orders",
    "worklist_echo": "the modality worklist does not answer",
    "host_reachable": "the host cannot be reached",
    "instances_preserved": "images the PACS acknowledged are missing",
}
WORKSTATION_PROFILES = ("workstation", "workstation_windows")
LATENCY_FACTOR = 5.0
LATENCY_MIN_MS = 1000.0


def _int_level(level) -> int:
    try:
        value = int(level)
    except (TypeError, ValueError):
        raise ValueError(f"an SLA severity is 1, 2, 3 or 4, got {level!r}") from None
    if value not in SLA_DEFAULTS:
        raise ValueError(f"an SLA severity is 1, 2, 3 or 4, got {level!r}")
    return value


def sla_table(sla=None) -> dict:
    """The defaults, overridden key by key by the site's table (clinical_sla), checked."""
    table = {level: {"name": entry["name"], "in_service_hours": dict(entry["in_service_hours"]),
                     "out_of_hours": dict(entry["out_of_hours"])} for level, entry in SLA_DEFAULTS.items()}
    if sla in (None, ""):
        return table
    if not isinstance(sla, Mapping):
        raise ValueError("clinical_sla must be a mapping of severity (1-4) to its targets, "
                         f"got {type(sla).__name__}")
    for level, entry in sla.items():
        target = table[_int_level(level)]
        if not isinstance(entry, Mapping):
            raise ValueError(f"clinical_sla[{level}] must be a mapping (name, in_service_hours, out_of_hours)")
        for key, value in entry.items():
            if key == "name":
                target["name"] = str(value)
            elif key in ("in_service_hours", "out_of_hours") and isinstance(value, Mapping):
                for field, number in value.items():
                    if field not in ("response_minutes", "resolution_hours"):
                        raise ValueError(f"clinical_sla[{level}].{key}.{field}: use response_minutes "
                                         "or resolution_hours")
                    if isinstance(number, bool) or not isinstance(number, (int, float)) or number <= 0:
                        raise ValueError(f"clinical_sla[{level}].{key}.{field} must be a positive number, "
                                         f"got {number!r}")
                    target[key][field] = number
            else:
                raise ValueError(f"clinical_sla[{level}].{key}: use name, in_service_hours or out_of_hours "
                                 "(each with response_minutes and resolution_hours)")
    return table


def _finding(level, host, check, title, message, table, in_service_hours, source) -> dict:
    level = _int_level(level)
    targets = table[level]["in_service_hours" if in_service_hours else "out_of_hours"]
    return {
        "severity": level,
        "severity_name": table[level]["name"],
        "host": host,
        "check": check,
        "title": title,
        "message": message,
        "source": source,
        "response_minutes": targets["response_minutes"],
        "resolution_hours": targets["resolution_hours"],
        "in_service_hours": bool(in_service_hours),
    }


def _baseline_latency(baseline, check):
    """The elapsed_ms of a check in a baseline (a list of records or a mapping check -> ms)."""
    if isinstance(baseline, Mapping):
        value = baseline.get(check)
        if isinstance(value, Mapping):
            value = value.get("elapsed_ms")
        return value
    for record in baseline or []:
        if isinstance(record, Mapping) and record.get("check") == check:
            return record.get("elapsed_ms")
    return None


def _check_level(check, profile) -> tuple[int, str]:
    if profile in WORKSTATION_PROFILES:
        return 3, "one workstation fails its checks"
    if check in OUTAGE_CHECKS:
        return 1, OUTAGE_CHECKS[check]
    return 2, "a clinical workflow is degraded"


def sla_findings(records, host="", profile="pacs", sla=None, in_service_hours=True, baseline=None,
                 latency_factor=LATENCY_FACTOR, latency_min_ms=LATENCY_MIN_MS, source="verification") -> list:
    """One finding per failed check of a host's verification records, and per check far slower than its baseline."""
    table = sla_table(sla)
    findings = []
    for record in records or []:
        if not isinstance(record, Mapping):
            continue
        check = str(record.get("check", "?"))
        record_host = record.get("host") or host
        if record.get("status") == "failed":
            level, title = _check_level(check, profile)
            findings.append(_finding(level, record_host, check, title, str(record.get("message") or ""),
                                     table, in_service_hours, source))
            continue
        elapsed, before = record.get("elapsed_ms"), _baseline_latency(baseline, check)
        if (record.get("status") == "passed" and isinstance(elapsed, (int, float)) and isinstance(before, (int, float))
                and before > 0 and elapsed >= max(float(latency_factor) * before, float(latency_min_ms))):
            level = 3 if profile in WORKSTATION_PROFILES else 2
            findings.append(_finding(level, record_host, check, "verification latency far above its baseline",
                                     f"{check} took {elapsed:.0f} ms against {before:.0f} ms before",
                                     table, in_service_hours, source))
    return findings


_OUTCOME_FINDINGS = {
    "rollback_failed": (1, "the rollback did not complete: the system may not run"),
    "unknown": (1, "the upgrade ended in an unknown state"),
    "rolled_back": (3, "the upgrade was rolled back: the old version runs again, verified"),
    "failed_unchanged": (4, "the upgrade failed before any change: nothing was changed"),
    "refused": (4, "a precheck refused the change: nothing was changed"),
}
_PROFILES = {"pacs": "pacs", "ris": "ris", "workstation_linux": "workstation",
             "workstation_windows": "workstation_windows"}


def upgrade_findings(result, sla=None, in_service_hours=True) -> list:
    """The findings of one host's upgrade result (the one object roles/upgrade builds)."""
    if not isinstance(result, Mapping) or "outcome" not in result:
        raise ValueError("upgrade_findings needs an upgrade result (upgrade_result)")
    table = sla_table(sla)
    host, outcome = result.get("host") or "?", result.get("outcome")
    profile = _PROFILES.get(result.get("product"), "pacs")
    # The baseline before the change holds the C-ECHO's latency (dicom_verify's pacs baseline).
    before = result.get("baseline") if isinstance(result.get("baseline"), Mapping) else {}
    baseline = {"dicom_echo": before.get("echo_ms")} if before.get("echo_ms") else None
    findings = []
    if outcome in _OUTCOME_FINDINGS:
        level, title = _OUTCOME_FINDINGS[outcome]
        if profile in WORKSTATION_PROFILES and level < 3:
            level = 3  # one workstation, however it ended, is a limited impact
        findings.append(_finding(level, host, "outcome", title,
                                 " - ".join(str(x) for x in (result.get("failed_step"), result.get("message")) if x),
                                 table, in_service_hours, "upgrade"))
    if outcome == "refused":
        for record in result.get("precheck") or []:
            if isinstance(record, Mapping) and record.get("status") == "failed":
                findings.append(_finding(4, host, str(record.get("id") or record.get("check") or "precheck"),
                                         "a precheck failed", str(record.get("message") or ""),
                                         table, in_service_hours, "precheck"))
    # After a rollback the department runs on what the rollback verification proved; the failed
    # verification of the new version is the reason for the rollback, not an open incident.
    verification_now = result.get("rollback_verification") if outcome in ("rolled_back", "rollback_failed") \
        else result.get("verification")
    findings += sla_findings(verification_now, host, profile, sla, in_service_hours, baseline,
                             source="rollback_verification" if outcome in ("rolled_back", "rollback_failed")
                             else "verification")
    downtime = result.get("downtime") or {}
    if outcome in ("upgraded", "rolled_back", "rollback_failed") and not downtime.get("measured", True):
        findings.append(_finding(4, host, "downtime", "the downtime was not measured",
                                 str(downtime.get("reason") or ""), table, in_service_hours, "upgrade"))
    return sorted(findings, key=lambda f: (f["severity"], f["host"], f["check"]))


def sla_worst(findings):
    """The most severe level among the findings (1 is the worst), or None."""
    levels = [int(f["severity"]) for f in findings or [] if isinstance(f, Mapping) and "severity" in f]
    return min(levels) if levels else None


class FilterModule:
    def filters(self):
        return {
            "sla_table": sla_table,
            "sla_findings": sla_findings,
            "upgrade_findings": upgrade_findings,
            "sla_worst": sla_worst,
        }
