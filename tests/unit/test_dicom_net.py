"""dicom_net tuning against real peers on loopback (pynetdicom SCP, plain sockets).

Not a timing test: checks that the options are applied and that association
outcomes (accept, reject, abort, timeouts, refused connection) are still reported.
"""

from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path

import ansible.module_utils
import pytest
from pynetdicom import AE, evt  # noqa: E402
from pynetdicom import _config as pnd_config  # noqa: E402
from pynetdicom.sop_class import Verification  # noqa: E402
from pynetdicom.transport import AssociationSocket  # noqa: E402

_MODULE_UTILS = str(Path(__file__).resolve().parents[2] / "plugins" / "module_utils")
if _MODULE_UTILS not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.insert(0, _MODULE_UTILS)

from ansible.module_utils import dicom_net  # noqa: E402

logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)


def _tcp_getopt(sock: socket.socket, opt: int) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, opt)


@pytest.fixture
def scp():
    """A pynetdicom Verification SCP on an ephemeral loopback port, called AET 'SCP'."""
    ae = AE(ae_title="SCP")
    ae.add_supported_context(Verification)
    ae.require_called_aet = True
    server = ae.start_server(("127.0.0.1", 0), block=False)
    yield server
    server.shutdown()


def _port(server) -> int:
    return server.server_address[1]


def _client_ae(tuned: bool = True) -> AE:
    ae = AE(ae_title="CLIENT")
    ae.add_requested_context(Verification)
    ae.acse_timeout = 5
    ae.dimse_timeout = 5
    ae.network_timeout = 5
    ae.connection_timeout = 5
    if tuned:
        dicom_net.make_ae_tuning(ae)
    return ae


def test_tune_socket_sets_nodelay_and_quickack():
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        client = socket.create_connection(listener.getsockname())
        server_side, _ = listener.accept()
        try:
            assert _tcp_getopt(client, socket.TCP_NODELAY) == 0
            dicom_net.tune_socket(client)
            assert _tcp_getopt(client, socket.TCP_NODELAY) == 1
            if dicom_net.TCP_QUICKACK is not None:
                assert _tcp_getopt(client, dicom_net.TCP_QUICKACK) == 1
            # data still flows both ways
            client.sendall(b"ping")
            assert server_side.recv(4) == b"ping"
            server_side.sendall(b"pong")
            assert client.recv(4) == b"pong"
            dicom_net.tune_socket(client)  # idempotent
        finally:
            client.close()
            server_side.close()
    finally:
        listener.close()
    dicom_net.tune_socket(None)  # tolerated
    closed = socket.socket()
    closed.close()
    dicom_net.tune_socket(closed)  # errors are swallowed


def test_make_ae_tuning_is_scoped_and_idempotent():
    tuned = _client_ae(tuned=True)
    dicom_net.make_ae_tuning(tuned)
    plain = _client_ae(tuned=False)
    assert dicom_net.is_tuned(tuned)
    assert not dicom_net.is_tuned(plain)
    assert "_create_socket" in vars(tuned)
    assert "_create_socket" not in vars(plain)
    assert pnd_config.LOG_REQUEST_IDENTIFIERS is False
    assert pnd_config.LOG_RESPONSE_IDENTIFIERS is False


def test_echo_association_succeeds_with_tuned_socket(scp):
    seen = {}

    def on_open(event):
        sock = event.assoc.dul.socket
        seen["sock"] = sock
        seen["nodelay"] = _tcp_getopt(sock.socket, socket.TCP_NODELAY)

    ae = _client_ae()
    for _ in range(3):  # several cycles on the same AE
        assoc = ae.associate("127.0.0.1", _port(scp), ae_title="SCP", evt_handlers=[(evt.EVT_CONN_OPEN, on_open)])
        assert assoc.is_established
        assert isinstance(seen["sock"], dicom_net.TunedAssociationSocket)
        assert seen["nodelay"] == 1
        status = assoc.send_c_echo()
        assert status.Status == 0x0000
        assoc.release()
        assert assoc.is_released
        assert not assoc.is_aborted
        assert not assoc.dul.is_alive()
        assoc.join(timeout=5)
        assert not assoc.is_alive()
        # the wake-up socketpair is closed with the association
        assert seen["sock"]._wake_r is None
        assert seen["sock"]._wake_w is None


def test_plain_ae_in_same_process_is_untouched(scp):
    seen = {}
    ae = _client_ae(tuned=False)
    assoc = ae.associate(
        "127.0.0.1",
        _port(scp),
        ae_title="SCP",
        evt_handlers=[(evt.EVT_CONN_OPEN, lambda e: seen.setdefault("sock", e.assoc.dul.socket))],
    )
    assert assoc.is_established
    assert type(seen["sock"]) is AssociationSocket
    assert assoc.dul._run_loop_delay == 0.001
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()
    assert assoc.is_released


@pytest.mark.parametrize("tuned", [True, False], ids=["tuned", "plain"])
def test_rejected_association_is_reported(scp, tuned):
    ae = _client_ae(tuned)
    assoc = ae.associate("127.0.0.1", _port(scp), ae_title="WRONG_AET")
    assert not assoc.is_established
    assert assoc.is_rejected
    assoc.dul.join(timeout=5)
    assert not assoc.dul.is_alive()


@pytest.mark.parametrize("tuned", [True, False], ids=["tuned", "plain"])
def test_peer_abort_is_reported(scp, tuned):
    def abort_on_echo(event):
        event.assoc.abort()
        return 0x0000

    scp.bind(evt.EVT_C_ECHO, abort_on_echo)
    ae = _client_ae(tuned)
    assoc = ae.associate("127.0.0.1", _port(scp), ae_title="SCP")
    assert assoc.is_established
    status = assoc.send_c_echo()
    assert "Status" not in status  # no response: empty dataset
    assoc.join(timeout=5)
    assert assoc.is_aborted
    assert not assoc.is_established


@pytest.mark.parametrize("tuned", [True, False], ids=["tuned", "plain"])
def test_local_abort_is_reported(scp, tuned):
    ae = _client_ae(tuned)
    assoc = ae.associate("127.0.0.1", _port(scp), ae_title="SCP")
    assert assoc.is_established
    assoc.abort()
    assert assoc.is_aborted
    assert not assoc.is_established
    assert not assoc.dul.is_alive()


@pytest.mark.parametrize("tuned", [True, False], ids=["tuned", "plain"])
def test_dimse_timeout_still_aborts(scp, tuned):
    release = threading.Event()

    def slow_echo(event):
        release.wait(10)
        return 0x0000

    scp.bind(evt.EVT_C_ECHO, slow_echo)
    ae = _client_ae(tuned)
    ae.dimse_timeout = 0.5
    try:
        assoc = ae.associate("127.0.0.1", _port(scp), ae_title="SCP")
        assert assoc.is_established
        status = assoc.send_c_echo()
        assert "Status" not in status
        assert assoc.is_aborted
    finally:
        release.set()


@pytest.mark.parametrize("tuned", [True, False], ids=["tuned", "plain"])
def test_acse_timeout_with_silent_peer(tuned):
    """A peer that accepts TCP but never answers the A-ASSOCIATE-RQ."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []
    done = threading.Event()

    def accept():
        try:
            conn, _ = listener.accept()
            accepted.append(conn)
            done.wait(10)
        except OSError:
            pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        ae = _client_ae(tuned)
        ae.acse_timeout = 0.5
        assoc = ae.associate("127.0.0.1", listener.getsockname()[1], ae_title="SILENT")
        assert not assoc.is_established
        assert assoc.is_aborted
        assert not assoc.dul.is_alive()
    finally:
        done.set()
        for conn in accepted:
            conn.close()
        listener.close()
        thread.join(timeout=5)


def test_connection_refused_is_reported():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens on `port` now
    ae = _client_ae()
    assoc = ae.associate("127.0.0.1", port, ae_title="NOBODY")
    sock = assoc.dul.socket
    assert not assoc.is_established
    assert assoc.is_aborted
    assoc.dul.join(timeout=5)
    assert not assoc.dul.is_alive()
    # the wake-up socketpair does not leak when the connection fails
    assert isinstance(sock, dicom_net.TunedAssociationSocket)
    assert sock._wake_r is None


def test_the_pynetdicom_internals_the_tuning_relies_on_are_there():
    """Fails loudly, naming the version, when a pynetdicom release changes what dicom_net.py patches."""
    import pynetdicom

    problems = dicom_net.pynetdicom_internals_problems()
    assert not problems, (
        f"pynetdicom {pynetdicom.__version__} changed internals that plugins/module_utils/dicom_net.py relies on: "
        + "; ".join(problems) + ". Adapt dicom_net.py and the pin in pyproject.toml (tested: 3.0.x)."
    )
    assert pynetdicom.__version__.startswith("3.0."), f"pynetdicom {pynetdicom.__version__} is outside the pin"
