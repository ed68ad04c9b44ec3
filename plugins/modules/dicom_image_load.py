#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dicom_image_load
short_description: Prove that a workstation loads and renders an image from its PACS, with its own DICOM tools
description:
  - Runs on the workstation itself, with the workstation's installed DCMTK (no Python DICOM library is
    needed there), the way a radiologist's viewer would reach the PACS.
  - Finds the study to load (C-FIND at study level with C(findscu)); retrieves it from the PACS to a
    temporary directory with C-GET (C(getscu)); renders one image of it with C(dcmj2pnm) to a binary
    PGM/PPM; checks that the picture has the size the DICOM header gives (Rows x Columns, read with
    C(dcmdump)) and is not blank (more than one grey level); and removes the temporary copy, whatever
    happened.
  - The study is chosen without naming it in the evidence. With I(study_digest) (the C(study_digest)
    an earlier call returned, for example the baseline's) it is the study whose Study Instance UID has
    that digest; otherwise the study with the smallest UID the PACS lists.
  - Fails with a reason, one of C(tool_missing), C(echo_failed), C(find_failed), C(no_study),
    C(study_not_found), C(retrieve_failed), C(render_failed), C(wrong_size), C(blank_image).
  - Read-only for the workstation and the PACS (the copy is temporary); it runs unchanged in check mode.
version_added: "0.4.0"
author:
  - clinical-upgrade contributors
options:
  host:
    description: The PACS's address as the workstation reaches it.
    type: str
    required: true
  port:
    description: The PACS's DICOM port.
    type: int
    required: true
  called_ae:
    description: The PACS's AE title.
    type: str
    required: true
  calling_ae:
    description:
      - The workstation's AE title. The PACS must allow it C-FIND and C-GET (Orthanc refuses both
        to an AE title that is not among its modalities).
    type: str
    required: true
  study_digest:
    description:
      - The first 16 hex digits of the SHA-256 of the Study Instance UID to load, as this module
        returns it in C(study_digest). Empty, the study with the smallest UID.
    type: str
    default: ""
  timeout:
    description: Seconds each DICOM tool may wait for the network (connect, association, each response).
    type: int
    default: 30
  dcmtk_bin:
    description: The directory of DCMTK's programs on the workstation.
    type: path
    default: /usr/bin
  tmp_dir:
    description: Where the temporary copy is made (a new directory under it, removed at the end).
    type: path
    default: /var/tmp
attributes:
  check_mode:
    support: full
    details: The study is copied to a temporary directory only and removed, so the module runs unchanged.
  diff_mode:
    support: none
requirements:
  - DCMTK (findscu, getscu, dcmdump, dcmj2pnm) on the workstation
notes:
  - C-GET needs no route back from the PACS to the workstation (unlike C-MOVE).
  - A multi-frame image is rendered at its first frame.
seealso:
  - module: dicom_echo
  - module: dicom_roundtrip
"""

EXAMPLES = r"""
- name: Load and render one image from the PACS on the workstation
  dicom_image_load:
    host: pacs.radiology.example.org
    port: 104
    called_ae: PACSPRIMARY
    calling_ae: RADWS01
  register: __image

- name: Load the same study as the baseline did
  dicom_image_load:
    host: pacs.radiology.example.org
    port: 104
    called_ae: PACSPRIMARY
    calling_ae: RADWS01
    study_digest: "{{ baseline.image_load.study_digest }}"
"""

RETURN = r"""
study_digest:
  description: The first 16 hex digits of the SHA-256 of the loaded study's Study Instance UID.
  returned: when a study was chosen
  type: str
  sample: 3f0c5e2a9b1d7e44
studies_listed:
  description: How many studies the PACS listed.
  returned: when the C-FIND answered
  type: int
instances_retrieved:
  description: How many DICOM files the C-GET brought.
  returned: when the C-GET ran
  type: int
image:
  description: The rendered image and what the DICOM header says it should be.
  returned: when an image was rendered
  type: dict
  contains:
    rows: {description: Rows of the DICOM header, type: int}
    columns: {description: Columns of the DICOM header, type: int}
    width: {description: Width of the rendered picture, type: int}
    height: {description: Height of the rendered picture, type: int}
    format: {description: P5 (grey) or P6 (colour), type: str}
    min: {description: Lowest sample value of the picture, type: int}
    max: {description: Highest sample value of the picture, type: int}
    grey_levels: {description: Number of distinct sample values, type: int}
    bytes: {description: Size of the rendered file, type: int}
elapsed_ms:
  description: Milliseconds from the C-FIND to the rendered image.
  returned: always
  type: float
removed:
  description: Whether the temporary copy was removed.
  returned: always
  type: bool
reason:
  description: Why it failed (see the description).
  returned: failure
  type: str
"""

import hashlib
import os
import re
import shutil
import tempfile
import time
import xml.etree.ElementTree as ET

from ansible.module_utils.basic import AnsibleModule

TOOLS = ("findscu", "getscu", "dcmdump", "dcmj2pnm")


class LoadError(Exception):
    def __init__(self, reason, message, **details):
        super().__init__(message)
        self.reason = reason
        self.details = details


def uid_digest(uid: str) -> str:
    return hashlib.sha256(uid.encode()).hexdigest()[:16]


def parse_pnm(data: bytes) -> dict:
    """A binary PGM (P5) or PPM (P6) as dcmj2pnm +op writes it: size and sample statistics."""
    tokens = []
    pos = 0
    while len(tokens) < 4:
        while pos < len(data) and data[pos : pos + 1].isspace():
            pos += 1
        if data[pos : pos + 1] == b"#":
            while pos < len(data) and data[pos : pos + 1] not in (b"\n", b"\r"):
                pos += 1
            continue
        start = pos
        while pos < len(data) and not data[pos : pos + 1].isspace():
            pos += 1
        if start == pos:
            raise ValueError("the picture ends inside its header")
        tokens.append(data[start:pos].decode("ascii", "replace"))
    magic, width, height, maxval = tokens[0], int(tokens[1]), int(tokens[2]), int(tokens[3])
    if magic not in ("P5", "P6"):
        raise ValueError(f"not a binary PGM/PPM (magic {magic!r})")
    if maxval > 255:
        raise ValueError(f"a 16-bit picture (maxval {maxval}); dcmj2pnm +op writes 8 bits")
    pixels = data[pos + 1 :]
    channels = 3 if magic == "P6" else 1
    expected = width * height * channels
    if len(pixels) < expected:
        raise ValueError(f"the picture holds {len(pixels)} bytes of samples, its header says {expected}")
    samples = pixels[:expected]
    levels = set(samples)
    return {
        "format": magic,
        "width": width,
        "height": height,
        "min": min(samples) if samples else 0,
        "max": max(samples) if samples else 0,
        "grey_levels": len(levels),
    }


def study_uids_from_xml(path: str) -> list:
    """The Study Instance UIDs of findscu's -Xs file (DCMTK's native XML format)."""
    root = ET.parse(path).getroot()  # noqa: S314 - written by findscu on this host, no entities or DTD
    uids = []
    for element in root.iter("element"):
        if element.get("tag", "").lower() == "0020,000d" and (element.text or "").strip():
            uids.append(element.text.strip())
    return uids


def header_value(dump: str, tag: str) -> str:
    """A value of dcmdump's output, e.g. '(0028,0010) US 64   #   2, 1 Rows'."""
    match = re.search(r"^\(" + re.escape(tag) + r"\) \w\w (\S+)", dump, re.IGNORECASE | re.MULTILINE)
    if not match:
        return ""
    return match.group(1).strip("[]")


class Loader:
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.bin = self.params["dcmtk_bin"]

    def tool(self, name):
        path = os.path.join(self.bin, name)
        if not os.access(path, os.X_OK):
            raise LoadError(
                "tool_missing",
                f"{path} is missing: install DCMTK on the workstation (the catalogue's viewer packages) "
                "or set dcmtk_bin",
            )
        return path

    def network_args(self):
        p = self.params
        t = str(p["timeout"])
        return [
            "-aet",
            p["calling_ae"],
            "-aec",
            p["called_ae"],
            "-to",
            t,
            "-ta",
            t,
            "-td",
            t,
            p["host"],
            str(p["port"]),
        ]

    def run(self, argv, reason, what, cwd=None):
        rc, out, err = self.module.run_command(argv, cwd=cwd)
        if rc != 0:
            text = " ".join((err or out).split())[-600:]
            raise LoadError(reason, f"{what} failed (exit {rc}): {text or 'no output'}")
        return out

    def choose_study(self, work):
        xml = os.path.join(work, "studies.xml")
        self.run(
            [self.tool("findscu"), "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID", "-Xs", xml]
            + self.network_args(),
            "find_failed",
            "C-FIND of the studies (findscu)",
            cwd=work,
        )
        uids = sorted(set(study_uids_from_xml(xml))) if os.path.exists(xml) else []
        self.result["studies_listed"] = len(uids)
        if not uids:
            raise LoadError(
                "no_study",
                "the PACS lists no study: there is nothing to load (seed one, or check the AE title's rights)",
            )
        wanted = self.params["study_digest"]
        if wanted:
            chosen = [uid for uid in uids if uid_digest(uid) == wanted]
            if not chosen:
                raise LoadError(
                    "study_not_found",
                    f"the study with digest {wanted} is not among the {len(uids)} the PACS lists (was it deleted?)",
                )
            return chosen[0]
        return uids[0]

    def load(self):
        # Nothing to remove until the temporary directory exists.
        self.result = {"changed": False, "removed": True, "elapsed_ms": 0.0}
        for name in TOOLS:
            self.tool(name)
        started = time.monotonic()
        work = tempfile.mkdtemp(prefix="cu-image-load.", dir=self.params["tmp_dir"])
        self.result["removed"] = False
        try:
            uid = self.choose_study(work)
            self.result["study_digest"] = uid_digest(uid)
            files_dir = os.path.join(work, "study")
            os.mkdir(files_dir)
            self.run(
                [
                    self.tool("getscu"),
                    "-S",
                    "-k",
                    "QueryRetrieveLevel=STUDY",
                    "-k",
                    f"StudyInstanceUID={uid}",
                    "-od",
                    files_dir,
                ]
                + self.network_args(),
                "retrieve_failed",
                "C-GET of the study (getscu)",
            )
            files = sorted(os.listdir(files_dir))
            self.result["instances_retrieved"] = len(files)
            if not files:
                raise LoadError("retrieve_failed", "the C-GET answered but brought no file of the study")
            first = os.path.join(files_dir, files[0])
            dump = self.run(
                [self.tool("dcmdump"), "-q", "+P", "0028,0010", "+P", "0028,0011", first], "render_failed", "dcmdump"
            )
            rows, columns = header_value(dump, "0028,0010"), header_value(dump, "0028,0011")
            if not (rows.isdigit() and columns.isdigit()):
                raise LoadError(
                    "render_failed",
                    f"the retrieved file has no Rows/Columns (got {rows!r} x {columns!r}): not an image",
                )
            picture = os.path.join(work, "image.pnm")
            self.run([self.tool("dcmj2pnm"), "+op", first, picture], "render_failed", "rendering with dcmj2pnm")
            with open(picture, "rb") as fh:
                data = fh.read()
            try:
                image = parse_pnm(data)
            except ValueError as exc:
                raise LoadError("render_failed", f"dcmj2pnm wrote a picture that cannot be read: {exc}") from None
            image.update(rows=int(rows), columns=int(columns), bytes=len(data))
            self.result["image"] = image
            if (image["width"], image["height"]) != (image["columns"], image["rows"]):
                raise LoadError(
                    "wrong_size",
                    f"the rendered picture is {image['width']}x{image['height']}, "
                    f"the image is {image['columns']}x{image['rows']}",
                )
            if image["grey_levels"] < 2:
                raise LoadError("blank_image", f"the rendered picture is blank (every sample is {image['min']})")
        finally:
            self.result["elapsed_ms"] = round((time.monotonic() - started) * 1000, 1)
            shutil.rmtree(work, ignore_errors=True)
            self.result["removed"] = not os.path.exists(work)
        return self.result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            host=dict(type="str", required=True),
            port=dict(type="int", required=True),
            called_ae=dict(type="str", required=True),
            calling_ae=dict(type="str", required=True),
            study_digest=dict(type="str", default=""),
            timeout=dict(type="int", default=30),
            dcmtk_bin=dict(type="path", default="/usr/bin"),
            tmp_dir=dict(type="path", default="/var/tmp"),  # noqa: S108 - mkdtemp makes a private directory there
        ),
        supports_check_mode=True,
    )
    p = module.params
    problems = []
    if not 1 <= p["port"] <= 65535:
        problems.append(f"port must be 1..65535, got {p['port']}")
    for name in ("called_ae", "calling_ae"):
        if not re.fullmatch(r"[ -~]{1,16}", p[name] or "") or not p[name].strip() or "\\" in p[name]:
            problems.append(f"{name} must be 1 to 16 printable ASCII characters without a backslash, got {p[name]!r}")
    if p["study_digest"] and not re.fullmatch(r"[0-9a-f]{16}", p["study_digest"]):
        problems.append(
            "study_digest must be 16 lower-case hex digits (a study_digest this module returned), "
            f"got {p['study_digest']!r}"
        )
    if p["timeout"] < 1:
        problems.append(f"timeout must be at least 1 second, got {p['timeout']}")
    if problems:
        module.fail_json(msg="; ".join(problems), reason="invalid_argument", removed=True, elapsed_ms=0.0)
    loader = Loader(module)
    try:
        result = loader.load()
    except LoadError as exc:
        result = dict(getattr(loader, "result", {"changed": False, "removed": True, "elapsed_ms": 0.0}))
        result.update(exc.details)
        module.fail_json(msg=str(exc), reason=exc.reason, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
