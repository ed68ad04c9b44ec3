# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""Documentation of the connection options shared by hl7_check and hl7_deliver.

The options themselves come from hl7_argument_spec() in plugins/module_utils/hl7_client.py.
"""


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  host:
    description:
      - Host name or IP address of the HL7 interface.
      - A host name is at most 253 characters, in parts of 1 to 63 letters, digits, C(-) or C(_) between
        dots (an internationalised name is converted to its C(xn--) form). Not a URL, and without a port.
    type: str
    required: true
  port:
    description: TCP port of the MLLP listener (1 to 65535).
    type: int
    default: 2575
  timeout:
    description:
      - Seconds to wait for the connection and the complete ACK of one message; greater than 0 and at most 3600
        (NaN and infinity are refused).
    type: float
    default: 10.0
  encoding:
    description:
      - Character encoding of the message(s) and the ACKs on the wire.
      - It must be ASCII-compatible (C(utf-8), C(latin-1), C(cp1252), C(ascii), ...; not C(utf-16)), because
        the MLLP frame bytes and HL7 delimiters are ASCII bytes, and it must be able to represent every
        character of every message; both are checked before anything is sent.
    type: str
    default: utf-8
"""
