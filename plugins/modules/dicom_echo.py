#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dicom_echo
short_description: Check that a DICOM peer answers C-ECHO, and how fast
description:
  - Opens an association with the peer (optionally over TLS), sends a C-ECHO (Verification), releases
    the association and returns the latency, the negotiated presentation context and what the peer
    says about itself (AE title, implementation class UID and version name).
  - On failure the task fails with the exact reason, one of
    C(invalid_argument), C(connection_refused), C(timeout), C(name_resolution), C(host_unreachable),
    C(connection_failed), C(tls_error), C(association_rejected) (with result, source and reason in
    words, for example C(called AE title not recognised)), C(aborted), C(no_accepted_context),
    C(dimse_failure) or C(latency_exceeded).
  - Arguments are checked before any network traffic.
  - Read-only; it runs unchanged in check mode.
  - "Runs on the controller; use C(delegate_to: localhost)."
version_added: "0.1.0"
author:
  - clinical-upgrade contributors
extends_documentation_fragment:
  - dicom_connection
options:
  max_latency_ms:
    description:
      - Fail with reason C(latency_exceeded) when the whole cycle (associate, C-ECHO, release)
        takes longer than this many milliseconds. Not checked when unset. C(nan), C(inf), 0 and
        negative values are refused.
    type: float
attributes:
  check_mode:
    support: full
    details: C-ECHO changes nothing, so the module runs unchanged in check mode.
  diff_mode:
    support: none
requirements:
  - pynetdicom >= 3.0, < 3.1
  - pydicom >= 3.0, < 3.1
notes:
  - The peer AE title returned is the responding AE title of the A-ASSOCIATE-AC.
seealso:
  - module: dicom_query
  - module: dicom_roundtrip
"""

EXAMPLES = r"""
- name: Check the PACS answers C-ECHO within 500 ms
  dicom_echo:
    host: "{{ ansible_host }}"
    port: 4242
    called_ae: ORTHANC
    calling_ae: CLINUPG
    max_latency_ms: 500
  delegate_to: localhost
  register: __dicom_verify_echo

- name: Check the archive over DICOM TLS with a client certificate
  dicom_echo:
    host: pacs1.hospital.example
    port: 2762
    called_ae: PACS1
    tls_ca_cert: /etc/clinical-upgrade/pki/ca.crt
    tls_client_cert: /etc/clinical-upgrade/pki/clinupg.crt
    tls_client_key: /etc/clinical-upgrade/pki/clinupg.key
  delegate_to: localhost
"""

RETURN = r"""
status:
  description: DIMSE status of the C-ECHO response (0 is success).
  returned: success
  type: int
  sample: 0
status_hex:
  description: The same status as a hexadecimal string.
  returned: success
  type: str
  sample: "0x0000"
latency_ms:
  description: Milliseconds for the whole cycle, association request to release completed.
  returned: success
  type: float
  sample: 4.8
timings:
  description: The cycle split into association, C-ECHO and release, in milliseconds.
  returned: success
  type: dict
  sample: {"associate_ms": 1.9, "echo_ms": 2.4, "release_ms": 0.5}
context:
  description: The accepted presentation context used for C-ECHO.
  returned: success
  type: dict
  sample:
    context_id: 1
    abstract_syntax: 1.2.840.10008.1.1
    abstract_syntax_name: Verification SOP Class
    transfer_syntax: 1.2.840.10008.1.2.1
    transfer_syntax_name: Explicit VR Little Endian
peer:
  description: What the peer said about itself in the A-ASSOCIATE-AC.
  returned: success
  type: dict
  sample:
    ae_title: ORTHANC
    implementation_class_uid: 1.2.276.0.7230010.3.0.3.6.7
    implementation_version_name: OFFIS_DCMTK_367
    maximum_pdu_length: 16384
tls:
  description: Whether the association used TLS.
  returned: always
  type: bool
  sample: false
reason:
  description: Why the check failed (see the module description for the list).
  returned: failure
  type: str
  sample: association_rejected
rejection:
  description: The A-ASSOCIATE-RJ fields, as numbers and in words.
  returned: when reason is association_rejected
  type: dict
  sample:
    result: 1
    result_str: rejected (permanent)
    source: 1
    source_str: DICOM UL service-user
    reason: 7
    reason_str: called AE title not recognised
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.dicom_client import (
    DicomError,
    build_client,
    dicom_argument_spec,
    fail_if_missing_libraries,
    fail_with,
)


def uses_tls(params: dict) -> bool:
    return bool(
        params.get("tls") or params.get("tls_ca_cert") or params.get("tls_client_cert") or params.get("tls_client_key")
    )


def main():
    argument_spec = dicom_argument_spec()
    argument_spec.update(max_latency_ms=dict(type="float"))
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    fail_if_missing_libraries(module)
    tls = uses_tls(module.params)

    max_latency = module.params["max_latency_ms"]
    if max_latency is not None and not (0 < max_latency < 3_600_000):  # also refuses nan and inf
        module.fail_json(
            msg="max_latency_ms must be a number of milliseconds greater than 0 and below 3600000, "
            f"got {max_latency!r}",
            reason="invalid_argument",
            tls=tls,
        )

    try:
        client = build_client(module.params)
        result = client.echo()
    except DicomError as exc:
        fail_with(module, exc, tls=tls)

    result["tls"] = tls
    if max_latency is not None and result["latency_ms"] > max_latency:
        module.fail_json(
            msg=f"C-ECHO cycle took {result['latency_ms']:.1f} ms, more than max_latency_ms {max_latency:g}",
            reason="latency_exceeded",
            **result,
        )
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
