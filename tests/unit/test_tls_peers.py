"""A secured Orthanc (DICOM TLS with client certificates, https REST signed by a site CA).

The modules reach it when given the site CA and the client certificate, and say which of TLS
and plain the peer speaks when the user picked the wrong one.
"""

from __future__ import annotations

import dicom_echo
import dicom_roundtrip
import pacs_info


def tls_args(peer, pki, **extra):
    args = peer.dicom_args(
        tls=True,
        tls_ca_cert=str(pki.ca_cert),
        tls_client_cert=str(pki.client_cert),
        tls_client_key=str(pki.client_key),
    )
    args.update(extra)
    return args


def test_echo_over_dicom_tls(tls_orthanc, tls_pki, module_runner):
    result = module_runner(dicom_echo, tls_args(tls_orthanc, tls_pki))
    assert not result.get("failed"), result.get("msg")
    assert result["tls"] is True


def test_plain_client_on_a_tls_port_is_told(tls_orthanc, module_runner):
    result = module_runner(dicom_echo, tls_orthanc.dicom_args(timeout=5))
    assert result["failed"] and result["reason"] == "tls_error"
    assert "the peer speaks TLS on this port; set tls: true" in result["msg"]


def test_tls_client_on_a_plain_port_is_told(orthanc, tls_pki, module_runner):
    result = module_runner(dicom_echo, tls_args(orthanc, tls_pki, timeout=5))
    assert result["failed"] and result["reason"] == "tls_error"
    assert "the peer does not speak TLS on this port; set tls: false" in result["msg"]
    assert "reset by peer" not in result["msg"]


def test_pacs_info_https_with_the_site_ca(tls_orthanc, tls_pki, module_runner):
    base = {"url": tls_orthanc.url, "username": tls_orthanc.user, "password": tls_orthanc.password}
    refused = module_runner(pacs_info, base)
    assert refused["failed"]
    assert "could not be verified" in refused["msg"] and "set ca_path to the site CA" in refused["msg"]
    result = module_runner(pacs_info, dict(base, ca_path=str(tls_pki.ca_cert)))
    assert not result.get("failed"), result.get("msg")
    assert result["version"]


def test_pacs_info_ca_path_checked_first(tls_orthanc, tmp_path, module_runner):
    not_pem = tmp_path / "ca.der"
    not_pem.write_bytes(b"\x30\x82\x01\x0a")
    for path, fragment in ((tmp_path / "missing.pem", "is not a file"), (not_pem, "holds no PEM certificate")):
        result = module_runner(pacs_info, {"url": tls_orthanc.url, "ca_path": str(path)})
        assert result["failed"] and fragment in result["msg"], result["msg"]


def test_pacs_info_http_on_an_https_port_is_told(tls_orthanc, module_runner):
    url = tls_orthanc.url.replace("https://", "http://")
    result = module_runner(pacs_info, {"url": url, "timeout": 5})
    assert result["failed"]
    https = f"https://{tls_orthanc.host}:{tls_orthanc.http_port}"
    assert f"the server speaks TLS on that port: use {https}" in result["msg"]


def test_roundtrip_through_a_secured_orthanc(tls_orthanc, tls_pki, module_runner):
    rest = {
        "orthanc_url": tls_orthanc.url,
        "orthanc_user": tls_orthanc.user,
        "orthanc_password": tls_orthanc.password,
    }
    before = tls_orthanc.rest("GET", "/statistics")["CountInstances"]
    args = tls_args(tls_orthanc, tls_pki, **rest, orthanc_ca_path=str(tls_pki.ca_cert))
    result = module_runner(dicom_roundtrip, args)
    assert not result.get("failed"), result.get("msg")
    assert result["deleted"] is True and result["match"] is True
    # without the site CA the delete cannot verify the server: a failure that names the option
    left = module_runner(dicom_roundtrip, tls_args(tls_orthanc, tls_pki, **rest))
    assert left["failed"] and left["failed_step"] == "delete" and left["reason"] == "cleanup_failed"
    assert "set orthanc_ca_path to the site CA" in left["msg"]
    found = tls_orthanc.rest("POST", "/tools/lookup", left["sop_instance_uid"])
    tls_orthanc.rest("DELETE", f"/instances/{found[0]['ID']}")
    assert tls_orthanc.rest("GET", "/statistics")["CountInstances"] == before
