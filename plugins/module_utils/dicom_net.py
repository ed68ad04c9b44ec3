# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""Network tuning for DICOM associations made by the project's client.

Kept apart from dicom_client.py so that the latency work (bench/echo_latency.py)
has one place to change. dicom_client.py calls make_ae_tuning() when it builds
an ApplicationEntity and tune_socket() on every connected socket.

Where an association + C-ECHO + release cycle of plain pynetdicom 3.0.x spends its
time against a DCMTK-based peer (Orthanc) on loopback, and what is done about it here
(figures and method: docs/benchmarks.md, "DICOM check latency"):

* ~40 ms: delayed ACK. The peer writes its P-DATA response in more than one segment
  and, with Nagle on its side, holds the second one until our ACK of the first; Linux
  delays that ACK (up to 40 ms) once the connection looks interactive. We set
  TCP_NODELAY and re-arm TCP_QUICKACK after every read and write (Linux clears it).
* ~10 ms at release: pynetdicom's AR-3 hands the A-RELEASE confirmation to the user
  thread before it closes the socket and reaches Sta1, so Association.kill() finds
  the DUL busy and sleeps a fixed 10 ms. An EVT_RELEASED handler bound to *our*
  association waits (bounded) for the socket close and Sta1 before kill() runs.
* ~0.5 ms per hop (6 hops): the DUL reactor polls the socket with select(timeout=0) and
  sleeps 1 ms when idle. Our socket blocks in select() on the TCP socket plus a
  wake-up socket that is poked whenever the user thread queues a primitive for the DUL,
  so both directions are served at once and the idle reactor uses less CPU, not more.

Everything is scoped to the associations requested by an AE passed to
make_ae_tuning(): no pynetdicom module, class or global default is patched, except
the two documented ``pynetdicom._config`` switches that stop identifiers (patient
data) from being logged.

Left alone (documented): the Association reactor's fixed 1 ms sleep (costs ~1 ms
before the first DIMSE request), the 0.1 s sleep in Association.abort().
"""

from __future__ import annotations

import contextlib
import queue
import select
import socket
import threading
import time
import types

try:
    from pynetdicom import _config as _pynetdicom_config
    from pynetdicom import evt
    from pynetdicom.transport import AssociationSocket

    HAS_PYNETDICOM = True
except ImportError:  # pragma: no cover - module_utils must import without pynetdicom
    HAS_PYNETDICOM = False
    _pynetdicom_config = None
    evt = None
    AssociationSocket = object  # type: ignore[assignment,misc]

try:
    import ssl
except ImportError:  # pragma: no cover
    ssl = None  # type: ignore[assignment]

TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", None)

#: Longest time the DUL reactor of our associations blocks in select() waiting for
#: network data or a wake-up. Only bounds how often it re-checks its ARTIM timer and
#: kill flag while nothing happens; data and queued primitives wake it immediately.
SELECT_TIMEOUT = 0.05

#: Sleep of our DUL reactor between idle loops (pynetdicom default 0.001 s). While the
#: socket is open the loop blocks in select() anyway; this only matters once it is
#: closed and the DUL waits to be stopped.
DUL_LOOP_DELAY = 0.00005

#: Upper bound on how long the EVT_RELEASED handler waits for the DUL to reach Sta1.
RELEASE_SETTLE_TIMEOUT = 0.05


def quickack(sock: socket.socket | None) -> None:
    """(Re-)arm TCP_QUICKACK (Linux). The kernel clears it by itself, so call it after
    every read and write. A no-op where the option does not exist."""
    if sock is None or TCP_QUICKACK is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, TCP_QUICKACK, 1)


def tune_socket(sock: socket.socket | None) -> None:
    """Apply low-latency options to a connected TCP socket (TCP_NODELAY, TCP_QUICKACK).

    Safe to call on any socket, more than once, or with None; errors are ignored.
    """
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    quickack(sock)


class _WakingQueue(queue.Queue):
    """The DUL's to_provider_queue: wakes the reactor whenever a primitive is queued."""

    def __init__(self, wake) -> None:
        super().__init__()
        self._wake = wake

    def put(self, item, block=True, timeout=None) -> None:
        super().put(item, block, timeout)
        self._wake()


class TunedAssociationSocket(AssociationSocket):  # type: ignore[misc,valid-type]
    """AssociationSocket for the associations requested by a tuned AE.

    * TCP_NODELAY before connect, TCP_NODELAY + TCP_QUICKACK once connected,
      TCP_QUICKACK re-armed after every recv() and send();
    * ``ready`` blocks in select() (up to ``select_timeout``) on the TCP socket and a
      wake-up socketpair instead of polling, the DUL's ``to_provider_queue`` pokes the
      wake-up socket, and the DUL's idle sleep is shortened to ``DUL_LOOP_DELAY``;
    * binds an EVT_RELEASED handler that lets the DUL reach Sta1 before
      Association.kill() polls it.
    """

    def __init__(self, assoc, client_socket=None, address=None) -> None:
        self._closed = threading.Event()
        self._wake_lock = threading.Lock()
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        super().__init__(assoc, client_socket=client_socket, address=address)
        self.select_timeout = SELECT_TIMEOUT

        dul = assoc.dul
        # Only rewire a DUL that has not started and has nothing queued yet.
        if not dul.is_alive() and dul.to_provider_queue.empty():
            try:
                self._wake_r, self._wake_w = socket.socketpair()
                self._wake_r.setblocking(False)
                self._wake_w.setblocking(False)
            except OSError:
                self._wake_r = self._wake_w = None
            if self._wake_w is not None:
                dul.to_provider_queue = _WakingQueue(self.wake)
        if hasattr(dul, "_run_loop_delay"):
            dul._run_loop_delay = DUL_LOOP_DELAY
        assoc.bind(evt.EVT_RELEASED, _settle_dul_on_release)

    # -- wake-up channel -------------------------------------------------------------
    def wake(self) -> None:
        """Wake the DUL reactor if it is blocked in ``ready``."""
        with self._wake_lock:
            if self._wake_w is None:
                return
            # OSError: buffer full (reactor already has a wake-up pending) or closed
            with contextlib.suppress(OSError):
                self._wake_w.send(b"\0")

    def _drain_wake(self) -> None:
        try:
            while self._wake_r is not None and self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    def _close_wake(self) -> None:
        with self._wake_lock:
            for s in (self._wake_r, self._wake_w):
                if s is not None:
                    with contextlib.suppress(OSError):
                        s.close()
            self._wake_r = self._wake_w = None

    # -- AssociationSocket overrides -------------------------------------------------
    def _create_socket(self, address):
        sock = super()._create_socket(address)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def connect(self, primitive) -> None:
        super().connect(primitive)
        if self._is_connected and self.socket is not None:
            tune_socket(self.socket)
        else:
            # Connection failed: the socket is gone, nothing will select on the pair.
            self._close_wake()

    @property
    def ready(self) -> bool:
        """Return True if data can be read; block up to ``select_timeout`` for it.

        Returns early (False) when woken because the user queued a primitive.
        """
        sock = self.socket
        if sock is None or self._is_connected is False:
            return False

        if ssl is not None and isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True

        wake_r = self._wake_r
        rlist = [sock] if wake_r is None else [sock, wake_r]
        timeout = 0 if wake_r is None else self.select_timeout
        # Work already queued for the reactor (a primitive from the user, an event from
        # the previous loop): don't block, the DUL must get to it first.
        dul = self.assoc.dul
        if timeout and (dul.to_provider_queue.qsize() or dul.event_queue.qsize()):
            timeout = 0
        try:
            ready, _, _ = select.select(rlist, [], [], timeout)
        except (OSError, TimeoutError, ValueError):
            # Evt17: Transport connection closed
            self.event_queue.put("Evt17")
            return False

        if wake_r is not None and wake_r in ready:
            self._drain_wake()
        return sock in ready

    def recv(self, nr_bytes: int) -> bytearray:
        """Read `nr_bytes` from the socket, re-arming TCP_QUICKACK after every read."""
        sock = self.socket
        bytestream = bytearray()
        nr_read = 0
        while nr_read < nr_bytes:
            bytes_read = sock.recv(min(nr_bytes - nr_read, 65536))
            if not bytes_read:
                return bytestream
            bytestream.extend(bytes_read)
            nr_read += len(bytes_read)
            quickack(sock)
        return bytestream

    def send(self, bytestream: bytes) -> None:
        super().send(bytestream)
        quickack(self.socket)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._closed.set()
            self._close_wake()


def _settle_dul_on_release(event) -> None:
    """EVT_RELEASED handler (runs in the user thread, just before Association.kill()).

    Waits, at most RELEASE_SETTLE_TIMEOUT, until the DUL has closed the socket and is
    in Sta1, so that kill() stops it at once instead of sleeping a fixed 10 ms.
    """
    dul = event.assoc.dul
    closed = getattr(dul.socket, "_closed", None)
    deadline = time.monotonic() + RELEASE_SETTLE_TIMEOUT
    if closed is not None:
        closed.wait(RELEASE_SETTLE_TIMEOUT)
    while time.monotonic() < deadline:
        if not dul.is_alive() or dul.state_machine.current_state == "Sta1":
            return
        time.sleep(0.0001)


def _tuned_create_socket(self, assoc, address, tls_args):
    """Replacement for AE._create_socket() on tuned AE instances."""
    sock = TunedAssociationSocket(assoc, address=address)
    sock.tls_args = tls_args
    return sock


def disable_identifier_logging() -> None:
    """Stop pynetdicom from logging request/response identifiers (patient data).

    These are process-wide pynetdicom settings; turning them off only removes log lines.
    """
    if _pynetdicom_config is None:
        return
    _pynetdicom_config.LOG_REQUEST_IDENTIFIERS = False
    _pynetdicom_config.LOG_RESPONSE_IDENTIFIERS = False


def pynetdicom_internals_problems() -> list[str]:
    """What of pynetdicom's internals this module relies on is missing or changed (empty: all there).

    pyproject.toml pins pynetdicom to the tested 3.0.x; a site that installs another version gets
    the plain, untuned pynetdicom from make_ae_tuning() instead of a broken one, and the unit test
    tests/unit/test_dicom_net.py names the version and what changed.
    """
    if not HAS_PYNETDICOM:
        return ["pynetdicom is not installed"]
    import inspect

    from pynetdicom import AE
    from pynetdicom.association import Association

    problems = []
    for name in ("_create_socket", "connect", "ready", "recv", "send", "close"):
        if not hasattr(AssociationSocket, name):
            problems.append(f"AssociationSocket.{name} is gone")
    params = list(inspect.signature(AE._create_socket).parameters) if hasattr(AE, "_create_socket") else []
    if params != ["self", "assoc", "address", "tls_args"]:
        problems.append(f"AE._create_socket takes {params}, expected self, assoc, address, tls_args")
    params = list(inspect.signature(AssociationSocket.__init__).parameters)
    if params[:4] != ["self", "assoc", "client_socket", "address"]:
        problems.append(f"AssociationSocket.__init__ takes {params}, expected self, assoc, client_socket, address")
    try:
        dul = Association(AE(), "requestor").dul
    except Exception as exc:  # noqa: BLE001 - any failure here means the internals changed
        return [*problems, f"Association(AE(), 'requestor') failed: {exc!r}"]
    for name in ("to_provider_queue", "event_queue", "_run_loop_delay", "state_machine", "socket", "is_alive"):
        if not hasattr(dul, name):
            problems.append(f"DULServiceProvider.{name} is gone")
    if getattr(getattr(dul, "state_machine", None), "current_state", None) != "Sta1":
        problems.append("the DUL's state_machine.current_state is not 'Sta1' before an association")
    for name in ("LOG_REQUEST_IDENTIFIERS", "LOG_RESPONSE_IDENTIFIERS", "LOG_HANDLER_LEVEL"):
        if not hasattr(_pynetdicom_config, name):
            problems.append(f"pynetdicom._config.{name} is gone")
    return problems


_INTERNALS_CHECKED: list[str] | None = None


def is_tuned(ae) -> bool:
    """True if make_ae_tuning() has been applied to `ae`."""
    return getattr(ae, "_clinical_upgrade_tuned", False)


def make_ae_tuning(ae) -> None:
    """Apply latency-related settings to a pynetdicom ApplicationEntity.

    Associations this AE *requests* (AE.associate) use TunedAssociationSocket. Only
    this AE instance is changed; idempotent. Does not touch timeouts, contexts or
    the AE's acceptor (server) side.
    """
    global _INTERNALS_CHECKED  # noqa: PLW0603 - checked once per process
    if not HAS_PYNETDICOM:
        return
    disable_identifier_logging()
    if is_tuned(ae):
        return
    if _INTERNALS_CHECKED is None:
        _INTERNALS_CHECKED = pynetdicom_internals_problems()
    if _INTERNALS_CHECKED:  # another pynetdicom: plain pynetdicom works, only slower
        return
    ae._create_socket = types.MethodType(_tuned_create_socket, ae)
    ae._clinical_upgrade_tuned = True
