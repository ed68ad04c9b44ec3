#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hl7_deliver
short_description: Re-deliver kept HL7 v2 messages over MLLP, each proven by its ACK
description:
  - Sends a list of complete HL7 v2 messages, in order, to an HL7 interface (the RIS MLLP listener) and proves
    each one by its ACK. Used after a rollback; the orders a RIS acknowledged after the snapshot were read from its
    database and kept on the controller before the revert; this module gives them back to the restored RIS.
  - Every message is validated first (an MSH segment with at least 12 fields, a message control id (MSH-10) and a
    message type (MSH-9), every line an HL7 segment, parseable by python-hl7 when it is installed, every character
    representable in O(encoding)). One invalid message fails the task before anything is sent; the failure names
    the message's index and key, never its text.
  - Then each message is sent on a connection of its own and counts as delivered when the ACK's code (MSA-1) is one
    of O(expected_ack) and MSA-2 echoes the message's control id. A message that gets no answer (connection refused,
    reset or closed without an ACK, timeout) is sent again, up to O(retries) times; an answer (C(AE), C(AR), a
    malformed ACK, another message's control id) is final.
  - Sending a message again is safe with a RIS that takes an identical message (the same MSH-10 and text) as a
    retransmission, as cu-ris does (it answers C(AA) and changes nothing). This also makes a second run of the task
    with the same messages safe.
  - The task fails, after every message was tried (or at the first failure with O(stop_on_failure)), when any
    message was not delivered; the message names how many and their keys. The messages stay where they were
    (O(src), or the task's O(messages)).
  - Messages are sent as validated, segments joined by CR (blank lines dropped, no trailing CR).
  - Message text is never returned, logged or quoted in a failure; ACK texts are returned with the values of the
    message's patient fields masked (C(***)).
  - "Runs on the controller; use C(delegate_to: localhost)."
version_added: "0.1.0"
author:
  - clinical-upgrade contributors
extends_documentation_fragment:
  - hl7_connection
options:
  src:
    description:
      - 'Path of a JSON file on the controller holding a list of C({"key": ..., "message": ...}) objects, in the order
        to deliver (other members of an object are ignored).'
      - C(key) names the message in the results and in failures, 1 to 128 printable characters. It is shown, so it
        must not be patient data (use an order id, a digest, an accession number).
      - C(message) is the complete HL7 v2 message text; segment ends may be CR, LF or CRLF.
      - Exactly one of O(src) and O(messages) is required.
    type: path
  messages:
    description:
      - The same list as in O(src), given inline.
      - Ansible neither logs nor returns this option (C(no_log)); the keys are shown in the results all the same.
    type: list
    elements: dict
  expected_ack:
    description: The ACK codes (MSA-1) that count as delivered.
    type: list
    elements: str
    default: [AA]
    choices: [AA, AE, AR, CA, CE, CR]
  stop_on_failure:
    description:
      - With C(false), each message is independent of the others; one that is not delivered does not stop the next.
      - With C(true), the task stops at the first message that is not delivered; the rest are not sent and are
        reported in RV(not_delivered) with reason C(not_sent).
    type: bool
    default: false
  retries:
    description:
      - How many more times a message that got no answer (refused, reset, closed without an ACK, timeout) is sent;
        0 to 100. A message is sent at most O(retries) + 1 times.
    type: int
    default: 3
  retry_delay:
    description: Seconds to wait before sending a message again, 0 to 300.
    type: float
    default: 1.0
attributes:
  check_mode:
    support: full
    details: In check mode the messages are read and validated but not sent; RV(would_deliver) lists their keys.
  diff_mode:
    support: none
notes:
  - Plain MLLP only (no TLS), like M(hl7_check), with the same transport errors.
  - The task takes at most about (O(retries) + 1) x (O(timeout) + O(retry_delay)) per message.
  - C(changed) is true when any message was delivered, including a retransmission that the RIS acknowledged without
    a change; in check mode, when there is any message to send.
seealso:
  - module: hl7_check
    description: Send one built or raw message and check the ACK.
"""

EXAMPLES = r"""
- name: Give the restored RIS the orders it acknowledged after the snapshot
  hl7_deliver:
    host: ris1.example.org
    port: 2575
    src: /var/lib/clinical-upgrade/evidence/upgrade-{{ run_id }}/ris1-kept-orders.json
  delegate_to: localhost
  register: __ris_redelivered

- name: Deliver inline messages, stop at the first that is not accepted
  hl7_deliver:
    host: 192.0.2.10
    messages: "{{ __plan.messages }}"
    stop_on_failure: true
    retries: 5
    retry_delay: 2
  delegate_to: localhost
"""

RETURN = r"""
count:
  description: How many messages were read from O(src) or O(messages).
  returned: always
  type: int
  sample: 3
delivered:
  description: The messages acknowledged with a code of O(expected_ack), in the order sent.
  returned: always
  type: list
  elements: dict
  contains:
    index:
      description: Position of the message in the list (from 0).
      type: int
    key:
      description: The message's key.
      type: str
    control_id:
      description: Its message control id (MSH-10), echoed by the ACK's MSA-2.
      type: str
    ack:
      description: The ACK code (MSA-1).
      type: str
    latency_ms:
      description: Milliseconds from sending the message to receiving the complete ACK (the last attempt).
      type: float
    attempts:
      description: How many times the message was sent.
      type: int
  sample: [{"index": 0, "key": "order 12 (3f2a9c0d1e4b5a6f)", "control_id": "CU3F2A9C0D1E4B5A6F7A", "ack": "AA",
            "latency_ms": 4.2, "attempts": 1}]
not_delivered:
  description: The messages that were not delivered, in order, with the reason.
  returned: always
  type: list
  elements: dict
  contains:
    index:
      description: Position of the message in the list (from 0).
      type: int
    key:
      description: The message's key.
      type: str
    control_id:
      description: Its message control id (MSH-10).
      type: str
    ack:
      description: The ACK code (MSA-1) when an ACK was parsed, else null.
      type: str
    reason:
      description:
        - C(unexpected_ack) (an ACK code not in O(expected_ack)); C(refused), C(timeout), C(connection), C(frame),
          C(ack) (a malformed ACK), C(control_id) (MSA-2 names another message), C(tls) (the peer speaks TLS), as
          M(hl7_check)'s C(error_kind); C(not_sent) (not tried, after an earlier failure with O(stop_on_failure)).
      type: str
    text:
      description:
        - The ACK's text (MSA-3, or the first ERR text) when an ACK was parsed, else the error; the values of the
          message's patient fields are masked (C(***)).
      type: str
    attempts:
      description: How many times the message was sent (0 for C(not_sent)).
      type: int
  sample: [{"index": 1, "key": "order 14 (9c0d1e4b5a6f3f2a)", "control_id": "CU9C0D1E4B5A6F3F2A7B", "ack": "AR",
            "reason": "unexpected_ack", "text": "unsupported order control XO (this release handles NW and CA)",
            "attempts": 1}]
would_deliver:
  description: Check mode only, the keys of the messages that would be sent, in order.
  returned: check mode, when every message is valid
  type: list
  elements: str
  sample: ["order 12 (3f2a9c0d1e4b5a6f)", "order 14 (9c0d1e4b5a6f3f2a)"]
invalid:
  description: The messages that failed validation (nothing was sent then).
  returned: when a message is not valid
  type: list
  elements: dict
  contains:
    index:
      description: Position of the message in the list (from 0).
      type: int
    key:
      description: The message's key (null when the key itself is not valid).
      type: str
    error:
      description: What is wrong, without the message's text.
      type: str
  sample: [{"index": 2, "key": "order 15 (0d1e4b5a6f3f2a9c)",
            "error": "the message MSH-10 (message control id) is empty"}]
"""

import json
import re
import time

from ansible.module_utils.arg_types import whole_number
from ansible.module_utils.basic import AnsibleModule, _load_params
from ansible.module_utils.hl7_client import (
    ACK_CODES,
    MASK,
    HL7ClientError,
    encode_message,
    hl7_argument_spec,
    mask_message,
    normalise_raw,
    send_message,
    split_segments,
    validate_options,
)

SHARED_OPTIONS = ("host", "port", "timeout", "encoding")
MAX_KEY = 128
MAX_RETRIES = 100
MAX_RETRY_DELAY = 300
MAX_TEXT = 300  # characters of an ACK text or error returned per message
MAX_KEYS_SHOWN = 400  # characters of keys named in the failure message
NO_ANSWER = ("refused", "timeout", "connection")
NO_LOG_PLACEHOLDER = "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"


def build_client():
    """The one seam for the network: returns the send function."""
    return send_message


def argument_spec():
    shared = hl7_argument_spec()
    spec = {name: dict(shared[name]) for name in SHARED_OPTIONS}
    spec["port"]["type"] = whole_number  # ansible-core's int crashes on inf and 1e400
    spec.update(
        src={"type": "path"},
        messages={"type": "list", "elements": "dict", "no_log": True},
        expected_ack={"type": "list", "elements": "str", "default": ["AA"], "choices": list(ACK_CODES)},
        stop_on_failure={"type": "bool", "default": False},
        retries={"type": whole_number, "default": 3},
        retry_delay={"type": "float", "default": 1.0},
    )
    return spec


# --------------------------------------------------------------------------
# Reading and validating the messages (no network)
# --------------------------------------------------------------------------


def read_entries(params):
    """The list of entries from src or messages. Raises HL7ClientError."""
    if params.get("src") is None:
        entries, where = params.get("messages"), "messages"
    else:
        src = params["src"]
        where = f"src {src}"
        try:
            with open(src, encoding="utf-8") as handle:
                entries = json.load(handle)
        except FileNotFoundError:
            raise HL7ClientError(
                f"{where} does not exist: give the file the kept messages were written to", kind="validation"
            ) from None
        except IsADirectoryError:
            raise HL7ClientError(f"{where} is a directory, not a JSON file", kind="validation") from None
        except OSError as exc:
            raise HL7ClientError(f"{where} cannot be read: {exc.strerror or exc}", kind="validation") from None
        except UnicodeDecodeError as exc:
            raise HL7ClientError(
                f"{where} is not UTF-8 text (a byte at position {exc.start} is not UTF-8)", kind="validation"
            ) from None
        except ValueError as exc:  # json.JSONDecodeError; its text names a position, never the content
            detail = f"{exc.msg} at line {exc.lineno} column {exc.colno}" if hasattr(exc, "lineno") else "not JSON"
            raise HL7ClientError(f"{where} is not valid JSON ({detail})", kind="validation") from None
    if not isinstance(entries, list):
        raise HL7ClientError(
            f"{where} must be a list of {{key, message}} objects, got {type(entries).__name__}", kind="validation"
        )
    return entries


def _key_error(key):
    if not isinstance(key, str):
        return f"key must be a string of 1 to {MAX_KEY} printable characters, got {type(key).__name__}"
    if not 0 < len(key) <= MAX_KEY or not key.isprintable() or not key.strip():
        return f"key must be 1 to {MAX_KEY} printable characters, not blank (it has {len(key)} characters)"
    return None


def validate_entries(entries, encoding):
    """(valid items, invalid records). An item: index, key, text (CR-joined), control_id."""
    items, invalid = [], []
    for index, entry in enumerate(entries):
        key = entry.get("key") if isinstance(entry, dict) else None
        shown_key = key if _key_error(key) is None else None
        try:
            if not isinstance(entry, dict):
                raise HL7ClientError(
                    f"an entry must be an object with key and message, got {type(entry).__name__}", kind="validation"
                )
            error = _key_error(key)
            if error:
                raise HL7ClientError(error, kind="validation")
            message = entry.get("message")
            if not isinstance(message, str) or not message.strip():
                got = "an empty string" if isinstance(message, str) else type(message).__name__
                raise HL7ClientError(f"message must be the HL7 v2 message text, got {got}", kind="validation")
            text = normalise_raw(message)
            encode_message(text, encoding)
            control_id = split_segments(text)[0][1][10].strip()
            if not control_id:
                raise HL7ClientError("the message MSH-10 (message control id) is blank", kind="validation")
        except HL7ClientError as exc:
            invalid.append({"index": index, "key": shown_key, "error": exc.msg.replace("raw_message", "the message")})
            continue
        items.append({"index": index, "key": key, "text": text, "control_id": control_id})
    return items, invalid


def validate_params(params):
    """The module's own options, before any message is read. Raises HL7ClientError."""
    validate_options({name: params[name] for name in SHARED_OPTIONS})
    if not params["expected_ack"]:
        raise HL7ClientError("expected_ack must name at least one ACK code (AA, AE, AR, CA, CE, CR)", kind="validation")
    if not 0 <= params["retries"] <= MAX_RETRIES:
        raise HL7ClientError(f"retries must be 0 to {MAX_RETRIES}, got {params['retries']}", kind="validation")
    delay = params["retry_delay"]
    if not (delay == delay and 0 <= delay <= MAX_RETRY_DELAY):  # NaN is not equal to itself
        raise HL7ClientError(
            f"retry_delay must be 0 to {MAX_RETRY_DELAY} seconds (not NaN or infinity), got {delay}", kind="validation"
        )


# --------------------------------------------------------------------------
# Masking what the peer says about a message
# --------------------------------------------------------------------------


def phi_tokens(text):
    """The values of a message's patient fields (the ones mask_message masks), longest first."""
    try:
        lines, masked = text.split("\r"), mask_message(text).split("\r")
        fs = text[3]
        encoding_chars = lines[0].split(fs)[1][:4] or "^~\\&"
        splitter = re.compile("[" + re.escape(encoding_chars) + "]")
        tokens = set()
        for line, masked_line in zip(lines, masked, strict=False):
            if line == masked_line:
                continue
            fields, masked_fields = line.split(fs), masked_line.split(fs)
            for value, masked_value in zip(fields, masked_fields, strict=False):
                if value != masked_value:
                    tokens.add(value)
                    tokens.update(splitter.split(value))
        return sorted((t for t in tokens if len(t.strip()) >= 2), key=len, reverse=True)
    except Exception:  # noqa: BLE001 - validated messages get here; masking must never fail the task
        return []


def mask_text(text, tokens, limit=MAX_TEXT):
    """Replace the message's patient values in a peer's text by ***; short ones only as whole words."""
    if not text:
        return text
    for token in tokens:
        if len(token) >= 4:
            text = text.replace(token, MASK)
        else:
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(token)}(?![A-Za-z0-9])", MASK, text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------
# Delivery
# --------------------------------------------------------------------------


def _no_answer(exc):
    """The peer gave no answer at all: sending again is the way on."""
    return exc.kind in NO_ANSWER or (exc.kind == "frame" and exc.details.get("received") == 0)


def deliver(send, params, item):
    """Send one message, again while it gets no answer. Returns (delivered record, None) or (None, record)."""
    base = {"index": item["index"], "key": item["key"], "control_id": item["control_id"]}
    expected = params["expected_ack"]
    attempts = 0
    while True:
        attempts += 1
        try:
            ack = send(
                params["host"],
                params["port"],
                item["text"],
                timeout=params["timeout"],
                encoding=params["encoding"],
                control_id=item["control_id"],
            )
        except HL7ClientError as exc:
            if _no_answer(exc) and attempts <= params["retries"]:
                time.sleep(params["retry_delay"])
                continue
            ack = exc.details.get("ack")
            return None, dict(
                base,
                ack=ack["ack_code"] if ack else None,
                reason=exc.kind,
                text=mask_text(exc.msg, phi_tokens(item["text"])),
                attempts=attempts,
            )
        if ack["ack_code"] in expected:
            return dict(base, ack=ack["ack_code"], latency_ms=ack.get("latency_ms"), attempts=attempts), None
        return None, dict(
            base,
            ack=ack["ack_code"],
            reason="unexpected_ack",
            text=mask_text(ack.get("ack_text") or "", phi_tokens(item["text"])),
            attempts=attempts,
        )


def _keys_shown(records):
    shown = []
    for number, record in enumerate(records):
        if sum(len(k) + 2 for k in shown) + len(record["key"]) > MAX_KEYS_SHOWN:
            return ", ".join(shown) + f" and {len(records) - number} more"
        shown.append(record["key"])
    return ", ".join(shown)


def failure_msg(params, not_delivered, count):
    first = not_delivered[0]
    if first["ack"]:
        what = f"answered {first['ack']}" + (f": {first['text']}" if first["text"] else "")
        if first["reason"] == "unexpected_ack":
            what += " (expected {})".format("/".join(params["expected_ack"]))
        elif first["reason"] == "control_id":
            what += f" ({first['reason']})"
    else:
        what = first["text"] or first["reason"]
    holder = f"src {params['src']}" if params.get("src") else "the task's messages"
    return (
        f"{len(not_delivered)} of {count} message(s) were NOT delivered to {params['host']}:{params['port']}: "
        f"{_keys_shown(not_delivered)}. First: {first['key']}: {what}. They are still in {holder}: fix the cause "
        "and run the task again (messages the RIS already took are sent again; a RIS that takes an identical "
        "message as a retransmission answers AA and changes nothing), or enter the orders by hand"
    )


# --------------------------------------------------------------------------
# The module
# --------------------------------------------------------------------------


def _invocation(params):
    args = dict(params)
    if args.get("messages") is not None:
        args["messages"] = NO_LOG_PLACEHOLDER
    return {"module_args": args}


def _leaves(value):
    """The scalar values of a data structure as strings (as Ansible collects a no_log option's values)."""
    if isinstance(value, str):
        if value:
            yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _leaves(item)
    elif value is not None and not isinstance(value, bool):
        yield str(value)


def _secret_texts(module, entries):
    """Only the message texts are secret: Ansible scrubs them (exact text) from anything returned.

    no_log on messages makes Ansible scrub every value in it, the keys too (and any number that equals one in
    it); those are taken out again. The texts read from src are added.
    """
    if entries is module.params.get("messages"):
        module.no_log_values.difference_update(_leaves(entries))
    for entry in entries if isinstance(entries, list) else ():
        message = entry.get("message") if isinstance(entry, dict) else None
        if isinstance(message, str) and len(message) >= 8:
            module.no_log_values.add(message)


def run_module(module):
    params = module.params
    result = {"changed": False, "count": 0, "delivered": [], "not_delivered": [], "invocation": _invocation(params)}
    if params.get("messages") is not None:
        _secret_texts(module, params["messages"])
    try:
        validate_params(params)
        entries = read_entries(params)
    except HL7ClientError as exc:
        module.fail_json(msg=exc.msg, **result)
    if params.get("src") is not None:
        _secret_texts(module, entries)
    result["count"] = len(entries)
    items, invalid = validate_entries(entries, params["encoding"])
    if invalid:
        shown = "; ".join(
            "[{}]{}: {}".format(r["index"], f" (key {r['key']})" if r["key"] is not None else "", r["error"])
            for r in invalid[:3]
        )
        more = f"; and {len(invalid) - 3} more" if len(invalid) > 3 else ""
        source = f"src {params['src']}" if params.get("src") else "messages"
        module.fail_json(
            msg=f"{len(invalid)} of {len(entries)} message(s) in {source} are not valid; nothing was sent: "
            f"{shown}{more}",
            invalid=invalid,
            **result,
        )
    endpoint = f"{params['host']}:{params['port']}"
    if module.check_mode:
        result.update(
            changed=bool(items),
            would_deliver=[item["key"] for item in items],
            msg=f"check mode: {len(items)} message(s) validated, none sent to {endpoint}",
        )
        module.exit_json(**result)

    send = build_client()
    for number, item in enumerate(items):
        delivered, failed = deliver(send, params, item)
        if delivered:
            result["delivered"].append(delivered)
            continue
        result["not_delivered"].append(failed)
        if params["stop_on_failure"]:
            result["not_delivered"].extend(
                {"index": rest["index"], "key": rest["key"], "control_id": rest["control_id"], "ack": None,
                 "reason": "not_sent", "text": "not sent: an earlier message was not delivered (stop_on_failure)",
                 "attempts": 0}
                for rest in items[number + 1 :]
            )  # fmt: skip
            break
    result["changed"] = bool(result["delivered"])
    if result["not_delivered"]:
        module.fail_json(msg=failure_msg(params, result["not_delivered"], len(items)), **result)
    result["msg"] = f"{len(result['delivered'])} message(s) delivered to {endpoint}"
    module.exit_json(**result)


def _shape_errors(raw):
    """Raw args on which ansible-core's own float conversion raises (an int too large for a float)."""
    errors = {}
    for name in ("timeout", "retry_delay"):
        value = raw.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                float(value)
            except OverflowError:
                errors[name] = f"{name} must be a number of seconds, got an integer of {len(str(abs(value)))} digits"
    return errors


def main():
    spec = argument_spec()
    errors = _shape_errors(_load_params())
    if errors:
        for name in errors:
            spec[name] = {"type": "raw"}
        module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
        module.fail_json(msg="; ".join(errors.values()), changed=False, delivered=[], not_delivered=[], count=0)
    module = AnsibleModule(
        argument_spec=spec,
        mutually_exclusive=[("src", "messages")],
        required_one_of=[("src", "messages")],
        supports_check_mode=True,
    )
    run_module(module)


if __name__ == "__main__":
    main()
