"""The lab PACS after converge: Orthanc from Debian, held, configured by the project, answering."""

import json

testinfra_hosts = ["ansible://pacs"]


def test_orthanc_package_installed_and_held(host):
    pkg = host.package("orthanc")
    assert pkg.is_installed
    assert pkg.version.startswith("1.10.1")
    held = host.check_output("apt-mark showhold")
    assert "orthanc" in held.split()


def test_orthanc_service_running_and_enabled(host):
    svc = host.service("orthanc")
    assert svc.is_running
    assert svc.is_enabled


def test_orthanc_listens_on_dicom_and_rest_ports(host):
    assert host.socket("tcp://0.0.0.0:4242").is_listening
    assert host.socket("tcp://0.0.0.0:8042").is_listening


def test_credentials_readable_only_by_root_and_orthanc(host):
    creds = host.file("/etc/orthanc/credentials.json")
    assert creds.user == "root"
    assert creds.group == "orthanc"
    assert creds.mode == 0o640


def test_configuration_is_the_projects_template(host):
    conf = host.file("/etc/orthanc/orthanc.json").content_string
    assert "clinical-upgrade pacs_server role" in conf
    body = "\n".join(line for line in conf.splitlines() if not line.lstrip().startswith("//"))
    data = json.loads(body)
    assert data["DicomAet"] == "PACS1"
    assert data["AuthenticationEnabled"] is True
    assert data["DicomCheckCalledAet"] is True
    assert data["DicomAlwaysAllowFind"] is False
    assert "RegisteredUsers" not in data


def test_rest_refuses_anonymous_access(host):
    code = host.check_output("python3 -c \"import urllib.request as u,urllib.error as e\n"
                             "try:\n u.urlopen('http://127.0.0.1:8042/system')\n print(200)\n"
                             "except e.HTTPError as x:\n print(x.code)\"")
    assert code.strip() == "401"
