# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""Network checks shared by the DICOM, HL7 and REST clients (dicom_client, hl7_client, orthanc_rest).

* ``host_name_error(host, option)`` -- why a host name or IP address cannot be used, checked before any
  traffic (the resolver would otherwise raise UnicodeError "label too long" from deep inside the
  socket module).
* ``peer_speaks_tls(host, port)`` -- whether a peer answers a TLS ClientHello with a TLS record, to
  tell a user who picked the wrong one of TLS and plain which one the peer speaks.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
import ssl

_HOST_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")

TLS_PROBE_SECONDS = 2.0


def shown(value, limit=60):
    """repr() of a value for an error message, cut at ``limit`` characters."""
    text = repr(value[:limit]) if isinstance(value, str) else repr(value)
    return text + ("..." if isinstance(value, str) and len(value) > limit else "")


def host_name_error(host, option="host"):  # noqa: PLR0911 - one return per kind of mistake, each with its fix
    """Why ``host`` is not an IP address or a host name of RFC 1123 labels, else None (naming ``option``)."""
    if not isinstance(host, str) or not host.strip():
        return f"{option} must be a non-empty host name or IP address"
    text = shown(host)
    if "://" in host or "/" in host:
        return (
            f"{option} {text} is not a valid host name or IP address: give the host only, not a URL "
            "(no scheme, no slashes; the port goes in port)"
        )
    if any(c.isspace() or not c.isprintable() for c in host):
        return f"{option} {text} is not a valid host name or IP address (no spaces or control characters)"
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return None
    if host.startswith("[") or ":" in host:
        if re.match(r"^[^:\[\]]+:\d+$", host):
            return f"{option} {text} carries a port: give the host name in host and the port in port"
        return (
            f"{option} {text} is not a valid IP address (an IPv6 address goes without brackets and without a port)"
        )
    name = host[:-1] if host.endswith(".") else host
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return (
                f"{option} {text} is not a valid internationalised host name; give its ASCII form (xn--...) "
                "or the IP address"
            )
    if len(name) > 253:
        return f"{option} {text} is not a valid host name: {len(name)} characters, at most 253"
    labels = name.split(".")
    for label in labels:
        if not label:
            return (
                f"{option} {text} is not a valid host name: it has an empty part (a leading dot or two dots in a row)"
            )
        if len(label) > 63:
            return (
                f"{option} {text} is not a valid host name: a part between dots has {len(label)} characters, "
                "at most 63"
            )
        if not _HOST_LABEL_RE.match(label):
            return (
                f"{option} {text} is not a valid host name: each part between dots is letters, digits, '-' or '_', "
                "and does not start or end with '-'"
            )
    if all(label.isdigit() for label in labels):
        return f"{option} {text} is not a valid IPv4 address (four numbers 0 to 255)"
    return None


def tls_record_start(data):
    """Whether bytes start like a TLS record: handshake (0x16) or alert (0x15), version 0x03 0x0N."""
    return len(data) >= 2 and data[0] in (0x15, 0x16) and data[1] == 0x03


def peer_speaks_tls(host, port, timeout=TLS_PROBE_SECONDS, connect=None):
    """Open a second connection, send a TLS ClientHello and look at the first bytes of the answer.

    Returns True when the peer answers with a TLS record (it speaks TLS), False when it answers
    with anything else, None when it does not answer in time or the connection fails. Nothing
    but the ClientHello is sent; the handshake is not completed and no certificate is checked.
    """
    connect = connect or socket.create_connection
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    outgoing = ssl.MemoryBIO()
    tls = ctx.wrap_bio(ssl.MemoryBIO(), outgoing, server_side=False)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    client_hello = outgoing.read()
    try:
        sock = connect((host, port), timeout)
    except (OSError, ValueError):
        return None
    try:
        sock.settimeout(timeout)
        sock.sendall(client_hello)
        answer = sock.recv(8)
    except OSError:
        return None
    finally:
        with contextlib.suppress(OSError):
            sock.close()
    if not answer:
        return None
    return tls_record_start(answer)


def speaks_tls(host, port, timeout=TLS_PROBE_SECONDS):
    """True only when the peer answered a ClientHello with TLS (``peer_speaks_tls`` is True)."""
    return peer_speaks_tls(host, port, min(timeout, TLS_PROBE_SECONDS)) is True
