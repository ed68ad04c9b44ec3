# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""Filters shared by the clinical-upgrade roles and playbooks.

- ae_title_error: why a value is not a valid DICOM AE title ('' when it is).
- modality_ae_item: {key, value} of a pacs_server_modalities entry's AE title, for validation loops.
- mask_phi: mask a patient name or ID so that reports and logs carry no PHI.
- verify_record: turn a registered health-check result into one record of a verification report.
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
    if result.get("failed") or result.get("unreachable"):
        return {"check": check, "status": "failed", "elapsed_ms": latency,
                "message": str(result.get("msg", "failed without a message")), "details": details}
    message = str(result.get("msg") or "ok")
    count = result.get("count")
    if expect_count_min is not None and (count is None or int(count) < int(expect_count_min)):
        return {"check": check, "status": "failed", "elapsed_ms": latency,
                "message": f"expected at least {expect_count_min} match(es), found {count}", "details": details}
    if expect_count_max is not None and (count is None or int(count) > int(expect_count_max)):
        return {"check": check, "status": "failed", "elapsed_ms": latency,
                "message": f"expected at most {expect_count_max} match(es), found {count}", "details": details}
    return {"check": check, "status": "passed", "elapsed_ms": latency, "message": message, "details": details}


class FilterModule:
    def filters(self):
        return {
            "ae_title_error": ae_title_error,
            "modality_ae_item": modality_ae_item,
            "mask_phi": mask_phi,
            "verify_record": verify_record,
        }
