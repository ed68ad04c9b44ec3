# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""HL7 v2 over MLLP: framing, message building, ACK parsing, PHI masking.

Shared by the ``hl7_check`` module and the tests. The network part is one
function, :func:`send_message`, so that callers have a single seam.

Framing follows the MLLP release 2 envelope: ``0x0b <message> 0x1c 0x0d``.
The reader is strict about the envelope (a peer that answers with something
else is reported as a malformed frame, not silently accepted) and bounded in
size and time.

Parsing is done here with the standard library so that errors are exact; when
python-hl7 is installed it is used as a second opinion on caller-given raw
messages (``hl7.parse``).

No real patient data is ever built here: generated messages carry a synthetic
``ZZTEST^SYNTHETIC`` patient, and everything returned to a caller goes through
:func:`mask_message`, which replaces patient names and identifiers by a fixed
``***`` (never a part of the value, nor its length). Error messages never quote
a message's text.

Field values are escaped when a message is built (``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\``, see
:func:`escape`) and unescaped when an ACK is parsed.

Plain MLLP only: when a peer closes or resets the connection without an
answer, a TLS handshake on a second connection tells whether the port speaks
TLS (see :func:`peer_speaks_tls`), so that the error says so.
"""

from __future__ import annotations

import codecs
import contextlib
import datetime
import math
import re
import socket
import time
import uuid

from ansible.module_utils.net_checks import (  # noqa: F401 - peer_speaks_tls is part of this module's API
    TLS_PROBE_SECONDS,
    host_name_error,
    peer_speaks_tls,
    shown,
    tls_record_start,
)

try:  # optional second opinion on raw messages
    import hl7 as _hl7

    HAS_HL7 = True
except ImportError:  # pragma: no cover - depends on the controller
    _hl7 = None
    HAS_HL7 = False

SB = b"\x0b"
EB = b"\x1c"
CR = b"\x0d"

MAX_FRAME_BYTES = 1024 * 1024
RECV_CHUNK = 4096

MESSAGE_TYPES = ("ORM^O01", "ADT^A01", "raw")
ACK_CODES = ("AA", "AE", "AR", "CA", "CE", "CR")
ACCEPT_CODES = ("AA", "CA")
ORDER_CONTROLS = ("NW", "CA")

SYNTHETIC_PATIENT_NAME = "ZZTEST^SYNTHETIC"
MASK = "***"

# Fields that identify a patient or a person, per segment (1-based field numbers, MSH excluded).
# PID: everything but PID-1 (set id) and PID-8 (administrative sex). Segments that are neither
# here nor in SAFE_SEGMENTS (NTE, OBX, Z segments, ...) are masked whole, but for their field 1.
PHI_FIELDS = {
    "PID": tuple(i for i in range(2, 40) if i != 8),
    "PD1": (3, 4),
    "NK1": (2, 4, 5, 6, 30, 31, 32, 33),
    "GT1": (2, 3, 5, 6, 7, 8, 12, 16, 17, 18, 19),
    "IN1": (16, 17, 18, 19, 36, 49),
    "IN2": (1, 2, 6, 8),
    "MRG": (1, 2, 3, 4, 5, 7),
    "PV1": (7, 8, 9, 17, 19, 50),
    "ORC": (10, 11, 12, 19),
    "OBR": (10, 16, 28, 32, 33, 34, 35),
}
# Segments without patient data, kept as they are in masked messages.
SAFE_SEGMENTS = ("MSH", "MSA", "ERR", "EVN")

# Character sets that are not ASCII-compatible, or codecs that are not character sets: MLLP's
# framing bytes and HL7's delimiters must be the ASCII bytes on the wire.
_NOT_CHARSETS = ("idna", "punycode", "raw-unicode-escape", "unicode-escape", "raw_unicode_escape", "unicode_escape")
_ASCII_PROBE = "MSH|^~\\&\r\x0b\x1c 09AZaz"

_AE_TITLE_RE = re.compile(r"^(?=.*[^ ])[\x20-\x5b\x5d-\x7e]{1,16}$")  # printable ASCII, no backslash, not blank
_SAFE_VALUE_RE = re.compile(r"^[A-Za-z0-9 ._\-]*$")
_DATETIME_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})(?:(\d{2})(\d{2})(\d{2})?)?$")


class HL7ClientError(Exception):
    """An error with a message that says what to fix.

    ``kind`` is one of: validation, timeout, refused, connection, frame, ack,
    control_id, tls (the peer speaks TLS). After the connection is open,
    ``details["sent"]`` says whether the whole message went out.
    """

    def __init__(self, msg, kind="error", **details):
        super().__init__(msg)
        self.msg = msg
        self.kind = kind
        self.details = details


# --------------------------------------------------------------------------
# Argument spec shared by modules
# --------------------------------------------------------------------------


def hl7_argument_spec():
    """Connection and message options shared by the HL7 modules."""
    return {
        "host": {"type": "str", "required": True},
        "port": {"type": "int", "default": 2575},
        "timeout": {"type": "float", "default": 10.0},
        "message_type": {"type": "str", "default": "ORM^O01", "choices": list(MESSAGE_TYPES)},
        # no_log: a raw message may carry real patient data; Ansible then neither logs it nor
        # returns it in the result's invocation.
        "raw_message": {"type": "str", "no_log": True},
        "control_id": {"type": "str"},
        "sending_application": {"type": "str", "default": "CLINUPG"},
        "sending_facility": {"type": "str", "default": "CLINUPG"},
        "receiving_application": {"type": "str", "default": "RIS"},
        "receiving_facility": {"type": "str", "default": "RADIOLOGY"},
        "hl7_version": {"type": "str", "default": "2.5.1"},
        "encoding": {"type": "str", "default": "utf-8"},
        "order": {
            "type": "dict",
            "default": {},
            "options": {
                "control": {"type": "str", "default": "NW", "choices": list(ORDER_CONTROLS)},
                "accession_number": {"type": "str"},
                "patient_id": {"type": "str"},
                "modality": {"type": "str", "default": "OT"},
                "station_aetitle": {"type": "str", "aliases": ["station_ae"]},
                "procedure_code": {"type": "str", "default": "CUPG01"},
                "procedure_description": {"type": "str", "default": "CLINICAL UPGRADE TEST"},
                "scheduled_datetime": {"type": "str"},
            },
        },
    }


def with_defaults(params):
    """Return a copy of params with the argument spec defaults filled in (for callers outside a module)."""
    spec = hl7_argument_spec()
    out = {k: v.get("default") for k, v in spec.items()}
    out.update({k: v for k, v in params.items() if v is not None})
    order = {k: v.get("default") for k, v in spec["order"]["options"].items()}
    order.update({k: v for k, v in (params.get("order") or {}).items() if v is not None})
    out["order"] = order
    return out


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------


_shown = shown


def validate_host(host):
    """Check that host is an IP address or a host name (RFC 1123 labels), before any network use."""
    error = host_name_error(host)
    if error:
        raise HL7ClientError(error, kind="validation")


def validate_endpoint(host, port, timeout):
    """Check host, port and timeout before any network use."""
    validate_host(host)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise HL7ClientError(f"port must be an integer from 1 to 65535, got {_shown(port)}", kind="validation")
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not math.isfinite(timeout)
        or not 0 < timeout <= 3600
    ):
        raise HL7ClientError(
            f"timeout must be a number of seconds greater than 0 and at most 3600 (not NaN or infinity), "
            f"got {_shown(timeout)}",
            kind="validation",
        )


def validate_encoding(encoding):
    """Check that encoding is a known, ASCII-compatible character set (MLLP framing needs one)."""
    try:
        name = codecs.lookup(encoding).name
        probe = _ASCII_PROBE.encode(encoding)
    except (LookupError, TypeError, ValueError):
        raise HL7ClientError(
            f"encoding {_shown(encoding)} is not a known character encoding (use utf-8, latin-1, ascii, ...)",
            kind="validation",
        ) from None
    if name in _NOT_CHARSETS or probe != _ASCII_PROBE.encode("ascii"):
        raise HL7ClientError(
            f"encoding {_shown(encoding)} cannot carry MLLP: HL7 delimiters and the MLLP frame bytes must be "
            "plain ASCII bytes; use an ASCII-compatible character set (utf-8, latin-1, cp1252, ascii)",
            kind="validation",
        )


def _location(text, pos):
    """HL7 location (``PID-5``) of a character position in CR-joined message text."""
    before = text[:pos]
    seg_start = before.rfind("\r") + 1
    segment = text[seg_start:].split("\r", 1)[0]
    name = segment[:3] or "?"
    fs = text[3] if len(text) > 3 else "|"
    field = before[seg_start:].count(fs) + (1 if name == "MSH" else 0)
    return f"{name}-{field}" if field else name


def encode_message(text, encoding):
    """Encode message text for the wire; a character the encoding lacks is a validation error."""
    validate_encoding(encoding)
    try:
        return text.encode(encoding)
    except UnicodeEncodeError as exc:
        raise HL7ClientError(
            f"the message has a character that encoding {encoding!r} cannot represent, in "
            f"{_location(text, exc.start)} (not shown: it may be patient data); use encoding utf-8, or the "
            "character set the peer expects, or remove the character",
            kind="validation",
        ) from None


def validate_datetime(name, value):
    """A date/time option: YYYYMMDD, YYYYMMDDHHMM or YYYYMMDDHHMMSS, and a real calendar date and time."""
    if value is None:
        return
    match = _DATETIME_RE.match(value) if isinstance(value, str) else None
    valid = False
    if match:
        year, month, day, hour, minute, second = (int(g) if g else 0 for g in match.groups())
        try:
            datetime.datetime(year, month, day, hour, minute, second)
            valid = year >= 1900
        except ValueError:
            valid = False
    if not valid:
        raise HL7ClientError(
            f"{name} must be a real date and time as YYYYMMDD, YYYYMMDDHHMM or YYYYMMDDHHMMSS "
            f"(year from 1900, month 01-12, a day the month has, hour 00-23, minutes and seconds 00-59), "
            f"got {_shown(value)}",
            kind="validation",
        )


def _check_token(name, value, maxlen, pattern=_SAFE_VALUE_RE, secret=False):
    """``secret``: the value identifies a patient or a study and is never echoed."""
    if value is None:
        return
    if not isinstance(value, str) or len(value) > maxlen or not pattern.match(value):
        got = "the value is not shown: it identifies a patient or a study" if secret else f"got {_shown(value)}"
        raise HL7ClientError(
            f"{name} must be at most {maxlen} characters of letters, digits, space, '.', '_' or '-' ({got})",
            kind="validation",
        )


def validate_options(params):
    """Validate message options (no network). Raises HL7ClientError."""
    params = with_defaults(params)
    validate_endpoint(params.get("host"), params.get("port"), params.get("timeout"))
    mtype = params.get("message_type")
    if mtype not in MESSAGE_TYPES:
        raise HL7ClientError(
            "message_type must be one of {}, got {!r}".format(", ".join(MESSAGE_TYPES), mtype), kind="validation"
        )
    if mtype == "raw":
        if not params.get("raw_message"):
            raise HL7ClientError("message_type=raw needs raw_message (a complete HL7 v2 message)", kind="validation")
    elif params.get("raw_message"):
        raise HL7ClientError(
            f"raw_message is only used with message_type=raw (message_type is {mtype})", kind="validation"
        )
    for name in ("sending_application", "sending_facility", "receiving_application", "receiving_facility"):
        _check_token(name, params.get(name), 64)
    _check_token("control_id", params.get("control_id"), 20)
    version = params.get("hl7_version")
    if not isinstance(version, str) or not re.match(r"^2\.[1-9](\.[0-9])?$", version):
        raise HL7ClientError(f"hl7_version must look like 2.3, 2.5 or 2.5.1, got {version!r}", kind="validation")
    validate_encoding(params.get("encoding"))
    order = params.get("order") or {}
    if order.get("control") not in (None,) + ORDER_CONTROLS:
        raise HL7ClientError("order.control must be NW (new) or CA (cancel)", kind="validation")
    _check_token("order.accession_number", order.get("accession_number"), 16, secret=True)
    _check_token("order.patient_id", order.get("patient_id"), 32, secret=True)
    _check_token("order.modality", order.get("modality"), 16)
    _check_token("order.procedure_code", order.get("procedure_code"), 16)
    desc = order.get("procedure_description")
    if desc is not None and (not isinstance(desc, str) or not 0 < len(desc) <= 64 or not desc.isprintable()):
        raise HL7ClientError(
            "order.procedure_description must be 1 to 64 printable characters (no line breaks or other control "
            f"characters; HL7 delimiters are escaped), got {_shown(desc)}",
            kind="validation",
        )
    station = order.get("station_aetitle")
    if station is not None and (not isinstance(station, str) or not _AE_TITLE_RE.match(station)):
        raise HL7ClientError(
            "order.station_aetitle must be 1 to 16 printable ASCII characters, not all spaces, without backslash "
            f"(HL7 delimiters such as | and ^ are escaped), got {_shown(station)}",
            kind="validation",
        )
    validate_datetime("order.scheduled_datetime", order.get("scheduled_datetime"))
    if mtype == "ORM^O01" and order.get("control") == "CA" and not order.get("accession_number"):
        raise HL7ClientError(
            "order.control=CA cancels an existing order and needs order.accession_number", kind="validation"
        )


# --------------------------------------------------------------------------
# Message building
# --------------------------------------------------------------------------


def new_control_id():
    """A unique message control id (20 characters max, per HL7 ST length in MSH-10)."""
    return "CU" + uuid.uuid4().hex[:18].upper()


def _now():
    return datetime.datetime.now().strftime("%Y%m%d%H%M%S")


def escape(value, fs="|", enc="^~\\&"):
    """Escape HL7 delimiters in a field value (a single component): | ^ & ~ and the escape character.

    With the default delimiters: ``|`` -> ``\\F\\``, ``^`` -> ``\\S\\``, ``&`` -> ``\\T\\``,
    ``~`` -> ``\\R\\``, ``\\`` -> ``\\E\\`` (HL7 v2 chapter 2.7.4). The inverse is :func:`unescape`.
    """
    if not value:
        return value
    cs, rs, esc, ss = enc[:4]
    table = {fs: "F", cs: "S", rs: "R", esc: "E", ss: "T"}
    return "".join(f"{esc}{table[ch]}{esc}" if ch in table else ch for ch in value)


def _msh(params, message_type, control_id, trigger_structure=None):
    mtype = message_type
    if trigger_structure:
        mtype = f"{message_type}^{trigger_structure}"
    return "|".join(
        [
            "MSH",
            "^~\\&",
            escape(params.get("sending_application") or "CLINUPG"),
            escape(params.get("sending_facility") or "CLINUPG"),
            escape(params.get("receiving_application") or "RIS"),
            escape(params.get("receiving_facility") or "RADIOLOGY"),
            _now(),
            "",
            mtype,
            escape(control_id),
            "P",
            escape(params.get("hl7_version") or "2.5.1"),
        ]
    )


def _synthetic_pid(patient_id):
    # PID-3 id, PID-5 name, PID-7 birth date, PID-8 sex: all synthetic.
    return f"PID|1||{escape(patient_id)}^^^CLINUPG^MR||{SYNTHETIC_PATIENT_NAME}||19700101|O"


def build_message(params, control_id):
    """Build the message text (segments joined by CR) for the given options.

    ORM^O01 field mapping (the same one the ris_server listener reads):
    ORC-1 order control (NW/CA), ORC-2 placer order number, ORC-3 filler order
    number, OBR-4 procedure code^description, OBR-18 accession number, OBR-19
    requested procedure id, OBR-20 scheduled procedure step id, OBR-21 scheduled
    station AE title, OBR-24 modality, OBR-36 scheduled date/time.

    Every value is escaped (:func:`escape`), so that a ``|`` or ``^`` in a station AE title or a
    procedure description stays in its field and component.
    """
    params = with_defaults(params)
    mtype = params.get("message_type")
    if mtype == "raw":
        return normalise_raw(params["raw_message"])
    order = params.get("order") or {}
    patient_id = order.get("patient_id") or "SYN" + uuid.uuid4().hex[:9].upper()
    if mtype == "ADT^A01":
        segments = [
            _msh(params, "ADT^A01", control_id, "ADT_A01"),
            "EVN|A01|" + _now(),
            _synthetic_pid(patient_id),
            "PV1|1|O|RAD^^^CLINUPG",
        ]
        return "\r".join(segments)
    accession = order.get("accession_number") or "A" + uuid.uuid4().hex[:11].upper()
    control = order.get("control") or "NW"
    sched = order.get("scheduled_datetime") or datetime.datetime.now().strftime("%Y%m%d%H%M")
    modality = order.get("modality") or "OT"
    station = order.get("station_aetitle") or ""
    code = order.get("procedure_code") or "CUPG01"
    desc = order.get("procedure_description") or "CLINICAL UPGRADE TEST"
    acc = escape(accession)
    obr = ["OBR", "1", acc, acc, f"{escape(code)}^{escape(desc)}"] + [""] * 13
    obr += [acc, escape("RP" + accession[-14:]), escape("SPS" + accession[-13:]), escape(station), "", ""]
    obr += [escape(modality)] + [""] * 11 + [escape(sched)]
    segments = [
        _msh(params, "ORM^O01", control_id, "ORM_O01"),
        _synthetic_pid(patient_id),
        "PV1|1|O|RAD^^^CLINUPG",
        f"ORC|{escape(control)}|{acc}|{acc}||SC",
        "|".join(obr),
    ]
    return "\r".join(segments)


def normalise_raw(text):
    """Accept a raw message with CR, LF or CRLF segment ends; return CR-joined text."""
    if not isinstance(text, str):
        raise HL7ClientError("raw_message must be a string", kind="validation")
    lines = [line for line in re.split(r"\r\n|\r|\n", text.strip()) if line.strip()]
    if not lines or not lines[0].startswith("MSH") or len(lines[0]) < 8:
        first = lines[0][:3] if lines else ""
        starts = (
            f"it starts with segment {first}"
            if re.match(r"^[A-Z][A-Z0-9]{2}$", first) and lines[0][3:4] in ("", "|")
            else "its start is not shown (it may be patient data)"
        )
        raise HL7ClientError(f"raw_message must start with an MSH segment (MSH|^~\\&|...); {starts}", kind="validation")
    fs = lines[0][3]
    fields = lines[0].split(fs)
    if len(fields) < 12:
        raise HL7ClientError(
            f"raw_message MSH segment needs at least 12 fields (up to MSH-12 version id), found {len(fields)}",
            kind="validation",
        )
    if not fields[9]:
        raise HL7ClientError("raw_message MSH-10 (message control id) is empty", kind="validation")
    if not fields[8]:
        raise HL7ClientError("raw_message MSH-9 (message type) is empty", kind="validation")
    for number, line in enumerate(lines[1:], start=2):
        if not re.match(rf"^[A-Z][A-Z0-9]{{2}}(\{fs}|$)", line):
            raise HL7ClientError(
                f"raw_message line {number} is not an HL7 segment (a segment starts with a 3-character id such as "
                f"PID, then {fs!r}); the line is not shown (it may be patient data)",
                kind="validation",
            )
    joined = "\r".join(lines)
    if HAS_HL7:
        try:
            _hl7.parse(joined)
        except Exception as exc:  # python-hl7 raises several types; only its fixed texts are shown
            detail = f": {exc}" if isinstance(exc, _hl7.ParseException) else ""
            raise HL7ClientError(
                f"raw_message is not parseable HL7 v2 (python-hl7 {type(exc).__name__}{detail})", kind="validation"
            ) from None
    return joined


def set_control_id(text, control_id):
    """Return message text with MSH-10 replaced."""
    segs = text.split("\r")
    fs = segs[0][3]
    fields = segs[0].split(fs)
    fields[9] = control_id
    segs[0] = fs.join(fields)
    return "\r".join(segs)


# --------------------------------------------------------------------------
# Parsing and masking
# --------------------------------------------------------------------------


def split_segments(text):
    """Split message text into a list of (segment_id, fields) tuples.

    ``fields[0]`` is the segment id; for MSH, ``fields[1]`` is the field
    separator itself so that ``fields[n]`` is MSH-n for every segment.
    """
    lines = [line for line in re.split(r"\r\n|\r|\n", text) if line]
    if not lines or not lines[0].startswith("MSH") or len(lines[0]) < 8:
        raise HL7ClientError("message does not start with an MSH segment", kind="ack")
    fs = lines[0][3]
    if fs.isalnum() or fs.isspace():
        raise HL7ClientError(f"MSH field separator {fs!r} is not valid", kind="ack")
    out = []
    for line in lines:
        fields = line.split(fs)
        if line.startswith("MSH"):
            fields = ["MSH", fs] + fields[1:]
        out.append((fields[0], fields))
    return out


def _component_sep(segments):
    msh = segments[0][1]
    enc = msh[2] if len(msh) > 2 else "^~\\&"
    return enc[0] if enc else "^"


def unescape(text, segments):
    """Undo HL7 escape sequences (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\) in a field value."""
    msh = segments[0][1]
    fs = msh[1]
    enc = msh[2] if len(msh) > 2 else "^~\\&"
    cs, rs, esc, ss = (list(enc) + ["^", "~", "\\", "&"][len(enc) :])[:4]
    if not esc or esc not in text:
        return text
    table = {"F": fs, "S": cs, "R": rs, "E": esc, "T": ss}
    return re.sub(re.escape(esc) + r"([FSRET])" + re.escape(esc), lambda m: table[m.group(1)], text)


def mask_message(text):
    """Mask patient data in a message. Never raises.

    Every non-empty field that may hold patient data becomes ``***`` as a whole (not a part of it,
    so neither initials nor length show): the PHI_FIELDS of known segments, and every field but the
    first of segments that are neither known nor in SAFE_SEGMENTS (NTE, OBX, Z segments). A line
    that is not a segment becomes ``***``.
    """
    if not text:
        return text
    try:
        lines = re.split(r"\r\n|\r|\n", text)
        if not lines[0].startswith("MSH") or len(lines[0]) < 4:
            return MASK if text.strip() else text
        fs = lines[0][3]
        out = []
        for line in lines:
            fields = line.split(fs)
            name = fields[0]
            if not line or name in SAFE_SEGMENTS:
                out.append(line)
                continue
            if not re.match(r"^[A-Z][A-Z0-9]{2}$", name):
                out.append(MASK)
                continue
            idxs = PHI_FIELDS.get(name, range(2, len(fields)))
            for i in idxs:
                if i < len(fields) and fields[i]:
                    fields[i] = MASK
            out.append(fs.join(fields))
        return "\r".join(out)
    except Exception:  # masking must never leak by failing open
        return MASK


def mask_value(value):
    """Mask an identifier as a whole: a fixed ``***`` that shows neither its start nor its length."""
    if not value:
        return value
    return MASK


def parse_ack(payload, expected_control_id=None, encoding="utf-8"):
    """Parse an ACK payload (bytes or str, without MLLP envelope).

    Returns a dict with ack_code, ack_text, ack_control_id, ack_message_type,
    errors (ERR segments) and message (the masked ACK text). Raises
    HL7ClientError(kind='ack') for malformed ACKs and kind='control_id' when
    MSA-2 does not match ``expected_control_id``.
    """
    if isinstance(payload, bytes):
        try:
            text = payload.decode(encoding)
        except UnicodeDecodeError:
            text = payload.decode("latin-1")
    else:
        text = payload
    if not text.strip():
        raise HL7ClientError("the peer answered with an empty MLLP frame instead of an ACK", kind="ack")
    try:
        segments = split_segments(text)
    except HL7ClientError as exc:
        raise HL7ClientError(
            f"the peer's answer is not an HL7 ACK: {exc.msg} (answer starts {mask_message(text)[:40]!r})",
            kind="ack",
        ) from None
    comp = _component_sep(segments)
    msh = segments[0][1]
    msa = next((f for name, f in segments if name == "MSA"), None)
    if msa is None:
        raise HL7ClientError(
            "the peer's answer has no MSA segment, so it is not an ACK (segments: {})".format(
                ",".join(name for name, _ in segments)
            ),
            kind="ack",
        )
    code = msa[1].strip() if len(msa) > 1 else ""
    if code not in ACK_CODES:
        raise HL7ClientError(
            "the ACK's MSA-1 acknowledgment code is {}, not one of {}".format(_shown(code, 10), "/".join(ACK_CODES)),
            kind="ack",
        )
    ack_control_id = msa[2].strip() if len(msa) > 2 else ""
    ack_text = unescape(msa[3], segments) if len(msa) > 3 else ""
    errors = []
    for name, fields in segments:
        if name != "ERR":
            continue
        err = {
            "location": fields[2] if len(fields) > 2 else (fields[1] if len(fields) > 1 else ""),
            "code": "",
            "severity": fields[4] if len(fields) > 4 else "",
            "text": "",
        }
        hl7_code = fields[3] if len(fields) > 3 else ""
        if hl7_code:
            parts = hl7_code.split(comp)
            err["code"] = parts[0]
            err["text"] = unescape(parts[1], segments) if len(parts) > 1 else ""
        elif len(fields) > 1 and fields[1]:  # v2.3-style ERR-1: segment^seq^field^code
            parts = fields[1].split(comp)
            err["code"] = parts[3] if len(parts) > 3 else ""
        if len(fields) > 8 and fields[8]:
            err["text"] = unescape(fields[8], segments)
        errors.append(err)
    if not ack_text and errors:
        ack_text = next((e["text"] for e in errors if e["text"]), "")
    result = {
        "ack_code": code,
        "ack_text": ack_text,
        "ack_control_id": ack_control_id,
        "ack_message_type": msh[9] if len(msh) > 9 else "",
        "errors": errors,
        "message": mask_message(text),
    }
    if expected_control_id is not None and ack_control_id != expected_control_id:
        raise HL7ClientError(
            f"ACK control id mismatch: sent message control id {expected_control_id!r} but MSA-2 says "
            f"{ack_control_id!r}; the peer acknowledged another message "
            "(a shared connection, a proxy or a broken interface engine)",
            kind="control_id",
            ack=result,
        )
    return result


# --------------------------------------------------------------------------
# MLLP framing and transport
# --------------------------------------------------------------------------


def frame(payload):
    """Wrap bytes in the MLLP envelope."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    return SB + payload + EB + CR


def read_frame(sock, deadline, max_bytes=MAX_FRAME_BYTES, where="peer"):
    """Read one MLLP frame from ``sock`` before ``deadline`` (time.monotonic()).

    Leading CR/LF between frames is tolerated; any other byte before the start
    block, or anything but CR after the end block, is a malformed frame.
    Returns the payload bytes.
    """
    buf = bytearray()
    while True:
        start = buf.find(SB)
        if start < 0:
            junk = bytes(buf).strip(b"\r\n")
            if tls_record_start(junk):
                raise HL7ClientError(
                    f"malformed MLLP frame from {where}: expected start block 0x0b, got a TLS record "
                    f"({junk[:3].hex(' ')} ...)",
                    kind="frame",
                    tls_bytes=True,
                )
            if junk and not (len(junk) == 1 and junk[0] in (0x15, 0x16)):  # one byte: wait for a TLS record's 2nd
                raise HL7ClientError(
                    f"malformed MLLP frame from {where}: expected start block 0x0b, got {junk[:20]!r}",
                    kind="frame",
                )
        else:
            junk = bytes(buf[:start]).strip(b"\r\n")
            if junk:
                raise HL7ClientError(
                    f"malformed MLLP frame from {where}: {len(junk)} unexpected bytes before start block 0x0b",
                    kind="frame",
                )
            end = buf.find(EB, start + 1)
            if end >= 0 and len(buf) > end + 1:
                if buf[end + 1 : end + 2] != CR:
                    raise HL7ClientError(
                        f"malformed MLLP frame from {where}: end block 0x1c not followed by 0x0d "
                        f"(got {bytes(buf[end + 1 : end + 2])!r})",
                        kind="frame",
                    )
                return bytes(buf[start + 1 : end])
        if len(buf) > max_bytes:
            raise HL7ClientError(
                f"malformed MLLP frame from {where}: no end block within {max_bytes} bytes", kind="frame"
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("deadline reached")
        sock.settimeout(remaining)
        chunk = sock.recv(RECV_CHUNK)
        if not chunk:
            if not buf:
                raise HL7ClientError(f"{where} closed the connection without sending an ACK", kind="frame", received=0)
            raise HL7ClientError(
                f"malformed MLLP frame from {where}: connection closed after {len(buf)} bytes, "
                "before the end block 0x1c 0x0d",
                kind="frame",
                received=len(buf),
            )
        buf.extend(chunk)


def _tls_hint(exc, host, port, timeout, connect):
    """Turn an error into kind='tls' when the peer speaks TLS (see peer_speaks_tls)."""
    if exc.details.get("tls_bytes") or peer_speaks_tls(host, port, min(TLS_PROBE_SECONDS, timeout), connect):
        details = {k: v for k, v in exc.details.items() if k != "tls_bytes"}
        return HL7ClientError(
            f"{exc.msg}; the peer speaks TLS (it answered a TLS handshake) and hl7_check speaks plain MLLP only: "
            "use the interface's plain MLLP port, or put a TLS tunnel such as stunnel in front",
            kind="tls",
            **details,
        )
    exc.details.pop("tls_bytes", None)
    return exc


def send_message(host, port, message, timeout=10.0, encoding="utf-8", control_id=None, connect=None):
    """Send one message over MLLP and read its ACK.

    ``message`` is the CR-joined message text. ``control_id`` is MSH-10 of the
    message (parsed from it when not given) and must come back in MSA-2.
    ``connect`` is a seam for tests and callers that need TLS or a proxy:
    ``connect((host, port), timeout) -> socket``.

    Returns the parse_ack() dict plus latency_ms (send to complete ACK),
    connect_ms, bytes_sent and bytes_received. Errors after the connection is
    open carry ``details["sent"]``: whether the whole message went out. When the
    peer closes or resets the connection without answering, or answers with a
    TLS record, :func:`peer_speaks_tls` decides whether the error is kind 'tls'.
    """
    validate_endpoint(host, port, timeout)
    if control_id is None:
        control_id = split_segments(message)[0][1][10]
    payload = encode_message(message, encoding)
    where = f"{host}:{port}"
    connect = connect or socket.create_connection
    deadline = time.monotonic() + timeout
    t0 = time.monotonic()
    try:
        sock = connect((host, port), timeout)
    except ConnectionRefusedError:
        raise HL7ClientError(
            f"connection refused by {where}: nothing listens for HL7 MLLP there; check host and port and that the "
            "interface service is running",
            kind="refused",
        ) from None
    except TimeoutError:
        raise HL7ClientError(
            f"could not connect to {where} within {timeout} s "
            "(no answer to TCP connect: a firewall or a wrong address?)",
            kind="timeout",
        ) from None
    except socket.gaierror as exc:
        raise HL7ClientError(f"cannot resolve host {host!r}: {exc.strerror or exc}", kind="connection") from None
    except OSError as exc:
        raise HL7ClientError(f"cannot connect to {where}: {exc.strerror or exc}", kind="connection") from None
    except (UnicodeError, ValueError) as exc:  # the resolver refuses the name (validate_host should have)
        raise HL7ClientError(f"cannot resolve host {_shown(host)}: {exc}", kind="connection") from None
    connect_ms = (time.monotonic() - t0) * 1000.0
    data = frame(payload)
    sent = False
    error = None
    try:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t_send = time.monotonic()
        try:
            sock.settimeout(max(deadline - t_send, 0.001))
            sock.sendall(data)
            sent = True
            raw = read_frame(sock, deadline, where=where)
        except HL7ClientError as exc:
            error = exc
        except TimeoutError:
            if sent:
                msg = (
                    f"no ACK from {where} within {timeout} s for message control id {control_id}; "
                    "the peer accepted the connection but did not answer with a complete MLLP frame "
                    "(raise timeout if the interface is slow)"
                )
            else:
                msg = f"could not send message control id {control_id} to {where} within {timeout} s (the peer does "
                msg += "not read what is sent)"
            error = HL7ClientError(msg, kind="timeout")
        except (ConnectionResetError, BrokenPipeError) as exc:
            when = "after the message went out, before sending an ACK" if sent else "while the message was sent"
            error = HL7ClientError(f"{where} reset the connection {when} ({exc.strerror or exc})", kind="connection")
            error.details["reset"] = True
        except OSError as exc:
            error = HL7ClientError(f"network error talking to {where}: {exc}", kind="connection")
        latency_ms = (time.monotonic() - t_send) * 1000.0
    finally:
        with contextlib.suppress(OSError):
            sock.close()
    if error is not None:
        error.details["sent"] = sent
        no_answer = error.details.pop("reset", False) or error.details.get("received") == 0
        if no_answer or error.details.get("tls_bytes"):
            error = _tls_hint(error, host, port, timeout, connect)
        raise error
    timing = {
        "latency_ms": round(latency_ms, 3),
        "connect_ms": round(connect_ms, 3),
        "bytes_sent": len(data),
        "bytes_received": len(raw) + 3,
    }
    try:
        result = parse_ack(raw, expected_control_id=control_id, encoding=encoding)
    except HL7ClientError as exc:
        if "ack" in exc.details:
            exc.details["ack"].update(timing)
        exc.details.update(timing, sent=True)
        raise
    result.update(timing)
    return result
