#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hl7_check
short_description: Send an HL7 v2 message over MLLP and check the ACK
description:
  - Builds an HL7 v2 message (an C(ORM^O01) order or an C(ADT^A01) admission for a synthetic
    patient, or a caller-given raw message), sends it over MLLP to an HL7 interface (a RIS,
    an interface engine, a PACS HL7 port) and parses the acknowledgment.
  - Returns the ACK code (MSA-1), text (MSA-3), the control ids sent and acknowledged, ERR segments
    and the round-trip latency. Fails when the ACK code is not O(expected_ack), when no ACK arrives
    within O(timeout), when the answer is not a well-formed MLLP frame or ACK, or when MSA-2 does not
    echo the control id that was sent.
  - Generated messages never carry real patient data; the patient is C(ZZTEST^SYNTHETIC) with a
    generated C(SYN...) identifier. Patient names and identifiers are masked in everything returned;
    each such field becomes C(***) as a whole, so neither initials nor lengths show. Error messages
    never quote the message text, O(order.patient_id) or O(order.accession_number).
  - Field values are escaped when the message is built (C(|) becomes C(\F\), C(^) C(\S\), C(&) C(\T\),
    C(~) C(\R\), a backslash C(\E\)), so that a delimiter in a value stays in its field.
  - Options are validated before any network use (host name or IP address, port 1 to 65535, a finite
    timeout, an ASCII-compatible encoding that can represent every character of the message, message
    type, order fields and dates); a bad option fails the task with a message that says what to fix.
  - "Runs on the controller; use C(delegate_to: localhost)."
version_added: "0.1.0"
author:
  - clinical-upgrade contributors
extends_documentation_fragment:
  - hl7_connection
options:
  message_type:
    description:
      - C(ORM^O01) sends a new (or cancel) order built from O(order).
      - C(ADT^A01) sends an admission for a synthetic patient.
      - C(raw) sends O(raw_message) as given (segment ends may be CR, LF or CRLF).
    type: str
    default: ORM^O01
    choices: [ORM^O01, ADT^A01, raw]
  raw_message:
    description:
      - A complete HL7 v2 message, required with O(message_type=raw) and refused otherwise.
      - MSH-10 is replaced by O(control_id) when that is given.
      - Use test patients only; the message is masked in the result but is sent as is. Ansible neither logs
        nor returns this option (C(no_log)); a message without any field to mask is therefore also hidden in
        RV(sent_message).
    type: str
  control_id:
    description:
      - Message control id (MSH-10), up to 20 letters, digits, C(.), C(_) or C(-).
      - Generated when omitted (and, for O(message_type=raw), taken from the raw message).
    type: str
  expected_ack:
    description:
      - The acknowledgment code that counts as success. Any other code fails the task.
      - Set C(AE) or C(AR) to check that an interface refuses a bad message.
    type: str
    default: AA
    choices: [AA, AE, AR, CA, CE, CR]
  sending_application:
    description: MSH-3 sending application.
    type: str
    default: CLINUPG
  sending_facility:
    description: MSH-4 sending facility.
    type: str
    default: CLINUPG
  receiving_application:
    description: MSH-5 receiving application.
    type: str
    default: RIS
  receiving_facility:
    description: MSH-6 receiving facility.
    type: str
    default: RADIOLOGY
  hl7_version:
    description: MSH-12 version id of generated messages.
    type: str
    default: "2.5.1"
  order:
    description:
      - Order fields for O(message_type=ORM^O01). The patient is always synthetic.
      - "Mapping: ORC-1 control, OBR-18 (and ORC-2, ORC-3) accession number, OBR-21 station AE title,
        OBR-24 modality, OBR-4 procedure code^description, OBR-36 scheduled date/time."
    type: dict
    default: {}
    suboptions:
      control:
        description: ORC-1 order control, C(NW) new order or C(CA) cancel order.
        type: str
        default: NW
        choices: [NW, CA]
      accession_number:
        description: Accession number (up to 16 characters). Generated when omitted; required for C(CA).
        type: str
      patient_id:
        description: Synthetic patient id for PID-3 (up to 32 characters). Generated (C(SYN...)) when omitted.
        type: str
      modality:
        description: Modality for OBR-24 (the worklist's Modality).
        type: str
        default: OT
      station_aetitle:
        description:
          - Scheduled station AE title for OBR-21, 1 to 16 printable ASCII characters, not all spaces, without
            backslash. HL7 delimiters (C(|), C(^), C(&), C(~)) are escaped.
        type: str
        aliases: [station_ae]
      procedure_code:
        description: Procedure code, OBR-4.1.
        type: str
        default: CUPG01
      procedure_description:
        description:
          - Procedure description, OBR-4.2, 1 to 64 printable characters (no line breaks). HL7 delimiters are
            escaped.
        type: str
        default: CLINICAL UPGRADE TEST
      scheduled_datetime:
        description:
          - Scheduled start, C(YYYYMMDD[HHMM[SS]]), a real calendar date and time from the year 1900 (C(20241399)
            or C(202402301200) are refused). Now when omitted.
        type: str
attributes:
  check_mode:
    support: full
    details: In check mode the message is validated and built but not sent; RV(sent) is false.
  diff_mode:
    support: none
notes:
  - The module reports C(changed=false) because it is a check, but an C(ORM^O01) with C(NW) does create an
    order on a real RIS. Cancel it afterwards with O(order.control=CA) and the same O(order.accession_number).
  - Plain MLLP only (no TLS). When the peer closes or resets the connection without an answer, or answers
    with a TLS record, the module opens a second connection, sends a TLS ClientHello (nothing else) and waits
    up to 2 seconds for the answer; when that answer is TLS, the task fails with RV(error_kind=tls) and a
    message that the peer speaks TLS. A TLS port that neither answers nor closes is reported as a timeout.
seealso:
  - name: HL7 v2 MLLP (HL7 Version 3 Standard, Transport Specification, MLLP release 2)
    description: The framing used, C(0x0b) message C(0x1c 0x0d).
    link: https://www.hl7.org/implement/standards/
"""

EXAMPLES = r"""
- name: Check that the RIS accepts an order
  hl7_check:
    host: ris1.example.org
    port: 2575
    order:
      accession_number: CU0001
      modality: CT
      station_aetitle: CT01
  delegate_to: localhost
  register: __ris_order

- name: Cancel the test order again
  hl7_check:
    host: ris1.example.org
    order:
      control: CA
      accession_number: CU0001
  delegate_to: localhost

- name: Check that the interface rejects an unsupported message type
  hl7_check:
    host: ris1.example.org
    message_type: raw
    raw_message: "MSH|^~\\&|CLINUPG|CLINUPG|RIS|RAD|20240101000000||ZZZ^Z01|CU1|P|2.5.1"
    expected_ack: AR
  delegate_to: localhost

- name: Admit a synthetic patient, with a short timeout
  hl7_check:
    host: 192.0.2.10
    message_type: ADT^A01
    timeout: 3
  delegate_to: localhost
"""

RETURN = r"""
sent:
  description:
    - Whether the whole message went out to the peer (false in check mode, on validation errors and when the
      connection could not be opened; true after a reset or a timeout once the message was sent).
  returned: always
  type: bool
  sample: true
message_type:
  description: MSH-9 of the message (as sent, or as built in check mode).
  returned: always
  type: str
  sample: ORM^O01^ORM_O01
control_id:
  description: MSH-10 message control id of the message.
  returned: always
  type: str
  sample: CU3F2A9C0D1E4B5A6F7A
sent_message:
  description: The message, segments separated by CR, with patient names and identifiers masked.
  returned: always
  type: str
  sample: "MSH|^~\\&|CLINUPG|CLINUPG|RIS|RADIOLOGY|20240101120000||ADT^A01^ADT_A01|CU1|P|2.5.1\rPID|1||***||***||***|O"
ack_code:
  description: MSA-1 acknowledgment code (AA, AE, AR, CA, CE or CR).
  returned: when sent and an ACK was parsed
  type: str
  sample: AA
ack_text:
  description: MSA-3 text message (or the first ERR text when MSA-3 is empty).
  returned: when sent and an ACK was parsed
  type: str
  sample: "order NW: worklist entry scheduled"
ack_control_id:
  description: MSA-2, the control id the peer acknowledged.
  returned: when sent and an ACK was parsed
  type: str
  sample: CU3F2A9C0D1E4B5A6F7A
ack_message_type:
  description: MSH-9 of the ACK.
  returned: when sent and an ACK was parsed
  type: str
  sample: ACK^O01^ACK
accepted:
  description: Whether the ACK code is an accept (AA or CA).
  returned: when sent and an ACK was parsed
  type: bool
  sample: true
errors:
  description: ERR segments of the ACK.
  returned: when sent and an ACK was parsed
  type: list
  elements: dict
  contains:
    location:
      description: Error location (ERR-2, or ERR-1 in v2.3 style).
      type: str
    code:
      description: HL7 error code (ERR-3.1, table 0357).
      type: str
    severity:
      description: ERR-4 severity (E, W, I).
      type: str
    text:
      description: Error text (ERR-3.2 or ERR-8).
      type: str
  sample: [{"location": "OBR^1^18", "code": "101", "severity": "E", "text": "OBR-18 accession number is required"}]
ack_message:
  description: The ACK as received, segments separated by CR, patient names and identifiers masked.
  returned: when sent and an ACK was parsed
  type: str
  sample: "MSH|^~\\&|RIS|RADIOLOGY|CLINUPG|CLINUPG|20240101120000||ACK^O01^ACK|ACK1|P|2.5.1\rMSA|AA|CU1"
latency_ms:
  description: Milliseconds from sending the message to receiving the complete ACK.
  returned: when sent and an ACK was received
  type: float
  sample: 3.52
connect_ms:
  description: Milliseconds to open the TCP connection.
  returned: when sent and an ACK was received
  type: float
  sample: 0.41
error_kind:
  description:
    - What went wrong, on failures after validation; one of C(timeout), C(refused), C(connection), C(frame)
      (malformed MLLP frame or no answer), C(ack) (malformed ACK), C(control_id) (MSA-2 mismatch), C(tls)
      (the peer speaks TLS, this module plain MLLP).
    - Not set when the failure is an unexpected ACK code; RV(ack_code) says that.
  returned: on failure to get a valid ACK
  type: str
  sample: timeout
"""

from decimal import Decimal

from ansible.module_utils.basic import AnsibleModule, _load_params
from ansible.module_utils.hl7_client import (
    ACCEPT_CODES,
    ACK_CODES,
    MASK,
    HL7ClientError,
    build_message,
    encode_message,
    hl7_argument_spec,
    mask_message,
    new_control_id,
    send_message,
    set_control_id,
    split_segments,
    validate_options,
)


def build_client():
    """The one seam for the network: returns the send function."""
    return send_message


def _invocation(params):
    """The module args as returned in the result, with the order's patient id masked (raw_message is no_log)."""
    args = dict(params)
    if isinstance(args.get("order"), dict) and args["order"].get("patient_id"):
        args["order"] = dict(args["order"], patient_id=MASK)
    return {"module_args": args}


def run_module(module):
    params = module.params
    result = {"changed": False, "sent": False, "invocation": _invocation(params)}
    try:
        validate_options(params)
        if params["message_type"] == "raw":
            text = build_message(params, None)
            if params.get("control_id"):
                text = set_control_id(text, params["control_id"])
        else:
            text = build_message(params, params.get("control_id") or new_control_id())
        msh = split_segments(text)[0][1]
        control_id = msh[10]
        encode_message(text, params["encoding"])  # every character representable, before any network use
    except HL7ClientError as exc:
        module.fail_json(msg=exc.msg, **result)
    result.update(
        {
            "message_type": msh[9] if len(msh) > 9 else "",
            "control_id": control_id,
            "sent_message": mask_message(text),
        }
    )
    if module.check_mode:
        result["msg"] = "check mode: message validated and built, not sent to {}:{}".format(
            params["host"], params["port"]
        )
        module.exit_json(**result)

    send = build_client()
    try:
        ack = send(
            params["host"],
            params["port"],
            text,
            timeout=params["timeout"],
            encoding=params["encoding"],
            control_id=control_id,
        )
    except HL7ClientError as exc:
        result["sent"] = bool(exc.details.get("sent", False))
        ack = exc.details.get("ack")
        if ack:
            result.update(_ack_result(ack))
        for key in ("latency_ms", "connect_ms"):
            if key in exc.details:
                result[key] = exc.details[key]
        result["error_kind"] = exc.kind
        module.fail_json(msg=exc.msg, **result)

    result["sent"] = True
    result.update(_ack_result(ack))
    expected = params["expected_ack"]
    if ack["ack_code"] != expected:
        detail = ": {}".format(ack["ack_text"]) if ack["ack_text"] else ""
        module.fail_json(
            msg="{}:{} answered {} to control id {}, expected {}{}".format(
                params["host"], params["port"], ack["ack_code"], control_id, expected, detail
            ),
            **result,
        )
    module.exit_json(**result)


def _ack_result(ack):
    out = {
        "ack_code": ack["ack_code"],
        "ack_text": ack["ack_text"],
        "ack_control_id": ack["ack_control_id"],
        "ack_message_type": ack["ack_message_type"],
        "accepted": ack["ack_code"] in ACCEPT_CODES,
        "errors": ack["errors"],
        "ack_message": ack["message"],
    }
    for key in ("latency_ms", "connect_ms"):
        if key in ack:
            out[key] = ack[key]
    return out


def _is_infinite(value):
    try:
        return not isinstance(value, bool) and Decimal(value).is_infinite()
    except Exception:  # anything Decimal cannot read is left to the argument spec
        return False


def _shape_errors(raw):
    """Messages for raw module args on which ansible-core's own conversion raises (a traceback, not a task error).

    - a dict option with suboptions that gets a number, a bool or a list of numbers (a TypeError);
    - an int option that gets infinity (``inf``, ``"Infinity"``: an OverflowError).
    """
    errors = {}
    order = raw.get("order")
    if order is not None and not isinstance(order, (dict, str)):
        errors["order"] = (
            f"order must be a dictionary of order fields (control, accession_number, ...), got {type(order).__name__}"
        )
    if _is_infinite(raw.get("port")):
        errors["port"] = f"port must be an integer from 1 to 65535, got {raw['port']!r}"
    return errors


def main():
    argument_spec = hl7_argument_spec()
    argument_spec["expected_ack"] = {"type": "str", "default": "AA", "choices": list(ACK_CODES)}
    errors = _shape_errors(_load_params())
    if errors:
        for name in errors:
            argument_spec[name] = {"type": "raw"}
        module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
        module.fail_json(msg="; ".join(errors.values()), changed=False, sent=False)
    module = AnsibleModule(
        argument_spec=argument_spec,
        required_if=[("message_type", "raw", ("raw_message",))],
        supports_check_mode=True,
    )
    run_module(module)


if __name__ == "__main__":
    main()
