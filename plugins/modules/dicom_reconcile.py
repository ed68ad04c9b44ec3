#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dicom_reconcile
short_description: Reconcile two archives instance by instance, and fail above a discrepancy rate
description:
  - The reconciliation gate of a migration. Lists every study, series and instance of the O(source) and the
    O(target) archive and compares them at instance level, every SOP Instance UID of the source present on the
    target, filed under the same study and series; and the number of instances of every series on both sides.
  - "A deep check then compares the content of every instance in a sample of the studies both hold (O(sample_size)
    studies, all of them when there are fewer): with O(deep_check=file) the stored files (the MD5 Orthanc records
    of each file, which a byte-for-byte copy keeps); with O(deep_check=dataset) the datasets, without the file meta
    header and the O(ignore_attributes) a migration may change."
  - "Returns the discrepancies: missing (on the source, not on the target), extra (on the target only), misfiled
    (under another study or series), differing (other content) and unreadable instances, each by its UIDs with
    the patient ID masked; the series whose counts differ; and the discrepancy rate, per instance and per study.
    The gate's rate is the larger of the two; the task fails when it exceeds O(max_discrepancy_percent)."
  - "Two ways to list an archive. O(method=rest), for two Orthanc archives: their REST APIs, paged; an instance is
    known by its Orthanc id, computed from the patient ID and the study, series and SOP Instance UIDs, so the two
    lists are compared without reading each instance. O(method=dicom), for any archive: C-FIND of the Study Root
    model at STUDY, SERIES and IMAGE level (and C-GET for a dataset deep check). O(method=auto) takes rest when
    both sides give O(source.url), else dicom."
  - Read-only on both archives. Runs on the controller; use C(delegate_to=localhost).
version_added: "0.6.0"
author:
  - clinical-upgrade contributors
options:
  source:
    description:
      - The archive migrated from. Give O(source.url) for REST, O(source.host) and O(source.called_ae) for DICOM.
    type: dict
    required: true
    suboptions: &side
      url:
        description: Base URL of the Orthanc REST API.
        type: str
      username:
        description: User for HTTP basic authentication.
        type: str
      password:
        description: Password of O(source.username).
        type: str
      validate_certs:
        description: Verify the server certificate of an C(https) URL.
        type: bool
        default: true
      ca_path:
        description: PEM file of the CA that signed the server's certificate.
        type: path
      host:
        description: Host of the archive's DICOM service.
        type: str
      port:
        description: Port of the archive's DICOM service.
        type: int
        default: 104
      called_ae:
        description: AE title of the archive.
        type: str
      calling_ae:
        description: Our AE title; the archive must allow it C-FIND (and C-GET for a dataset deep check).
        type: str
        default: CLINUPG
      timeout:
        description: Seconds to wait for each request or DIMSE answer.
        type: float
        default: 60.0
  target:
    description: The archive migrated to, with the same suboptions as O(source).
    type: dict
    required: true
    suboptions: *side
  method:
    description: How both archives are listed (see the description).
    type: str
    choices: [auto, rest, dicom]
    default: auto
  max_discrepancy_percent:
    description:
      - The gate. Fail when the discrepancy rate (per instance or per study, the larger) exceeds this percentage.
        0 to 100; 0 allows no discrepancy at all.
    type: float
    default: 1.0
  sample_size:
    description: Studies in the deep check (all of them when the archives share fewer). 0 skips the deep check.
    type: int
    default: 500
  sample_seed:
    description: Seed of the sample; the same seed and archives give the same studies.
    type: str
    default: ""
  deep_check:
    description:
      - How the sampled instances are compared. C(auto) is C(file) with O(method=rest) and C(dataset) with
        O(method=dicom) (a C-GET gives the dataset, never the stored file). C(none) skips the deep check.
    type: str
    choices: [auto, file, dataset, none]
    default: auto
  ignore_attributes:
    description:
      - Attributes a migration may change, left out of a dataset deep check, as keywords (C(StationName)) or tags
        (C((0008,1010))). The file meta header (group 0002) is always left out.
    type: list
    elements: str
    default: []
  workers:
    description: Requests or associations at once, per archive (1 to 32).
    type: int
    default: 8
  report:
    description: Write the whole result as JSON to this file on the controller (its directory must exist).
    type: path
attributes:
  check_mode:
    support: full
    details: Reads only; runs unchanged in check mode.
  diff_mode:
    support: none
requirements:
  - pydicom >= 3.0, < 3.1
  - pynetdicom >= 3.0, < 3.1 (O(method=dicom))
notes:
  - No patient name or ID is returned; patient IDs are masked as C(***).
seealso:
  - module: pacs_archive
"""

EXAMPLES = r"""
- name: Reconcile the old PACS with the new one (gate at 1 %)
  dicom_reconcile:
    source: {url: "http://pacs1:8042", username: cuadmin, password: "{{ pacs_server_rest_password }}"}
    target: {url: "http://pacs2:8042", username: cuadmin, password: "{{ pacs2_rest_password }}"}
    max_discrepancy_percent: 1.0
    report: /var/lib/clinical-upgrade/evidence/reconcile.json
  delegate_to: localhost

- name: Reconcile against an archive that is not Orthanc, over DICOM, with no discrepancy allowed
  dicom_reconcile:
    source: {host: oldpacs.hospital.example, port: 104, called_ae: OLDPACS, calling_ae: CLINUPG}
    target: {host: pacs2.hospital.example, port: 4242, called_ae: PACS2, calling_ae: CLINUPG}
    max_discrepancy_percent: 0
    ignore_attributes: [InstitutionName]
  delegate_to: localhost
"""

RETURN = r"""
method:
  description: How the archives were listed, rest or dicom.
  returned: always
  type: str
source:
  description: Studies, series and instances of the source.
  returned: success
  type: dict
  sample: {"studies": 40, "series": 160, "instances": 800}
target:
  description: The same for the target.
  returned: success
  type: dict
discrepancies:
  description: How many of each kind, and the studies with at least one.
  returned: success
  type: dict
discrepancy_percent:
  description: The rate per instance and per study, in percent of the source's instances and studies.
  returned: success
  type: dict
  sample: {"instance_percent": 0.25, "study_percent": 5.0}
discrepancy_rate:
  description: The gate's rate, the larger of the two.
  returned: success
  type: float
passed:
  description: Whether the rate is within O(max_discrepancy_percent).
  returned: success
  type: bool
missing:
  description:
    - Instances of the source the target does not hold, each with sop_instance_uid, series_instance_uid,
      study_instance_uid, patient_id (masked) and, over REST, orthanc_id.
  returned: success
  type: list
  elements: dict
extra:
  description: Instances only the target holds.
  returned: success
  type: list
  elements: dict
misfiled:
  description: Instances the target files under another study or series.
  returned: success
  type: list
  elements: dict
differing:
  description: Sampled instances whose content differs, with both digests.
  returned: success
  type: list
  elements: dict
unreadable:
  description: Sampled instances one side listed but could not give for the deep check.
  returned: success
  type: list
  elements: dict
series_counts:
  description: Series whose number of instances differs between the two sides.
  returned: success
  type: list
  elements: dict
deep_check:
  description: The deep check's method, studies sampled and instances compared.
  returned: success
  type: dict
timings_s:
  description: Seconds spent listing, deep checking, and in all.
  returned: success
  type: dict
"""

import json

from ansible.module_utils.arg_types import whole_number
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.orthanc_rest import OrthancError

try:
    from ansible.module_utils.archive_reconcile import (
        HAS_PYDICOM,
        DicomInventory,
        open_rest_side,
        parent_dir_error,
        parse_ignore,
        reconcile,
        rest_side_error,
        rest_side_spec,
        timeout_error,
    )
except ImportError:  # pragma: no cover
    HAS_PYDICOM = False

SIDE = {
    **rest_side_spec(timeout=60.0),
    "host": {"type": "str"},
    "port": {"type": whole_number, "default": 104},
    "called_ae": {"type": "str"},
    "calling_ae": {"type": "str", "default": "CLINUPG"},
}
LISTED = 10  # discrepancies named in the failure message (all of them are in the result)


def argument_spec():
    return {
        "source": {"type": "dict", "required": True, "options": SIDE},
        "target": {"type": "dict", "required": True, "options": SIDE},
        "method": {"type": "str", "default": "auto", "choices": ["auto", "rest", "dicom"]},
        "max_discrepancy_percent": {"type": "float", "default": 1.0},
        "sample_size": {"type": whole_number, "default": 500},
        "sample_seed": {"type": "str", "default": ""},
        "deep_check": {"type": "str", "default": "auto", "choices": ["auto", "file", "dataset", "none"]},
        "ignore_attributes": {"type": "list", "elements": "str", "default": []},
        "workers": {"type": whole_number, "default": 8},
        "report": {"type": "path"},
    }


def params_error(p):
    """What is wrong with the options, before any request; None when they can work."""
    threshold = p["max_discrepancy_percent"]
    if threshold != threshold or not 0 <= threshold <= 100:  # NaN compares unequal to itself
        return f"max_discrepancy_percent must be between 0 and 100 (a percentage), got {threshold}"
    if p["sample_size"] < 0:
        return f"sample_size must be 0 (no deep check) or more studies, got {p['sample_size']}"
    if not 1 <= p["workers"] <= 32:
        return f"workers must be between 1 and 32, got {p['workers']}"
    error = parent_dir_error(p["report"], "report")
    if error:
        return error
    method = p["method"]
    if method == "auto":
        method = "rest" if p["source"]["url"] and p["target"]["url"] else "dicom"
    for side in ("source", "target"):
        opts = p[side]
        if method == "rest":
            if not opts["url"]:
                return f"{side}.url is needed with method rest (the Orthanc REST API, for example http://pacs1:8042)"
            error = rest_side_error(opts, side)
        elif not opts["host"] or not opts["called_ae"]:
            error = (
                f"{side}.host and {side}.called_ae are needed with method dicom (give both archives' DICOM "
                f"service), or {side}.url for both to reconcile two Orthanc archives over REST"
            )
        else:
            error = timeout_error(opts, side)
        if error:
            return error
    if method == "dicom" and p["deep_check"] == "file":
        return "deep_check file needs method rest (a C-GET gives the dataset, never the stored file): use dataset"
    try:
        parse_ignore(p["ignore_attributes"])
    except ValueError as exc:
        return str(exc)
    return None


def open_side(p, side, method):
    opts = p[side]
    if method == "rest":
        return open_rest_side(opts, side, p["workers"])
    from ansible.module_utils.dicom_client import build_client, validate_connection_params

    params = {"host": opts["host"], "port": opts["port"], "called_ae": opts["called_ae"],
              "calling_ae": opts["calling_ae"], "timeout": opts["timeout"]}  # fmt: skip
    validate_connection_params(dict(params, tls=False))
    return DicomInventory(lambda: build_client(params), p["workers"])


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    p = module.params
    if not HAS_PYDICOM:
        from ansible.module_utils.basic import missing_required_lib

        module.fail_json(msg=missing_required_lib("pydicom"))
    error = params_error(p)
    if error:
        module.fail_json(msg=error, reason="invalid_argument")
    method = p["method"]
    if method == "auto":
        method = "rest" if p["source"]["url"] and p["target"]["url"] else "dicom"
    deep = p["deep_check"]
    if deep == "auto":
        deep = "file" if method == "rest" else "dataset"
    sides = {}
    try:
        for side in ("source", "target"):
            try:
                sides[side] = open_side(p, side, method)
            except Exception as exc:  # a DicomValidationError names the option
                module.fail_json(msg=f"{side}: {exc}", reason="invalid_argument", method=method)
        try:
            result = reconcile(
                sides["source"], sides["target"], sample_size=p["sample_size"], seed=p["sample_seed"],
                deep_check=deep, ignore=parse_ignore(p["ignore_attributes"]), workers=p["workers"],
                max_percent=p["max_discrepancy_percent"],
            )  # fmt: skip
        except OrthancError as exc:
            module.fail_json(msg=str(exc), reason="unreachable", method=method)
        except Exception as exc:  # DicomError and the like: say which archive when the message does not
            text = getattr(exc, "msg", None) or str(exc)
            module.fail_json(msg=f"reconciliation failed: {text}", reason=getattr(exc, "reason", "failed"),
                             method=method)  # fmt: skip
    finally:
        for inv in sides.values():
            inv.close()
    if p["report"]:
        with open(p["report"], "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=1, sort_keys=True)
            handle.write("\n")
        result["report"] = p["report"]
    if not result["passed"]:
        module.fail_json(msg=failure_message(result), **result)
    module.exit_json(changed=False, **result)


def failure_message(result):
    d = result["discrepancies"]
    named = []
    for kind in ("missing", "extra", "misfiled", "differing", "unreadable"):
        named += [f"{kind} {e['sop_instance_uid'] or e.get('orthanc_id')}" for e in result[kind]]
    more = f" (and {len(named) - LISTED} more in the result)" if len(named) > LISTED else ""
    return (
        f"discrepancy rate {result['discrepancy_rate']} % is above max_discrepancy_percent "
        f"{result['max_discrepancy_percent']} %: {d['missing_instances']} missing, {d['extra_instances']} extra, "
        f"{d['misfiled_instances']} misfiled, {d['differing_instances']} differing, {d['unreadable_instances']} "
        f"unreadable instance(s), {d['series_with_other_counts']} series with other counts, in "
        f"{d['studies_with_discrepancies']} of {result['source']['studies']} studies: "
        + "; ".join(named[:LISTED]) + more
    )


if __name__ == "__main__":
    main()
