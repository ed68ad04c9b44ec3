"""Shared helpers for the lab scenario's testinfra tests."""

import json
import os
import subprocess
from pathlib import Path

import pytest

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))


@pytest.fixture(scope="session")
def verify_result():
    """Run the project's clinical health check (playbooks/verify.yml) against the scenario's hosts.

    Returns the parsed JSON result file. The playbook itself fails when any check fails; the
    result file is written either way, so the assertions below can say which check failed.
    """
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    out_dir = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "results"
    env = dict(os.environ)
    env["ANSIBLE_CONFIG"] = str(PROJECT / "ansible.cfg")
    proc = subprocess.run(
        [
            str(Path(os.environ.get("VIRTUAL_ENV", PROJECT / ".venv")) / "bin" / "ansible-playbook"),
            "-i",
            inventory,
            str(PROJECT / "playbooks" / "verify.yml"),
            "-e",
            f"dicom_verify_result_dir={out_dir}",
        ],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    latest = out_dir / "verify-latest.json"
    assert latest.exists(), f"verify.yml wrote no result file:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
    result = json.loads(latest.read_text())
    result["_returncode"] = proc.returncode
    result["_stdout"] = proc.stdout
    return result
