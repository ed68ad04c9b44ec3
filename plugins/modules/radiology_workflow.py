#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: radiology_workflow
short_description: Prove the radiology workflow across the RIS and the PACS, end to end, with a synthetic order
description:
  - One health check for the integration of an upgraded RIS and PACS, over the real protocols. Each
    step is reported with status and timing in RV(steps), in this order.
  - C(order) send a synthetic order (HL7 C(ORM^O01), ORC-1 C(NW)) to the RIS over MLLP; ACK C(AA)
    expected. The patient is synthetic (C(ZZTEST^SYNTHETIC), a generated C(SYN...) identifier).
  - C(worklist) C-FIND on the RIS modality worklist by accession number and scheduled station AE
    title, repeated for up to O(worklist_wait) seconds until the order appears; exactly one item, with
    the Patient ID of the order, is expected. Its Patient ID, Patient's Name, Accession Number and
    Study Instance UID are taken, as a modality takes them.
  - C(store) as a simulated modality, C-STORE a small synthetic instance (Secondary Capture, or CT)
    carrying those four attributes and C(PatientIdentityRemoved=YES) to the PACS.
  - C(pacs_find) C-FIND on the PACS at STUDY level (Study Root) by the accession number; exactly one
    study with the worklist's Patient ID and Study Instance UID is expected.
  - C(cleanup_study) remove the synthetic instance through the Orthanc REST API (C(POST /tools/lookup)
    with its SOP Instance UID, then C(DELETE /instances/{id})); Orthanc removes the study and the
    patient with their last instance. Only what this run stored is deleted, never a study that holds
    anything else.
  - C(cancel) cancel the order (HL7 C(ORM^O01), ORC-1 C(CA)); ACK C(AA) or C(CA) expected.
  - C(worklist_gone) C-FIND on the worklist again, for up to O(worklist_wait) seconds, until no item
    for the accession number is left.
  - The first failing step among C(order), C(worklist), C(store) and C(pacs_find) fails the module,
    with C(failed_step), C(reason) and a message that names the option to fix; the cleanup steps run
    first (the instance is deleted if it was stored, the order cancelled if it was sent).
  - A failing cleanup step fails the module too, with C(reason=cleanup_failed) and what to remove by
    hand. A synthetic order or patient left in clinical systems is a finding, not a pass. With
    O(cleanup=false) the three cleanup steps are C(skipped) and the order and study stay (C(changed)).
  - Every option is checked before any traffic. No patient data appears in clear in the result or in
    messages; worklist and PACS attributes are returned masked (C(***)). The accession number and the
    UIDs, generated for this run, are returned so that leftovers can be found.
  - In check mode only C-ECHOs to the worklist and the PACS run (step C(echo)); no order is sent, nothing
    is stored.
  - "Runs on the controller; use C(delegate_to: localhost)."
version_added: "0.1.0"
author:
  - clinical-upgrade contributors
options:
  hl7_host:
    description: Host name or IP address of the RIS HL7 (MLLP) interface.
    type: str
    required: true
  hl7_port:
    description: TCP port of the RIS MLLP listener (1 to 65535).
    type: int
    default: 2575
  hl7_sending_application:
    description: MSH-3 sending application of the order messages.
    type: str
    default: CLINUPG
  hl7_sending_facility:
    description: MSH-4 sending facility of the order messages.
    type: str
    default: CLINUPG
  hl7_receiving_application:
    description: MSH-5 receiving application of the order messages.
    type: str
    default: RIS
  hl7_receiving_facility:
    description: MSH-6 receiving facility of the order messages.
    type: str
    default: RADIOLOGY
  worklist_host:
    description: Host name or IP address of the RIS modality worklist SCP. O(hl7_host) when omitted.
    type: str
  worklist_port:
    description: TCP port of the modality worklist SCP (1 to 65535). Plain DICOM (no TLS).
    type: int
    default: 104
  worklist_ae:
    description: AE title of the modality worklist SCP (the I(called) AE title).
    type: str
    required: true
  pacs_host:
    description: Host name or IP address of the PACS (DICOM).
    type: str
    required: true
  pacs_port:
    description: DICOM port of the PACS (1 to 65535).
    type: int
    default: 4242
  pacs_ae:
    description: AE title of the PACS.
    type: str
    required: true
  pacs_tls:
    description:
      - Use DICOM TLS to the PACS. Implied when O(pacs_tls_ca_cert), O(pacs_tls_client_cert) or
        O(pacs_tls_client_key) is set.
    type: bool
    default: false
  pacs_tls_ca_cert:
    description: PEM file with the CA certificate(s) that signed the PACS certificate.
    type: path
  pacs_tls_client_cert:
    description: PEM file with our client certificate, for a PACS that requires one.
    type: path
  pacs_tls_client_key:
    description: PEM file with the private key of O(pacs_tls_client_cert).
    type: path
  pacs_tls_client_key_passphrase:
    description: Passphrase of O(pacs_tls_client_key) when the key is encrypted.
    type: str
  pacs_tls_check_hostname:
    description: Check that the PACS certificate matches O(pacs_host). Turn off only for a lab.
    type: bool
    default: true
  pacs_url:
    description:
      - Base URL of the PACS's Orthanc REST API, used to delete the synthetic study, for example
        C(http://pacs1:8042). Required unless O(cleanup=false).
    type: str
  pacs_user:
    description: User for HTTP basic authentication to O(pacs_url).
    type: str
  pacs_password:
    description: Password of O(pacs_user).
    type: str
  pacs_validate_certs:
    description: Verify the certificate of an C(https) O(pacs_url).
    type: bool
    default: true
  pacs_ca_path:
    description: PEM file of the site CA that signed the certificate of an C(https) O(pacs_url).
    type: path
  calling_ae:
    description:
      - Our own AE title toward the worklist and the PACS (the simulated modality). The PACS must allow
        it to C-STORE and C-FIND.
    type: str
    default: CLINUPG
  timeout:
    description:
      - Seconds to wait for each connection, association, DIMSE response, HL7 ACK and REST request;
        greater than 0 and at most 3600.
    type: float
    default: 10.0
  accession_number:
    description:
      - Accession number of the synthetic order, 1 to 16 letters, digits, C(.), C(_) or C(-).
      - Generated when omitted, C(CUW) and 12 digits from the clock, so that each run has its own.
    type: str
  modality:
    description: Modality of the order and of the synthetic instance (C(OT) Secondary Capture, C(CT) CT Image).
    type: str
    choices: [OT, CT]
    default: OT
  station_aetitle:
    description:
      - Scheduled station AE title of the order (OBR-21), and the worklist query's filter.
      - O(calling_ae) when omitted, so that the order is scheduled for the simulated modality only.
    type: str
  worklist_wait:
    description:
      - Seconds to wait for the order to appear in the worklist (and, after the cancel, to leave it),
        querying every half second. C(0) queries once. At most 3600.
    type: int
    default: 10
  cleanup:
    description:
      - Delete the synthetic study and cancel the order at the end.
      - With C(false) both stay in the RIS and the PACS and the task reports C(changed).
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    details: In check mode only the C-ECHOs to the worklist and the PACS run; nothing is sent or stored.
  diff_mode:
    support: none
requirements:
  - pynetdicom >= 3.0, < 3.1
  - pydicom >= 3.0, < 3.1
notes:
  - The PACS must allow O(calling_ae) to C-STORE and C-FIND (Orthanc C(DicomModalities), or
    C(DicomAlwaysAllowStore) and C(DicomAlwaysAllowFind)).
  - The RIS must turn an C(ORM^O01) C(NW) into a worklist item with the order's accession number and
    OBR-21 station, and remove it on C(CA) (the C(ris_server) role's listener does).
  - The cleanup delete speaks the Orthanc REST API only.
seealso:
  - module: hl7_check
  - module: dicom_query
  - module: dicom_roundtrip
"""

EXAMPLES = r"""
- name: Prove the workflow from the RIS order to the PACS study
  radiology_workflow:
    hl7_host: ris1.lab
    hl7_port: 2575
    worklist_port: 104
    worklist_ae: RIS1
    pacs_host: pacs1.lab
    pacs_port: 4242
    pacs_ae: ORTHANC
    pacs_url: "http://pacs1.lab:8042"
    pacs_user: "{{ pacs_server_api_user }}"
    pacs_password: "{{ pacs_server_api_password }}"
  delegate_to: localhost
  register: __dicom_verify_workflow

- name: Same workflow with DICOM TLS and an https REST API signed by the site CA
  radiology_workflow:
    hl7_host: ris1.example.org
    worklist_ae: RIS1
    pacs_host: pacs1.example.org
    pacs_port: 2762
    pacs_ae: PACS1
    pacs_tls_ca_cert: /etc/clinical-upgrade/pki/ca.crt
    pacs_tls_client_cert: /etc/clinical-upgrade/pki/clinupg.crt
    pacs_tls_client_key: /etc/clinical-upgrade/pki/clinupg.key
    pacs_url: "https://pacs1.example.org:8043"
    pacs_ca_path: /etc/clinical-upgrade/pki/ca.crt
    pacs_user: "{{ pacs_server_api_user }}"
    pacs_password: "{{ pacs_server_api_password }}"
    modality: CT
  delegate_to: localhost
"""

RETURN = r"""
steps:
  description:
    - One entry per step (C(echo), C(order), C(worklist), C(store), C(pacs_find), C(cleanup_study),
      C(cancel), C(worklist_gone)) with C(status) (C(ok), C(failed) or C(skipped)), C(ms) and C(msg).
    - C(echo) runs in check mode only.
  returned: always
  type: dict
  sample:
    echo: {status: skipped, ms: 0.0, msg: "check mode only"}
    order: {status: ok, ms: 5.2, msg: "ris1.lab:2575 answered AA to control id CU1A2B3C4D5E6F7A8B9C"}
    worklist: {status: ok, ms: 8.0, msg: "1 item for accession CUW123456789012 at station CLINUPG"}
    store: {status: ok, ms: 9.1, msg: "C-STORE status 0x0000"}
    pacs_find: {status: ok, ms: 6.3, msg: "1 study with the worklist's Patient ID and Study Instance UID"}
    cleanup_study: {status: ok, ms: 20.4, msg: "deleted Orthanc instance 5b1a...; the study is gone"}
    cancel: {status: ok, ms: 4.0, msg: "ris1.lab:2575 answered AA to control id CU..."}
    worklist_gone: {status: ok, ms: 3.2, msg: "no item left for accession CUW123456789012"}
accession_number:
  description: Accession number of the synthetic order (generated for this run unless given).
  returned: always
  type: str
  sample: CUW123456789012
study_instance_uid:
  description: Study Instance UID taken from the worklist item; null before the worklist step.
  returned: always
  type: str
  sample: 2.25.302448395043785203298458395123923954201
sop_instance_uid:
  description: SOP Instance UID of the synthetic instance (fresh for each run).
  returned: always
  type: str
  sample: 2.25.178302449157163914049452839178209442711
matched:
  description:
    - Whether the PACS found exactly one study for the accession number, with the worklist's Patient ID
      and Study Instance UID.
  returned: always
  type: bool
  sample: true
worklist_item:
  description: The worklist item found, as attribute keyword to value, with every identifying value masked (C(***)).
  returned: always
  type: dict
  sample: {AccessionNumber: "***", PatientID: "***", PatientName: "***", StudyInstanceUID: "2.25.30244..."}
pacs_study:
  description: The PACS's C-FIND answer for the study, masked like RV(worklist_item).
  returned: always
  type: dict
  sample: {AccessionNumber: "***", PatientID: "***", StudyInstanceUID: "2.25.30244..."}
deleted:
  description: Whether the synthetic instance was removed from the PACS.
  returned: always
  type: bool
  sample: true
cancelled:
  description: Whether the order was cancelled and its worklist item is gone.
  returned: always
  type: bool
  sample: true
latency_ms:
  description: Milliseconds for all steps together.
  returned: always
  type: float
  sample: 61.8
failed_step:
  description: The first step that failed (C(validate) for an option refused before any traffic).
  returned: failure
  type: str
  sample: store
reason:
  description:
    - Why the step failed. The shared DICOM reasons (see M(dicom_echo)) for DICOM steps; for the HL7
      steps C(connection_refused), C(timeout), C(connection_failed), C(tls_error), C(malformed_answer),
      C(control_id_mismatch) or C(order_rejected) (an ACK other than C(AA)); C(not_found) (nothing in
      the worklist or the PACS), C(ambiguous) (more than one match), C(mismatch) (another Patient ID or
      Study Instance UID), C(cleanup_failed) (a cleanup step failed), C(invalid_argument).
  returned: failure
  type: str
  sample: association_rejected
"""

import re
import time
import uuid
from urllib.parse import quote

from ansible.module_utils.arg_types import whole_number
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.dicom_client import (
    DicomError,
    DicomValidationError,
    build_client,
    dicom_argument_spec,
    fail_if_missing_libraries,
    identifier_to_dict,
    validate_ae_title,
    validate_connection_params,
    validate_host,
    validate_port,
    validate_timeout,
)
from ansible.module_utils.hl7_client import (
    ACCEPT_CODES,
    HL7ClientError,
    build_message,
    new_control_id,
    send_message,
    validate_options,
)
from ansible.module_utils.orthanc_rest import OrthancClient, OrthancError, ca_path_error, normalise_url

try:
    from ansible.module_utils.dicom_synth import fresh_uid, make_canary_instance
    from pydicom.dataset import Dataset
except ImportError:  # handled by fail_if_missing_libraries
    Dataset = None

STEPS = ("echo", "order", "worklist", "store", "pacs_find", "cleanup_study", "cancel", "worklist_gone")
WORKFLOW_STEPS = ("order", "worklist", "store", "pacs_find")
#: dicom_argument_spec's TLS options: the PACS side takes them as pacs_<name>.
PACS_TLS_OPTIONS = tuple(name for name in dicom_argument_spec() if name.startswith("tls"))
POLL_SECONDS = 0.5
ACCESSION_RE = re.compile(r"^[A-Za-z0-9._\-]{1,16}$")
REST_OPTION_NAMES = {"url": "pacs_url", "username": "pacs_user", "password": "pacs_password",
                     "validate_certs": "pacs_validate_certs", "ca_path": "pacs_ca_path"}
# HL7 client error kinds -> reasons (the DICOM modules' words where there is one).
HL7_REASONS = {
    "validation": "invalid_argument",
    "refused": "connection_refused",
    "timeout": "timeout",
    "connection": "connection_failed",
    "tls": "tls_error",
    "frame": "malformed_answer",
    "ack": "malformed_answer",
    "control_id": "control_id_mismatch",
}
PROCEDURE_DESCRIPTION = "CLINICAL UPGRADE WORKFLOW TEST"


# ------------------------------------------------------------------ option names in messages
# The shared clients name their own options (called_ae, tls_ca_cert, host, url ...); this module's
# options carry a prefix, so their messages are rewritten to name the option the user sets.

_TLS_OPTIONS = re.compile(r"\btls_(ca_cert|client_cert|client_key_passphrase|client_key|check_hostname|\*)")


def pacs_words(msg):
    msg = _TLS_OPTIONS.sub(r"pacs_tls_\1", msg)
    msg = msg.replace("set tls: ", "set pacs_tls: ").replace("called_ae", "pacs_ae")
    return msg.replace("check host, port", "check pacs_host, pacs_port").replace("; check host", "; check pacs_host")


def worklist_words(msg):
    msg = msg.replace(
        "set tls: true (with tls_ca_cert, and tls_client_cert/tls_client_key when it asks for a client certificate), "
        "or use its plain DICOM port",
        "this module queries the worklist in plain DICOM: set worklist_port to its plain DICOM port",
    )
    msg = msg.replace("called_ae", "worklist_ae")
    return msg.replace("check host, port", "check worklist_host, worklist_port").replace(
        "; check host", "; check worklist_host"
    )


def hl7_words(msg):
    return msg.replace("check host and port", "check hl7_host and hl7_port").replace(
        "order.accession_number", "accession_number"
    ).replace("order.station_aetitle", "station_aetitle").replace("order.modality", "modality")


# ------------------------------------------------------------------ validation (no traffic)


def hl7_params(params, control, patient_id=None):
    """The hl7_client options of an order message of this run."""
    return {
        "host": params["hl7_host"],
        "port": params["hl7_port"],
        "timeout": params["timeout"],
        "message_type": "ORM^O01",
        "sending_application": params["hl7_sending_application"],
        "sending_facility": params["hl7_sending_facility"],
        "receiving_application": params["hl7_receiving_application"],
        "receiving_facility": params["hl7_receiving_facility"],
        "order": {
            "control": control,
            "accession_number": params["accession_number"],
            "patient_id": patient_id,
            "modality": params["modality"],
            "station_aetitle": params["station_aetitle"],
            "procedure_description": PROCEDURE_DESCRIPTION,
        },
    }


def pacs_connection(params):
    return {
        "host": params["pacs_host"],
        "port": params["pacs_port"],
        "called_ae": params["pacs_ae"],
        "calling_ae": params["calling_ae"],
        "timeout": params["timeout"],
        **{name: params[f"pacs_{name}"] for name in PACS_TLS_OPTIONS},
    }


def worklist_connection(params):
    return {
        "host": params["worklist_host"],
        "port": params["worklist_port"],
        "called_ae": params["worklist_ae"],
        "calling_ae": params["calling_ae"],
        "timeout": params["timeout"],
    }


def validate_params(params):
    """Check every option before any traffic; fill in the derived defaults. Raises DicomValidationError."""
    validate_host(params["hl7_host"], "hl7_host")
    validate_port(params["hl7_port"], "hl7_port")
    if params["worklist_host"] is None:
        params["worklist_host"] = params["hl7_host"]
    validate_host(params["worklist_host"], "worklist_host")
    validate_port(params["worklist_port"], "worklist_port")
    validate_ae_title(params["worklist_ae"], "worklist_ae")
    validate_host(params["pacs_host"], "pacs_host")
    validate_port(params["pacs_port"], "pacs_port")
    validate_ae_title(params["pacs_ae"], "pacs_ae")
    validate_ae_title(params["calling_ae"], "calling_ae")
    validate_timeout(params["timeout"])
    if params["station_aetitle"] is None:
        params["station_aetitle"] = params["calling_ae"]
    validate_ae_title(params["station_aetitle"], "station_aetitle")
    if any(ch in "[]" for ch in params["station_aetitle"]):
        raise DicomValidationError("station_aetitle contains [ or ], which a RIS worklist entry cannot carry")
    accession = params["accession_number"]
    if accession is None:
        params["accession_number"] = f"CUW{time.time_ns() // 1000 % 10**12:012d}"
    elif not isinstance(accession, str) or not ACCESSION_RE.match(accession):
        raise DicomValidationError(
            "accession_number must be 1 to 16 letters, digits, '.', '_' or '-' (the value is not shown: it "
            "identifies a study)"
        )
    wait = params["worklist_wait"]
    if not 0 <= wait <= 3600:
        raise DicomValidationError(f"worklist_wait must be a number of seconds from 0 to 3600, got {wait}")
    try:
        validate_connection_params(pacs_connection(params))
    except DicomValidationError as exc:
        raise DicomValidationError(pacs_words(exc.msg)) from None
    try:
        validate_options(hl7_params(params, "NW"))
    except HL7ClientError as exc:
        raise DicomValidationError(hl7_words(exc.msg).replace("sending_", "hl7_sending_").replace(
            "receiving_", "hl7_receiving_")) from None
    if params["pacs_url"] is not None:
        try:
            normalise_url(params["pacs_url"], "pacs_url")
        except OrthancError as exc:
            raise DicomValidationError(str(exc)) from None
    elif params["cleanup"]:
        raise DicomValidationError(
            "pacs_url is required to delete the synthetic study at the end (the PACS's Orthanc REST API, "
            "for example http://pacs1:8042); or set cleanup: false to leave the order and the study in place"
        )
    if params["pacs_password"] and not params["pacs_user"]:
        raise DicomValidationError("pacs_password is set but pacs_user is not; set both or neither")
    ca_error = ca_path_error(params["pacs_ca_path"], "pacs_ca_path")
    if ca_error:
        raise DicomValidationError(ca_error)


# ------------------------------------------------------------------ the workflow


class StepFailed(Exception):
    def __init__(self, step, reason, msg):
        super().__init__(msg)
        self.step, self.reason, self.msg = step, reason, msg


class Clients:
    """The one seam for the network: the two DICOM clients, the MLLP sender and the REST client."""

    def __init__(self, params):
        try:
            self.pacs = build_client(pacs_connection(params))
        except DicomValidationError as exc:
            raise DicomValidationError(pacs_words(exc.msg)) from None
        self.worklist = build_client(worklist_connection(params))
        self.send = send_message
        self.params = params

    def rest(self):
        p = self.params
        return OrthancClient(normalise_url(p["pacs_url"]), p["pacs_user"], p["pacs_password"],
                             p["pacs_validate_certs"], p["timeout"], p["pacs_ca_path"],
                             option_names=REST_OPTION_NAMES)


def build_clients(params):
    return Clients(params)


class Workflow:
    def __init__(self, module, clients):
        self.module = module
        self.params = module.params
        self.clients = clients
        self.steps = {name: {"status": "skipped", "ms": 0.0, "msg": "not run"} for name in STEPS}
        self.patient_id = "SYN" + uuid.uuid4().hex[:12].upper()
        self.ds = None
        self.item = None
        self.ordered = False  # an order may exist on the RIS: cancel it
        self.stored = False
        self.result = {
            "accession_number": self.params["accession_number"],
            "study_instance_uid": None,
            "sop_instance_uid": None,
            "matched": False,
            "worklist_item": {},
            "pacs_study": {},
            "deleted": False,
            "cancelled": False,
        }

    @staticmethod
    def _ms(start):
        return round((time.perf_counter() - start) * 1000.0, 3)

    def run_step(self, name, func, words=None):
        start = time.perf_counter()
        try:
            msg = func()
        except DicomError as exc:
            text = words(exc.msg) if words else exc.msg
            self.steps[name] = {"status": "failed", "ms": self._ms(start), "msg": text}
            raise StepFailed(name, exc.reason, text) from None
        except StepFailed as exc:
            self.steps[name] = {"status": "failed", "ms": self._ms(start), "msg": exc.msg}
            raise
        self.steps[name] = {"status": "ok", "ms": self._ms(start), "msg": msg}

    # -------------------------------------------------------------- HL7
    def _send_order(self, step, control):
        params = self.params
        text = build_message(hl7_params(params, control, self.patient_id), new_control_id())
        control_id = text.split("\r", 1)[0].split("|")[9]
        where = f"{params['hl7_host']}:{params['hl7_port']}"
        try:
            ack = self.clients.send(params["hl7_host"], params["hl7_port"], text, timeout=params["timeout"],
                                    control_id=control_id)
        except HL7ClientError as exc:
            if control == "NW" and exc.details.get("sent"):
                self.ordered = True  # the RIS may have taken it without answering
            raise StepFailed(step, HL7_REASONS.get(exc.kind, "connection_failed"), hl7_words(exc.msg)) from None
        accepted = ("AA",) if control == "NW" else ACCEPT_CODES
        if control == "NW" and ack["ack_code"] in accepted:
            self.ordered = True
        if ack["ack_code"] not in accepted:
            detail = f": {ack['ack_text']}" if ack["ack_text"] else ""
            raise StepFailed(
                step,
                "order_rejected",
                f"{where} answered {ack['ack_code']} to the {control} order (control id {control_id}), expected "
                f"{' or '.join(accepted)}{detail}",
            )
        return f"{where} answered {ack['ack_code']} to control id {control_id}"

    def order(self):
        return self._send_order("order", "NW")

    def cancel(self):
        return self._send_order("cancel", "CA")

    # -------------------------------------------------------------- worklist
    def _worklist_query(self):
        q = Dataset()
        q.AccessionNumber = self.params["accession_number"]
        q.PatientName = ""
        q.PatientID = ""
        q.PatientBirthDate = ""
        q.PatientSex = ""
        q.StudyInstanceUID = ""
        q.RequestedProcedureID = ""
        sps = Dataset()
        sps.ScheduledStationAETitle = self.params["station_aetitle"]
        sps.Modality = ""
        sps.ScheduledProcedureStepStartDate = ""
        sps.ScheduledProcedureStepID = ""
        q.ScheduledProcedureStepSequence = [sps]
        return q

    def _poll_worklist(self, done):
        """C-FIND the worklist until done(count) or worklist_wait has passed; returns the last answer."""
        deadline = time.monotonic() + self.params["worklist_wait"]
        while True:
            rsp = self.clients.worklist.find(self._worklist_query(), "worklist", max_results=5)
            remaining = deadline - time.monotonic()
            if done(rsp["count"]) or remaining <= 0:
                return rsp
            time.sleep(min(POLL_SECONDS, remaining))

    def _where_worklist(self):
        p = self.params
        return f"{p['worklist_ae']}@{p['worklist_host']}:{p['worklist_port']}"

    def worklist(self):
        acc, station = self.params["accession_number"], self.params["station_aetitle"]
        rsp = self._poll_worklist(lambda count: count >= 1)
        if rsp["count"] == 0:
            raise StepFailed(
                "worklist",
                "not_found",
                f"no worklist item for accession {acc} at station {station} on {self._where_worklist()} within "
                f"{self.params['worklist_wait']} s of the RIS's ACK: the RIS accepted the order but did not schedule "
                "it in this worklist (check worklist_host, worklist_port and worklist_ae: they must be the worklist "
                "the RIS at hl7_host fills)",
            )
        if rsp["count"] > 1:
            raise StepFailed(
                "worklist",
                "ambiguous",
                f"{rsp['count']} worklist items for accession {acc} at station {station}, expected 1 (an earlier "
                "run's order with the same accession_number? leave accession_number unset for a fresh one)",
            )
        item = rsp["identifiers"][0]
        self.item = item
        self.result["worklist_item"] = identifier_to_dict(item)
        if str(item.get("AccessionNumber", "")) != acc:
            raise StepFailed("worklist", "mismatch", "the worklist item's Accession Number differs from the order's")
        if str(item.get("PatientID", "")) != self.patient_id:
            raise StepFailed(
                "worklist",
                "mismatch",
                "the worklist item's Patient ID differs from the order's PID-3 (values not shown): the RIS does not "
                "copy the order's patient into the worklist",
            )
        msg = f"1 item for accession {acc} at station {station}"
        uid = str(item.get("StudyInstanceUID", "") or "")
        if not uid:
            uid = fresh_uid()
            msg += "; it has no Study Instance UID, so the modality made one, as real modalities do"
        self.result["study_instance_uid"] = uid
        return msg

    # -------------------------------------------------------------- PACS
    def _instance(self):
        ds = make_canary_instance(size_px=16, modality=self.params["modality"])
        item = self.item
        ds.PatientID = str(item.PatientID)
        ds.PatientName = str(item.get("PatientName", "") or "")
        ds.AccessionNumber = str(item.AccessionNumber)
        ds.StudyInstanceUID = self.result["study_instance_uid"]
        for keyword in ("PatientBirthDate", "PatientSex"):
            value = str(item.get(keyword, "") or "")
            if value:
                setattr(ds, keyword, value)
        ds.StudyDescription = PROCEDURE_DESCRIPTION
        ds.SeriesDescription = PROCEDURE_DESCRIPTION
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = "SYNTHETIC - radiology_workflow order, no real patient"
        request = Dataset()
        request.RequestedProcedureID = str(item.get("RequestedProcedureID", "") or "")
        sps = (item.get("ScheduledProcedureStepSequence") or [Dataset()])[0]
        request.ScheduledProcedureStepID = str(sps.get("ScheduledProcedureStepID", "") or "")
        request.AccessionNumber = ds.AccessionNumber
        ds.RequestAttributesSequence = [request]
        return ds

    def store(self):
        self.ds = self._instance()
        self.result["sop_instance_uid"] = str(self.ds.SOPInstanceUID)
        try:
            rsp = self.clients.pacs.store(self.ds)
        except DicomError as exc:
            # a C-STORE that timed out or aborted after sending may still have been stored
            self.stored = exc.reason in ("timeout", "aborted")
            raise
        self.stored = True
        return f"C-STORE status 0x{rsp['status']:04X}"

    def pacs_find(self):
        q = Dataset()
        q.QueryRetrieveLevel = "STUDY"
        q.AccessionNumber = self.params["accession_number"]
        q.PatientID = ""
        q.StudyInstanceUID = ""
        q.ModalitiesInStudy = ""
        q.NumberOfStudyRelatedInstances = ""
        rsp = self.clients.pacs.find(q, "study_root", max_results=5)
        acc = self.params["accession_number"]
        if rsp["count"] == 0:
            raise StepFailed(
                "pacs_find",
                "not_found",
                f"C-FIND at STUDY level on the PACS found no study for accession {acc} after the C-STORE was "
                "accepted (does the PACS index what it stores? does it match on Accession Number?)",
            )
        if rsp["count"] > 1:
            raise StepFailed(
                "pacs_find", "ambiguous", f"C-FIND at STUDY level on the PACS found {rsp['count']} studies for "
                f"accession {acc}, expected 1",
            )
        found = rsp["identifiers"][0]
        self.result["pacs_study"] = identifier_to_dict(found)
        problems = []
        if str(found.get("PatientID", "")) != str(self.ds.PatientID):
            problems.append("Patient ID (values not shown)")
        if str(found.get("StudyInstanceUID", "")) != self.result["study_instance_uid"]:
            problems.append(f"Study Instance UID ({found.get('StudyInstanceUID', '')})")
        if problems:
            raise StepFailed(
                "pacs_find", "mismatch", "the PACS's study for the accession number differs from the worklist item: "
                + ", ".join(problems),
            )
        self.result["matched"] = True
        return "1 study with the worklist's Patient ID and Study Instance UID"

    # -------------------------------------------------------------- cleanup
    def cleanup_study(self):
        rest = self.clients.rest()
        sop_uid, study_uid = str(self.ds.SOPInstanceUID), self.result["study_instance_uid"]
        try:
            found = rest.post("/tools/lookup", sop_uid.encode())
            ids = [i.get("ID") for i in found or [] if isinstance(i, dict) and i.get("Type") == "Instance"]
            if not ids:
                if self.steps["store"]["status"] != "ok":
                    self.stored = False  # the C-STORE that failed did not store it after all
                    return "the PACS does not hold the synthetic instance: nothing to delete"
                raise StepFailed("cleanup_study", "cleanup_failed",
                                 f"{rest.url}/tools/lookup does not know the stored instance {sop_uid}")
            rest.delete(f"/instances/{quote(ids[0], safe='')}")
            self.result["deleted"] = True
            left = [i.get("ID") for i in rest.post("/tools/lookup", study_uid.encode()) or []
                    if isinstance(i, dict) and i.get("Type") == "Study"]
        except OrthancError as exc:
            raise StepFailed("cleanup_study", "cleanup_failed", str(exc)) from None
        msg = f"deleted Orthanc instance {ids[0]}"
        if left:
            return msg + f"; study {study_uid} stays: it holds instances this run did not store"
        return msg + "; the study is gone"

    def worklist_gone(self):
        acc = self.params["accession_number"]
        rsp = self._poll_worklist(lambda count: count == 0)
        if rsp["count"]:
            raise StepFailed(
                "worklist_gone",
                "cleanup_failed",
                f"{rsp['count']} worklist item(s) for accession {acc} still on {self._where_worklist()} "
                f"{self.params['worklist_wait']} s after the RIS accepted the cancel",
            )
        self.result["cancelled"] = True
        return f"no item left for accession {acc}"

    def _cleanup(self, name, func, words=None):
        """Run one cleanup step; returns a StepFailed with what to remove by hand, or None."""
        try:
            self.run_step(name, func, words)
        except StepFailed as exc:
            acc = self.params["accession_number"]
            if name == "cleanup_study":
                how = (f"synthetic study {self.result['study_instance_uid']} (accession {acc}, instance "
                       f"{self.result['sop_instance_uid']}) was NOT removed from the PACS: {exc.msg}; remove it by "
                       "hand (Orthanc: POST /tools/lookup with its Study Instance UID, then DELETE /studies/<id>)")
            elif name == "cancel":
                how = (f"synthetic order {acc} was NOT cancelled on the RIS: {exc.msg}; cancel it by hand (an HL7 "
                       f"ORM^O01 with ORC-1 CA and accession {acc}, for example with hl7_check)")
            else:
                how = (f"the RIS accepted the cancel of synthetic order {acc}, but its worklist item is not proven "
                       f"gone: {exc.msg}; check the worklist for accession {acc} (dicom_query level WORKLIST) and "
                       "remove the item by hand if it is still there")
            return StepFailed(name, "cleanup_failed", how)
        return None

    # -------------------------------------------------------------- driver
    def run(self):
        start = time.perf_counter()
        failure = None
        if self.module.check_mode:
            try:
                self.run_step("echo", self.echo, worklist_words)
            except StepFailed as exc:
                failure = exc
            for name in STEPS[1:]:
                self.steps[name]["msg"] = "check mode: nothing sent or stored"
            return self.finish(start, failure)
        self.steps["echo"]["msg"] = "check mode only: the workflow's own associations reach both peers"
        try:
            self.run_step("order", self.order)
            self.run_step("worklist", self.worklist, worklist_words)
            self.run_step("store", self.store, pacs_words)
            self.run_step("pacs_find", self.pacs_find, pacs_words)
        except StepFailed as exc:
            failure = exc
        cleanup_failures = []
        if not self.params["cleanup"]:
            for name in ("cleanup_study", "cancel", "worklist_gone"):
                self.steps[name]["msg"] = "cleanup is false: left in place"
        else:
            if self.stored:
                cleanup_failures.append(self._cleanup("cleanup_study", self.cleanup_study))
            else:
                self.steps["cleanup_study"]["msg"] = "nothing was stored"
            if self.ordered:
                cancel_failure = self._cleanup("cancel", self.cancel)
                cleanup_failures.append(cancel_failure)
                if cancel_failure is None:
                    cleanup_failures.append(self._cleanup("worklist_gone", self.worklist_gone, worklist_words))
                else:
                    self.steps["worklist_gone"]["msg"] = "the cancel failed"
            else:
                self.steps["cancel"]["msg"] = self.steps["worklist_gone"]["msg"] = "no order was sent"
        for problem in filter(None, cleanup_failures):
            if failure is None:
                failure = problem
            else:
                self.module.warn(problem.msg)
        return self.finish(start, failure)

    def echo(self):
        worklist = self.clients.worklist.echo()
        try:
            pacs = self.clients.pacs.echo()
        except DicomError as exc:
            raise StepFailed("echo", exc.reason, pacs_words(exc.msg)) from None
        p = self.params
        return (f"C-ECHO {self._where_worklist()} {worklist['status_hex']}, "
                f"{p['pacs_ae']}@{p['pacs_host']}:{p['pacs_port']} {pacs['status_hex']}")

    def finish(self, start, failure):
        self.result["latency_ms"] = self._ms(start)
        self.result["steps"] = self.steps
        changed = (self.stored and not self.result["deleted"]) or (self.ordered and not self.result["cancelled"])
        if failure is not None:
            self.module.fail_json(
                msg=f"radiology workflow failed at step {failure.step}: {failure.msg}",
                failed_step=failure.step,
                reason=failure.reason,
                changed=changed,
                **self.result,
            )
        self.module.exit_json(changed=changed, **self.result)


def main():
    argument_spec = dict(
        hl7_host=dict(type="str", required=True),
        hl7_port=dict(type=whole_number, default=2575),
        hl7_sending_application=dict(type="str", default="CLINUPG"),
        hl7_sending_facility=dict(type="str", default="CLINUPG"),
        hl7_receiving_application=dict(type="str", default="RIS"),
        hl7_receiving_facility=dict(type="str", default="RADIOLOGY"),
        worklist_host=dict(type="str"),
        worklist_port=dict(type=whole_number, default=104),
        worklist_ae=dict(type="str", required=True),
        pacs_host=dict(type="str", required=True),
        pacs_port=dict(type=whole_number, default=4242),
        pacs_ae=dict(type="str", required=True),
        # dicom_echo's TLS options (dicom_argument_spec), named pacs_tls... here
        **{f"pacs_{name}": spec for name, spec in dicom_argument_spec().items() if name in PACS_TLS_OPTIONS},
        pacs_url=dict(type="str"),
        pacs_user=dict(type="str"),
        pacs_password=dict(type="str", no_log=True),
        pacs_validate_certs=dict(type="bool", default=True),
        pacs_ca_path=dict(type="path"),
        calling_ae=dict(type="str", default="CLINUPG"),
        timeout=dict(type="float", default=10.0),
        accession_number=dict(type="str"),
        modality=dict(type="str", default="OT", choices=["OT", "CT"]),
        station_aetitle=dict(type="str"),
        worklist_wait=dict(type=whole_number, default=10),
        cleanup=dict(type="bool", default=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    fail_if_missing_libraries(module)
    try:
        validate_params(module.params)
        clients = build_clients(module.params)
    except DicomError as exc:
        module.fail_json(msg=exc.msg, reason=exc.reason, failed_step="validate", changed=False)
    Workflow(module, clients).run()


if __name__ == "__main__":
    main()
