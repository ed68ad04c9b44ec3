# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""Shared DICOM client for the dicom_* modules (and bench/).

What lives here:

* ``dicom_argument_spec()`` -- the connection options every dicom_* module takes.
* ``validate_connection_params()`` / ``validate_ae_title()`` -- input checks that
  run BEFORE any network traffic and say exactly what to fix.
* ``DicomClient`` -- a reusable pynetdicom requestor: associations (optionally
  TLS), C-ECHO, C-FIND, C-STORE, C-GET, C-MOVE, latency measurement, and
  failure classification into a small set of reasons (``DicomError.reason``).
* ``build_client(params)`` -- the single seam modules use to get a client.
* ``identifier_to_dict()`` / ``is_phi_keyword()`` / ``mask_value()`` -- PHI masking (``***``).

pynetdicom is made quiet on import: its standard event handlers are disabled
and query/response identifiers are never logged (they carry patient data).

Every ApplicationEntity built here goes through ``dicom_net.make_ae_tuning``
and every connected association socket through ``dicom_net.tune_socket``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import ssl
import threading
import time

from ansible.module_utils.arg_types import whole_number
from ansible.module_utils.dicom_net import make_ae_tuning, tune_socket
from ansible.module_utils.net_checks import host_name_error, speaks_tls

try:
    from pydicom.datadict import dictionary_VR
    from pydicom.dataset import Dataset
    from pydicom.multival import MultiValue

    HAS_PYDICOM = True
    PYDICOM_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - exercised only without pydicom
    HAS_PYDICOM = False
    PYDICOM_IMPORT_ERROR = exc
    Dataset = None
    MultiValue = list

try:
    from pynetdicom import AE, _config, build_context, build_role, evt
    from pynetdicom.pdu import A_ABORT_RQ
    from pynetdicom.pdu_primitives import A_ASSOCIATE

    HAS_PYNETDICOM = True
    PYNETDICOM_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - exercised only without pynetdicom
    HAS_PYNETDICOM = False
    PYNETDICOM_IMPORT_ERROR = exc

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    HAS_CRYPTOGRAPHY = True
except ImportError:  # pragma: no cover - falls back to PEM marker checks
    HAS_CRYPTOGRAPHY = False


# --------------------------------------------------------------------------- constants

VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
DEFAULT_TRANSFER_SYNTAXES = [EXPLICIT_VR_LE, IMPLICIT_VR_LE]

QUERY_MODELS = {
    # name: (find, get, move)
    "patient_root": (
        "1.2.840.10008.5.1.4.1.2.1.1",
        "1.2.840.10008.5.1.4.1.2.1.3",
        "1.2.840.10008.5.1.4.1.2.1.2",
    ),
    "study_root": (
        "1.2.840.10008.5.1.4.1.2.2.1",
        "1.2.840.10008.5.1.4.1.2.2.3",
        "1.2.840.10008.5.1.4.1.2.2.2",
    ),
    "worklist": ("1.2.840.10008.5.1.4.31", None, None),
}
QUERY_LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE", "WORKLIST")

SOP_CLASS_NAMES = {
    VERIFICATION_SOP_CLASS: "Verification SOP Class",
    "1.2.840.10008.5.1.4.1.2.1.1": "Patient Root Query/Retrieve Information Model - FIND",
    "1.2.840.10008.5.1.4.1.2.1.2": "Patient Root Query/Retrieve Information Model - MOVE",
    "1.2.840.10008.5.1.4.1.2.1.3": "Patient Root Query/Retrieve Information Model - GET",
    "1.2.840.10008.5.1.4.1.2.2.1": "Study Root Query/Retrieve Information Model - FIND",
    "1.2.840.10008.5.1.4.1.2.2.2": "Study Root Query/Retrieve Information Model - MOVE",
    "1.2.840.10008.5.1.4.1.2.2.3": "Study Root Query/Retrieve Information Model - GET",
    "1.2.840.10008.5.1.4.31": "Modality Worklist Information Model - FIND",
    "1.2.840.10008.5.1.4.1.1.2": "CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
}
TRANSFER_SYNTAX_NAMES = {
    IMPLICIT_VR_LE: "Implicit VR Little Endian",
    EXPLICIT_VR_LE: "Explicit VR Little Endian",
    "1.2.840.10008.1.2.2": "Explicit VR Big Endian",
}

# Failure reasons (DicomError.reason); modules return them as ``reason``.
REASON_INVALID_ARGUMENT = "invalid_argument"
REASON_CONNECTION_REFUSED = "connection_refused"
REASON_TIMEOUT = "timeout"
REASON_NAME_RESOLUTION = "name_resolution"
REASON_HOST_UNREACHABLE = "host_unreachable"
REASON_CONNECTION_FAILED = "connection_failed"
REASON_TLS = "tls_error"
REASON_REJECTED = "association_rejected"
REASON_ABORTED = "aborted"
REASON_NO_CONTEXT = "no_accepted_context"
REASON_DIMSE_FAILURE = "dimse_failure"
FAILURE_REASONS = (
    REASON_INVALID_ARGUMENT,
    REASON_CONNECTION_REFUSED,
    REASON_TIMEOUT,
    REASON_NAME_RESOLUTION,
    REASON_HOST_UNREACHABLE,
    REASON_CONNECTION_FAILED,
    REASON_TLS,
    REASON_REJECTED,
    REASON_ABORTED,
    REASON_NO_CONTEXT,
    REASON_DIMSE_FAILURE,
)

# PS3.8 Table 9-21: A-ASSOCIATE-RJ result / source / reason, in words.
REJECT_RESULTS = {1: "rejected (permanent)", 2: "rejected (transient)"}
REJECT_SOURCES = {
    1: "DICOM UL service-user",
    2: "DICOM UL service-provider (ACSE related function)",
    3: "DICOM UL service-provider (presentation related function)",
}
REJECT_REASONS = {
    1: {
        1: "no reason given",
        2: "application context name not supported",
        3: "calling AE title not recognised",
        7: "called AE title not recognised",
    },
    2: {1: "no reason given", 2: "protocol version not supported"},
    3: {0: "reserved", 1: "temporary congestion", 2: "local limit exceeded"},
}
REJECT_HINTS = {
    (1, 3): "check calling_ae: the peer does not know this AE title (register it on the peer)",
    (1, 7): "check called_ae: it must match the peer's own AE title",
    (1, 2): "the peer does not speak the DICOM application context",
    (3, 1): "the peer is busy; retry later",
    (3, 2): "the peer reached its association limit; retry later",
}
# PS3.8 Table 9-26: A-ABORT source / reason.
ABORT_SOURCES = {0: "DICOM UL service-user", 1: "reserved", 2: "DICOM UL service-provider"}
ABORT_REASONS = {
    0: "reason not specified",
    1: "unrecognized PDU",
    2: "unexpected PDU",
    4: "unrecognized PDU parameter",
    5: "unexpected PDU parameter",
    6: "invalid PDU parameter value",
}

#: What a masked value looks like: fixed, so that it reveals neither the length nor an initial.
MASK = "***"
#: Attributes masked in query results unless unmask_phi is set, besides every attribute of VR PN
#: (person names: patient, referring and performing physicians, operators), DA, DT and TM (dates and
#: times of a patient's care) and free text (ST, LT, UT, and every *Description or *Comments).
PHI_KEYWORDS = frozenset(
    {
        "PatientID",
        "IssuerOfPatientID",
        "OtherPatientIDs",
        "AccessionNumber",
        "MedicalRecordLocator",
        "AdmissionID",
        "PatientTelephoneNumbers",
        "PatientAddress",
        "PatientAge",
        "PatientBirthDate",
        "PatientBirthTime",
        "StudyID",
        "RequestedProcedureID",
        "ScheduledProcedureStepID",
        "PerformedProcedureStepID",
        "InstitutionName",
        "InstitutionAddress",
        "StationName",
    }
)
PHI_VRS = frozenset({"PN", "DA", "DT", "TM", "ST", "LT", "UT"})
PHI_KEYWORD_SUFFIXES = ("Description", "Comments")


def quiet_pynetdicom() -> None:
    """Stop pynetdicom from logging identifiers (patient data) and routine events."""
    logging.getLogger("pynetdicom").setLevel(logging.ERROR)
    if HAS_PYNETDICOM:
        _config.LOG_HANDLER_LEVEL = "none"
        _config.LOG_REQUEST_IDENTIFIERS = False
        _config.LOG_RESPONSE_IDENTIFIERS = False


quiet_pynetdicom()


# --------------------------------------------------------------------------- errors


class DicomError(Exception):
    """A classified DICOM failure: ``reason`` is one of FAILURE_REASONS, ``msg`` says what to fix."""

    def __init__(self, reason: str, msg: str, **details):
        super().__init__(msg)
        self.reason = reason
        self.msg = msg
        self.details = details

    def to_result(self) -> dict:
        result = {"reason": self.reason, "msg": self.msg}
        result.update(self.details)
        return result


class DicomValidationError(DicomError):
    def __init__(self, msg: str):
        super().__init__(REASON_INVALID_ARGUMENT, msg)


# --------------------------------------------------------------------------- argument spec


def dicom_argument_spec() -> dict:
    """Connection options shared by dicom_echo, dicom_query and dicom_roundtrip."""
    return dict(
        host=dict(type="str", required=True),
        port=dict(type=whole_number, default=104),
        called_ae=dict(type="str", required=True),
        calling_ae=dict(type="str", default="CLINUPG"),
        timeout=dict(type="float", default=10.0),
        tls=dict(type="bool", default=False),
        tls_ca_cert=dict(type="path"),
        tls_client_cert=dict(type="path"),
        tls_client_key=dict(type="path"),
        tls_client_key_passphrase=dict(type="str", no_log=True),
        tls_check_hostname=dict(type="bool", default=True),
    )


def validate_ae_title(value, option: str) -> str:
    """Return the AE title or raise DicomValidationError with what to fix."""
    if value is None:
        raise DicomValidationError(f"{option} is required: give the AE title (1 to 16 characters)")
    if not isinstance(value, str):
        raise DicomValidationError(f"{option} must be a string of 1 to 16 characters")
    if len(value) == 0:
        raise DicomValidationError(f"{option} is empty: give the AE title (1 to 16 characters)")
    if len(value) > 16:
        raise DicomValidationError(f"{option} is {len(value)} characters long: an AE title has at most 16 characters")
    if "\\" in value:
        raise DicomValidationError(f"{option} contains a backslash, which AE titles may not contain")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise DicomValidationError(f"{option} contains a control character (such as a newline or tab); remove it")
    if any(ord(ch) > 0x7E for ch in value):
        raise DicomValidationError(f"{option} contains a non-ASCII character; AE titles use the ASCII repertoire")
    if value.strip(" ") == "":
        raise DicomValidationError(f"{option} is all spaces: give a real AE title")
    return value


def validate_port(value, option: str = "port") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise DicomValidationError(f"{option} must be an integer between 1 and 65535, got {value!r}")
    return value


def validate_host(value, option: str = "host") -> str:
    if not isinstance(value, str) or not value.strip():
        raise DicomValidationError(f"{option} is empty: give the peer's host name or IP address")
    if any(ch.isspace() or ord(ch) < 0x20 for ch in value) or "/" in value:
        raise DicomValidationError(
            f"{option} must be a bare host name or IP address (no spaces, no scheme, no path), got {value!r}"
        )
    error = host_name_error(value, option)
    if error:
        raise DicomValidationError(error)
    return value


def validate_timeout(value, option: str = "timeout") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 3600:
        raise DicomValidationError(
            f"{option} must be a number of seconds greater than 0 and at most 3600, got {value!r}"
        )
    return float(value)


def _read_pem_file(path: str, option: str) -> bytes:
    if not os.path.exists(path):
        raise DicomValidationError(f"{option}: file {path} does not exist")
    if not os.path.isfile(path):
        raise DicomValidationError(f"{option}: {path} is not a regular file")
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise DicomValidationError(f"{option}: cannot read {path}: {exc.strerror}") from None
    if b"-----BEGIN " not in data:
        raise DicomValidationError(f"{option}: {path} is not PEM (no '-----BEGIN' line); convert it to PEM")
    return data


def _check_certificates(data: bytes, path: str, option: str) -> None:
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise DicomValidationError(f"{option}: {path} holds no PEM certificate ('-----BEGIN CERTIFICATE-----')")
    if HAS_CRYPTOGRAPHY:
        try:
            x509.load_pem_x509_certificates(data)
        except ValueError as exc:
            raise DicomValidationError(f"{option}: {path} does not parse as a PEM certificate: {exc}") from None


def _check_private_key(data: bytes, path: str, option: str, passphrase) -> None:
    if b"PRIVATE KEY-----" not in data:
        raise DicomValidationError(f"{option}: {path} holds no PEM private key ('-----BEGIN ... PRIVATE KEY-----')")
    if not HAS_CRYPTOGRAPHY:
        return
    password = passphrase.encode() if passphrase else None
    try:
        serialization.load_pem_private_key(data, password=password)
    except TypeError:
        if password is None:
            raise DicomValidationError(f"{option}: {path} is encrypted; set tls_client_key_passphrase") from None
        raise DicomValidationError(f"{option}: {path} is not encrypted; remove tls_client_key_passphrase") from None
    except ValueError:
        if password is not None:
            raise DicomValidationError(f"{option}: cannot decrypt {path}: check tls_client_key_passphrase") from None
        raise DicomValidationError(f"{option}: {path} does not parse as a PEM private key") from None


def validate_connection_params(params: dict) -> dict:
    """Check connection options before any network traffic. Returns the params normalised.

    Raises DicomValidationError whose message names the option and what to fix.
    """
    validate_host(params.get("host"))
    validate_port(params.get("port"))
    validate_ae_title(params.get("called_ae"), "called_ae")
    validate_ae_title(params.get("calling_ae"), "calling_ae")
    validate_timeout(params.get("timeout"))

    ca, cert, key = params.get("tls_ca_cert"), params.get("tls_client_cert"), params.get("tls_client_key")
    if cert and not key:
        data = _read_pem_file(cert, "tls_client_cert")
        if b"PRIVATE KEY-----" not in data:
            raise DicomValidationError(
                "tls_client_cert is set but tls_client_key is not: give the client private key file too"
            )
    if key and not cert:
        raise DicomValidationError("tls_client_key is set but tls_client_cert is not: give the client certificate too")
    if params.get("tls_client_key_passphrase") and not key:
        raise DicomValidationError("tls_client_key_passphrase is set but tls_client_key is not")
    if ca:
        _check_certificates(_read_pem_file(ca, "tls_ca_cert"), ca, "tls_ca_cert")
    if cert:
        _check_certificates(_read_pem_file(cert, "tls_client_cert"), cert, "tls_client_cert")
    if key:
        _check_private_key(
            _read_pem_file(key, "tls_client_key"), key, "tls_client_key", params.get("tls_client_key_passphrase")
        )
    return params


def validate_query_level(level, model: str | None = None) -> tuple[str, str]:
    """Check a query level / model pair. Returns (LEVEL, model)."""
    if not isinstance(level, str) or level.upper() not in QUERY_LEVELS:
        raise DicomValidationError(f"query level {level!r} is unknown: use one of {', '.join(QUERY_LEVELS)}")
    level = level.upper()
    if level == "WORKLIST":
        return level, "worklist"
    model = model or ("patient_root" if level == "PATIENT" else "study_root")
    if model not in ("patient_root", "study_root"):
        raise DicomValidationError(f"query model {model!r} is unknown: use patient_root or study_root")
    if level == "PATIENT" and model == "study_root":
        raise DicomValidationError("level PATIENT needs query_model patient_root (study root has no patient level)")
    return level, model


def build_tls_context(params: dict):
    """ssl.SSLContext for the requestor, or None when TLS is off."""
    ca, cert, key = params.get("tls_ca_cert"), params.get("tls_client_cert"), params.get("tls_client_key")
    if not (params.get("tls") or ca or cert or key):
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = bool(params.get("tls_check_hostname", True))
    if cert:
        try:
            context.load_cert_chain(cert, keyfile=key, password=params.get("tls_client_key_passphrase") or None)
        except ssl.SSLError as exc:
            if "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc):
                raise DicomValidationError(
                    "tls_client_key does not belong to tls_client_cert: give the matching key"
                ) from None
            raise DicomValidationError(f"cannot load tls_client_cert/tls_client_key: {exc.reason or exc}") from None
    return context


# --------------------------------------------------------------------------- PHI masking


def mask_name(value) -> str | None:
    """A person name masked: ``SYNTH^PATIENT^0003`` -> ``***`` (no length, no initials)."""
    return None if value is None else (MASK if str(value) else "")


def mask_id(value) -> str | None:
    """An identifier masked: ``SYN-000003`` -> ``***``."""
    return None if value is None else (MASK if str(value) else "")


def mask_value(keyword: str, value):  # noqa: ARG001 - the keyword is kept for callers that pass it
    """Any PHI value masked the same way; empty values stay empty, lists keep their number of values."""
    if value is None or value == "":
        return value
    if isinstance(value, (list, tuple)):
        return [mask_value(keyword, v) for v in value]
    return MASK


def is_phi_keyword(keyword: str, vr: str | None = None) -> bool:
    """Whether an attribute is masked by default: a patient identifier, a name, a date or free text."""
    if keyword in PHI_KEYWORDS or keyword.endswith(PHI_KEYWORD_SUFFIXES):
        return True
    if vr is None and HAS_PYDICOM:
        try:
            vr = dictionary_VR(keyword)
        except KeyError:
            vr = None
    return vr in PHI_VRS


def phi_safe_invocation(params: dict, options) -> dict:
    """The task's ``invocation`` with the options that may identify a patient masked.

    Ansible returns the module's arguments with every result (``invocation``, shown at -vvv and
    stored by AWX with each job event); a patient ID used as a query filter would land there in
    clear. Modules pass this as ``invocation=`` to exit_json/fail_json instead.
    """
    args = dict(params)
    for option in options:
        if args.get(option):
            args[option] = MASK
    return {"module_args": args}


def identifier_to_dict(ds, *, unmask_phi: bool = False) -> dict:
    """A JSON-friendly dict of a C-FIND identifier, keyed by keyword; PHI masked unless unmask_phi."""
    out = {}
    for elem in ds:
        keyword = elem.keyword or str(elem.tag)
        if elem.tag.group in (0x0000, 0x0002) or keyword == "QueryRetrieveLevel":
            continue
        if elem.VR == "SQ":
            out[keyword] = [identifier_to_dict(item, unmask_phi=unmask_phi) for item in elem.value]
            continue
        value = elem.value
        if value is None:
            value = ""
        elif isinstance(value, bytes):
            value = f"<{len(value)} bytes>"
        elif isinstance(value, (list, tuple, MultiValue)):
            value = [str(v) for v in value]
        else:
            value = str(value)
        if not unmask_phi and (elem.tag.is_private or is_phi_keyword(keyword, elem.VR)):
            value = mask_value(keyword, value)
        out[keyword] = value
    return out


# --------------------------------------------------------------------------- client


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def _status_int(status) -> int | None:
    if status is None or "Status" not in status:
        return None
    return int(status.Status)


def _context_info(cx) -> dict:
    abstract = str(cx.abstract_syntax)
    ts = str(cx.transfer_syntax[0]) if cx.transfer_syntax else None
    return {
        "context_id": cx.context_id,
        "abstract_syntax": abstract,
        "abstract_syntax_name": SOP_CLASS_NAMES.get(abstract, abstract),
        "transfer_syntax": ts,
        "transfer_syntax_name": TRANSFER_SYNTAX_NAMES.get(ts, ts),
    }


class DicomClient:
    """A reusable DICOM requestor. One instance can make many associations.

    >>> client = DicomClient("127.0.0.1", 4242, "ORTHANC")
    >>> client.echo()["latency_ms"]
    """

    def __init__(
        self,
        host: str,
        port: int,
        called_ae: str,
        calling_ae: str = "CLINUPG",
        timeout: float = 10.0,
        tls_context=None,
        tls_server_hostname: str | None = None,
    ):
        if not HAS_PYNETDICOM:
            raise ImportError(f"pynetdicom is required: {PYNETDICOM_IMPORT_ERROR}")
        quiet_pynetdicom()
        self.host = host
        self.port = int(port)
        self.called_ae = called_ae
        self.calling_ae = calling_ae
        self.timeout = float(timeout)
        self.tls_context = tls_context
        self.tls_server_hostname = tls_server_hostname or host
        self.ae = self._new_ae(calling_ae)

    # ------------------------------------------------------------------ plumbing

    def _new_ae(self, ae_title: str):
        ae = AE(ae_title=ae_title)
        ae.acse_timeout = self.timeout
        ae.dimse_timeout = self.timeout
        ae.network_timeout = self.timeout
        ae.connection_timeout = self.timeout
        make_ae_tuning(ae)
        return ae

    @property
    def _tls_args(self):
        return (self.tls_context, self.tls_server_hostname) if self.tls_context else None

    @staticmethod
    def _on_conn_open(event) -> None:
        sock = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
        if sock is not None:
            tune_socket(sock)

    def associate(self, contexts, *, ext_neg=None, evt_handlers=None):
        """Open an association; returns (assoc, associate_ms). Raises DicomError on failure.

        A peer that rejects the request sends an A-ASSOCIATE-RJ and closes the connection at once;
        now and then pynetdicom handles the close before the RJ it received, and the rejection reads
        as "closed without answering". Such an answer is asked for once more (an association
        request changes nothing on the peer), so that the reason given is the peer's own.
        """
        try:
            return self._associate_once(contexts, ext_neg=ext_neg, evt_handlers=evt_handlers)
        except DicomError as exc:
            if not getattr(exc, "closed_unanswered", False):
                raise
        return self._associate_once(contexts, ext_neg=ext_neg, evt_handlers=evt_handlers)

    def _associate_once(self, contexts, *, ext_neg=None, evt_handlers=None):
        state = {"opened": False, "abort_pdu": None}

        def on_open(event):
            state["opened"] = True
            self._on_conn_open(event)

        def on_pdu(event):
            if isinstance(event.pdu, A_ABORT_RQ):
                state["abort_pdu"] = event.pdu

        handlers = [(evt.EVT_CONN_OPEN, on_open), (evt.EVT_PDU_RECV, on_pdu)] + list(evt_handlers or [])
        start = time.perf_counter()
        try:
            assoc = self.ae.associate(
                self.host,
                self.port,
                contexts=contexts,
                ae_title=self.called_ae,
                ext_neg=ext_neg,
                evt_handlers=handlers,
                tls_args=self._tls_args,
            )
        except socket.gaierror as exc:
            raise DicomError(
                REASON_NAME_RESOLUTION, f"cannot resolve host {self.host!r}: {exc.strerror}; check host"
            ) from None
        elapsed = time.perf_counter() - start
        if assoc.is_established:
            return assoc, _ms(elapsed)
        raise self._association_failure(assoc, state, elapsed)

    def _peer(self) -> str:
        return f"{self.called_ae}@{self.host}:{self.port}"

    def _association_failure(self, assoc, state, elapsed) -> DicomError:
        rsp = getattr(assoc.acceptor, "primitive", None)
        if assoc.is_rejected and rsp is not None:
            result, source, diag = rsp.result, rsp.result_source, rsp.diagnostic
            reason_words = REJECT_REASONS.get(source, {}).get(diag, f"reason code {diag}")
            hint = REJECT_HINTS.get((source, diag))
            msg = (
                f"association rejected by {self._peer()}: {reason_words} "
                f"({REJECT_RESULTS.get(result, result)}, source: {REJECT_SOURCES.get(source, source)})"
            )
            if hint:
                msg += f"; {hint}"
            return DicomError(
                REASON_REJECTED,
                msg,
                rejection={
                    "result": result,
                    "result_str": REJECT_RESULTS.get(result, str(result)),
                    "source": source,
                    "source_str": REJECT_SOURCES.get(source, str(source)),
                    "reason": diag,
                    "reason_str": reason_words,
                },
            )
        if not state["opened"]:
            return self._diagnose_connect_failure()
        if isinstance(rsp, A_ASSOCIATE) and rsp.result == 0 and not assoc.accepted_contexts:
            proposed = sorted({str(cx.abstract_syntax) for cx in assoc.requestor.requested_contexts})
            names = ", ".join(SOP_CLASS_NAMES.get(uid, uid) for uid in proposed)
            return DicomError(
                REASON_NO_CONTEXT,
                f"association accepted by {self._peer()} but no presentation context was accepted: "
                f"the peer does not support {names} with the proposed transfer syntaxes",
            )
        if state["abort_pdu"] is not None:
            pdu = state["abort_pdu"]
            src = ABORT_SOURCES.get(pdu.source, pdu.source)
            why = ABORT_REASONS.get(pdu.reason_diagnostic, pdu.reason_diagnostic) if pdu.source == 2 else "not given"
            return DicomError(
                REASON_ABORTED,
                f"association aborted by {self._peer()} during negotiation (A-ABORT from {src}, reason: {why})",
                abort={"source": pdu.source, "source_str": str(src), "reason": pdu.reason_diagnostic},
            )
        if elapsed >= self.timeout * 0.95:
            return DicomError(
                REASON_TIMEOUT,
                f"timeout: {self._peer()} accepted the TCP connection but did not answer the association "
                f"request within {self.timeout:g} s (is it a DICOM service? is it overloaded?)",
            )
        if self.tls_context is None and speaks_tls(self.host, self.port, self.timeout):
            return DicomError(
                REASON_TLS,
                f"{self._peer()} closed the connection without answering the association request: the peer "
                "speaks TLS on this port; set tls: true (with tls_ca_cert, and tls_client_cert/tls_client_key "
                "when it asks for a client certificate), or use its plain DICOM port",
            )
        hint = " (with TLS this usually means the peer refused the client certificate)" if self.tls_context else ""
        error = DicomError(
            REASON_ABORTED,
            f"association aborted: {self._peer()} closed the connection without answering the "
            f"association request{hint}",
        )
        error.closed_unanswered = True
        return error

    def _diagnose_connect_failure(self) -> DicomError:
        """Reproduce the TCP (and TLS) connect to name the exact reason."""
        addr = f"{self.host}:{self.port}"
        sock = None
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            if self.tls_context is not None:
                sock = self.tls_context.wrap_socket(sock, server_hostname=self.tls_server_hostname)
        except ssl.SSLCertVerificationError as exc:
            return DicomError(
                REASON_TLS,
                f"TLS certificate verification of {addr} failed: {exc.verify_message or exc.reason}; "
                "check tls_ca_cert (and tls_check_hostname for host name mismatches)",
            )
        except ssl.SSLError as exc:
            if not speaks_tls(self.host, self.port, self.timeout):
                return self._not_tls(addr)
            return DicomError(REASON_TLS, f"TLS handshake with {addr} failed: {exc.reason or exc}")
        except ConnectionRefusedError:
            return DicomError(
                REASON_CONNECTION_REFUSED,
                f"connection refused by {addr}: nothing listens on that port; check host, port and that "
                "the DICOM service is running",
            )
        except TimeoutError:
            return DicomError(
                REASON_TIMEOUT,
                f"timeout: no TCP connection to {addr} within {self.timeout:g} s; check the address, "
                "firewalls and routing",
            )
        except socket.gaierror as exc:
            return DicomError(REASON_NAME_RESOLUTION, f"cannot resolve host {self.host!r}: {exc.strerror}; check host")
        except OSError as exc:
            if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
                return DicomError(REASON_HOST_UNREACHABLE, f"{addr} is unreachable: {exc.strerror}")
            if self.tls_context is not None and sock is not None and not speaks_tls(self.host, self.port, self.timeout):
                return self._not_tls(addr)  # a plain DICOM port resets the TLS ClientHello
            return DicomError(REASON_CONNECTION_FAILED, f"cannot connect to {addr}: {exc.strerror or exc}")
        finally:
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
        return DicomError(
            REASON_CONNECTION_FAILED,
            f"cannot connect to {addr}: the connection failed but a second attempt succeeded (flapping service?)",
        )

    @staticmethod
    def _not_tls(addr: str) -> DicomError:
        return DicomError(
            REASON_TLS,
            f"TLS handshake with {addr} failed: the peer does not speak TLS on this port; set tls: false (and "
            "no tls_* files), or use the peer's DICOM TLS port",
        )

    def _dimse_failure(self, assoc, op: str, elapsed: float) -> DicomError:
        if elapsed >= self.timeout * 0.95:
            return DicomError(
                REASON_TIMEOUT, f"timeout: no {op} response from {self._peer()} within {self.timeout:g} s"
            )
        return DicomError(
            REASON_ABORTED,
            f"association aborted by {self._peer()} during {op} (some archives, Orthanc among them, abort "
            "instead of answering when calling_ae is not allowed to use this service)",
        )

    @staticmethod
    def release(assoc) -> float:
        start = time.perf_counter()
        if assoc.is_established:
            assoc.release()
        return _ms(time.perf_counter() - start)

    @staticmethod
    def peer_info(assoc) -> dict:
        acc = assoc.acceptor
        max_pdu = getattr(acc, "maximum_length", None)
        return {
            "ae_title": str(getattr(acc, "ae_title", "") or "").strip(),
            "implementation_class_uid": str(getattr(acc, "implementation_class_uid", "") or "") or None,
            "implementation_version_name": str(getattr(acc, "implementation_version_name", "") or "") or None,
            "maximum_pdu_length": max_pdu,
        }

    # ------------------------------------------------------------------ services

    def echo(self) -> dict:
        """Associate, C-ECHO, release. Returns status, latency_ms (whole cycle), timings, context, peer."""
        start = time.perf_counter()
        assoc, assoc_ms = self.associate([build_context(VERIFICATION_SOP_CLASS, DEFAULT_TRANSFER_SYNTAXES)])
        try:
            t0 = time.perf_counter()
            status = assoc.send_c_echo()
            echo_s = time.perf_counter() - t0
            code = _status_int(status)
            if code is None:
                raise self._dimse_failure(assoc, "C-ECHO", echo_s)
            context = _context_info(assoc.accepted_contexts[0])
            peer = self.peer_info(assoc)
        finally:
            release_ms = self.release(assoc)
        total = time.perf_counter() - start
        return {
            "status": code,
            "status_hex": f"0x{code:04X}",
            "latency_ms": _ms(total),
            "timings": {"associate_ms": assoc_ms, "echo_ms": _ms(echo_s), "release_ms": release_ms},
            "context": context,
            "peer": peer,
        }

    def find(self, identifier, model: str = "study_root", *, max_results: int | None = None) -> dict:
        """C-FIND. Returns count, identifiers (at most max_results), status, latency_ms, truncated."""
        sop_class = QUERY_MODELS[model][0]
        start = time.perf_counter()
        assoc, assoc_ms = self.associate([build_context(sop_class, DEFAULT_TRANSFER_SYNTAXES)])
        matches = []
        count = 0
        final = None
        try:
            t0 = time.perf_counter()
            for status, ident in assoc.send_c_find(identifier, sop_class):
                code = _status_int(status)
                if code is None:
                    raise self._dimse_failure(assoc, "C-FIND", time.perf_counter() - t0)
                if code in (0xFF00, 0xFF01):
                    count += 1
                    if ident is not None and (max_results is None or len(matches) < max_results):
                        matches.append(ident)
                else:
                    final = code
            find_s = time.perf_counter() - t0
            if final is None:
                raise self._dimse_failure(assoc, "C-FIND", find_s)
            context = _context_info(assoc.accepted_contexts[0])
        finally:
            release_ms = self.release(assoc)
        if final != 0x0000:
            raise DicomError(
                REASON_DIMSE_FAILURE,
                f"C-FIND failed on {self._peer()}: status 0x{final:04X} ({_find_status_words(final)})",
                status=final,
            )
        return {
            "status": final,
            "count": count,
            "identifiers": matches,
            "truncated": max_results is not None and count > len(matches),
            "latency_ms": _ms(time.perf_counter() - start),
            "timings": {"associate_ms": assoc_ms, "find_ms": _ms(find_s), "release_ms": release_ms},
            "context": context,
        }

    def store(self, ds) -> dict:
        """C-STORE one dataset. Returns status and timings."""
        sop_class = str(ds.SOPClassUID)
        start = time.perf_counter()
        assoc, assoc_ms = self.associate([build_context(sop_class, DEFAULT_TRANSFER_SYNTAXES)])
        try:
            t0 = time.perf_counter()
            status = assoc.send_c_store(ds)
            store_s = time.perf_counter() - t0
            code = _status_int(status)
            if code is None:
                raise self._dimse_failure(assoc, "C-STORE", store_s)
        finally:
            release_ms = self.release(assoc)
        if code != 0x0000 and not 0xB000 <= code <= 0xBFFF:
            raise DicomError(
                REASON_DIMSE_FAILURE, f"C-STORE refused by {self._peer()}: status 0x{code:04X}", status=code
            )
        return {
            "status": code,
            "latency_ms": _ms(time.perf_counter() - start),
            "timings": {"associate_ms": assoc_ms, "store_ms": _ms(store_s), "release_ms": release_ms},
        }

    def get(self, identifier, storage_sop_classes, model: str = "study_root") -> dict:
        """C-GET; received instances are returned in ``datasets``."""
        sop_class = QUERY_MODELS[model][1]
        received = []

        def on_store(event):
            ds = event.dataset
            ds.file_meta = event.file_meta
            received.append(ds)
            return 0x0000

        contexts = [build_context(sop_class, DEFAULT_TRANSFER_SYNTAXES)]
        contexts += [build_context(uid, DEFAULT_TRANSFER_SYNTAXES) for uid in storage_sop_classes]
        roles = [build_role(uid, scp_role=True) for uid in storage_sop_classes]
        start = time.perf_counter()
        assoc, assoc_ms = self.associate(contexts, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, on_store)])
        final = None
        try:
            if not any(str(cx.abstract_syntax) == sop_class for cx in assoc.accepted_contexts):
                raise DicomError(
                    REASON_NO_CONTEXT,
                    f"{self._peer()} does not accept C-GET ({SOP_CLASS_NAMES[sop_class]})",
                )
            t0 = time.perf_counter()
            for status, _ident in assoc.send_c_get(identifier, sop_class):
                code = _status_int(status)
                if code is None:
                    raise self._dimse_failure(assoc, "C-GET", time.perf_counter() - t0)
                if code not in (0xFF00,):
                    final = code
            get_s = time.perf_counter() - t0
            if final is None:
                raise self._dimse_failure(assoc, "C-GET", get_s)
        finally:
            release_ms = self.release(assoc)
        if final not in (0x0000, 0xB000) or not received:
            raise DicomError(
                REASON_DIMSE_FAILURE,
                f"C-GET on {self._peer()} returned status 0x{final:04X} with {len(received)} instance(s) received",
                status=final,
            )
        return {
            "status": final,
            "datasets": received,
            "latency_ms": _ms(time.perf_counter() - start),
            "timings": {"associate_ms": assoc_ms, "get_ms": _ms(get_s), "release_ms": release_ms},
        }

    def move(
        self,
        identifier,
        storage_sop_classes,
        destination_ae: str,
        *,
        listen_address: str = "127.0.0.1",
        listen_port: int = 0,
        model: str = "study_root",
        expected: int = 1,
    ) -> dict:
        """C-MOVE to a temporary storage SCP started here. The peer must route destination_ae to it."""
        sop_class = QUERY_MODELS[model][2]
        received = []
        done = threading.Event()

        def on_store(event):
            ds = event.dataset
            ds.file_meta = event.file_meta
            received.append(ds)
            if len(received) >= expected:
                done.set()
            return 0x0000

        scp_ae = self._new_ae(destination_ae)
        for uid in storage_sop_classes:
            scp_ae.add_supported_context(uid, DEFAULT_TRANSFER_SYNTAXES)
        try:
            server = scp_ae.start_server(
                (listen_address, listen_port),
                block=False,
                evt_handlers=[(evt.EVT_C_STORE, on_store), (evt.EVT_CONN_OPEN, self._on_conn_open)],
            )
        except OSError as exc:
            raise DicomError(
                REASON_CONNECTION_FAILED,
                f"cannot start the temporary storage SCP on {listen_address}:{listen_port}: {exc.strerror or exc}",
            ) from None
        scp_port = server.server_address[1]
        start = time.perf_counter()
        final = None
        try:
            assoc, assoc_ms = self.associate([build_context(sop_class, DEFAULT_TRANSFER_SYNTAXES)])
            try:
                t0 = time.perf_counter()
                for status, _ident in assoc.send_c_move(identifier, destination_ae, sop_class):
                    code = _status_int(status)
                    if code is None:
                        raise self._dimse_failure(assoc, "C-MOVE", time.perf_counter() - t0)
                    if code != 0xFF00:
                        final = code
                if final is None:
                    raise self._dimse_failure(assoc, "C-MOVE", time.perf_counter() - t0)
                done.wait(timeout=self.timeout if final in (0x0000, 0xB000) else 0)
                move_s = time.perf_counter() - t0
            finally:
                release_ms = self.release(assoc)
        finally:
            server.shutdown()
        if final not in (0x0000, 0xB000) or not received:
            hint = ""
            if not received:
                hint = (
                    f"; check that the peer knows move destination {destination_ae!r} at this host, port "
                    f"{scp_port} (Orthanc answers 0xC000 for an unknown destination, the standard says 0xA801)"
                )
            raise DicomError(
                REASON_DIMSE_FAILURE,
                f"C-MOVE on {self._peer()} to {destination_ae} returned status 0x{final:04X} with "
                f"{len(received)} instance(s) received{hint}",
                status=final,
            )
        return {
            "status": final,
            "datasets": received,
            "scp_port": scp_port,
            "latency_ms": _ms(time.perf_counter() - start),
            "timings": {"associate_ms": assoc_ms, "move_ms": _ms(move_s), "release_ms": release_ms},
        }


def _find_status_words(code: int) -> str:
    if code == 0xA700:
        return "out of resources"
    if code == 0xA900:
        return "identifier does not match SOP class"
    if code == 0xFE00:
        return "cancelled"
    if 0xC000 <= code <= 0xCFFF:
        return "unable to process"
    if code == 0x0122:
        return "SOP class not supported"
    return "failure"


# --------------------------------------------------------------------------- seam


def build_client(params: dict) -> DicomClient:
    """The single seam: validate connection params (no network) and return a DicomClient.

    Raises DicomValidationError with an exact message when an option is wrong.
    """
    defaults = {name: spec.get("default") for name, spec in dicom_argument_spec().items()}
    params = {**defaults, **{k: v for k, v in params.items() if v is not None}}
    validate_connection_params(params)
    tls_context = build_tls_context(params)
    return DicomClient(
        host=params["host"],
        port=params["port"],
        called_ae=params["called_ae"],
        calling_ae=params["calling_ae"],
        timeout=params["timeout"],
        tls_context=tls_context,
    )


def missing_libraries() -> list[tuple[str, object]]:
    """[(library, import error)] for the libraries that could not be imported."""
    missing = []
    if not HAS_PYNETDICOM:
        missing.append(("pynetdicom", PYNETDICOM_IMPORT_ERROR))
    if not HAS_PYDICOM:
        missing.append(("pydicom", PYDICOM_IMPORT_ERROR))
    return missing


def fail_if_missing_libraries(module) -> None:
    """fail_json with missing_required_lib() when pynetdicom or pydicom cannot be imported."""
    from ansible.module_utils.basic import missing_required_lib

    for name, error in missing_libraries():
        module.fail_json(msg=missing_required_lib(name), reason="missing_library", exception=str(error))


def fail_with(module, error: DicomError, **extra) -> None:
    """fail_json from a classified DicomError (msg, reason and details)."""
    result = error.to_result()
    result.update(extra)
    module.fail_json(**result)
