# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""Shared pytest fixtures: real DICOM peers on loopback, and a module runner.

Peers (all bound to 127.0.0.1 on free ephemeral ports, torn down after use):

* ``orthanc`` (session) -- Orthanc with a temp config; see ``OrthancPeer`` for what it offers.
* ``storescp`` -- DCMTK storescp (accepts any called AE title), files land in a tmp dir.
* ``wlmscpfs`` -- DCMTK worklist SCP serving .wl files made with dump2dcm.
* ``tls_pki`` / ``tls_storescp`` -- a throw-away CA, server and client certs, and a
  storescp that requires TLS with a client certificate from that CA.
* ``tls_orthanc`` (session) -- Orthanc with DICOM TLS (client certificate required) and its REST
  API over https (nginx in front), all signed by ``tls_pki``'s CA.
* ``strict_scp`` -- pynetdicom SCP that rejects unknown called/calling AE titles.
* ``raw_peer`` -- factory for plain TCP peers that misbehave (never answer, abort, close).

Module runner: ``run_module(module, args)`` calls ``module.main()`` with the args and
returns the result dict (``failed`` set when fail_json was called).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import ipaddress
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support import (  # noqa: F401 - re-exported for the fixtures below
    DCMTK_PATH,
    LOOPBACK,
    MODULE_UTILS,
    MODULES,
    MOVE_AE,
    NOGET_AE,
    REPO,
    SCU_AE,
    dcmtk,
    free_port,
    patch_module_args,
    run_module,
    stop_process,
    wait_for_port,
)


@pytest.fixture
def module_runner():
    """The ``run_module`` helper as a fixture."""
    return run_module


# --------------------------------------------------------------------------- Orthanc


@dataclass
class OrthancPeer:
    """A running Orthanc on loopback.

    Attributes: ``host``, ``dicom_port``, ``http_port``, ``aet`` (its AE title),
    ``url`` (REST base URL), ``user``/``password`` (HTTP basic auth, required),
    ``scu_ae`` (AE title registered as a modality with all rights: CLINUPG),
    ``noget_ae`` (registered, but C-GET not allowed: CLINUPG-NOGET),
    ``move_ae``/``move_port`` (a registered C-MOVE destination on 127.0.0.1),
    ``storage_dir``, ``log_path``. ``rest(method, path, body=None)`` returns
    decoded JSON (or None). ``dicom_args()`` gives module args for this peer.
    """

    host: str
    dicom_port: int
    http_port: int
    aet: str
    user: str
    password: str
    scu_ae: str
    move_ae: str
    move_port: int
    storage_dir: Path
    log_path: Path
    noget_ae: str
    process: subprocess.Popen = field(repr=False)
    scheme: str = "http"
    ca_cert: Path | None = None  # the CA of an https REST API and a DICOM TLS port

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.http_port}"

    def rest(self, method: str, path: str, body=None):
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else (body if isinstance(body, str) else json.dumps(body)).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310 - http URL built here
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
        context = ssl.create_default_context(cafile=str(self.ca_cert)) if self.ca_cert else None
        with urllib.request.urlopen(req, timeout=10, context=context) as rsp:  # noqa: S310 - loopback test peer
            payload = rsp.read()
        return json.loads(payload) if payload.strip() else None

    def dicom_args(self, **extra) -> dict:
        args = {"host": self.host, "port": self.dicom_port, "called_ae": self.aet, "calling_ae": self.scu_ae}
        args.update(extra)
        return args


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory) -> OrthancPeer:
    """Session-scoped Orthanc (``/usr/sbin/Orthanc``) with a temp config; see OrthancPeer."""
    yield from _orthanc_peer(tmp_path_factory.mktemp("orthanc"))


@pytest.fixture
def empty_orthanc(tmp_path_factory) -> OrthancPeer:
    """A second Orthanc of its own, empty, for one test (a PACS restored from a snapshot, a migration target)."""
    yield from _orthanc_peer(tmp_path_factory.mktemp("orthanc-empty"))


NGINX_CONF = """
daemon off;
master_process off;
user root;
pid {base}/nginx.pid;
error_log {base}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {base}/body;
    proxy_temp_path {base}/proxy;
    fastcgi_temp_path {base}/fastcgi;
    uwsgi_temp_path {base}/uwsgi;
    scgi_temp_path {base}/scgi;
    client_max_body_size 0;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass http://127.0.0.1:{upstream}/;
            proxy_set_header Host $host;
        }}
    }}
}}
"""


@pytest.fixture(scope="session")
def tls_orthanc(tmp_path_factory, tls_pki) -> OrthancPeer:
    """Orthanc as a secured site runs it: DICOM TLS (client certificate required) and its REST API
    over https, both with certificates of the test CA (``tls_pki``), which no system trust store knows.

    The https side is nginx in front of Orthanc's REST port, as the Orthanc Book advises (and because
    Orthanc 1.10.1's own HTTPS server crashes on Debian 12's OpenSSL 3 at the first request)."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        pytest.fail("nginx is not installed: run `make deps` (apt-get install nginx-light)")
    base = tmp_path_factory.mktemp("orthanc-tls")
    extra = {
        "DicomTlsEnabled": True,
        "DicomTlsCertificate": str(tls_pki.server_cert),
        "DicomTlsPrivateKey": str(tls_pki.server_key),
        "DicomTlsTrustedCertificates": str(tls_pki.ca_cert),
        "DicomTlsRemoteCertificateRequired": True,
    }
    for peer in _orthanc_peer(base, extra):
        proxy = base / "nginx"
        proxy.mkdir()
        port = free_port()
        conf = proxy / "nginx.conf"
        conf.write_text(NGINX_CONF.format(base=proxy, port=port, cert=tls_pki.server_cert, key=tls_pki.server_key,
                                          upstream=peer.http_port))
        proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(proxy)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            wait_for_port(port, proc=proc)
            yield dataclasses.replace(peer, http_port=port, scheme="https", ca_cert=tls_pki.ca_cert)
        finally:
            stop_process(proc)


def _orthanc_peer(base: Path, extra_config: dict | None = None, scheme: str = "http", ca_cert: Path | None = None):
    binary = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
    if not os.path.exists(binary):
        pytest.fail("Orthanc is not installed: run `make deps` (apt-get install orthanc)")
    storage = base / "db"
    storage.mkdir()
    dicom_port, http_port, move_port = free_port(), free_port(), free_port()
    user, password = "clinupg", secrets.token_urlsafe(12)
    config = {
        "Name": "CLINUPG-TEST",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "StorageCompression": False,
        "Plugins": [],
        "HttpServerEnabled": True,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {user: password},
        "DicomServerEnabled": True,
        "DicomAet": "ORTHANC",
        "DicomPort": dicom_port,
        "DicomCheckCalledAet": True,
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowFind": False,
        "DicomAlwaysAllowGet": False,
        "DicomAlwaysAllowMove": False,
        "DicomScpTimeout": 10,
        "DicomScuTimeout": 10,
        "DicomModalities": {
            "clinupg": {"AET": SCU_AE, "Host": LOOPBACK, "Port": free_port()},
            "movedest": {"AET": MOVE_AE, "Host": LOOPBACK, "Port": move_port},
            # same host, but may not C-GET: exercises the C-MOVE fallback of dicom_roundtrip
            "noget": {"AET": NOGET_AE, "Host": LOOPBACK, "Port": free_port(), "AllowGet": False},
        },
        "SaveJobs": False,
        "StableAge": 1,
        # Reads go to the disk, not Orthanc's storage cache: a read-back test must see the stored bytes.
        "MaximumStorageCacheSize": 0,
    }
    config.update(extra_config or {})
    cfg_dir = base / "config"
    cfg_dir.mkdir()
    (cfg_dir / "orthanc.json").write_text(json.dumps(config, indent=1))
    log_path = base / "orthanc.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([binary, str(cfg_dir)], stdout=log, stderr=subprocess.STDOUT, cwd=base)
    peer = OrthancPeer(
        host=LOOPBACK,
        dicom_port=dicom_port,
        http_port=http_port,
        aet="ORTHANC",
        user=user,
        password=password,
        scu_ae=SCU_AE,
        move_ae=MOVE_AE,
        move_port=move_port,
        storage_dir=storage,
        log_path=log_path,
        noget_ae=NOGET_AE,
        process=proc,
        scheme=scheme,
        ca_cert=ca_cert,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
            try:
                peer.rest("GET", "/system")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.monotonic() > deadline:
                    raise TimeoutError("Orthanc REST did not answer within 30s") from None
                time.sleep(0.1)
        wait_for_port(dicom_port, proc=proc)
        yield peer
    finally:
        stop_process(proc)


# --------------------------------------------------------------------------- DCMTK peers


@dataclass
class ProcessPeer:
    host: str
    port: int
    aet: str
    directory: Path
    process: subprocess.Popen = field(repr=False)


@pytest.fixture
def storescp(tmp_path) -> ProcessPeer:
    """DCMTK ``storescp`` on loopback; received files are written to ``directory``."""
    if not dcmtk("storescp"):
        pytest.fail("DCMTK storescp is not installed: run `make deps` (apt-get install dcmtk)")
    port = free_port()
    out = tmp_path / "storescp"
    out.mkdir()
    proc = subprocess.Popen(
        [dcmtk("storescp"), "--aetitle", "STORESCP", "--output-directory", str(out), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc=proc)
        yield ProcessPeer(LOOPBACK, port, "STORESCP", out, proc)
    finally:
        stop_process(proc)


WORKLIST_AE = "WORKLIST"
WORKLIST_ITEMS = [
    # (patient index, accession, modality, scheduled date, station AE)
    (101, "SYNWL0001", "CT", "20240102", "CT01"),
    (102, "SYNWL0002", "CT", "20240102", "CT01"),
    (103, "SYNWL0003", "MR", "20240103", "MR01"),
]


def _worklist_dump(index: int, accession: str, modality: str, date: str, station: str) -> str:
    return "\n".join(
        [
            "(0008,0005) CS [ISO_IR 100]",
            f"(0008,0050) SH [{accession}]",
            f"(0010,0010) PN [SYNTH^PATIENT^{index:04d}]",
            f"(0010,0020) LO [SYN-{index:06d}]",
            "(0010,0030) DA [19700101]",
            "(0010,0040) CS [O]",
            f"(0020,000d) UI [2.25.{1000 + index}]",
            "(0032,1060) LO [SYNTHETIC PROCEDURE]",
            "(0040,0100) SQ (Sequence with explicit length #=1)",
            "  (fffe,e000) na (Item with explicit length #=7)",
            f"    (0008,0060) CS [{modality}]",
            f"    (0040,0001) AE [{station}]",
            f"    (0040,0002) DA [{date}]",
            "    (0040,0003) TM [090000]",
            "    (0040,0006) PN [SYNTH^TECHNOLOGIST]",
            "    (0040,0007) LO [SYNTHETIC SCHEDULED STEP]",
            f"    (0040,0009) SH [SPS{index}]",
            "  (fffe,e00d) na (ItemDelimitationItem for re-encoding)",
            "(fffe,e0dd) na (SequenceDelimitationItem for re-encod.)",
            f"(0040,1001) SH [RP{index}]",
            "",
        ]
    )


@pytest.fixture(scope="session")
def wlmscpfs(tmp_path_factory) -> ProcessPeer:
    """DCMTK ``wlmscpfs`` serving WORKLIST_ITEMS (synthetic) under AE title WORKLIST."""
    if not (dcmtk("wlmscpfs") and dcmtk("dump2dcm")):
        pytest.fail("DCMTK wlmscpfs/dump2dcm are not installed: run `make deps` (apt-get install dcmtk)")
    base = tmp_path_factory.mktemp("worklist")
    ae_dir = base / WORKLIST_AE
    ae_dir.mkdir()
    (ae_dir / "lockfile").write_text("")
    for item in WORKLIST_ITEMS:
        dump = ae_dir / f"item{item[0]}.dump"
        dump.write_text(_worklist_dump(*item))
        wl_file = ae_dir / f"item{item[0]}.wl"
        subprocess.run([dcmtk("dump2dcm"), "--write-xfer-little", str(dump), str(wl_file)], check=True)
    port = free_port()
    proc = subprocess.Popen(
        [dcmtk("wlmscpfs"), "--data-files-path", str(base), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc=proc)
        yield ProcessPeer(LOOPBACK, port, WORKLIST_AE, base, proc)
    finally:
        stop_process(proc)


# --------------------------------------------------------------------------- TLS


@dataclass
class TlsPki:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca_cert: Path  # a CA that did not sign anything here (for verification failures)
    encrypted_client_key: Path  # client key encrypted with ``passphrase``
    passphrase: str


def _make_ca(name: str):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _make_leaf(ca_key, ca_cert, name: str, server: bool):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(LOOPBACK))]),
            critical=False,
        )
    return key, builder.sign(ca_key, hashes.SHA256())


@pytest.fixture(scope="session")
def tls_pki(tmp_path_factory) -> TlsPki:
    """Throw-away PKI made with ``cryptography``: CA, server cert (127.0.0.1/localhost), client cert."""
    from cryptography.hazmat.primitives import serialization

    base = tmp_path_factory.mktemp("pki")

    def pem_key(key, password: bytes | None = None) -> bytes:
        enc = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)

    def write(name: str, data: bytes) -> Path:
        path = base / name
        path.write_bytes(data)
        return path

    ca_key, ca_cert = _make_ca("clinical-upgrade test CA")
    _other_key, other_ca = _make_ca("unrelated test CA")
    server_key, server_cert = _make_leaf(ca_key, ca_cert, "localhost", server=True)
    client_key, client_cert = _make_leaf(ca_key, ca_cert, SCU_AE, server=False)
    pem = serialization.Encoding.PEM
    return TlsPki(
        ca_cert=write("ca.crt", ca_cert.public_bytes(pem)),
        server_cert=write("server.crt", server_cert.public_bytes(pem)),
        server_key=write("server.key", pem_key(server_key)),
        client_cert=write("client.crt", client_cert.public_bytes(pem)),
        client_key=write("client.key", pem_key(client_key)),
        other_ca_cert=write("other-ca.crt", other_ca.public_bytes(pem)),
        encrypted_client_key=write("client-enc.key", pem_key(client_key, b"synthetic-passphrase")),
        passphrase="synthetic-passphrase",
    )


@pytest.fixture(scope="session")
def tls_storescp(tmp_path_factory, tls_pki) -> ProcessPeer:
    """DCMTK storescp with TLS (+tls), requiring a client certificate signed by the test CA."""
    if not dcmtk("storescp"):
        pytest.fail("DCMTK storescp is not installed: run `make deps` (apt-get install dcmtk)")
    out = tmp_path_factory.mktemp("tls-storescp")
    port = free_port()
    proc = subprocess.Popen(
        [
            dcmtk("storescp"),
            "--aetitle",
            "TLSSCP",
            "--output-directory",
            str(out),
            "+tls",
            str(tls_pki.server_key),
            str(tls_pki.server_cert),
            "--add-cert-file",
            str(tls_pki.ca_cert),
            "--require-peer-cert",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc=proc)
        yield ProcessPeer(LOOPBACK, port, "TLSSCP", out, proc)
    finally:
        stop_process(proc)


# --------------------------------------------------------------------------- pynetdicom SCPs


@dataclass
class PynetdicomPeer:
    host: str
    port: int
    aet: str
    allowed_calling: list


@pytest.fixture(scope="session")
def strict_scp() -> PynetdicomPeer:
    """pynetdicom Verification SCP ``STRICT`` that requires its own AE title as called AE
    (else: rejected, called AE title not recognised) and accepts only calling AE ``CLINUPG``
    (else: rejected, calling AE title not recognised). Also supports C-ECHO only."""
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title="STRICT")
    ae.add_supported_context(Verification)
    ae.require_called_aet = True
    ae.require_calling_aet = [SCU_AE]
    port = free_port()
    server = ae.start_server((LOOPBACK, port), block=False)
    try:
        yield PynetdicomPeer(LOOPBACK, port, "STRICT", [SCU_AE])
    finally:
        server.shutdown()


@pytest.fixture(scope="session")
def ct_only_scp() -> PynetdicomPeer:
    """pynetdicom SCP that only supports CT Image Storage (so C-ECHO gets no accepted context)."""
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage

    ae = AE(ae_title="CTONLY")
    ae.add_supported_context(CTImageStorage)
    port = free_port()
    server = ae.start_server((LOOPBACK, port), block=False)
    try:
        yield PynetdicomPeer(LOOPBACK, port, "CTONLY", [])
    finally:
        server.shutdown()


@pytest.fixture(scope="session")
def aborting_echo_scp() -> PynetdicomPeer:
    """pynetdicom SCP that accepts the association, then aborts when a C-ECHO arrives."""
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import Verification

    def on_echo(event):
        event.assoc.abort()
        return 0x0000

    ae = AE(ae_title="ABORTER")
    ae.add_supported_context(Verification)
    port = free_port()
    server = ae.start_server((LOOPBACK, port), block=False, evt_handlers=[(evt.EVT_C_ECHO, on_echo)])
    try:
        yield PynetdicomPeer(LOOPBACK, port, "ABORTER", [])
    finally:
        server.shutdown()


# --------------------------------------------------------------------------- misbehaving raw peers

# A-ABORT PDU: type 0x07, reserved, length 4, reserved, reserved, source 2 (provider), reason 0
A_ABORT_PDU = bytes([0x07, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x02, 0x00])
# A-ASSOCIATE-RJ: rejected-permanent (1), by the service user (1), called AE title not recognised (7).
A_ASSOCIATE_RJ_PDU = bytes([0x03, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x01, 0x01, 0x07])


def read_request(conn: socket.socket) -> None:
    """Read what the requester sent first: a whole A-ASSOCIATE-RQ PDU (type 1, by its length), or one
    read of anything else (the TLS probe's ClientHello). Unread bytes would make the close a reset."""
    first = conn.recv(65536)
    if len(first) < 6 or first[0] != 0x01:
        return
    remaining = 6 + int.from_bytes(first[2:6], "big") - len(first)
    while remaining > 0:
        chunk = conn.recv(min(65536, remaining))
        if not chunk:
            return
        remaining -= len(chunk)


def answer(conn: socket.socket, pdu: bytes) -> None:
    """Read the request, send ``pdu`` and close as a DICOM acceptor does (PS3.8 ARTIM): only once the
    requester has closed, or after 2 s. Closing at once, or half-closing, lets the requester see the end
    of the connection before it has handled the answer."""
    with contextlib.suppress(OSError):
        conn.settimeout(2)
        read_request(conn)
        conn.sendall(pdu)
        while conn.recv(65536):
            pass
    conn.close()


@dataclass
class RawPeer:
    host: str
    port: int
    behaviour: str
    connections: list = field(default_factory=list)  # one entry per accepted connection


@pytest.fixture
def raw_peer():
    """Factory: ``raw_peer(behaviour)`` starts a TCP listener on loopback that
    ``"silent"``: accepts and never answers (association timeout),
    ``"abort"``: reads the A-ASSOCIATE-RQ and answers with an A-ABORT PDU,
    ``"close"``: accepts and closes the connection at once,
    ``"close-then-reject"``: closes the first connection at once, then answers every association
    request with an A-ASSOCIATE-RJ (called AE title not recognised) and closes."""
    servers = []

    def start(behaviour: str) -> RawPeer:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LOOPBACK, 0))
        listener.listen(8)
        stop = threading.Event()
        held = []
        peer = RawPeer(LOOPBACK, listener.getsockname()[1], behaviour)

        def serve():
            listener.settimeout(0.1)
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except (TimeoutError, OSError):
                    continue
                peer.connections.append(time.monotonic())
                if behaviour == "close-then-reject" and len(peer.connections) > 1:
                    answer(conn, A_ASSOCIATE_RJ_PDU)
                elif behaviour == "silent":
                    held.append(conn)
                elif behaviour == "abort":
                    answer(conn, A_ABORT_PDU)
                else:
                    conn.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        servers.append((listener, stop, thread, held))
        return peer

    yield start
    for listener, stop, thread, held in servers:
        stop.set()
        thread.join(timeout=2)
        listener.close()
        for conn in held:
            conn.close()


@pytest.fixture
def closed_port() -> int:
    """A loopback port with nothing listening (connection refused)."""
    return free_port()
