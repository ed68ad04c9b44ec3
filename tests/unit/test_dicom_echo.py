"""dicom_echo module: main() against real peers; one test per RETURN key at least."""

from __future__ import annotations

import dicom_echo
import pytest


def test_echo_success_returns_documented_keys(orthanc, module_runner):
    result = module_runner(dicom_echo, orthanc.dicom_args())
    assert result["_rc"] == 0 and not result.get("failed")
    assert result["changed"] is False
    assert result["status"] == 0
    assert result["status_hex"] == "0x0000"
    assert result["latency_ms"] > 0
    assert set(result["timings"]) == {"associate_ms", "echo_ms", "release_ms"}
    assert result["context"]["abstract_syntax"] == "1.2.840.10008.1.1"
    assert result["context"]["transfer_syntax_name"] in ("Explicit VR Little Endian", "Implicit VR Little Endian")
    assert result["peer"]["ae_title"] == "ORTHANC"
    assert result["peer"]["implementation_class_uid"]
    assert result["tls"] is False


def test_echo_check_mode(storescp, module_runner):
    args = {"host": storescp.host, "port": storescp.port, "called_ae": "STORESCP", "_ansible_check_mode": True}
    result = module_runner(dicom_echo, args)
    assert result["status"] == 0 and result["changed"] is False


def test_echo_tls(tls_storescp, tls_pki, module_runner):
    args = {
        "host": tls_storescp.host,
        "port": tls_storescp.port,
        "called_ae": "TLSSCP",
        "tls_ca_cert": str(tls_pki.ca_cert),
        "tls_client_cert": str(tls_pki.client_cert),
        "tls_client_key": str(tls_pki.encrypted_client_key),
        "tls_client_key_passphrase": tls_pki.passphrase,
    }
    result = module_runner(dicom_echo, args)
    assert result["tls"] is True and result["status"] == 0
    assert tls_pki.passphrase not in str(result)


def test_echo_rejected_reason_and_rejection(strict_scp, module_runner):
    result = module_runner(dicom_echo, {"host": "127.0.0.1", "port": strict_scp.port, "called_ae": "WRONG"})
    assert result["failed"] and result["_rc"] == 1
    assert result["reason"] == "association_rejected"
    assert result["rejection"]["reason_str"] == "called AE title not recognised"
    assert "check called_ae" in result["msg"]


def test_echo_connection_refused(closed_port, module_runner):
    result = module_runner(dicom_echo, {"host": "127.0.0.1", "port": closed_port, "called_ae": "X"})
    assert result["failed"] and result["reason"] == "connection_refused"


def test_echo_timeout(raw_peer, module_runner):
    peer = raw_peer("silent")
    result = module_runner(dicom_echo, {"host": "127.0.0.1", "port": peer.port, "called_ae": "X", "timeout": 1})
    assert result["failed"] and result["reason"] == "timeout"


def test_echo_latency_gate(orthanc, module_runner):
    result = module_runner(dicom_echo, orthanc.dicom_args(max_latency_ms=0.0001))
    assert result["failed"] and result["reason"] == "latency_exceeded"
    assert "more than max_latency_ms" in result["msg"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ({"called_ae": "A" * 17}, "called_ae is 17 characters long"),
        ({"calling_ae": "  "}, "calling_ae is all spaces"),
        ({"port": 70000}, "port must be an integer between 1 and 65535"),
        ({"tls_ca_cert": "/nonexistent/ca.crt"}, "tls_ca_cert: file /nonexistent/ca.crt does not exist"),
        ({"max_latency_ms": -1}, "max_latency_ms must be a number of milliseconds greater than 0"),
        ({"max_latency_ms": "nan"}, "got nan"),
        ({"max_latency_ms": "inf"}, "got inf"),
    ],
)
def test_echo_invalid_arguments_fail_before_network(closed_port, module_runner, args, fragment):
    base = {"host": "127.0.0.1", "port": closed_port, "called_ae": "X"}
    base.update(args)
    result = module_runner(dicom_echo, base)
    assert result["failed"] and result["reason"] == "invalid_argument"
    assert fragment in result["msg"]
