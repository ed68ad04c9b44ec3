"""Fixtures of the lab scenario's testinfra tests (helpers in molecule/resources/testlib.py)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "resources"))

import testlib  # noqa: E402


@pytest.fixture(scope="session")
def verify_result():
    """Run the project's clinical health check (playbooks/verify.yml) against the scenario's hosts.

    The playbook fails when any check fails; the result file is written either way, so the
    assertions can say which check failed.
    """
    return testlib.run_verify_playbook(testlib.RESULTS)
