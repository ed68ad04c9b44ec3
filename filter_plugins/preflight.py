# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""Inventory-wide preflight checks (roles/preflight, playbooks/preflight.yml).

``hostvars | preflight_problems(groups, check)`` returns the problems of one check over the whole
inventory, each naming the host, the variable and the fix. No host is contacted: only inventory
variables are read. Checks: required, types, ae_titles, catalogue, targets.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from clinical import ae_title_error  # noqa: E402
from versions import catalogue_problems, compare_debian, upgrade_path_error, upstream_version  # noqa: E402

_UNSET = object()

# Per inventory group: variables every host of that group must have.
REQUIRED = {
    "pacs": ("pacs_server_target_version", "pacs_server_rest_password", "clinical_upgrade_evidence_dir"),
}
# Per group: at least one of these must be set (how the controller reaches the host).
REACH = {"pacs": ("endpoint_host", "ansible_host"), "ris": ("endpoint_host", "ansible_host")}
AE_VARIABLES = ("pacs_server_dicom_aet", "verify_calling_aet", "ris_server_aetitle")
PORT_VARIABLES = ("endpoint_dicom_port", "endpoint_worklist_port", "endpoint_hl7_port")
# Controller paths that must be absolute (the evidence of every run goes there).
ABSOLUTE_PATH_VARIABLES = ("clinical_upgrade_evidence_dir",)
# Files on the controller that the health check and the upgrade hand to the modules: TLS material
# of the PACS's DICOM port and the CA of its https REST API (docs/inventory.md).
CONTROLLER_FILE_VARIABLES = (
    "endpoint_dicom_tls_ca_cert",
    "endpoint_dicom_tls_client_cert",
    "endpoint_dicom_tls_client_key",
    "endpoint_rest_ca_path",
)
BOOL_VARIABLES = ("pacs_server_allow_downgrade", "ris_server_allow_downgrade", "endpoint_dicom_tls",
                  "endpoint_rest_validate_certs")
VERSION_VARIABLES = ("pacs_server_target_version", "pacs_server_installed_version", "ris_server_target_version",
                     "ris_server_version", "workstation_linux_target_version", "workstation_windows_target_version")
# Per group: the product of its hosts (variable, default) and its upgrade variables. A RIS target is
# optional (a site may upgrade only its PACS); when set, it is checked like the PACS's.
PRODUCTS = {
    "pacs": {"product": ("pacs_server_product", "orthanc"), "target": "pacs_server_target_version",
             "allow_downgrade": "pacs_server_allow_downgrade", "installed": ("pacs_server_installed_version",
                                                                             "pacs_server_package_version")},
    "ris": {"product": ("ris_server_product", "cu-ris"), "target": "ris_server_target_version",
            "allow_downgrade": "ris_server_allow_downgrade", "installed": ()},
    # The Linux workstations' viewer (playbooks/patch_workstations.yml).
    "workstations_linux": {"product": ("workstation_linux_product", "dcmtk"),
                           "target": "workstation_linux_target_version",
                           "allow_downgrade": "workstation_linux_allow_downgrade", "installed": ()},
    # The Windows workstations' viewer (the second play of playbooks/patch_workstations.yml); the
    # product has no default: the site names its viewer's catalogue entry (an MSI).
    "workstations_windows": {"product": ("workstation_windows_product", ""),
                             "target": "workstation_windows_target_version",
                             "allow_downgrade": "workstation_windows_allow_downgrade", "installed": ()},
}


def _type(value) -> str:
    """The plain type name (Ansible 2.19 tags values with subclasses such as _AnsibleTaggedFloat)."""
    for base in (bool, int, float, str, list, dict):
        if isinstance(value, base):
            return base.__name__
    return "null" if value is None else type(value).__name__


def _get(hostvars, host, name):
    """(value, error): the templated variable, _UNSET when missing, or an error text."""
    try:
        hv = hostvars[host]
        if name not in hv:
            return _UNSET, ""
        return hv[name], ""
    except Exception as exc:  # undefined nested variable, vault not opened, ...  # noqa: BLE001
        return _UNSET, str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _hosts(groups, group):
    return sorted(groups.get(group) or []) if isinstance(groups, dict) else []


def _product(hostvars, host, group="pacs"):
    name, default = PRODUCTS[group]["product"]
    value, _ = _get(hostvars, host, name)
    return value if isinstance(value, str) and value else default


def _required(hostvars, groups):
    problems = []
    for group, names in REQUIRED.items():
        for host in _hosts(groups, group):
            for name in names:
                value, error = _get(hostvars, host, name)
                if error:
                    problems.append(
                        f"{host}: {name} cannot be read ({error}); define what it refers to (vault opened?)"
                    )
                elif value is _UNSET or value is None or (isinstance(value, str) and not value.strip()):
                    problems.append(
                        f"{host}: {name} is not set; the {group} group needs it "
                        f"(host_vars/{host}.yml or group_vars/{group}.yml)"
                    )
    for group, names in REACH.items():
        for host in _hosts(groups, group):
            if all(_get(hostvars, host, n)[0] in (_UNSET, None, "") for n in names):
                problems.append(
                    f"{host}: neither endpoint_host nor ansible_host is set; set endpoint_host to "
                    "the address the controller reaches it at"
                )
    return problems


def _types(hostvars, groups):
    problems = []
    for host in _hosts(groups, "all"):
        for name in VERSION_VARIABLES:
            value, _ = _get(hostvars, host, name)
            if value is not _UNSET and value is not None and not isinstance(value, str):
                problems.append(
                    f'{host}: {name} is a {_type(value)} ({value!r}); quote it ("{value}") '
                    "so YAML keeps it a version string"
                )
        for name in PORT_VARIABLES:
            value, _ = _get(hostvars, host, name)
            if value is _UNSET or value is None:
                continue
            number = (
                int(value)
                if (isinstance(value, int) and not isinstance(value, bool))
                or (isinstance(value, str) and value.isdigit())
                else None
            )
            if number is None or not 1 <= number <= 65535:
                problems.append(f"{host}: {name} must be a port number from 1 to 65535, got {value!r}")
        for name in ABSOLUTE_PATH_VARIABLES:
            value, _ = _get(hostvars, host, name)
            if value is not _UNSET and value is not None and not (isinstance(value, str) and value.startswith("/")):
                problems.append(f"{host}: {name} must be an absolute directory on the controller "
                                f"(for example /var/lib/clinical-upgrade/evidence), got {value!r}")
        for name in CONTROLLER_FILE_VARIABLES:
            value, _ = _get(hostvars, host, name)
            if value is _UNSET or value is None or value == "":
                continue
            if not isinstance(value, str) or not os.path.isfile(value):
                problems.append(f"{host}: {name} must be a PEM file on the controller, got {value!r}, which is "
                                "not a file there")
        for name in BOOL_VARIABLES:
            value, _ = _get(hostvars, host, name)
            if value is not _UNSET and value is not None and not isinstance(value, bool):
                problems.append(f"{host}: {name} must be true or false, got {value!r} ({_type(value)})")
    return problems


def _ae_titles(hostvars, groups):
    problems = []
    for host in _hosts(groups, "all"):
        for name in AE_VARIABLES:
            value, _ = _get(hostvars, host, name)
            if value is _UNSET:
                continue
            error = ae_title_error(value)
            if error:
                problems.append(f"{host}: {name}: {error}")
        modalities, _ = _get(hostvars, host, "pacs_server_modalities")
        if isinstance(modalities, list):
            for i, modality in enumerate(modalities):
                aet = modality.get("aet") if isinstance(modality, dict) else None
                error = ae_title_error(aet)
                if error:
                    problems.append(f"{host}: pacs_server_modalities[{i}].aet: {error}")
    return problems


def _catalogue(hostvars, groups):
    by_message: dict[str, list[str]] = {}
    for group in PRODUCTS:
        for host in _hosts(groups, group):
            if group != "pacs" and _get(hostvars, host, PRODUCTS[group]["target"])[0] in (_UNSET, None, ""):
                continue  # no upgrade of this product planned on the host
            catalogue, error = _get(hostvars, host, "release_catalogue")
            if error:
                messages = [f"release_catalogue cannot be read ({error})"]
            elif not _product(hostvars, host, group):
                messages = [f"{PRODUCTS[group]['product'][0]} is not set; name the viewer's catalogue product "
                            f"(group_vars/{group}.yml, see docs/workstations.md)"]
            else:
                messages = catalogue_problems(None if catalogue is _UNSET else catalogue,
                                              _product(hostvars, host, group))
            for message in messages:
                by_message.setdefault(message, []).append(host)
    return [f"{', '.join(hosts)}: {message}" for message, hosts in by_message.items()]


def _installed(hostvars, host, names):
    for name in names:
        value, _ = _get(hostvars, host, name)
        if isinstance(value, str) and value:
            return value
    return ""


def _targets(hostvars, groups):
    problems = []
    for group, spec in PRODUCTS.items():
        for host in _hosts(groups, group):
            catalogue, _ = _get(hostvars, host, "release_catalogue")
            target, _ = _get(hostvars, host, spec["target"])
            if not isinstance(catalogue, dict) or not isinstance(target, str) or not target:
                continue  # reported by the catalogue, required and types checks
            product = _product(hostvars, host, group)
            versions = catalogue.get(product)
            if not isinstance(versions, dict):
                continue
            allow, _ = _get(hostvars, host, spec["allow_downgrade"])
            installed = _installed(hostvars, host, spec["installed"])
            if target not in versions:
                known = ", ".join(sorted(map(str, versions)))
                problems.append(
                    f"{host}: {spec['target']} {target} is not in release_catalogue.{product} (known: {known}); "
                    f"choose a catalogued version or add {target} to the catalogue (docs/catalogue.md)"
                )
                continue
            if not installed:
                continue
            try:
                current = upstream_version(installed)
                compare_debian(current, target)
            except Exception as exc:  # noqa: BLE001
                problems.append(
                    f"{host}: the installed version declared in the inventory ({installed!r}) is not a version: {exc}"
                )
                continue
            error = upgrade_path_error(catalogue, product, current, target, allow is True)
            if error:
                problems.append(f"{host}: {error}")
    return problems


CHECKS = {
    "required": _required,
    "types": _types,
    "ae_titles": _ae_titles,
    "catalogue": _catalogue,
    "targets": _targets,
}


def preflight_problems(hostvars, groups, check) -> list[str]:
    """Problems of one preflight check over the inventory (see CHECKS)."""
    if check not in CHECKS:
        raise ValueError(f"preflight_problems: unknown check {check!r}; use one of {', '.join(CHECKS)}")
    return CHECKS[check](hostvars, groups)


class FilterModule:
    def filters(self):
        return {"preflight_problems": preflight_problems}
