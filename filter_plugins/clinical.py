# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""Filters shared by the clinical-upgrade roles and playbooks.

- ae_title_error: why a value is not a valid DICOM AE title ('' when it is).
- modality_ae_item: {key, value} of a pacs_server_modalities entry's AE title, for validation loops.
- mask_phi: mask a patient name or ID so that reports and logs carry no PHI.
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


class FilterModule:
    def filters(self):
        return {
            "ae_title_error": ae_title_error,
            "modality_ae_item": modality_ae_item,
            "mask_phi": mask_phi,
        }
