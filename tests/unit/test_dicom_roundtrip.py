"""dicom_roundtrip module: store/find/retrieve/compare/delete against a real Orthanc."""

from __future__ import annotations

import dicom_roundtrip
import pytest


def rest_args(orthanc, **kw):
    args = orthanc.dicom_args(orthanc_url=orthanc.url, orthanc_user=orthanc.user, orthanc_password=orthanc.password)
    args.update(kw)
    return args


def lookup(orthanc, sop_uid):
    return [r for r in orthanc.rest("POST", "/tools/lookup", sop_uid) if r["Type"] == "Instance"]


def test_roundtrip_get_and_delete(orthanc, module_runner):
    result = module_runner(dicom_roundtrip, rest_args(orthanc))
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is False
    assert [result["steps"][s]["status"] for s in dicom_roundtrip.STEPS] == ["ok"] * 6
    assert result["retrieve_method"] == "get"
    assert result["match"] is True
    assert result["sent_sha256"] == result["received_sha256"]
    assert len(result["pixel_sha256"]) == 64
    assert result["deleted"] is True and result["orthanc_id"]
    assert result["sop_instance_uid"].startswith("2.25.") and result["study_instance_uid"].startswith("2.25.")
    assert result["latency_ms"] > 0
    assert lookup(orthanc, result["sop_instance_uid"]) == []
    assert orthanc.password not in str(result)


def test_roundtrip_move(orthanc, module_runner):
    args = rest_args(
        orthanc,
        retrieve_method="move",
        move_destination_ae=orthanc.move_ae,
        move_listen_address="127.0.0.1",
        move_listen_port=orthanc.move_port,
    )
    result = module_runner(dicom_roundtrip, args)
    assert not result.get("failed"), result.get("msg")
    assert result["retrieve_method"] == "move" and result["match"] is True and result["deleted"] is True


def test_roundtrip_falls_back_to_move_when_get_refused(orthanc, module_runner):
    args = rest_args(
        orthanc,
        calling_ae=orthanc.noget_ae,
        move_destination_ae=orthanc.move_ae,
        move_listen_address="127.0.0.1",
        move_listen_port=orthanc.move_port,
    )
    result = module_runner(dicom_roundtrip, args)
    assert not result.get("failed"), result.get("msg")
    assert result["retrieve_method"] == "move"
    assert "C-GET refused" in result["steps"]["retrieve"]["msg"]


def test_roundtrip_get_refused_without_move_destination(orthanc, module_runner):
    result = module_runner(dicom_roundtrip, rest_args(orthanc, calling_ae=orthanc.noget_ae))
    assert result["failed"] and result["failed_step"] == "retrieve"
    assert "move_destination_ae" in result["msg"]
    assert result["deleted"] is True  # cleanup still ran
    assert result["changed"] is False


def test_roundtrip_check_mode(orthanc, module_runner):
    result = module_runner(dicom_roundtrip, rest_args(orthanc, _ansible_check_mode=True))
    assert not result.get("failed") and result["changed"] is False
    assert result["steps"]["echo"]["status"] == "ok"
    assert all(result["steps"][s]["status"] == "skipped" for s in dicom_roundtrip.STEPS[1:])
    assert result["steps"]["store"]["msg"].startswith("check mode: would")
    assert lookup(orthanc, result["sop_instance_uid"]) == []


def test_roundtrip_without_cleanup_is_a_change(orthanc, module_runner):
    result = module_runner(dicom_roundtrip, orthanc.dicom_args())
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True and result["deleted"] is False
    assert result["steps"]["delete"]["status"] == "skipped"
    assert result["orthanc_id"] is None
    found = lookup(orthanc, result["sop_instance_uid"])
    assert len(found) == 1
    orthanc.rest("DELETE", f"/instances/{found[0]['ID']}")


def test_roundtrip_wrong_rest_password_is_a_failure(orthanc, module_runner):
    """A synthetic patient left in the archive is a finding: the module fails and says how to remove it."""
    result = module_runner(dicom_roundtrip, rest_args(orthanc, orthanc_password="wrong-password"))
    assert result["failed"] and result["failed_step"] == "delete" and result["reason"] == "cleanup_failed"
    assert result["changed"] is True and result["deleted"] is False
    assert result["steps"]["compare"]["status"] == "ok" and result["steps"]["delete"]["status"] == "failed"
    assert "401 Unauthorized" in result["steps"]["delete"]["msg"]
    assert "check orthanc_user ('clinupg') and orthanc_password" in result["msg"]
    assert result["sop_instance_uid"] in result["msg"] and "NOT removed" in result["msg"]
    found = lookup(orthanc, result["sop_instance_uid"])
    assert len(found) == 1  # it really is still there
    orthanc.rest("DELETE", f"/instances/{found[0]['ID']}")


def test_roundtrip_bad_url_refused_before_the_store(orthanc, module_runner):
    """orthanc_url errors are found before any traffic, so nothing is left on the peer."""
    before = orthanc.rest("GET", "/statistics")["CountInstances"]
    for url, fragment in (
        ("http://[::1", "orthanc_url 'http://[::1' is not a valid URL"),
        ("http://127.0.0.1:70000", "Port out of range"),
        ("ftp://127.0.0.1", "must start with http:// or https://"),
        ("http://" + "a" * 64 + ".example", "a part between dots has 64 characters, at most 63"),
    ):
        result = module_runner(dicom_roundtrip, dict(orthanc.dicom_args(), orthanc_url=url))
        assert result["failed"] and result["failed_step"] == "validate", url
        assert fragment in result["msg"], (url, result["msg"])
    assert orthanc.rest("GET", "/statistics")["CountInstances"] == before


def test_roundtrip_find_fails_on_store_only_peer(storescp, module_runner):
    result = module_runner(dicom_roundtrip, {"host": storescp.host, "port": storescp.port, "called_ae": "STORESCP"})
    assert result["failed"] and result["failed_step"] == "find"
    assert result["reason"] == "no_accepted_context"
    assert result["steps"]["store"]["status"] == "ok"
    assert result["changed"] is True  # the instance is on the peer
    assert result["retrieve_method"] is None and result["received_sha256"] is None


def test_roundtrip_echo_failure(closed_port, module_runner):
    result = module_runner(dicom_roundtrip, {"host": "127.0.0.1", "port": closed_port, "called_ae": "X"})
    assert result["failed"] and result["failed_step"] == "echo" and result["reason"] == "connection_refused"
    assert result["changed"] is False


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"retrieve_method": "move"}, "retrieve_method move needs move_destination_ae"),
        ({"move_destination_ae": "BAD\\AE"}, "move_destination_ae contains a backslash"),
        ({"move_listen_port": 70000}, "move_listen_port must be an integer between 1 and 65535"),
        ({"orthanc_url": "ftp://x"}, "orthanc_url must start with http:// or https://"),
        ({"orthanc_password": "x"}, "orthanc_password is set but orthanc_user is not"),
        ({"size_px": 0}, "size_px must be between 1 and 512"),
    ],
)
def test_roundtrip_validation(closed_port, module_runner, extra, fragment):
    base = {"host": "127.0.0.1", "port": closed_port, "called_ae": "X"}
    base.update(extra)
    result = module_runner(dicom_roundtrip, base)
    assert result["failed"] and result["reason"] == "invalid_argument" and result["failed_step"] == "validate"
    assert fragment in result["msg"]
