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
    # ansible-doc's text output (make lint, a site's `ansible-doc <module>`) fails on a description that
    # YAML read as a mapping ("a line: with a colon"), which --json renders without complaint.
    bad = list(descriptions_not_text(doc["doc"])) + list(descriptions_not_text(doc["return"], "return"))
    assert not bad, f"descriptions YAML did not read as text (quote a line holding ': '): {bad}"


def descriptions_not_text(node, where="doc"):
    """Where a `description` (at any depth) is neither a string nor a list of strings."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "description" and not (
                isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
            ):
                yield f"{where}.description: {value!r}"[:200]
            else:
                yield from descriptions_not_text(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from descriptions_not_text(value, f"{where}[{i}]")


def test_a_description_yaml_reads_as_a_mapping_is_found():
    doc = {"description": ["fine", {"Runs on the controller; use C(delegate_to": "localhost)."}],
           "options": {"x": {"description": "fine"}, "y": {"description": ["a", "b"]}}}
    assert list(descriptions_not_text(doc)) == [
        "doc.description: ['fine', {'Runs on the controller; use C(delegate_to': 'localhost).'}]"]


def test_every_module_is_covered():
    assert set(NAMES) >= {"dicom_echo", "dicom_query", "dicom_roundtrip", "hl7_check", "pacs_info",
                          "maintenance_window"}
