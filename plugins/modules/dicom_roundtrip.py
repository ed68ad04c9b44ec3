#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dicom_roundtrip
short_description: Store a synthetic instance in a PACS, find it, retrieve it, compare it and delete it
description:
  - Proves the archive works end to end, in six steps, each reported with status and timing
    in RV(steps), in this order.
  - C(echo) C-ECHO the peer.
  - C(store) C-STORE a freshly generated synthetic instance (fresh UIDs, patient
    C(SYNTH^PATIENT^9999) / C(SYN-999999); never real patient data).
  - C(find) C-FIND it at IMAGE level (Study Root) by its UIDs; exactly one match expected.
  - C(retrieve) C-GET it. If the peer refuses C-GET (O(retrieve_method=auto)), C-MOVE it to
    O(move_destination_ae), a temporary storage SCP the module starts on
    O(move_listen_address):O(move_listen_port) for the duration of the move; the peer must know
    that AE title at that address and port.
  - C(compare) compare the SOP Instance UID, the sha256 of the pixel data and the sha256 of the
    dataset (file meta and private tags left out) with what was sent.
  - C(delete) remove it through the Orthanc REST API (C(POST /tools/lookup), then
    C(DELETE /instances/{id})) when O(orthanc_url) is set and O(cleanup) is true; otherwise the
    instance stays on the peer and the step is C(skipped).
  - Fails on the first failing step among echo, store, find, retrieve and compare (after trying the
    delete), with C(failed_step), C(reason) and a message naming what to fix.
  - A delete that fails (wrong O(orthanc_password), an C(https) URL whose CA is not trusted...) fails
    the module too, with C(failed_step=delete), C(reason=cleanup_failed), the instance's UID and how
    to remove it, and C(changed=true). A synthetic patient left in a clinical archive is a finding,
    not a pass. Every option, O(orthanc_url) included, is checked before the C-STORE.
  - In check mode only the echo runs; the other steps are reported as C(skipped).
  - "Runs on the controller; use C(delegate_to: localhost)."
version_added: "0.1.0"
author:
  - clinical-upgrade contributors
extends_documentation_fragment:
  - dicom_connection
options:
  retrieve_method:
    description:
      - C(get) C-GET only; C(move) C-MOVE only; C(auto) C-GET, falling back to C-MOVE when the peer
        refuses C-GET and O(move_destination_ae) is set.
    type: str
    choices: [auto, get, move]
    default: auto
  move_destination_ae:
    description: AE title of the temporary storage SCP for C-MOVE (the peer must know it).
    type: str
  move_listen_address:
    description: Address the temporary storage SCP listens on.
    type: str
    default: 0.0.0.0
  move_listen_port:
    description:
      - Port the temporary storage SCP listens on; it must match the peer's entry for
        O(move_destination_ae). C(0) picks a free port (useful only with peers that learn it otherwise).
    type: int
    default: 0
  cleanup:
    description: Delete the instance from the peer at the end (needs O(orthanc_url)).
    type: bool
    default: true
  orthanc_url:
    description: Base URL of the Orthanc REST API used to delete the instance, for example C(http://pacs1:8042).
    type: str
  orthanc_user:
    description: User for HTTP basic authentication to O(orthanc_url).
    type: str
  orthanc_password:
    description: Password of O(orthanc_user).
    type: str
  orthanc_validate_certs:
    description: Verify the certificate of an C(https) O(orthanc_url).
    type: bool
    default: true
  orthanc_ca_path:
    description:
      - PEM file of the CA that signed the certificate of an C(https) O(orthanc_url), when a site CA
        signed it rather than a public one.
    type: path
  size_px:
    description: Rows and columns of the synthetic image (a 16-bit greyscale image).
    type: int
    default: 16
attributes:
  check_mode:
    support: full
    details: In check mode only the C-ECHO runs; nothing is stored.
  diff_mode:
    support: none
requirements:
  - pynetdicom >= 3.0, < 3.1
  - pydicom >= 3.0, < 3.1
notes:
  - Orthanc must allow C-FIND and C-GET (or C-MOVE) for O(calling_ae), for example by listing it in
    C(DicomModalities); C(DicomAlwaysAllowFind/Get/Move) default to false.
  - The synthetic instance is Secondary Capture Image Storage with C(PatientIdentityRemoved=YES).
seealso:
  - module: dicom_echo
  - module: dicom_query
"""

EXAMPLES = r"""
- name: Round-trip a synthetic instance through the upgraded PACS
  dicom_roundtrip:
    host: "{{ ansible_host }}"
    port: 4242
    called_ae: ORTHANC
    calling_ae: CLINUPG
    orthanc_url: "http://{{ ansible_host }}:8042"
    orthanc_user: "{{ pacs_server_api_user }}"
    orthanc_password: "{{ pacs_server_api_password }}"
  delegate_to: localhost
  register: __dicom_verify_roundtrip

- name: Round trip by C-MOVE to the controller (registered on the PACS as CLINUPG-MOVE:11113)
  dicom_roundtrip:
    host: pacs1.lab
    port: 4242
    called_ae: ORTHANC
    retrieve_method: move
    move_destination_ae: CLINUPG-MOVE
    move_listen_port: 11113
    cleanup: false
  delegate_to: localhost
"""

RETURN = r"""
steps:
  description:
    - One entry per step (C(echo), C(store), C(find), C(retrieve), C(compare), C(delete)) with
      C(status) (C(ok), C(failed) or C(skipped)), C(ms) and C(msg).
  returned: always
  type: dict
  sample:
    echo: {status: ok, ms: 4.1, msg: C-ECHO status 0x0000}
    store: {status: ok, ms: 7.3, msg: C-STORE status 0x0000}
    find: {status: ok, ms: 6.0, msg: 1 match}
    retrieve: {status: ok, ms: 9.8, msg: C-GET status 0x0000, 1 instance}
    compare: {status: ok, ms: 0.4, msg: SOP Instance UID, pixel data and dataset match}
    delete: {status: ok, ms: 12.0, msg: deleted Orthanc instance 5b1a...}
sop_instance_uid:
  description: SOP Instance UID of the synthetic instance (synthetic, not patient data).
  returned: always
  type: str
  sample: 2.25.178302449157163914049452839178209442711
study_instance_uid:
  description: Study Instance UID of the synthetic instance.
  returned: always
  type: str
  sample: 2.25.302448395043785203298458395123923954201
retrieve_method:
  description: How the instance was retrieved (C(get) or C(move)); null when not retrieved.
  returned: always
  type: str
  sample: get
match:
  description: Whether the retrieved instance equals the one sent.
  returned: always
  type: bool
  sample: true
sent_sha256:
  description: sha256 of the dataset sent (file meta and private tags left out).
  returned: always
  type: str
  sample: 3f0a1c...
received_sha256:
  description: sha256 of the dataset retrieved; null when nothing was retrieved.
  returned: always
  type: str
  sample: 3f0a1c...
pixel_sha256:
  description: sha256 of the pixel data sent.
  returned: always
  type: str
  sample: 9b2e44...
orthanc_id:
  description: Orthanc identifier of the stored instance, when O(orthanc_url) was used.
  returned: always
  type: str
  sample: 5b1a2c3d-9e8f7a6b-1c2d3e4f-5a6b7c8d-9e0f1a2b
deleted:
  description: Whether the instance was removed from the peer.
  returned: always
  type: bool
  sample: true
latency_ms:
  description: Milliseconds for all steps together.
  returned: always
  type: float
  sample: 48.2
failed_step:
  description: The first step that failed.
  returned: failure
  type: str
  sample: retrieve
reason:
  description:
    - Why the failed step failed (see M(dicom_echo) for the reasons, plus C(mismatch), C(not_found),
      and C(cleanup_failed) when the synthetic instance could not be deleted).
  returned: failure
  type: str
  sample: dimse_failure
"""

import time
from urllib.parse import quote

from ansible.module_utils.arg_types import whole_number
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.dicom_client import (
    DicomError,
    DicomValidationError,
    build_client,
    dicom_argument_spec,
    fail_if_missing_libraries,
    validate_ae_title,
    validate_port,
)
from ansible.module_utils.orthanc_rest import OrthancClient, OrthancError, ca_path_error, normalise_url

try:
    from ansible.module_utils.dicom_synth import dataset_digest, make_canary_instance, pixel_digest
    from pydicom.dataset import Dataset
except ImportError:  # handled by fail_if_missing_libraries
    Dataset = None

STEPS = ("echo", "store", "find", "retrieve", "compare", "delete")
REST_OPTION_NAMES = {"url": "orthanc_url", "username": "orthanc_user", "password": "orthanc_password",
                     "validate_certs": "orthanc_validate_certs", "ca_path": "orthanc_ca_path"}


class StepFailed(Exception):
    def __init__(self, step: str, reason: str, msg: str):
        super().__init__(msg)
        self.step, self.reason, self.msg = step, reason, msg


class Roundtrip:
    def __init__(self, module, client):
        self.module = module
        self.params = module.params
        self.client = client
        self.steps = {name: {"status": "skipped", "ms": 0.0, "msg": "not run"} for name in STEPS}
        self.result = {
            "sop_instance_uid": None,
            "study_instance_uid": None,
            "retrieve_method": None,
            "match": False,
            "sent_sha256": None,
            "received_sha256": None,
            "pixel_sha256": None,
            "orthanc_id": None,
            "deleted": False,
        }
        self.stored = False

    def run_step(self, name, func):
        start = time.perf_counter()
        try:
            msg = func()
        except DicomError as exc:
            self.steps[name] = {"status": "failed", "ms": self._ms(start), "msg": exc.msg}
            raise StepFailed(name, exc.reason, exc.msg) from None
        except StepFailed as exc:
            self.steps[name] = {"status": "failed", "ms": self._ms(start), "msg": exc.msg}
            raise
        self.steps[name] = {"status": "ok", "ms": self._ms(start), "msg": msg}

    @staticmethod
    def _ms(start):
        return round((time.perf_counter() - start) * 1000.0, 3)

    # ------------------------------------------------------------ steps
    def echo(self):
        rsp = self.client.echo()
        return f"C-ECHO status {rsp['status_hex']}"

    def store(self):
        rsp = self.client.store(self.ds)
        self.stored = True
        return f"C-STORE status 0x{rsp['status']:04X}"

    def _image_query(self):
        q = Dataset()
        q.QueryRetrieveLevel = "IMAGE"
        q.StudyInstanceUID = self.ds.StudyInstanceUID
        q.SeriesInstanceUID = self.ds.SeriesInstanceUID
        q.SOPInstanceUID = self.ds.SOPInstanceUID
        return q

    def find(self):
        rsp = self.client.find(self._image_query(), "study_root", max_results=2)
        if rsp["count"] != 1:
            raise StepFailed(
                "find",
                "not_found",
                f"C-FIND at IMAGE level found {rsp['count']} matches for the stored instance, expected 1 "
                "(does the peer index what it stores? is C-FIND allowed for calling_ae?)",
            )
        return "1 match"

    def retrieve(self):
        method = self.params["retrieve_method"]
        sop_classes = [str(self.ds.SOPClassUID)]
        if method in ("auto", "get"):
            try:
                rsp = self.client.get(self._image_query(), sop_classes)
                self.result["retrieve_method"] = "get"
                self.received = rsp["datasets"][0]
                return f"C-GET status 0x{rsp['status']:04X}, {len(rsp['datasets'])} instance(s)"
            except DicomError as exc:
                if method == "get" or exc.reason not in ("no_accepted_context", "dimse_failure", "aborted"):
                    raise
                if not self.params["move_destination_ae"]:
                    raise StepFailed(
                        "retrieve",
                        exc.reason,
                        f"{exc.msg}; set move_destination_ae (and move_listen_port) to fall back to C-MOVE",
                    ) from None
                self.get_refusal = exc.msg
        rsp = self.client.move(
            self._image_query(),
            sop_classes,
            self.params["move_destination_ae"],
            listen_address=self.params["move_listen_address"],
            listen_port=self.params["move_listen_port"],
        )
        self.result["retrieve_method"] = "move"
        self.received = rsp["datasets"][0]
        prefix = f"C-GET refused ({self.get_refusal}); " if getattr(self, "get_refusal", None) else ""
        return f"{prefix}C-MOVE status 0x{rsp['status']:04X}, {len(rsp['datasets'])} instance(s)"

    def compare(self):
        received = self.received
        self.result["received_sha256"] = dataset_digest(received)
        problems = []
        if str(received.get("SOPInstanceUID", "")) != str(self.ds.SOPInstanceUID):
            problems.append("SOP Instance UID differs")
        if pixel_digest(received) != self.result["pixel_sha256"]:
            problems.append("pixel data differs")
        if self.result["received_sha256"] != self.result["sent_sha256"]:
            changed = self._changed_keywords(received)
            problems.append("dataset differs" + (f" ({', '.join(changed[:10])})" if changed else ""))
        if problems:
            raise StepFailed(
                "compare", "mismatch", "retrieved instance does not match what was sent: " + "; ".join(problems)
            )
        self.result["match"] = True
        return "SOP Instance UID, pixel data and dataset match"

    def _changed_keywords(self, received):
        changed = []
        for elem in self.ds:
            other = received.get(elem.tag)
            if other is None or other.value != elem.value:
                changed.append(elem.keyword or str(elem.tag))
        return changed

    def delete(self):
        rest = OrthancClient(
            normalise_url(self.params["orthanc_url"]),
            self.params["orthanc_user"],
            self.params["orthanc_password"],
            self.params["orthanc_validate_certs"],
            self.params["timeout"],
            self.params["orthanc_ca_path"],
            option_names=REST_OPTION_NAMES,
        )
        try:
            found = rest.post("/tools/lookup", str(self.ds.SOPInstanceUID).encode())
            ids = [item.get("ID") for item in found or [] if isinstance(item, dict) and item.get("Type") == "Instance"]
            if not ids:
                raise StepFailed("delete", "not_found", "Orthanc /tools/lookup does not know the stored instance")
            self.result["orthanc_id"] = ids[0]
            rest.delete(f"/instances/{quote(ids[0], safe='')}")
        except OrthancError as exc:
            raise StepFailed("delete", "cleanup_failed", str(exc)) from None
        self.result["deleted"] = True
        return f"deleted Orthanc instance {ids[0]}"

    # ------------------------------------------------------------ driver
    def run(self):
        start = time.perf_counter()
        self.ds = make_canary_instance(size_px=self.params["size_px"])
        self.result["sop_instance_uid"] = str(self.ds.SOPInstanceUID)
        self.result["study_instance_uid"] = str(self.ds.StudyInstanceUID)
        self.result["sent_sha256"] = dataset_digest(self.ds)
        self.result["pixel_sha256"] = pixel_digest(self.ds)
        failure = None
        try:
            self.run_step("echo", self.echo)
            if self.module.check_mode:
                for name in STEPS[1:]:
                    self.steps[name]["msg"] = (
                        "check mode: would "
                        + {
                            "store": "C-STORE a synthetic instance",
                            "find": "C-FIND it at IMAGE level",
                            "retrieve": f"retrieve it ({self.params['retrieve_method']})",
                            "compare": "compare it with what was sent",
                            "delete": "delete it through the Orthanc REST API"
                            if self.params["orthanc_url"] and self.params["cleanup"]
                            else "leave it on the peer (no orthanc_url or cleanup false)",
                        }[name]
                    )
            else:
                for name in ("store", "find", "retrieve", "compare"):
                    self.run_step(name, getattr(self, name))
        except StepFailed as exc:
            failure = exc
        if self.stored:
            if not self.params["cleanup"]:
                self.steps["delete"]["msg"] = "cleanup is false: instance left on the peer"
            elif not self.params["orthanc_url"]:
                self.steps["delete"]["msg"] = "no orthanc_url: instance left on the peer"
            else:
                try:
                    self.run_step("delete", self.delete)
                except StepFailed as exc:
                    left = (
                        f"synthetic instance {self.ds.SOPInstanceUID} (patient SYN-999999) was NOT removed from "
                        f"the peer: {exc.msg}; remove it by hand (Orthanc: POST /tools/lookup with its UID, then "
                        "DELETE /instances/<id>)"
                    )
                    if failure is None:  # the round trip worked, but it left a synthetic patient behind
                        failure = StepFailed("delete", exc.reason, left)
                    else:
                        self.module.warn(left)
        self.result["latency_ms"] = self._ms(start)
        self.result["steps"] = self.steps
        changed = self.stored and not self.result["deleted"]
        if failure is not None:
            self.module.fail_json(
                msg=f"round trip failed at step {failure.step}: {failure.msg}",
                failed_step=failure.step,
                reason=failure.reason,
                changed=changed,
                **self.result,
            )
        self.module.exit_json(changed=changed, **self.result)


def validate_roundtrip_params(params):
    if params["retrieve_method"] == "move" and not params["move_destination_ae"]:
        raise DicomValidationError("retrieve_method move needs move_destination_ae (the AE title the peer moves to)")
    if params["move_destination_ae"] is not None:
        validate_ae_title(params["move_destination_ae"], "move_destination_ae")
    if params["move_listen_port"] != 0:
        validate_port(params["move_listen_port"], "move_listen_port")
    if not params["move_listen_address"] or any(ch.isspace() for ch in params["move_listen_address"]):
        raise DicomValidationError("move_listen_address must be an IP address or host name to listen on")
    if not 1 <= params["size_px"] <= 512:
        raise DicomValidationError("size_px must be between 1 and 512")
    if params["orthanc_url"] is not None:
        try:
            normalise_url(params["orthanc_url"], "orthanc_url")
        except OrthancError as exc:
            raise DicomValidationError(str(exc)) from None
    if params["orthanc_password"] and not params["orthanc_user"]:
        raise DicomValidationError("orthanc_password is set but orthanc_user is not")
    ca_error = ca_path_error(params["orthanc_ca_path"], "orthanc_ca_path")
    if ca_error:
        raise DicomValidationError(ca_error)


def main():
    argument_spec = dicom_argument_spec()
    argument_spec.update(
        retrieve_method=dict(type="str", default="auto", choices=["auto", "get", "move"]),
        move_destination_ae=dict(type="str"),
        move_listen_address=dict(type="str", default="0.0.0.0"),  # noqa: S104 - the PACS must reach the temporary SCP
        move_listen_port=dict(type=whole_number, default=0),
        cleanup=dict(type="bool", default=True),
        orthanc_url=dict(type="str"),
        orthanc_user=dict(type="str"),
        orthanc_password=dict(type="str", no_log=True),
        orthanc_validate_certs=dict(type="bool", default=True),
        orthanc_ca_path=dict(type="path"),
        size_px=dict(type=whole_number, default=16),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    fail_if_missing_libraries(module)
    try:
        validate_roundtrip_params(module.params)
        client = build_client(module.params)
    except DicomError as exc:
        module.fail_json(msg=exc.msg, reason=exc.reason, failed_step="validate")
    Roundtrip(module, client).run()


if __name__ == "__main__":
    main()
