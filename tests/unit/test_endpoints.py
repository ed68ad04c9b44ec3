"""filter_plugins/endpoints.py: the one endpoint contract (docs/inventory.md)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "filter_plugins"))

from endpoints import FilterModule, clinical_endpoint, dicom_tls_args, workflow_args  # noqa: E402


def test_defaults_follow_the_documented_contract():
    ep = clinical_endpoint({}, "pacs9")
    assert ep["host"] == "pacs9"
    assert ep["calling_aet"] == "CUVERIFY"
    assert ep["timeout"] == 10.0
    assert ep["pacs"] == {"aet": "ORTHANC", "dicom_port": 4242, "tls": {"enabled": False},
                          "rest_url": "http://pacs9:8042", "rest_user": "cuadmin", "rest_password": "",
                          "rest_validate_certs": True, "rest_ca_path": None}
    assert ep["ris"] == {"worklist_aet": "RISWL", "worklist_port": 1070, "hl7_port": 2575}


def test_endpoint_variables_win_over_the_service_ports_and_ansible_host():
    hv = {"ansible_host": "10.0.0.5", "endpoint_host": "127.0.0.1", "endpoint_dicom_port": "14242",
          "pacs_server_dicom_port": 4242, "endpoint_rest_url": "https://pacs.example.org:8443/",
          "pacs_server_dicom_aet": "PACS1", "verify_calling_aet": "CUV2", "pacs_server_rest_password": "pw",
          "endpoint_worklist_port": 11070, "ris_server_worklist_port": 1070, "endpoint_hl7_port": 12575,
          "ris_server_aetitle": "RISWL2", "endpoint_timeout": 3}
    ep = clinical_endpoint(hv, "pacs1")
    assert ep["host"] == "127.0.0.1"
    assert ep["pacs"]["dicom_port"] == 14242
    assert ep["pacs"]["rest_url"] == "https://pacs.example.org:8443"
    assert ep["pacs"]["aet"] == "PACS1" and ep["calling_aet"] == "CUV2"
    assert ep["ris"] == {"worklist_aet": "RISWL2", "worklist_port": 11070, "hl7_port": 12575}
    assert ep["timeout"] == 3.0


def test_service_ports_and_ansible_host_are_the_fallbacks():
    ep = clinical_endpoint({"ansible_host": "192.0.2.10", "pacs_server_dicom_port": 104,
                            "pacs_server_http_port": 8080, "ris_server_hl7_port": 2576}, "pacs1")
    assert ep["host"] == "192.0.2.10"
    assert ep["pacs"]["dicom_port"] == 104
    assert ep["pacs"]["rest_url"] == "http://192.0.2.10:8080"
    assert ep["ris"]["hl7_port"] == 2576


@pytest.mark.parametrize("empty", [None, ""])
def test_empty_values_count_as_unset(empty):
    ep = clinical_endpoint({"endpoint_host": empty, "ansible_host": "h2", "endpoint_dicom_port": empty}, "x")
    assert ep["host"] == "h2"
    assert ep["pacs"]["dicom_port"] == 4242


def test_module_arguments_carry_the_contract_to_each_module():
    ep = clinical_endpoint({"endpoint_host": "127.0.0.1", "endpoint_dicom_port": 14242,
                            "pacs_server_dicom_aet": "PACS1",
                            "endpoint_rest_url": "http://127.0.0.1:18042", "pacs_server_rest_password": "pw",
                            "endpoint_worklist_port": 11070, "endpoint_hl7_port": 12575}, "pacs1")
    args = ep["args"]
    assert args["pacs_dicom"] == {"host": "127.0.0.1", "port": 14242, "called_ae": "PACS1", "calling_ae": "CUVERIFY",
                                  "timeout": 10.0}
    assert args["pacs_rest"] == {"url": "http://127.0.0.1:18042", "username": "cuadmin", "password": "pw",
                                 "validate_certs": True, "timeout": 10.0}
    assert args["pacs_roundtrip"]["orthanc_url"] == "http://127.0.0.1:18042"
    assert args["pacs_roundtrip"]["orthanc_password"] == "pw"
    assert args["worklist"] == {"host": "127.0.0.1", "port": 11070, "called_ae": "RISWL", "calling_ae": "CUVERIFY",
                                "timeout": 10.0}
    assert args["hl7"] == {"host": "127.0.0.1", "port": 12575, "timeout": 10.0}


def test_dicom_tls_from_the_inventory():
    ep = clinical_endpoint({"endpoint_dicom_tls": True, "endpoint_dicom_tls_ca_cert": "/etc/cu/ca.pem"}, "p")
    assert ep["pacs"]["tls"] == {"enabled": True, "ca_cert": "/etc/cu/ca.pem"}
    assert ep["args"]["pacs_dicom"]["tls"] is True
    assert ep["args"]["pacs_dicom"]["tls_ca_cert"] == "/etc/cu/ca.pem"
    assert dicom_tls_args({"enabled": False, "ca_cert": "/x"}) == {}


def test_the_module_arguments_are_options_the_modules_accept():
    """Every key built for a module is one of that module's documented options (ansible-doc truth)."""
    import yaml

    root = Path(__file__).resolve().parents[2]

    def options(module):
        text = (root / "plugins" / "modules" / f"{module}.py").read_text()
        doc = text.split('DOCUMENTATION = r"""', 1)[1].split('"""', 1)[0]
        opts = set((yaml.safe_load(doc).get("options") or {}).keys())
        for fragment in yaml.safe_load(doc).get("extends_documentation_fragment") or []:
            frag = (root / "plugins" / "doc_fragments" / f"{fragment}.py").read_text()
            frag_doc = frag.split('DOCUMENTATION = r"""', 1)[1].split('"""', 1)[0]
            opts |= set(yaml.safe_load(frag_doc)["options"].keys())
        return opts

    ep = clinical_endpoint({"endpoint_dicom_tls": True, "endpoint_dicom_tls_ca_cert": "/ca",
                            "endpoint_dicom_tls_client_cert": "/c", "endpoint_dicom_tls_client_key": "/k",
                            "endpoint_dicom_tls_client_key_passphrase": "pw", "endpoint_rest_ca_path": "/site-ca"},
                           "p")
    assert ep["args"]["pacs_rest"]["ca_path"] == ep["args"]["pacs_roundtrip"]["orthanc_ca_path"] == "/site-ca"
    assert ep["args"]["pacs_dicom"]["tls_client_key_passphrase"] == "pw"
    wf = workflow_args(clinical_endpoint({"endpoint_host": "10.0.0.2", "endpoint_hl7_port": 2575,
                                          "endpoint_worklist_port": 104, "ris_server_aetitle": "RISWL"}, "ris"), ep)
    assert not set(wf) - options("radiology_workflow"), set(wf) - options("radiology_workflow")
    assert wf["hl7_host"] == wf["worklist_host"] == "10.0.0.2" and wf["worklist_ae"] == "RISWL"
    assert wf["pacs_host"] == "p" and wf["pacs_tls"] is True and wf["pacs_tls_ca_cert"] == "/ca"
    assert wf["pacs_ca_path"] == "/site-ca" and wf["station_aetitle"] == wf["calling_ae"] == "CUVERIFY"
    for module, key in [("pacs_archive", "pacs_rest"), ("dicom_echo", "pacs_dicom"), ("dicom_query", "pacs_dicom"),
                        ("dicom_roundtrip", "pacs_roundtrip"), ("pacs_info", "pacs_rest"),
                        ("dicom_echo", "worklist"), ("hl7_check", "hl7")]:
        unknown = set(ep["args"][key]) - options(module)
        assert not unknown, f"{module} has no option(s) {unknown} (args {key})"


def test_filter_is_registered():
    assert FilterModule().filters()["clinical_endpoint"] is clinical_endpoint
