#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: syslog_rfc5424
short_description: Send findings to a syslog server as RFC 5424 records (the change control's audit trail)
description:
  - Sends one RFC 5424 record per item of O(records) to a syslog server over UDP (RFC 5426, one record
    per datagram) or TCP (RFC 6587 octet counting), from the controller.
  - Each record has the syslog severity of its SLA severity (1 critical, 2 error, 3 warning, 4 notice),
    the structured data C([clinical@32473 host=... check=... severity=... run=...]) and the finding's
    title and message as the free text. Patient names and IDs never reach it (the findings carry none).
  - Runs on the controller (delegated to localhost). Python standard library only.
version_added: "0.5.0"
author:
  - clinical-upgrade contributors
options:
  server:
    description: The syslog server's host name or address.
    type: str
    required: true
  port:
    description: Its port.
    type: int
    default: 514
  protocol:
    description: V(udp) (RFC 5426) or V(tcp) (RFC 6587, octet counting).
    type: str
    choices: [udp, tcp]
    default: udp
  facility:
    description: The syslog facility number (16 is local0).
    type: int
    default: 16
  app_name:
    description: The record's APP-NAME.
    type: str
    default: clinical-upgrade
  msgid:
    description: The record's MSGID (for example V(monitor) or V(upgrade)).
    type: str
    default: finding
  run_id:
    description: The run the findings belong to, in the structured data.
    type: str
    default: ""
  records:
    description:
      - The findings (filter_plugins/sla.py), each with C(severity) (1-4), C(host), C(check), C(title)
        and C(message).
    type: list
    elements: dict
    required: true
  timeout:
    description: Seconds to connect and send (TCP).
    type: float
    default: 5
attributes:
  check_mode:
    support: full
    details: Returns the records it would send and sends nothing.
  diff_mode:
    support: none
notes:
  - UDP gives no delivery proof; use V(tcp) where the audit trail must not lose a record.
"""

EXAMPLES = r"""
- name: Send each finding to the site's syslog server
  syslog_rfc5424:
    server: syslog.hospital.example
    protocol: tcp
    port: 6514
    msgid: monitor
    run_id: "{{ monitor_run.id }}"
    records: "{{ monitor_view.findings }}"
  delegate_to: localhost
"""

RETURN = r"""
sent:
  description: How many records were sent (0 in check mode).
  type: int
  returned: always
messages:
  description: The records as sent (or, in check mode, as they would be).
  type: list
  elements: str
  returned: always
"""

import datetime
import socket

from ansible.module_utils.basic import AnsibleModule

SYSLOG_SEVERITY = {1: 2, 2: 3, 3: 4, 4: 5}  # SLA severity -> syslog critical, error, warning, notice
PEN = "clinical@32473"  # 32473: the private enterprise number RFC 5612 reserves for documentation


def _sd_value(value) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _field(value, limit) -> str:
    text = "".join(ch for ch in str(value or "") if 33 <= ord(ch) <= 126)[:limit]
    return text or "-"


def record_text(finding, facility, app_name, msgid, run_id, hostname, now=None) -> str:
    level = int(finding.get("severity", 4))
    if level not in SYSLOG_SEVERITY:
        raise ValueError(f"a finding's severity is 1 to 4, got {finding.get('severity')!r}")
    moment = now or datetime.datetime.now(datetime.UTC)
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    data = " ".join(f'{key}="{_sd_value(finding.get(key, ""))}"' for key in ("host", "check", "severity"))
    data += f' run="{_sd_value(run_id)}"'
    text = " - ".join(str(x) for x in (finding.get("title"), finding.get("message")) if x)
    return (f"<{facility * 8 + SYSLOG_SEVERITY[level]}>1 {stamp} {_field(hostname, 255)} {_field(app_name, 48)} "
            f"- {_field(msgid, 32)} [{PEN} {data}] {text}")


def main():
    module = AnsibleModule(
        argument_spec={
            "server": {"type": "str", "required": True},
            "port": {"type": "int", "default": 514},
            "protocol": {"type": "str", "choices": ["udp", "tcp"], "default": "udp"},
            "facility": {"type": "int", "default": 16},
            "app_name": {"type": "str", "default": "clinical-upgrade"},
            "msgid": {"type": "str", "default": "finding"},
            "run_id": {"type": "str", "default": ""},
            "records": {"type": "list", "elements": "dict", "required": True},
            "timeout": {"type": "float", "default": 5},
        },
        supports_check_mode=True,
    )
    p = module.params
    if not 0 <= p["facility"] <= 23:
        module.fail_json(msg=f"facility must be 0 to 23 (16 is local0), got {p['facility']}")
    if not 1 <= p["port"] <= 65535:
        module.fail_json(msg=f"port must be 1 to 65535, got {p['port']}")
    try:
        messages = [record_text(r, p["facility"], p["app_name"], p["msgid"], p["run_id"], socket.gethostname())
                    for r in p["records"]]
    except ValueError as exc:
        module.fail_json(msg=f"records: {exc}")
    if module.check_mode or not messages:
        module.exit_json(changed=False, sent=0, messages=messages)
    try:
        if p["protocol"] == "udp":
            with socket.socket(socket.AF_INET6 if ":" in p["server"] else socket.AF_INET, socket.SOCK_DGRAM) as sock:
                for message in messages:
                    sock.sendto(message.encode("utf-8"), (p["server"], p["port"]))
        else:
            with socket.create_connection((p["server"], p["port"]), timeout=p["timeout"]) as sock:
                for message in messages:
                    payload = message.encode("utf-8")
                    sock.sendall(f"{len(payload)} ".encode("ascii") + payload)
    except OSError as exc:
        module.fail_json(msg=f"could not send to the syslog server {p['server']}:{p['port']} ({p['protocol']}): "
                             f"{exc}; check server, port and protocol", messages=messages)
    module.exit_json(changed=False, sent=len(messages), messages=messages)


if __name__ == "__main__":
    main()
