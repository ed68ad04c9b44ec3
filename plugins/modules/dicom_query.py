#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dicom_query
short_description: Count (and optionally list) matches of a DICOM C-FIND query or a modality worklist
description:
  - Sends a C-FIND at PATIENT, STUDY, SERIES or IMAGE level (Study Root, or Patient Root for
    PATIENT level) or a Modality Worklist query, with optional filters, and returns the number
    of matches.
  - With O(return_identifiers=true) it also returns up to O(max_results) matches. Unless
    O(unmask_phi=true) is set explicitly, every value that could identify a patient is replaced by
    C(***), which reveals neither its length nor an initial. Masked are person names of any kind
    (VR PN, for patients, referring and performing physicians, operators), patient IDs, accession numbers,
    study and procedure IDs, dates and times (VR DA, DT, TM), free text (VR ST, LT, UT, and
    every C(*Description) and C(*Comments)), institution and station names, and private
    attributes. UIDs, modalities, counts and numbers stay in clear.
  - Arguments (AE titles, port, TLS files, level, filter formats) are checked before any network
    traffic. Failures carry a C(reason) like M(dicom_echo), plus C(dimse_failure) when the peer
    answers the C-FIND with a failure status.
  - Read-only; it runs unchanged in check mode.
  - "Runs on the controller; use C(delegate_to: localhost)."
version_added: "0.1.0"
author:
  - clinical-upgrade contributors
extends_documentation_fragment:
  - dicom_connection
options:
  level:
    description:
      - Query level. C(WORKLIST) queries the Modality Worklist information model.
    type: str
    choices: [PATIENT, STUDY, SERIES, IMAGE, WORKLIST]
    default: STUDY
  query_model:
    description:
      - Information model for PATIENT..IMAGE levels. Defaults to C(patient_root) for PATIENT
        and C(study_root) otherwise. Ignored for WORKLIST.
    type: str
    choices: [patient_root, study_root]
  patient_id:
    description: Match Patient ID (0010,0020); C(*) and C(?) wildcards allowed.
    type: str
  patient_name:
    description: Match Patient's Name (0010,0010); C(*) and C(?) wildcards allowed.
    type: str
  accession_number:
    description: Match Accession Number (0008,0050).
    type: str
  study_instance_uid:
    description: Match Study Instance UID.
    type: str
  series_instance_uid:
    description: Match Series Instance UID (SERIES and IMAGE levels).
    type: str
  sop_instance_uid:
    description: Match SOP Instance UID (IMAGE level).
    type: str
  modality:
    description:
      - Match modality, for example C(CT). Modalities In Study at STUDY level, Modality at SERIES
        and IMAGE level, the scheduled step modality for WORKLIST.
    type: str
  study_date:
    description: Match Study Date, C(YYYYMMDD) or a range C(YYYYMMDD-YYYYMMDD) (either end may be empty).
    type: str
  scheduled_date:
    description: WORKLIST only. Scheduled Procedure Step Start Date, C(YYYYMMDD) or a range.
    type: str
  scheduled_station_ae:
    description: WORKLIST only. Scheduled Station AE Title.
    type: str
  return_keys:
    description:
      - Extra attribute keywords to ask for and return (for example C(StudyDescription)).
      - Refused before any network traffic, with what to do instead, are C(QueryRetrieveLevel)
        (use O(level)), bulk data (VR OB, OW, OF, OD, OL, OV, UN, such as C(PixelData)), and
        command, file meta and item attributes.
    type: list
    elements: str
    default: []
  return_identifiers:
    description: Return the matches in RV(identifiers) (at most O(max_results)).
    type: bool
    default: false
  max_results:
    description: Upper bound on the number of identifiers returned (all matches are still counted).
    type: int
    default: 100
  unmask_phi:
    description:
      - Return the masked attributes (see the description) in clear. Off by default so that task
        output and logs carry no patient data.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    details: C-FIND changes nothing, so the module runs unchanged in check mode.
  diff_mode:
    support: none
requirements:
  - pynetdicom >= 3.0, < 3.1
  - pydicom >= 3.0, < 3.1
notes:
  - Filter values are not echoed back in messages, because they may identify a patient. For the
    same reason the returned C(invocation) (shown at -vvv, kept by AWX with each job event) carries
    C(***) for O(patient_id), O(patient_name), O(accession_number), O(study_date) and
    O(scheduled_date) unless O(unmask_phi=true).
seealso:
  - module: dicom_echo
  - module: dicom_roundtrip
"""

EXAMPLES = r"""
- name: Count the studies of the synthetic test patient
  dicom_query:
    host: "{{ ansible_host }}"
    port: 4242
    called_ae: ORTHANC
    level: STUDY
    patient_id: SYN-000003
  delegate_to: localhost
  register: __dicom_verify_studies

- name: List today's CT worklist entries (masked)
  dicom_query:
    host: ris1.lab
    port: 2575
    called_ae: WORKLIST
    level: WORKLIST
    modality: CT
    scheduled_date: "{{ '%Y%m%d' | strftime }}"
    return_identifiers: true
    max_results: 20
  delegate_to: localhost
"""

RETURN = r"""
count:
  description: Number of matches the peer returned.
  returned: success
  type: int
  sample: 2
returned:
  description: Number of identifiers in RV(identifiers) (0 unless O(return_identifiers)).
  returned: success
  type: int
  sample: 2
truncated:
  description: Whether there were more matches than O(max_results) (only with O(return_identifiers)).
  returned: success
  type: bool
  sample: false
identifiers:
  description:
    - The matches, keyed by attribute keyword; patient data masked unless O(unmask_phi).
    - Empty unless O(return_identifiers).
  returned: success
  type: list
  elements: dict
  sample:
    - PatientName: S****^P******^0***
      PatientID: S*********
      StudyInstanceUID: 2.25.271553888372797756816056744614863438633
      StudyDate: "20200106"
level:
  description: The query level used.
  returned: success
  type: str
  sample: STUDY
query_model:
  description: The information model used (C(patient_root), C(study_root) or C(worklist)).
  returned: success
  type: str
  sample: study_root
sop_class:
  description: SOP Class UID of the information model used.
  returned: success
  type: str
  sample: 1.2.840.10008.5.1.4.1.2.2.1
phi_masked:
  description: Whether patient data in RV(identifiers) is masked.
  returned: success
  type: bool
  sample: true
latency_ms:
  description: Milliseconds from association request to release, the C-FIND included.
  returned: success
  type: float
  sample: 12.5
timings:
  description: Association, C-FIND and release times in milliseconds.
  returned: success
  type: dict
  sample: {"associate_ms": 1.8, "find_ms": 9.9, "release_ms": 0.6}
reason:
  description: Why the query failed (see M(dicom_echo) for the list, plus C(dimse_failure)).
  returned: failure
  type: str
  sample: dimse_failure
status:
  description: The final DIMSE status of the C-FIND (0 is success).
  returned: success, and failure with reason C(dimse_failure)
  type: int
  sample: 0
"""

import re

from ansible.module_utils.arg_types import whole_number
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.dicom_client import (
    QUERY_MODELS,
    DicomError,
    DicomValidationError,
    build_client,
    dicom_argument_spec,
    fail_if_missing_libraries,
    fail_with,
    identifier_to_dict,
    phi_safe_invocation,
    validate_query_level,
)

try:
    from pydicom.datadict import dictionary_VR, tag_for_keyword
    from pydicom.dataset import Dataset
except ImportError:  # handled by fail_if_missing_libraries
    Dataset = None

UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
DATE_RANGE_RE = re.compile(r"^(\d{8})?(-(\d{8})?)?$")
LEVEL_KEYS = {
    "PATIENT": ["PatientName", "PatientID", "PatientBirthDate", "PatientSex", "NumberOfPatientRelatedStudies"],
    "STUDY": [
        "PatientName",
        "PatientID",
        "StudyInstanceUID",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "StudyID",
        "StudyDescription",
        "ModalitiesInStudy",
        "NumberOfStudyRelatedInstances",
    ],
    "SERIES": [
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "Modality",
        "SeriesNumber",
        "SeriesDescription",
        "NumberOfSeriesRelatedInstances",
    ],
    "IMAGE": ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "InstanceNumber"],
    "WORKLIST": [
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "AccessionNumber",
        "StudyInstanceUID",
        "RequestedProcedureID",
        "RequestedProcedureDescription",
    ],
}
#: Return keys the module sets itself, with why.
RESERVED_KEYS = {
    "QueryRetrieveLevel": "use the level option",
    "ScheduledProcedureStepSequence": "the worklist item it asks for",
}
#: VRs of bulk data, which a C-FIND identifier cannot carry.
BULK_VRS = ("OB", "OW", "OF", "OD", "OL", "OV", "UN")
SPS_KEYS = [
    "Modality",
    "ScheduledStationAETitle",
    "ScheduledProcedureStepStartDate",
    "ScheduledProcedureStepStartTime",
    "ScheduledProcedureStepDescription",
    "ScheduledProcedureStepID",
]
# filter option -> (keyword, levels where it applies)
FILTERS = {
    "patient_id": ("PatientID", ("PATIENT", "STUDY", "SERIES", "IMAGE", "WORKLIST")),
    "patient_name": ("PatientName", ("PATIENT", "STUDY", "SERIES", "IMAGE", "WORKLIST")),
    "accession_number": ("AccessionNumber", ("STUDY", "SERIES", "IMAGE", "WORKLIST")),
    "study_instance_uid": ("StudyInstanceUID", ("STUDY", "SERIES", "IMAGE", "WORKLIST")),
    "series_instance_uid": ("SeriesInstanceUID", ("SERIES", "IMAGE")),
    "sop_instance_uid": ("SOPInstanceUID", ("IMAGE",)),
    "study_date": ("StudyDate", ("STUDY", "SERIES", "IMAGE")),
    "modality": (None, ("STUDY", "SERIES", "IMAGE", "WORKLIST")),
    "scheduled_date": ("ScheduledProcedureStepStartDate", ("WORKLIST",)),
    "scheduled_station_ae": ("ScheduledStationAETitle", ("WORKLIST",)),
}


#: Filters whose values may identify a patient: masked in the returned invocation unless unmask_phi.
PHI_FILTERS = ("patient_id", "patient_name", "accession_number", "study_date", "scheduled_date")


def validate_query_params(params: dict) -> tuple[str, str]:
    """Check the query options (no network). Returns (level, model)."""
    level, model = validate_query_level(params["level"], params.get("query_model"))
    for option, (_keyword, levels) in FILTERS.items():
        value = params.get(option)
        if value is None:
            continue
        if level not in levels:
            raise DicomValidationError(f"{option} does not apply at level {level}; use it at {', '.join(levels)}")
        if any(ord(ch) < 0x20 for ch in value) or "\\" in value:
            raise DicomValidationError(f"{option} contains a control character or a backslash; remove it")
        if len(value) > 64:
            raise DicomValidationError(f"{option} is longer than 64 characters")
    for option in ("study_instance_uid", "series_instance_uid", "sop_instance_uid"):
        value = params.get(option)
        if value is not None and not UID_RE.match(value):
            raise DicomValidationError(f"{option} is not a DICOM UID (digits separated by dots, no leading zeros)")
    for option in ("study_date", "scheduled_date"):
        value = params.get(option)
        if value is not None and (not value or not DATE_RANGE_RE.match(value)):
            raise DicomValidationError(f"{option} must be YYYYMMDD or a range YYYYMMDD-YYYYMMDD")
    if params.get("modality") is not None and not re.match(r"^[A-Z0-9_ ]{1,16}$", params["modality"]):
        raise DicomValidationError("modality must be 1 to 16 upper-case letters, digits or underscores (e.g. CT)")
    station = params.get("scheduled_station_ae")
    if station is not None and (not station or len(station) > 16):
        raise DicomValidationError("scheduled_station_ae must be an AE title of 1 to 16 characters")
    for keyword in params.get("return_keys") or []:
        validate_return_key(keyword)
    if not 1 <= params["max_results"] <= 10000:
        raise DicomValidationError("max_results must be between 1 and 10000")
    return level, model


def validate_return_key(keyword) -> None:
    """Refuse a return key that is not an attribute, or that a C-FIND identifier cannot carry."""
    if not isinstance(keyword, str) or tag_for_keyword(keyword) is None:
        raise DicomValidationError(f"return_keys: {keyword!r} is not a DICOM attribute keyword (e.g. StudyDescription)")
    if keyword in RESERVED_KEYS:
        raise DicomValidationError(
            f"return_keys: {keyword} is set by the module itself ({RESERVED_KEYS[keyword]}); remove it from return_keys"
        )
    tag = tag_for_keyword(keyword)
    if tag >> 16 in (0x0000, 0x0002, 0xFFFE):
        raise DicomValidationError(
            f"return_keys: {keyword} is a command, file meta or item attribute, not part of a stored instance; "
            "remove it from return_keys"
        )
    vr = dictionary_VR(tag)
    if any(bulk in vr for bulk in BULK_VRS):
        raise DicomValidationError(
            f"return_keys: {keyword} holds bulk data (VR {vr}), which a C-FIND cannot return; "
            "retrieve the instance instead (C-GET, C-MOVE or the archive's REST API)"
        )


def build_identifier(params: dict, level: str):
    ds = Dataset()
    sps = Dataset()
    for keyword in LEVEL_KEYS[level]:
        setattr(ds, keyword, "")
    if level == "WORKLIST":
        for keyword in SPS_KEYS:
            setattr(sps, keyword, "")
    else:
        ds.QueryRetrieveLevel = level
    for keyword in params.get("return_keys") or []:
        setattr(sps if level == "WORKLIST" and keyword in SPS_KEYS else ds, keyword, "")
    for option, (keyword, _levels) in FILTERS.items():
        value = params.get(option)
        if value is None:
            continue
        if option == "modality":
            keyword = "ModalitiesInStudy" if level == "STUDY" else "Modality"
        # Only a worklist query has the Scheduled Procedure Step item; elsewhere (Modality at
        # SERIES and IMAGE level) the key belongs in the identifier itself.
        target = sps if level == "WORKLIST" and keyword in SPS_KEYS else ds
        setattr(target, keyword, value)
    if level == "WORKLIST":
        ds.ScheduledProcedureStepSequence = [sps]
    return ds


def main():
    argument_spec = dicom_argument_spec()
    argument_spec.update(
        level=dict(type="str", default="STUDY", choices=["PATIENT", "STUDY", "SERIES", "IMAGE", "WORKLIST"]),
        query_model=dict(type="str", choices=["patient_root", "study_root"]),
        patient_id=dict(type="str"),
        patient_name=dict(type="str"),
        accession_number=dict(type="str"),
        study_instance_uid=dict(type="str"),
        series_instance_uid=dict(type="str"),
        sop_instance_uid=dict(type="str"),
        modality=dict(type="str"),
        study_date=dict(type="str"),
        scheduled_date=dict(type="str"),
        scheduled_station_ae=dict(type="str"),
        return_keys=dict(type="list", elements="str", default=[]),
        return_identifiers=dict(type="bool", default=False),
        max_results=dict(type=whole_number, default=100),
        unmask_phi=dict(type="bool", default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    fail_if_missing_libraries(module)
    params = module.params
    invocation = phi_safe_invocation(params, () if params["unmask_phi"] else PHI_FILTERS)

    try:
        level, model = validate_query_params(params)
        client = build_client(params)
        identifier = build_identifier(params, level)
        limit = params["max_results"] if params["return_identifiers"] else 0
        found = client.find(identifier, model, max_results=limit)
    except DicomError as exc:
        fail_with(module, exc, invocation=invocation)

    unmask = params["unmask_phi"]
    identifiers = [identifier_to_dict(ds, unmask_phi=unmask) for ds in found["identifiers"]]
    module.exit_json(
        changed=False,
        count=found["count"],
        returned=len(identifiers),
        truncated=bool(params["return_identifiers"] and found["truncated"]),
        identifiers=identifiers,
        level=level,
        query_model=model,
        sop_class=QUERY_MODELS[model][0],
        phi_masked=not unmask,
        latency_ms=found["latency_ms"],
        timings=found["timings"],
        status=found["status"],
        invocation=invocation,
    )


if __name__ == "__main__":
    main()
