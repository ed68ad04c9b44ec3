"""The lab workstations after converge: the viewer toolchain at its catalogue version, held, the apt
sources with the security suites, and an image of the PACS loading on the workstation itself."""

testinfra_hosts = ["ansible://workstations"]


def test_viewer_at_its_catalogue_version_and_held(host):
    assert host.package("dcmtk").version == "3.6.7-9~deb12u4"
    assert host.package("libdcmtk17").version == "3.6.7-9~deb12u4"
    assert {"dcmtk", "libdcmtk17"} <= set(host.check_output("apt-mark showhold").split())
    assert host.exists("getscu") and host.exists("dcmj2pnm")


def test_apt_sources_name_the_security_suite(host):
    sources = host.file("/etc/apt/sources.list.d/clinical-upgrade.sources")
    assert sources.exists and "bookworm-security" in sources.content_string


def test_an_image_loads_on_the_workstation(host, verify_result):
    name = host.backend.get_hostname()
    check = next(c for c in verify_result["checks"] if c["host"] == name and c["check"] == "image_load")
    assert check["status"] == "passed", check["message"]
    assert check["details"]["rows"] == 64 and check["details"]["columns"] == 64
    assert check["details"]["removed"] is True
