# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""Network checks shared by the DICOM, HL7 and REST modules.

* ``host_name_error(host)`` -- why a host name cannot be looked up, checked before any traffic.
* ``speaks_tls(host, port)`` -- whether a peer answers a TLS handshake, to tell a user who chose the
  wrong one of TLS and plain which one the peer speaks.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl


def host_name_error(host):
    """Why a host name cannot be looked up (a label over 63 characters, a name over 253), else None.

    An IP address (v4 or v6) is always fine. Checked before any traffic: the resolver would raise
    UnicodeError ("label too long") from deep inside the socket module.
    """
    try:
        ipaddress.ip_address(host.strip("[]"))
        return None
    except ValueError:
        pass
    try:
        encoded = host.rstrip(".").encode("idna")
    except UnicodeError:
        return (
            f"host name {host[:80]!r} is not valid: each dot-separated label must be 1 to 63 characters "
            "(letters, digits, hyphens)"
        )
    if len(encoded) > 253:
        return f"host name is {len(encoded)} characters long: at most 253"
    return None


def speaks_tls(host, port, timeout=5.0):
    """Whether the peer answers a TLS handshake (a ServerHello), whatever its certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host, port), timeout=min(timeout, 5.0)) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            return True
    except ssl.SSLError as exc:
        # A TLS alert (client certificate required, no shared cipher...) comes from a TLS server;
        # WRONG_VERSION_NUMBER, record layer failures and an EOF come from a plain one.
        return "ALERT" in str(exc.reason or exc).upper()
    except (OSError, ValueError):
        return False
