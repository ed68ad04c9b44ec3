"""Fixtures and helpers for the HL7 and pacs_info tests (real peers, loopback only).

- ``run_module(mod, args, check_mode=False)``: call a module's ``main()`` with
  module args and return its JSON result (``failed`` set on fail_json).
- ``mllp_listener``: the ris_server role's listener as a real process on an
  ephemeral loopback port with a temporary worklist directory.
- ``scripted_mllp_server``: a small in-test TCP server thread that answers with
  whatever bytes a test gives it (malformed frames, odd ACKs, silence, a reset).
- ``openssl_tls_server``: a real ``openssl s_server`` on a loopback port (a TLS
  port that a plain MLLP client may be pointed at by mistake).
- ``pacs_orthanc``: a real Orthanc process with basic auth on ephemeral ports.
"""

from __future__ import annotations

import importlib
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from base64 import b64encode
from pathlib import Path

import pytest
from support import free_port, run_module  # noqa: F401 - shared with the DICOM tests, re-exported

ROOT = Path(__file__).resolve().parents[2]
RELEASE_VERSION = "1.1"  # the cu-ris release the listener fixtures run (products/cu_ris)
MODULE_UTILS = ROOT / "plugins" / "module_utils"
MODULES = ROOT / "plugins" / "modules"
DUMP2DCM = shutil.which("dump2dcm", path="/usr/bin:/usr/local/bin") or "/usr/bin/dump2dcm"
OPENSSL = shutil.which("openssl", path="/usr/bin:/usr/local/bin") or "/usr/bin/openssl"
ORTHANC = shutil.which("Orthanc", path="/usr/sbin:/usr/bin:/usr/local/sbin") or "/usr/sbin/Orthanc"
ORTHANC_USER = "clinupg"
ORTHANC_PASSWORD = "test-only-password"


def _setup_import_paths():
    """Make ansible.module_utils.hl7_client and the modules importable as Ansible would."""
    import ansible.module_utils

    if str(MODULE_UTILS) not in list(ansible.module_utils.__path__):
        ansible.module_utils.__path__.append(str(MODULE_UTILS))
    if str(MODULES) not in sys.path:
        sys.path.insert(0, str(MODULES))


_setup_import_paths()


def load_module(name):
    return importlib.import_module(name)


def hl7_client():
    return importlib.import_module("ansible.module_utils.hl7_client")


# --------------------------------------------------------------------------
# The RIS listener as a real process
# --------------------------------------------------------------------------


_RELEASES: dict[str, Path] = {}


def release_root(version=RELEASE_VERSION) -> Path:
    """A cu-ris release built by tools/build_ris_release.py and unpacked, once per test process."""
    if version not in _RELEASES:
        import tarfile
        import tempfile

        out = Path(tempfile.mkdtemp(prefix="cu-ris-release-"))
        subprocess.run([sys.executable, str(ROOT / "tools" / "build_ris_release.py"), version, str(out)],
                       check=True, capture_output=True, timeout=120)
        with tarfile.open(out / f"cu-ris-{version}.tar.gz") as tar:
            tar.extractall(out, filter="data")
        _RELEASES[version] = out / f"cu-ris-{version}"
    return _RELEASES[version]


class RisListener:
    """A cu-ris release's bin/ris-listener on a free loopback port, with the given database and
    worklist directory; stop() it (a finally block or a fixture)."""

    def __init__(self, root, db, worklist, *extra, dump2dcm=DUMP2DCM, log=None):
        self.worklist = Path(worklist)
        self.log = Path(log) if log else Path(str(worklist) + f"-listener-{time.monotonic_ns()}.log")
        self._logfh = open(self.log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(Path(root) / "bin" / "ris-listener"),
                "--db",
                str(db),
                "--worklist-dir",
                str(worklist),
                "--dump2dcm",
                str(dump2dcm),
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--idle-timeout",
                "5",
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=self._logfh,
            text=True,
        )
        ready, _, _ = select.select([self.proc.stdout], [], [], 15)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("READY"):
            self.stop()
            raise RuntimeError(f"listener did not start: {line!r}\n{self.log.read_text()}")
        _, self.host, port = line.split()
        self.port = int(port)

    def log_text(self):
        self._logfh.flush()
        return self.log.read_text()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self._logfh.close()


class ListenerProcess(RisListener):
    """The lab RIS's HL7 interface (the cu-ris release RELEASE_VERSION) with a fresh order database
    and worklist directory under ``workdir``."""

    def __init__(self, workdir, aetitle="RIS1", extra_args=(), version=RELEASE_VERSION):
        self.base = Path(workdir) / "worklist"
        self.aetitle = aetitle
        self.dir = self.base / aetitle
        self.dir.mkdir(parents=True)
        self.db = Path(workdir) / "orders.sqlite"
        release = release_root(version)
        subprocess.run([sys.executable, str(release / "bin" / "ris-migrate"), "--db", str(self.db)],
                       check=True, capture_output=True, timeout=60)
        super().__init__(release, self.db, self.dir, *extra_args, log=Path(workdir) / "listener.log")


@pytest.fixture
def mllp_listener(tmp_path):
    if not os.access(DUMP2DCM, os.X_OK):
        pytest.fail("DCMTK dump2dcm is not installed: run `make deps` (apt-get install dcmtk)")
    listener = ListenerProcess(tmp_path)
    yield listener
    listener.stop()


# --------------------------------------------------------------------------
# A scripted MLLP peer (real TCP server thread)
# --------------------------------------------------------------------------


class ScriptedServer:
    """Accepts connections; for each one reads one request frame and calls ``responder(request_bytes)``.

    ``responder`` returns bytes to send (None: send nothing and keep the
    connection open until the client goes away, ``CLOSE`` to close at once, or
    ``RESET`` to close with a TCP reset, SO_LINGER 0).
    """

    CLOSE = object()
    RESET = object()

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.responder = lambda req: None
        self.requests = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        conn.settimeout(10)
        buf = b""
        with conn:
            try:
                while b"\x1c\x0d" not in buf:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    buf += chunk
                start = buf.find(b"\x0b")
                request = buf[start + 1 : buf.find(b"\x1c\x0d")]
                self.requests.append(request)
                answer = self.responder(request)
                if answer is self.CLOSE:
                    return
                if answer is self.RESET:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                if answer is None:
                    # keep silent until the client hangs up or the test ends
                    while not self._stop.is_set():
                        try:
                            if not conn.recv(4096):
                                return
                        except TimeoutError:
                            return
                        except OSError:
                            return
                    return
                conn.sendall(answer)
                time.sleep(0.05)
            except OSError:
                return

    def close(self):
        self._stop.set()
        self.sock.close()
        self._thread.join(timeout=2)


@pytest.fixture
def scripted_mllp_server():
    server = ScriptedServer()
    yield server
    server.close()


class OpenSSLServer:
    """``openssl s_server`` on a loopback port with the test PKI's server certificate."""

    def __init__(self, pki):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                OPENSSL,
                "s_server",
                "-quiet",
                "-accept",
                f"127.0.0.1:{self.port}",
                "-cert",
                str(pki.server_cert),
                "-key",
                str(pki.server_key),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("openssl s_server did not start") from None
                time.sleep(0.1)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def openssl_tls_server(tls_pki):
    if not os.access(OPENSSL, os.X_OK):
        pytest.fail("openssl is not installed: run `make deps` (apt-get install openssl)")
    server = OpenSSLServer(tls_pki)
    yield server
    server.stop()


def control_id_of(request):
    text = request.decode("utf-8", "replace")
    return text.split("\r")[0].split("|")[9]


def ack_bytes(code, control_id, text="", extra=()):
    segs = [
        "MSH|^~\\&|PEER|PEER|CLINUPG|CLINUPG|20240101000000||ACK^O01^ACK|A1|P|2.5.1",
        f"MSA|{code}|{control_id}|{text}",
        *extra,
    ]
    return b"\x0b" + "\r".join(segs).encode() + b"\x1c\x0d"


# --------------------------------------------------------------------------
# A real Orthanc
# --------------------------------------------------------------------------


class OrthancProcess:
    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.http_port = free_port()
        self.dicom_port = free_port()
        # A DICOM peer that accepts TCP connections but never answers: store jobs to it stay Running.
        self.silent = socket.socket()
        self.silent.bind(("127.0.0.1", 0))
        self.silent.listen(16)
        self.silent_port = self.silent.getsockname()[1]
        db = self.workdir / "db"
        db.mkdir()
        config = {
            "Name": "CUTESTPACS",
            "StorageDirectory": str(db),
            "IndexDirectory": str(db),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": "CUTEST",
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {ORTHANC_USER: ORTHANC_PASSWORD},
            "HttpServerEnabled": True,
            "Plugins": [],
            "DicomModalities": {"silent": ["SILENT", "127.0.0.1", self.silent_port]},
            "DicomScuTimeout": 10,
            "ConcurrentJobs": 1,
        }
        cfg = self.workdir / "orthanc.json"
        cfg.write_text(json.dumps(config))
        self.log = self.workdir / "orthanc.log"
        self._logfh = open(self.log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([ORTHANC, str(cfg)], stdout=self._logfh, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.http_port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                self.get("/system")
                return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("Orthanc did not start:\n" + self.log.read_text()[-2000:])

    def _request(self, path, data=None, method="GET"):
        req = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310 - loopback http
        token = b64encode((f"{ORTHANC_USER}:{ORTHANC_PASSWORD}").encode()).decode()
        req.add_header("Authorization", "Basic " + token)
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback test peer
            return json.loads(resp.read() or b"null")

    def get(self, path):
        return self._request(path)

    def post(self, path, data):
        return self._request(path, data=data, method="POST")

    def stop(self):
        self.silent.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._logfh.close()


@pytest.fixture(scope="session")
def pacs_orthanc(tmp_path_factory):
    if not os.access(ORTHANC, os.X_OK):
        pytest.fail("Orthanc is not installed: run `make deps` (apt-get install orthanc)")
    server = OrthancProcess(tmp_path_factory.mktemp("pacs_orthanc"))
    yield server
    server.stop()
