# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""The endpoint contract: how the controller reaches a host's clinical services.

``hostvars[inventory_hostname] | clinical_endpoint`` derives, once and in one place, the address,
ports, AE titles, DICOM TLS and REST access of a host from its inventory variables. Every role that
talks to a clinical system (precheck, dicom_verify, lab_seed, the upgrade flow) uses this one
derivation. The inventory variables, their defaults and their meaning are documented in
docs/inventory.md; the defaults below are the ones written there.
"""

from __future__ import annotations

# Inventory variable -> default, per part of the contract. Order matters where one value falls back
# to another variable (first that is set wins).
DEFAULT_CALLING_AET = "CUVERIFY"
DEFAULT_TIMEOUT = 10
DEFAULT_PACS_AET = "ORTHANC"
DEFAULT_PACS_DICOM_PORT = 4242
DEFAULT_PACS_HTTP_PORT = 8042
DEFAULT_PACS_REST_USER = "cuadmin"
DEFAULT_WORKLIST_AET = "RISWL"
DEFAULT_WORKLIST_PORT = 1070
DEFAULT_HL7_PORT = 2575

_UNSET = object()


def _get(hostvars, name, default=_UNSET):
    """A variable of the host, or `default` when it is missing, None or an empty string."""
    try:
        if name in hostvars:
            value = hostvars[name]
            if value is not None and not (isinstance(value, str) and value == ""):
                return value
    except TypeError:
        pass
    return default


def _first(hostvars, names, default):
    for name in names:
        value = _get(hostvars, name)
        if value is not _UNSET:
            return value
    return default


def clinical_endpoint(hostvars, inventory_hostname: str | None = None) -> dict:
    """The endpoint contract of one host (see the module docstring and docs/inventory.md).

    ``hostvars`` is ``hostvars[inventory_hostname]`` (or any mapping of the host's variables).
    """
    if hostvars is None:
        hostvars = {}
    name = inventory_hostname or _get(hostvars, "inventory_hostname", "")
    host = str(_first(hostvars, ("endpoint_host", "ansible_host"), name))
    tls_enabled = bool(_first(hostvars, ("endpoint_dicom_tls", "pacs_server_dicom_tls_enabled"), False))
    tls = {"enabled": tls_enabled}
    for key in ("ca_cert", "client_cert", "client_key", "client_key_passphrase"):
        value = _get(hostvars, f"endpoint_dicom_tls_{key}")
        if value is not _UNSET:
            tls[key] = value
    rest_ca = _get(hostvars, "endpoint_rest_ca_path", None)
    rest_default = f"http://{host}:{int(_get(hostvars, 'pacs_server_http_port', DEFAULT_PACS_HTTP_PORT))}"
    endpoint = {
        "name": name,
        "host": host,
        "calling_aet": str(_get(hostvars, "verify_calling_aet", DEFAULT_CALLING_AET)),
        "timeout": float(_get(hostvars, "endpoint_timeout", DEFAULT_TIMEOUT)),
        "pacs": {
            "aet": str(_get(hostvars, "pacs_server_dicom_aet", DEFAULT_PACS_AET)),
            "dicom_port": int(_first(hostvars, ("endpoint_dicom_port", "pacs_server_dicom_port"),
                                     DEFAULT_PACS_DICOM_PORT)),
            "tls": tls,
            "rest_url": str(_get(hostvars, "endpoint_rest_url", rest_default)).rstrip("/"),
            "rest_user": str(_get(hostvars, "pacs_server_rest_user", DEFAULT_PACS_REST_USER)),
            "rest_password": str(_get(hostvars, "pacs_server_rest_password", "")),
            "rest_validate_certs": bool(_get(hostvars, "endpoint_rest_validate_certs", True)),
            "rest_ca_path": str(rest_ca) if rest_ca is not None else None,
        },
        "ris": {
            "worklist_aet": str(_get(hostvars, "ris_server_aetitle", DEFAULT_WORKLIST_AET)),
            "worklist_port": int(_first(hostvars, ("endpoint_worklist_port", "ris_server_worklist_port"),
                                        DEFAULT_WORKLIST_PORT)),
            "hl7_port": int(_first(hostvars, ("endpoint_hl7_port", "ris_server_hl7_port"), DEFAULT_HL7_PORT)),
        },
    }
    endpoint["args"] = endpoint_module_args(endpoint)
    return endpoint


def endpoint_module_args(endpoint) -> dict:
    """Ready-made module arguments for an endpoint, for block-level ``module_defaults``.

    - ``pacs_dicom``: dicom_echo / dicom_query / dicom_roundtrip against the PACS (with TLS options);
    - ``pacs_rest``: pacs_info against the PACS's REST API;
    - ``pacs_roundtrip``: ``pacs_dicom`` plus dicom_roundtrip's orthanc_* options (to delete what it stored);
    - ``worklist``: dicom_echo / dicom_query against the RIS's modality worklist SCP;
    - ``hl7``: hl7_check against the RIS's HL7 MLLP interface.
    """
    pacs, ris = endpoint["pacs"], endpoint["ris"]
    common = {"host": endpoint["host"], "calling_ae": endpoint["calling_aet"], "timeout": endpoint["timeout"]}
    pacs_dicom = {**common, "port": pacs["dicom_port"], "called_ae": pacs["aet"], **dicom_tls_args(pacs["tls"])}
    rest_ca = pacs.get("rest_ca_path")
    return {
        "pacs_dicom": pacs_dicom,
        "pacs_rest": {"url": pacs["rest_url"], "username": pacs["rest_user"], "password": pacs["rest_password"],
                      "validate_certs": pacs["rest_validate_certs"], "timeout": endpoint["timeout"],
                      **({"ca_path": rest_ca} if rest_ca else {})},
        "pacs_roundtrip": {**pacs_dicom, "orthanc_url": pacs["rest_url"], "orthanc_user": pacs["rest_user"],
                           "orthanc_password": pacs["rest_password"],
                           "orthanc_validate_certs": pacs["rest_validate_certs"],
                           **({"orthanc_ca_path": rest_ca} if rest_ca else {})},
        "worklist": {**common, "port": ris["worklist_port"], "called_ae": ris["worklist_aet"]},
        "hl7": {"host": endpoint["host"], "port": ris["hl7_port"], "timeout": endpoint["timeout"]},
    }


def dicom_tls_args(tls) -> dict:
    """The DICOM modules' TLS options (tls, tls_ca_cert, ...) for an endpoint's ``tls`` part."""
    tls = tls or {}
    if not tls.get("enabled"):
        return {}
    out = {"tls": True}
    for key in ("ca_cert", "client_cert", "client_key", "client_key_passphrase"):
        if tls.get(key):
            out[f"tls_{key}"] = tls[key]
    return out


def workflow_args(ris_endpoint, pacs_endpoint) -> dict:
    """radiology_workflow's arguments: the RIS of one endpoint feeding the PACS of another.

    The order goes to the RIS's HL7 port, the simulated modality takes it from the RIS's worklist
    and stores into the PACS (with the PACS's DICOM TLS), whose REST API removes it again.
    """
    ris, pacs = ris_endpoint["args"], pacs_endpoint["args"]
    dicom, rest = pacs["pacs_dicom"], pacs["pacs_rest"]
    args = {
        "hl7_host": ris["hl7"]["host"],
        "hl7_port": ris["hl7"]["port"],
        "worklist_host": ris["worklist"]["host"],
        "worklist_port": ris["worklist"]["port"],
        "worklist_ae": ris["worklist"]["called_ae"],
        "calling_ae": ris["worklist"]["calling_ae"],
        "station_aetitle": ris["worklist"]["calling_ae"],
        "timeout": ris_endpoint["timeout"],
        "pacs_host": dicom["host"],
        "pacs_port": dicom["port"],
        "pacs_ae": dicom["called_ae"],
        "pacs_url": rest["url"],
        "pacs_user": rest["username"],
        "pacs_password": rest["password"],
        "pacs_validate_certs": rest["validate_certs"],
    }
    if rest.get("ca_path"):
        args["pacs_ca_path"] = rest["ca_path"]
    for key, value in dicom.items():
        if key.startswith("tls"):
            args[f"pacs_{key}"] = value
    return args


class FilterModule:
    def filters(self):
        return {"clinical_endpoint": clinical_endpoint, "dicom_tls_args": dicom_tls_args,
                "workflow_args": workflow_args}
