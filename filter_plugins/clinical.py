# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""Filters shared by the clinical-upgrade roles and playbooks.

- ae_title_error: why a value is not a valid DICOM AE title ('' when it is).
- modality_ae_item: {key, value} of a pacs_server_modalities entry's AE title, for validation loops.
- pacs_modality_entry: Orthanc's [AET, host, port] for a pacs_server_modalities entry.
- mask_phi: mask a patient name or ID so that reports and logs carry no PHI.
- verify_record: turn a registered health-check result into one record of a verification report.
- canary_record, counts_record, archive_record, readback_record, version_record: compare a PACS with the
  baseline taken before a change (as sets: instances that arrived since are allowed).
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def ae_title_error(value) -> str:
    """Return '' when value is a valid AE title, else a message saying what to fix."""
    if not isinstance(value, str):
        return f"AE title must be a string, got {type(value).__name__}"
    if value == "" or value.strip() == "":
        return "AE title is empty: use 1 to 16 characters"
    if len(value) > 16:
        return f"AE title '{value}' has {len(value)} characters: use at most 16"
    if "\\" in value:
        return f"AE title '{value}' contains a backslash, which DICOM does not allow"
    if _CONTROL.search(value):
        return "AE title contains control characters (tabs, newlines, ...): remove them"
    return ""


def modality_ae_item(modality) -> dict:
    """Map a {'name', 'aet', ...} modality entry to {'key': ..., 'value': aet} for validation loops."""
    name = modality.get("name", "?") if isinstance(modality, dict) else "?"
    aet = modality.get("aet") if isinstance(modality, dict) else modality
    return {"key": f"pacs_server_modalities[{name}].aet", "value": aet}


def pacs_modality_entry(modality) -> list:
    """Orthanc's DicomModalities value [AET, host, port] of a {'name', 'aet', 'host', 'port'} entry."""
    return [modality["aet"], modality["host"], int(modality["port"])]


def mask_phi(value, keep: int = 1) -> str:
    """Mask a patient name or ID: keep the first `keep` characters of each component.

    'SYNTH^PATIENT^0003' -> 'S****^P******^0***'. Separators (^ and spaces) are kept so the
    shape stays readable without revealing the value.
    """
    if value is None:
        return ""
    text = str(value)
    parts = re.split(r"([\^ =])", text)
    masked = []
    for part in parts:
        if part in ("^", " ", "=") or part == "":
            masked.append(part)
        else:
            masked.append(part[:keep] + "*" * max(len(part) - keep, 0))
    return "".join(masked)


# Keys of a registered task result that say nothing about the check itself.
_INTERNAL_KEYS = frozenset(
    {"invocation", "changed", "failed", "msg", "attempts", "skipped", "skip_reason", "false_condition",
     "failed_when_result", "warnings", "deprecations", "ansible_facts", "exception", "module_stdout",
     "module_stderr", "stdout_lines", "stderr_lines", "retries"}
)


# The inventory variable behind each module option, per kind of check (docs/inventory.md, the endpoint
# contract): a failed check's message names the variable the user must change, not only the option.
_PACS_DICOM_VARIABLES = {
    "called_ae": "pacs_server_dicom_aet",
    "calling_ae": "verify_calling_aet",
    "port": "endpoint_dicom_port",
    "host": "endpoint_host",
    "timeout": "endpoint_timeout",
    "tls": "endpoint_dicom_tls",
    "tls_ca_cert": "endpoint_dicom_tls_ca_cert",
    "tls_client_cert": "endpoint_dicom_tls_client_cert",
    "tls_client_key": "endpoint_dicom_tls_client_key",
    "tls_client_key_passphrase": "endpoint_dicom_tls_client_key_passphrase",
}
_PACS_REST_VARIABLES = {
    "url": "endpoint_rest_url",
    "username": "pacs_server_rest_user",
    "password": "pacs_server_rest_password",
    "validate_certs": "endpoint_rest_validate_certs",
    "ca_path": "endpoint_rest_ca_path",
    "timeout": "endpoint_timeout",
}
_INVENTORY_VARIABLES = {
    "dicom_echo": _PACS_DICOM_VARIABLES,
    "dicom_query_studies": _PACS_DICOM_VARIABLES,
    "pacs_info": _PACS_REST_VARIABLES,
    "dicom_roundtrip": {**_PACS_DICOM_VARIABLES, **{f"orthanc_{k}": v for k, v in _PACS_REST_VARIABLES.items()},
                        "orthanc_user": "pacs_server_rest_user"},
    "worklist_echo": {**_PACS_DICOM_VARIABLES, "called_ae": "ris_server_aetitle", "port": "endpoint_worklist_port"},
    "order_in_worklist": {**_PACS_DICOM_VARIABLES, "called_ae": "ris_server_aetitle",
                          "port": "endpoint_worklist_port"},
    "workflow": {
        "hl7_host": "endpoint_host (the RIS)", "hl7_port": "endpoint_hl7_port (the RIS)",
        "worklist_port": "endpoint_worklist_port (the RIS)", "worklist_ae": "ris_server_aetitle",
        "calling_ae": "verify_calling_aet", "station_aetitle": "verify_calling_aet",
        **{f"pacs_{k}": f"{v} (the PACS)" for k, v in _PACS_DICOM_VARIABLES.items() if k not in ("called_ae",
                                                                                               "calling_ae")},
        "pacs_ae": "pacs_server_dicom_aet (the PACS)",
        "pacs_url": "endpoint_rest_url (the PACS)", "pacs_user": "pacs_server_rest_user",
        "pacs_password": "pacs_server_rest_password", "pacs_ca_path": "endpoint_rest_ca_path (the PACS)",
        "pacs_validate_certs": "endpoint_rest_validate_certs (the PACS)",
    },
    "hl7_order_ack": {"host": "endpoint_host", "port": "endpoint_hl7_port", "timeout": "endpoint_timeout"},
    "hl7_cancel_ack": {"host": "endpoint_host", "port": "endpoint_hl7_port", "timeout": "endpoint_timeout"},
}


def inventory_words(message: str, check: str) -> str:
    """A module's message with each option it names followed by the inventory variable that sets it.

    'check called_ae' -> 'check called_ae (inventory: pacs_server_dicom_aet)'. Only whole option
    names are replaced, and each at most once per occurrence.
    """
    variables = _INVENTORY_VARIABLES.get(check)
    if not variables or not isinstance(message, str):
        return message
    pattern = re.compile(r"(?<![\w.])(" + "|".join(sorted(map(re.escape, variables), key=len, reverse=True))
                         + r")(?![\w])(?! \(inventory)")
    return pattern.sub(lambda m: f"{m.group(1)} (inventory: {variables[m.group(1)]})", message)


def verify_record(result, check: str, expect_count_min=None, expect_count_max=None) -> dict:
    """One record of a verification report from a task result registered with failed_when: false.

    status is 'passed', 'failed' or 'skipped'. A result with a `count` can be held to
    expect_count_min / expect_count_max (for example: an order must be in the worklist).
    """
    if not isinstance(result, dict):
        return {"check": check, "status": "failed", "elapsed_ms": None,
                "message": "no result was recorded for this check", "details": {}}
    details = {k: v for k, v in result.items() if k not in _INTERNAL_KEYS and not k.startswith("_ansible")}
    latency = result.get("latency_ms")
    if result.get("skipped"):
        return {"check": check, "status": "skipped", "elapsed_ms": None,
                "message": "not run: " + str(result.get("false_condition", "condition false")), "details": {}}
    count = result.get("count")
    count_checked = count is not None and (expect_count_min is not None or expect_count_max is not None)
    if (result.get("failed") or result.get("unreachable")) and not count_checked:
        return {"check": check, "status": "failed", "elapsed_ms": latency,
                "message": inventory_words(str(result.get("msg", "failed without a message")), check),
                "details": details}
    message = "ok" if result.get("failed") else str(result.get("msg") or "ok")
    if expect_count_min is not None and (count is None or int(count) < int(expect_count_min)):
        return {"check": check, "status": "failed", "elapsed_ms": latency,
                "message": f"expected at least {expect_count_min} match(es), found {count}", "details": details}
    if expect_count_max is not None and (count is None or int(count) > int(expect_count_max)):
        return {"check": check, "status": "failed", "elapsed_ms": latency,
                "message": f"expected at most {expect_count_max} match(es), found {count}", "details": details}
    return {"check": check, "status": "passed", "elapsed_ms": latency, "message": message, "details": details}


def _failed_prerequisite(result, check):
    """A record for a comparison whose underlying query failed or did not run, else None."""
    if not isinstance(result, dict) or result.get("failed") or result.get("skipped"):
        base = verify_record(result, check)
        base["status"] = "failed"
        if isinstance(result, dict) and result.get("skipped"):
            base["message"] = "cannot compare: the query did not run"
        return base
    return None


def canary_record(result, canary) -> dict:
    """Compare an IMAGE-level C-FIND of the canary study with the baseline's SOP Instance UIDs."""
    check = "canary_instances"
    failed = _failed_prerequisite(result, check)
    if failed:
        return failed
    expected = set((canary or {}).get("sop_instance_uids") or [])
    found = {i.get("SOPInstanceUID") for i in result.get("identifiers") or [] if isinstance(i, dict)}
    missing = sorted(expected - found)
    details = {"study_instance_uid": (canary or {}).get("study_instance_uid"), "expected": len(expected),
               "found": len(found & expected), "missing": missing[:20]}
    if not expected:
        return {"check": check, "status": "failed", "elapsed_ms": result.get("latency_ms"),
                "message": "the baseline has no canary instances to compare with", "details": details}
    if missing:
        return {"check": check, "status": "failed", "elapsed_ms": result.get("latency_ms"),
                "message": f"{len(missing)} of {len(expected)} canary instances are missing", "details": details}
    return {"check": check, "status": "passed", "elapsed_ms": result.get("latency_ms"),
            "message": f"all {len(expected)} canary instances present", "details": details}


def counts_record(result, baseline_counts) -> dict:
    """Compare pacs_info's statistics with the baseline's counts: none may be lower.

    A live PACS keeps receiving images, so higher counts are expected and reported; a lower count
    means something the PACS held before the change is gone.
    """
    check = "counts_not_lower"
    failed = _failed_prerequisite(result, check)
    if failed:
        return failed
    now = result.get("statistics") or {}
    keys = ("patients", "studies", "series", "instances")
    before = {k: (baseline_counts or {}).get(k) for k in keys}
    after = {k: now.get(k) for k in keys}
    lower = {k: {"before": before[k], "after": after[k]} for k in keys
             if before[k] is not None and (after[k] is None or int(after[k]) < int(before[k]))}
    grown = {k: int(after[k]) - int(before[k]) for k in keys
             if before[k] is not None and after[k] is not None and int(after[k]) > int(before[k])}
    details = {"before": before, "after": after, "grown": grown}
    if lower:
        words = ", ".join(f"{k} {v['before']} -> {v['after']}" for k, v in lower.items())
        return {"check": check, "status": "failed", "elapsed_ms": None,
                "message": f"counts are lower than the baseline: {words}", "details": details}
    message = "no count is lower than the baseline"
    if grown:
        message += "; arrived since: " + ", ".join(f"{n} {k}" for k, n in grown.items())
    return {"check": check, "status": "passed", "elapsed_ms": None, "message": message, "details": details}


def archive_record(result, baseline_uids, expected_extra=None, sample: int = 20) -> dict:
    """Compare the PACS's SOP Instance UIDs now with the baseline's, as sets.

    Every instance of the baseline must be present, and so must every one of ``expected_extra``
    (the instances re-delivered after a rollback). Instances that arrived since are allowed and
    reported.
    """
    check = "instances_preserved"
    failed = _failed_prerequisite(result, check)
    if failed:
        return failed
    now = set(result.get("sop_instance_uids") or [])
    before = set(baseline_uids or [])
    extra = set(expected_extra or [])
    missing = sorted(before - now)
    extra_missing = sorted(extra - now)
    arrived = sorted(now - before - extra)
    details = {"baseline": len(before), "now": len(now), "arrived": len(arrived), "arrived_sample": arrived[:sample],
               "missing": len(missing), "missing_sample": missing[:sample], "redelivered_expected": len(extra),
               "redelivered_missing": extra_missing[:sample]}
    if not before and result.get("instances"):
        return {"check": check, "status": "failed", "elapsed_ms": None, "details": details,
                "message": "the baseline has no instance list to compare with"}
    if missing or extra_missing:
        parts = []
        if missing:
            parts.append(f"{len(missing)} of {len(before)} instances of the baseline are missing")
        if extra_missing:
            parts.append(f"{len(extra_missing)} of {len(extra)} re-delivered instances are missing")
        return {"check": check, "status": "failed", "elapsed_ms": None, "message": "; ".join(parts),
                "details": details}
    message = f"all {len(before)} instances of the baseline present"
    if extra:
        message += f", all {len(extra)} re-delivered instances present"
    if arrived:
        message += f"; {len(arrived)} arrived since"
    return {"check": check, "status": "passed", "elapsed_ms": None, "message": message, "details": details}


def readback_record(result) -> dict:
    """The read-back of a sample of stored files against the MD5 the PACS recorded when it stored them."""
    check = "stored_files_read_back"
    if not isinstance(result, dict) or result.get("skipped"):
        return _failed_prerequisite(result, check)
    mismatched = result.get("mismatched") or []
    details = {"checked": result.get("checked"), "instances": result.get("instances"),
               "mismatched": mismatched[:20]}
    if result.get("failed"):
        return {"check": check, "status": "failed", "elapsed_ms": None, "details": details,
                "message": str(result.get("msg") or "the read-back failed")}
    return {"check": check, "status": "passed", "elapsed_ms": None, "details": details,
            "message": f"{result.get('checked')} stored files read back, each equal to what the PACS recorded"}


def version_record(result, expected) -> dict:
    """Check that pacs_info reports the expected product version."""
    check = "version_is_expected"
    failed = _failed_prerequisite(result, check)
    if failed:
        return failed
    version = result.get("version")
    details = {"expected": expected, "running": version, "database_version": result.get("database_version")}
    if str(version) != str(expected):
        return {"check": check, "status": "failed", "elapsed_ms": None,
                "message": f"the PACS reports version {version}, expected {expected}", "details": details}
    return {"check": check, "status": "passed", "elapsed_ms": None, "message": f"version {version}",
            "details": details}


def _failed(result) -> bool:
    """A registered result that did not succeed: failed, skipped, or its host unreachable."""
    return not isinstance(result, dict) or any(bool(result.get(k)) for k in ("failed", "skipped", "unreachable"))


def pacs_baseline(results, host: str = "", canary_study_uid: str = "", canary_max_instances: int = 5000,
                  recorded: str = "") -> dict:
    """The clinical baseline of a PACS from the checks dicom_verify ran before a change.

    ``results``: the registered results {echo, info, studies, canary} of pacs.yml and pacs_canary.yml.
    Returns {baseline, problems}: the baseline that ``compare`` compares with after the change, and every
    reason it cannot serve as one (each naming what to fix); an empty list when it can.
    """
    results = results or {}
    archive = results.get("archive") or {"skipped": True}
    echo, info = results.get("echo") or {}, results.get("info") or {}
    studies, canary = results.get("studies") or {}, results.get("canary") or {"skipped": True}
    first = ((studies.get("identifiers") or [{}])[0] or {}).get("StudyInstanceUID", "") if not _failed(
        studies) else ""
    canary_uid = canary_study_uid or first or ""
    stats = info.get("statistics") or {} if not _failed(info) else {}
    problems = []
    if _failed(echo):
        problems.append(f"C-ECHO failed: {echo.get('msg', 'no result')} (check endpoint_host, endpoint_dicom_port, "
                        "pacs_server_dicom_aet and that verify_calling_aet is known to the PACS)")
    if _failed(info):
        problems.append(f"Orthanc REST failed: {info.get('msg', 'no result')} (check endpoint_rest_url, "
                        "pacs_server_rest_user and pacs_server_rest_password)")
    if _failed(studies):
        problems.append(f"study-level C-FIND failed: {studies.get('msg', 'no result')}")
    if _failed(archive):
        problems.append(f"listing the archive's instances failed: {archive.get('msg', 'no result')} (check "
                        "endpoint_rest_url and the REST credentials)")
    if canary_uid:
        if _failed(canary):
            problems.append(f"IMAGE-level C-FIND of the canary study failed: {canary.get('msg', 'no result')}")
        elif canary_study_uid and int(canary.get("count") or 0) == 0:
            problems.append(f"dicom_verify_canary_study_uid {canary_study_uid} is not on the PACS: set it to a study "
                            'that exists, or to "" for the first one')
        if canary.get("truncated"):
            problems.append(f"the canary study has more than {canary_max_instances} instances: raise "
                            "dicom_verify_canary_max_instances or choose a smaller dicom_verify_canary_study_uid")
    identifiers = [] if _failed(canary) else canary.get("identifiers") or []
    baseline = {
        "host": host,
        "recorded": recorded,
        "echo_ms": None if _failed(echo) else echo.get("latency_ms"),
        "version": info.get("version") if not _failed(info) else None,
        "database_version": info.get("database_version") if not _failed(info) else None,
        "counts": {
            "patients": stats.get("patients"),
            "studies": stats.get("studies"),
            "series": stats.get("series"),
            "instances": stats.get("instances"),
            "studies_cfind": None if _failed(studies) else studies.get("count"),
        },
        "last_change": None if _failed(archive) else archive.get("last_change"),
        "sop_instance_uids": [] if _failed(archive) else list(archive.get("sop_instance_uids") or []),
        "canary": {
            "study_instance_uid": canary_uid,
            "sop_instance_uids": [i.get("SOPInstanceUID") for i in identifiers if isinstance(i, dict)],
            "count": 0 if _failed(canary) else int(canary.get("count") or 0),
            "truncated": bool(canary.get("truncated")),
        },
    }
    return {"baseline": baseline, "problems": problems}


class FilterModule:
    def filters(self):
        return {
            "ae_title_error": ae_title_error,
            "modality_ae_item": modality_ae_item,
            "mask_phi": mask_phi,
            "pacs_modality_entry": pacs_modality_entry,
            "verify_record": verify_record,
            "canary_record": canary_record,
            "counts_record": counts_record,
            "archive_record": archive_record,
            "readback_record": readback_record,
            "version_record": version_record,
            "pacs_baseline": pacs_baseline,
        }
