"""The lab workstations after converge: a DICOM viewer and the connectivity tools."""

testinfra_hosts = ["ansible://workstations"]


def test_viewer_installed(host):
    assert host.package("aeskulap").is_installed


def test_dicom_tools_installed(host):
    assert host.package("dcmtk").is_installed
    assert host.exists("echoscu")
