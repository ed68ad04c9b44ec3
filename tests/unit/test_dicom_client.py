"""dicom_client: validation before network, failure classification against real peers, masking."""

from __future__ import annotations

import logging
import stat

import pytest
from ansible.module_utils import dicom_client as dc
from ansible.module_utils.dicom_synth import make_canary_instance
from pydicom.dataset import Dataset


def params(**kw):
    base = {"host": "127.0.0.1", "port": 104, "called_ae": "PEER", "calling_ae": "CLINUPG", "timeout": 5.0}
    base.update(kw)
    return base


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "is empty"),
        ("A" * 17, "at most 16 characters"),
        ("AB\\C", "backslash"),
        ("AB\nC", "control character"),
        ("    ", "all spaces"),
        ("ÄBC", "non-ASCII"),
    ],
)
def test_ae_title_validation(value, fragment):
    with pytest.raises(dc.DicomValidationError, match=fragment) as exc:
        dc.build_client(params(called_ae=value))
    assert exc.value.reason == "invalid_argument"
    assert "called_ae" in exc.value.msg


@pytest.mark.parametrize("port", [0, 65536, -1])
def test_port_validation(port):
    with pytest.raises(dc.DicomValidationError, match="port must be an integer between 1 and 65535"):
        dc.build_client(params(port=port))


def test_tls_file_validation(tmp_path, tls_pki):
    missing = tmp_path / "nope.crt"
    with pytest.raises(dc.DicomValidationError, match="does not exist"):
        dc.build_client(params(tls_ca_cert=str(missing)))
    junk = tmp_path / "junk.crt"
    junk.write_text("not a certificate")
    with pytest.raises(dc.DicomValidationError, match="is not PEM"):
        dc.build_client(params(tls_ca_cert=str(junk)))
    broken = tmp_path / "broken.crt"
    broken.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(dc.DicomValidationError, match="does not parse"):
        dc.build_client(params(tls_ca_cert=str(broken)))
    with pytest.raises(dc.DicomValidationError, match="tls_client_key is not"):
        dc.build_client(params(tls_client_cert=str(tls_pki.client_cert)))
    with pytest.raises(dc.DicomValidationError, match="set tls_client_key_passphrase"):
        dc.build_client(
            params(tls_client_cert=str(tls_pki.client_cert), tls_client_key=str(tls_pki.encrypted_client_key))
        )
    with pytest.raises(dc.DicomValidationError, match="does not belong"):
        dc.build_client(params(tls_client_cert=str(tls_pki.client_cert), tls_client_key=str(tls_pki.server_key)))
    unreadable = tmp_path / "unreadable.key"
    unreadable.write_bytes(tls_pki.client_key.read_bytes())
    unreadable.chmod(0)
    try:
        if not (unreadable.stat().st_mode & stat.S_IRUSR) and not _can_read(unreadable):
            with pytest.raises(dc.DicomValidationError, match="cannot read"):
                dc.build_client(params(tls_client_cert=str(tls_pki.client_cert), tls_client_key=str(unreadable)))
    finally:
        unreadable.chmod(0o600)
    client = dc.build_client(
        params(
            tls_client_cert=str(tls_pki.client_cert),
            tls_client_key=str(tls_pki.encrypted_client_key),
            tls_client_key_passphrase=tls_pki.passphrase,
            tls_ca_cert=str(tls_pki.ca_cert),
        )
    )
    assert client.tls_context is not None


def _can_read(path):
    try:
        path.read_bytes()
    except OSError:
        return False
    return True


def test_query_level_validation():
    assert dc.validate_query_level("study") == ("STUDY", "study_root")
    assert dc.validate_query_level("PATIENT") == ("PATIENT", "patient_root")
    assert dc.validate_query_level("WORKLIST") == ("WORKLIST", "worklist")
    with pytest.raises(dc.DicomValidationError, match="query level 'FRAME' is unknown"):
        dc.validate_query_level("FRAME")
    with pytest.raises(dc.DicomValidationError, match="needs query_model patient_root"):
        dc.validate_query_level("PATIENT", "study_root")


def test_masking():
    assert dc.mask_name("SYNTH^PATIENT^0003") == "***"
    assert dc.mask_name("Test^S R") == "***"  # no initials, no length
    assert dc.mask_id("SYN-000003") == "***"
    assert dc.mask_id("") == ""
    assert dc.mask_name(None) is None
    ds = Dataset()
    ds.PatientName = "SYNTH^PATIENT^0003"
    ds.PatientID = "SYN-000003"
    ds.PatientBirthDate = "19700101"
    ds.StudyInstanceUID = "2.25.1"
    ds.OperatorsName = ["SMITH^J", "DOE^A"]
    ds.StudyDate = "20240102"
    ds.Modality = "CT"
    ds.add_new(0x00091010, "LO", "PRIVATE PATIENT NOTE")
    masked = dc.identifier_to_dict(ds)
    assert masked == {
        "PatientName": "***",
        "PatientID": "***",
        "PatientBirthDate": "***",
        "StudyInstanceUID": "2.25.1",
        "OperatorsName": ["***", "***"],
        "StudyDate": "***",
        "Modality": "CT",
        "(0009,1010)": "***",
    }
    assert dc.identifier_to_dict(ds, unmask_phi=True)["PatientID"] == "SYN-000003"


def test_pynetdicom_does_not_log_identifiers(orthanc, caplog):
    from pynetdicom import _config

    assert _config.LOG_REQUEST_IDENTIFIERS is False
    assert _config.LOG_RESPONSE_IDENTIFIERS is False
    assert logging.getLogger("pynetdicom").level >= logging.WARNING
    client = dc.build_client(orthanc.dicom_args())
    q = Dataset()
    q.QueryRetrieveLevel = "STUDY"
    q.PatientID = "SYN-LOGCHECK"
    q.StudyInstanceUID = ""
    with caplog.at_level(logging.DEBUG):
        client.find(q)
    assert "SYN-LOGCHECK" not in caplog.text


def test_client_is_reusable_and_tunes_sockets(orthanc, monkeypatch):
    tuned = []
    monkeypatch.setattr(dc, "tune_socket", lambda sock: tuned.append(sock))
    client = dc.build_client(orthanc.dicom_args())
    results = [client.echo() for _ in range(3)]
    assert all(r["status"] == 0 and r["latency_ms"] > 0 for r in results)
    assert len(tuned) == 3


def test_make_ae_tuning_called(orthanc, monkeypatch):
    seen = []
    monkeypatch.setattr(dc, "make_ae_tuning", lambda ae: seen.append(ae))
    dc.build_client(orthanc.dicom_args())
    assert len(seen) == 1


def test_store_find_get_move(orthanc):
    client = dc.build_client(orthanc.dicom_args())
    ds = make_canary_instance()
    assert client.store(ds)["status"] == 0
    q = Dataset()
    q.QueryRetrieveLevel = "IMAGE"
    q.StudyInstanceUID = ds.StudyInstanceUID
    q.SeriesInstanceUID = ds.SeriesInstanceUID
    q.SOPInstanceUID = ds.SOPInstanceUID
    assert client.find(q)["count"] == 1
    got = client.get(q, [ds.SOPClassUID])
    assert got["datasets"][0].SOPInstanceUID == ds.SOPInstanceUID
    moved = client.move(q, [ds.SOPClassUID], orthanc.move_ae, listen_port=orthanc.move_port)
    assert moved["datasets"][0].SOPInstanceUID == ds.SOPInstanceUID
    with pytest.raises(dc.DicomError, match="check that the peer knows move destination 'UNKNOWN-AE'") as exc:
        client.move(q, [ds.SOPClassUID], "UNKNOWN-AE", listen_port=0)
    assert exc.value.reason == "dimse_failure"


def test_find_failure_status(orthanc):
    client = dc.build_client(orthanc.dicom_args(calling_ae="STRANGER"))
    q = Dataset()
    q.QueryRetrieveLevel = "STUDY"
    q.StudyInstanceUID = ""
    with pytest.raises(dc.DicomError) as exc:
        client.find(q)
    # Orthanc refuses C-FIND from unregistered AEs (DicomAlwaysAllowFind false)
    # Orthanc 1.10 aborts the association instead of answering with a failure status
    assert exc.value.reason in ("dimse_failure", "aborted")
    assert "calling_ae is not allowed" in exc.value.msg or exc.value.reason == "dimse_failure"


def test_connection_refused(closed_port):
    with pytest.raises(dc.DicomError, match=f"connection refused by 127.0.0.1:{closed_port}") as exc:
        dc.build_client(params(port=closed_port)).echo()
    assert exc.value.reason == "connection_refused"


def test_name_resolution():
    with pytest.raises(dc.DicomError, match="cannot resolve host") as exc:
        dc.build_client(params(host="no-such-host.invalid", timeout=2)).echo()
    assert exc.value.reason == "name_resolution"


def test_timeout_silent_peer(raw_peer):
    peer = raw_peer("silent")
    with pytest.raises(dc.DicomError, match="did not answer the association request within 1 s") as exc:
        dc.build_client(params(port=peer.port, timeout=1)).echo()
    assert exc.value.reason == "timeout"


def test_abort_pdu_during_negotiation(raw_peer):
    peer = raw_peer("abort")
    with pytest.raises(dc.DicomError, match="A-ABORT from DICOM UL service-provider") as exc:
        dc.build_client(params(port=peer.port)).echo()
    assert exc.value.reason == "aborted"


def test_peer_closes_connection(raw_peer):
    peer = raw_peer("close")
    with pytest.raises(dc.DicomError, match="closed the connection without answering") as exc:
        dc.build_client(params(port=peer.port)).echo()
    assert exc.value.reason == "aborted"
    # Asked once more before saying so: two association requests, each followed by the TLS probe.
    assert len(peer.connections) == 4


def test_a_close_before_the_rejection_is_asked_again_and_the_rejection_reported(raw_peer):
    """pynetdicom now and then handles the close of a rejecting peer before its A-ASSOCIATE-RJ; the
    second request gets the peer's own reason (this peer closes its first connection unanswered)."""
    peer = raw_peer("close-then-reject")
    with pytest.raises(dc.DicomError, match="called AE title not recognised") as exc:
        dc.build_client(params(port=peer.port)).echo()
    assert exc.value.reason == "association_rejected"
    assert len(peer.connections) == 3  # the first request, its TLS probe, the second request


def test_abort_during_echo(aborting_echo_scp):
    with pytest.raises(dc.DicomError, match="aborted by ABORTER@127.0.0.1:.* during C-ECHO") as exc:
        dc.build_client(params(port=aborting_echo_scp.port, called_ae="ABORTER")).echo()
    assert exc.value.reason == "aborted"


def test_rejections(strict_scp):
    with pytest.raises(dc.DicomError, match="called AE title not recognised") as exc:
        dc.build_client(params(port=strict_scp.port, called_ae="WRONG")).echo()
    assert exc.value.reason == "association_rejected"
    assert exc.value.details["rejection"]["reason"] == 7
    with pytest.raises(dc.DicomError, match="calling AE title not recognised.*check calling_ae") as exc:
        dc.build_client(params(port=strict_scp.port, called_ae="STRICT", calling_ae="INTRUDER")).echo()
    assert exc.value.details["rejection"]["source_str"] == "DICOM UL service-user"


def test_no_accepted_context(ct_only_scp):
    with pytest.raises(dc.DicomError, match="no presentation context was accepted") as exc:
        dc.build_client(params(port=ct_only_scp.port, called_ae="CTONLY")).echo()
    assert exc.value.reason == "no_accepted_context"


def test_tls(tls_storescp, tls_pki):
    good = params(
        port=tls_storescp.port,
        called_ae="TLSSCP",
        tls_ca_cert=str(tls_pki.ca_cert),
        tls_client_cert=str(tls_pki.client_cert),
        tls_client_key=str(tls_pki.client_key),
    )
    assert dc.build_client(good).echo()["status"] == 0
    wrong_ca = dict(good, tls_ca_cert=str(tls_pki.other_ca_cert))
    with pytest.raises(dc.DicomError, match="TLS certificate verification of .* failed") as exc:
        dc.build_client(wrong_ca).echo()
    assert exc.value.reason == "tls_error"
    no_client_cert = params(port=tls_storescp.port, called_ae="TLSSCP", tls_ca_cert=str(tls_pki.ca_cert))
    with pytest.raises(dc.DicomError, match="refused the client certificate") as exc:
        dc.build_client(no_client_cert).echo()
    assert exc.value.reason == "aborted"
    plain = params(port=tls_storescp.port, called_ae="TLSSCP", timeout=2)
    with pytest.raises(dc.DicomError, match="the peer speaks TLS on this port; set tls: true") as exc:
        dc.build_client(plain).echo()
    assert exc.value.reason == "tls_error"
