# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""The Orthanc REST client shared by the project's modules (pacs_info, pacs_archive, dicom_roundtrip).

* ``normalise_url(url)`` -- validate a base URL, no trailing slash; ``display_url(url)`` masks userinfo.
* ``OrthancClient(url, username, password, validate_certs, timeout, ca_path)`` -- ``get`` (JSON), ``get_bytes``,
  ``post`` (JSON answer), ``delete``; every failure is an ``OrthancError`` whose message says what to fix
  (wrong credentials, refused connection, timeout, TLS, not an Orthanc API).
* ``build_client(params)`` -- the one seam for the client, from the modules' common options;
  ``rest_params_error(params)`` -- what is wrong with those options before any request;
  ``ca_path_error`` checks a CA bundle option of any module.

Uses Ansible's ``open_url``: no extra Python library.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit, urlunsplit

from ansible.module_utils.net_checks import host_name_error, speaks_tls
from ansible.module_utils.urls import open_url


def rest_argument_spec():
    """The connection options of the Orthanc REST modules."""
    return {
        "url": {"type": "str", "default": "http://localhost:8042"},
        "username": {"type": "str"},
        "password": {"type": "str", "no_log": True},
        "validate_certs": {"type": "bool", "default": True},
        "ca_path": {"type": "path"},
        "timeout": {"type": "float", "default": 10.0},
    }


class OrthancError(Exception):
    pass


def normalise_url(url, option="url"):
    """Validate the base URL; return it without a trailing slash. Raises OrthancError naming `option`."""
    if not isinstance(url, str) or not url.strip():
        raise OrthancError(f"{option} must be the Orthanc base URL, for example http://pacs1:8042")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise OrthancError(f"{option} {url!r} is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise OrthancError(f"{option} must start with http:// or https://, got {url!r}")
    if not parts.hostname:
        raise OrthancError(f"{option} {url!r} has no host name")
    host_error = host_name_error(parts.hostname)
    if host_error:
        raise OrthancError(f"{option} {url!r}: {host_error}")
    if parts.username or parts.password:
        raise OrthancError(f"put credentials in the user and password options, not in {option}")
    if parts.query or parts.fragment:
        raise OrthancError(f"{option} must be the API base URL without query or fragment, got {url!r}")
    if port is not None and not 1 <= port <= 65535:
        raise OrthancError(f"{option} port must be 1 to 65535")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


#: The option names messages use; a module whose options are named otherwise passes its own.
OPTION_NAMES = {"url": "url", "username": "username", "password": "password",
                "validate_certs": "validate_certs", "ca_path": "ca_path"}


def _tls_hint(reason, url, names=None):
    """Words for a TLS failure that say what to change."""
    names = names or OPTION_NAMES
    text = str(getattr(reason, "reason", None) or reason)
    if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text or "UNKNOWN_PROTOCOL" in text:
        return (
            f"the server at {url} does not speak TLS (https) on this port: use an http:// {names['url']}, "
            "or the server's https port"
        )
    if isinstance(reason, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in text:
        why = getattr(reason, "verify_message", None) or text
        return (
            f"the certificate of {url} could not be verified ({why}): set {names['ca_path']} to the site CA that "
            f"signed it (PEM), or {names['validate_certs']}: false in a lab only"
        )
    return f"TLS error talking to {url}: {text}"


class OrthancClient:
    def __init__(
        self, url, username=None, password=None, validate_certs=True, timeout=10.0, ca_path=None, option_names=None
    ):
        self.names = {**OPTION_NAMES, **(option_names or {})}
        self.url = url
        self.username = username
        self.password = password
        self.validate_certs = validate_certs
        self.timeout = timeout
        self.ca_path = ca_path

    def request(self, method, path, body=None, accept="application/json"):
        """The answer's body (bytes) to METHOD on PATH; OrthancError on any failure."""
        full = self.url + path
        kwargs = {
            "method": method,
            "headers": {"Accept": accept},
            "data": body,
            "validate_certs": self.validate_certs,
            "ca_path": self.ca_path,
            "timeout": self.timeout,
            "follow_redirects": "safe",
        }
        if self.username is not None:
            kwargs.update(url_username=self.username, url_password=self.password or "", force_basic_auth=True)
        try:
            resp = open_url(full, **kwargs)
            body = resp.read()
        except HTTPError as exc:
            if exc.code == 401:
                if self.username is None:
                    raise OrthancError(
                        f"{full} answered 401 Unauthorized: the server requires authentication; set "
                        f"{self.names['username']} and {self.names['password']} (Orthanc RegisteredUsers)"
                    ) from None
                raise OrthancError(
                    f"{full} answered 401 Unauthorized: wrong credentials; "
                    f"check {self.names['username']} ({self.username!r}) and {self.names['password']}"
                ) from None
            if exc.code == 403:
                raise OrthancError(
                    f"{full} answered 403 Forbidden: user {self.username!r} may not read this resource"
                ) from None
            if exc.code == 404:
                raise OrthancError(
                    f"{full} answered 404 Not Found: no such resource, or this is not an Orthanc REST API (check "
                    f"{self.names['url']} and its path prefix)"
                ) from None
            hint = self._plain_hint() if exc.code == 400 else ""  # nginx's answer to http on an https port
            raise OrthancError(f"{full} answered HTTP {exc.code} {exc.reason}{hint}") from None
        except URLError as exc:
            reason = exc.reason
            if isinstance(reason, ConnectionRefusedError):
                raise OrthancError(
                    f"connection refused by {self.url}: nothing listens there; check {self.names['url']} (host and "
                    "port) and that Orthanc is running"
                ) from None
            if isinstance(reason, (socket.timeout, TimeoutError)):
                raise OrthancError(f"no answer from {self.url} within {self.timeout} s (timeout)") from None
            if isinstance(reason, ssl.SSLError):
                raise OrthancError(_tls_hint(reason, self.url, self.names)) from None
            if isinstance(reason, socket.gaierror):
                raise OrthancError(f"cannot resolve the host in {self.names['url']} {self.url}: {reason}") from None
            raise OrthancError(f"cannot reach {self.url}: {reason}") from None
        except TimeoutError:
            raise OrthancError(f"no answer from {self.url} within {self.timeout} s (timeout)") from None
        except ssl.SSLError as exc:
            raise OrthancError(_tls_hint(exc, self.url, self.names)) from None
        except ConnectionError as exc:
            raise OrthancError(f"connection to {self.url} failed: {exc}{self._plain_hint()}") from None
        except OSError as exc:
            raise OrthancError(f"cannot reach {self.url}: {exc}") from None
        except Exception as exc:  # http.client errors (BadStatusLine, ...) on non-HTTP peers
            raise OrthancError(
                f"{full} did not answer like an HTTP server ({type(exc).__name__}): "
                f"is {self.names['url']} pointing at Orthanc's HTTP port?{self._plain_hint()}"
            ) from None
        return body

    def _plain_hint(self):
        """For a plain http:// url whose server hung up: say so when that server speaks TLS."""
        parts = urlsplit(self.url)
        if parts.scheme != "http" or not speaks_tls(parts.hostname, parts.port or 80, self.timeout):
            return ""
        return f"; the server speaks TLS on that port: use https://{parts.netloc}{parts.path}"


    def get(self, path):
        return self._json(self.url + path, self.request("GET", path))

    def post(self, path, body):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self._json(self.url + path, self.request("POST", path, data))

    def get_bytes(self, path):
        return self.request("GET", path, accept="*/*")

    def delete(self, path):
        self.request("DELETE", path)

    def _json(self, full, body):
        try:
            return json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise OrthancError(
                f"{full} did not answer with JSON: this is not an Orthanc REST API (check {self.names['url']})"
            ) from None


def ca_path_error(path, option="ca_path"):
    """Why a CA bundle cannot be used (missing, unreadable, not PEM), else None."""
    if path is None:
        return None
    if not os.path.isfile(path):
        return f"{option}: {path} is not a file; give the PEM file of the CA that signed the server's certificate"
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        return f"{option}: cannot read {path}: {exc.strerror}"
    if b"-----BEGIN CERTIFICATE-----" not in data:
        return f"{option}: {path} holds no PEM certificate ('-----BEGIN CERTIFICATE-----')"
    return None


def rest_params_error(params):
    """The message for connection options that cannot work (checked before any request), else None."""
    timeout = params.get("timeout")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 3600:
        return "timeout must be a number of seconds greater than 0 and at most 3600"
    if params.get("password") is not None and params.get("username") is None:
        return "password is set but username is not; set both or neither"
    return ca_path_error(params.get("ca_path"))


def build_client(params):
    """The one seam for the HTTP client."""
    return OrthancClient(
        normalise_url(params["url"]),
        params.get("username"),
        params.get("password"),
        params.get("validate_certs", True),
        params.get("timeout", 10.0),
        params.get("ca_path"),
    )


def display_url(url):
    """The url for results and messages, with any userinfo masked."""
    if not isinstance(url, str):
        return ""
    try:
        parts = urlsplit(url)
        if "@" in parts.netloc:
            return urlunsplit((parts.scheme, "***@" + parts.netloc.rsplit("@", 1)[1], parts.path, "", ""))
    except ValueError:
        return "***" if "@" in url else url
    return url
