"""Every module of the project renders with ansible-doc: options, examples and return values."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support import MODULES, REPO

ANSIBLE_DOC = Path(sys.executable).parent / "ansible-doc"
NAMES = sorted(p.stem for p in MODULES.glob("*.py"))


@pytest.mark.parametrize("name", NAMES)
def test_ansible_doc_renders_the_module(name):
    proc = subprocess.run(
        [str(ANSIBLE_DOC), "--json", "-M", str(MODULES), name],
        capture_output=True, text=True, cwd=REPO, check=False, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ERROR" not in proc.stderr, proc.stderr
    doc = json.loads(proc.stdout)[name]
    assert doc["doc"]["short_description"]
    assert doc["doc"]["options"], "no options documented"
    assert all(opt.get("description") for opt in doc["doc"]["options"].values())
    assert doc["examples"].strip()
    assert doc["return"], "no return values documented"


def test_every_module_is_covered():
    assert set(NAMES) >= {"dicom_echo", "dicom_query", "dicom_roundtrip", "hl7_check", "pacs_info",
                          "maintenance_window"}
