#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pacs_info
short_description: Read version, database version, statistics and jobs from an Orthanc PACS
description:
  - Reads C(/system), C(/statistics) and C(/jobs?expand) from the Orthanc REST API and returns the
    product version, database schema version, DICOM AE title and port, study counts, disk use and
    the pending and running jobs.
  - Read-only; safe in check mode (it reads in check mode too).
  - Fails with a message that says what to fix on wrong credentials (HTTP 401), a refused
    connection, a timeout, a TLS error, or a server that does not answer like Orthanc.
  - "Runs on the controller; use C(delegate_to: localhost)."
version_added: "0.1.0"
author:
  - clinical-upgrade contributors
options:
  url:
    description: Base URL of the Orthanc REST API (scheme, host, port, optional path prefix).
    type: str
    default: http://localhost:8042
  username:
    description: User for HTTP basic authentication (Orthanc C(RegisteredUsers)).
    type: str
  password:
    description: Password for O(username).
    type: str
  validate_certs:
    description: Verify the server certificate for C(https) URLs. Turn off only for a lab.
    type: bool
    default: true
  ca_path:
    description:
      - PEM file of the CA that signed the server's certificate, for an C(https) O(url) signed by a
        site CA rather than a public one. Checked before any request.
    type: path
  timeout:
    description: Seconds to wait for each HTTP request.
    type: float
    default: 10.0
  include_jobs:
    description: Whether to read C(/jobs?expand) (can be slow on an archive with a long job history).
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    details: The module only reads, so it runs unchanged in check mode.
  diff_mode:
    support: none
notes:
  - Uses Ansible's C(open_url); no extra Python library is needed.
seealso:
  - name: Orthanc REST API
    description: The API this module reads.
    link: https://orthanc.uclouvain.be/api/
"""

EXAMPLES = r"""
- name: Read the PACS version before the upgrade
  pacs_info:
    url: "http://{{ ansible_host }}:8042"
    username: "{{ pacs_server_api_user }}"
    password: "{{ pacs_server_api_password }}"
  delegate_to: localhost
  register: __pacs_before

- name: Refuse to upgrade while jobs are running
  ansible.builtin.assert:
    that: __pacs_before.running_jobs == 0
    fail_msg: "{{ __pacs_before.running_jobs }} Orthanc jobs are running"

- name: Read only the version and statistics, over HTTPS with a lab certificate
  pacs_info:
    url: https://pacs1.lab:8043
    validate_certs: false
    include_jobs: false
  delegate_to: localhost
"""

RETURN = r"""
url:
  description: The base URL that was read (without credentials).
  returned: always
  type: str
  sample: http://localhost:8042
version:
  description: Orthanc version (C(/system) Version).
  returned: success
  type: str
  sample: 1.10.1
database_version:
  description: Database schema version (C(/system) DatabaseVersion).
  returned: success
  type: int
  sample: 6
api_version:
  description: REST API version (C(/system) ApiVersion); 0 when the server does not report it.
  returned: success
  type: int
  sample: 15
name:
  description: Server name (C(/system) Name).
  returned: success
  type: str
  sample: PACS1
dicom_aet:
  description: DICOM AE title of the server (C(/system) DicomAet).
  returned: success
  type: str
  sample: ORTHANC
dicom_port:
  description: DICOM port of the server (C(/system) DicomPort).
  returned: success
  type: int
  sample: 4242
system:
  description: The whole C(/system) answer.
  returned: success
  type: dict
  sample: {"Version": "1.10.1", "DatabaseVersion": 6, "DicomAet": "ORTHANC", "DicomPort": 4242}
statistics:
  description: Counts and disk use from C(/statistics).
  returned: success
  type: dict
  contains:
    patients:
      description: CountPatients.
      type: int
    studies:
      description: CountStudies.
      type: int
    series:
      description: CountSeries.
      type: int
    instances:
      description: CountInstances.
      type: int
    disk_size_mb:
      description: TotalDiskSizeMB.
      type: int
  sample: {"patients": 5, "studies": 10, "series": 20, "instances": 50, "disk_size_mb": 12}
jobs:
  description: Jobs that are pending, running, paused or retrying (finished jobs are left out).
  returned: success and O(include_jobs=true)
  type: list
  elements: dict
  contains:
    id:
      description: Job id.
      type: str
    type:
      description: Job type (for example C(DicomMoveScu)).
      type: str
    state:
      description: C(Pending), C(Running), C(Paused) or C(Retry).
      type: str
    progress:
      description: Progress in percent.
      type: int
  sample: [{"id": "5a1c...", "type": "DicomModalityStore", "state": "Running", "progress": 40}]
pending_jobs:
  description: Number of jobs in state Pending.
  returned: success and O(include_jobs=true)
  type: int
  sample: 0
running_jobs:
  description: Number of jobs in state Running.
  returned: success and O(include_jobs=true)
  type: int
  sample: 0
"""

from urllib.parse import urlsplit

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.orthanc_rest import (
    OrthancError,
    build_client,
    display_url,
    rest_argument_spec,
    rest_params_error,
)

ACTIVE_JOB_STATES = ("Pending", "Running", "Paused", "Retry")


class PacsInfoError(OrthancError):
    pass


def argument_spec():
    spec = rest_argument_spec()
    spec["include_jobs"] = {"type": "bool", "default": True}
    return spec


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def gather(client, include_jobs=True):
    system = client.get("/system")
    if not isinstance(system, dict) or "Version" not in system or "DatabaseVersion" not in system:
        raise OrthancError(
            f"{client.url}/system answered, but not like Orthanc (no Version and DatabaseVersion): check url"
        )
    stats = client.get("/statistics")
    if not isinstance(stats, dict) or "CountInstances" not in stats:
        raise OrthancError(f"{client.url}/statistics answered, but not like Orthanc (no CountInstances)")
    result = {
        "version": str(system.get("Version")),
        "database_version": _int(system.get("DatabaseVersion")),
        "api_version": _int(system.get("ApiVersion")),
        "name": str(system.get("Name") or ""),
        "dicom_aet": str(system.get("DicomAet") or ""),
        "dicom_port": _int(system.get("DicomPort")),
        "system": system,
        "statistics": {
            "patients": _int(stats.get("CountPatients")),
            "studies": _int(stats.get("CountStudies")),
            "series": _int(stats.get("CountSeries")),
            "instances": _int(stats.get("CountInstances")),
            "disk_size_mb": _int(stats.get("TotalDiskSizeMB")),
        },
    }
    if include_jobs:
        jobs = client.get("/jobs?expand")
        if not isinstance(jobs, list):
            raise OrthancError(f"{client.url}/jobs?expand answered, but not with a list of jobs")
        active = []
        for job in jobs:
            if not isinstance(job, dict) or job.get("State") not in ACTIVE_JOB_STATES:
                continue
            active.append(
                {
                    "id": str(job.get("ID", "")),
                    "type": str(job.get("Type", "")),
                    "state": job.get("State"),
                    "progress": _int(job.get("Progress")),
                }
            )
        result["jobs"] = active
        result["pending_jobs"] = sum(1 for j in active if j["state"] == "Pending")
        result["running_jobs"] = sum(1 for j in active if j["state"] == "Running")
    return result


def run_module(module):
    params = module.params
    result = {"changed": False, "url": display_url(params.get("url"))}
    try:  # a password put in the url must not come back in the invocation echo
        url_password = urlsplit(params.get("url") or "").password
    except ValueError:
        url_password = None
    if url_password:
        module.no_log_values.add(url_password)
    error = rest_params_error(params)
    if error:
        module.fail_json(msg=error, **result)
    try:
        client = build_client(params)
        result["url"] = client.url
        result.update(gather(client, params["include_jobs"]))
    except OrthancError as exc:
        module.fail_json(msg=str(exc), **result)
    module.exit_json(**result)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    run_module(module)


if __name__ == "__main__":
    main()
