"""tools/ansible_json.py: a module's result as data, with the project's ansible.cfg (whose profile_tasks
and timer callbacks print to stdout). The migration scenario's gate test and bench/reconcile.py read
dicom_reconcile's result this way; an empty ANSIBLE_CALLBACKS_ENABLED once made ansible fail before
printing anything, and only the migration scenario, late in CI, noticed."""

import configparser
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import ansible_json  # noqa: E402


def test_the_project_config_enables_callbacks_that_print_to_stdout():
    """Otherwise the other tests here would pass whatever ansible_json does."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "ansible.cfg")
    enabled = {name.strip() for name in cfg["defaults"]["callbacks_enabled"].split(",")}
    assert "ansible.posix.profile_tasks" in enabled


def test_a_module_result_is_read_as_data_through_the_project_config():
    rc, result = ansible_json.run_module("ansible.builtin.ping", {"data": "clinical"}, timeout=120)
    assert rc == 0 and result["ping"] == "clinical" and not result.get("failed")


def test_a_failing_module_gives_its_result_and_a_non_zero_return_code():
    rc, result = ansible_json.run_module("ansible.builtin.command", {"cmd": "false"}, timeout=120)
    assert rc != 0 and result["failed"] is True and result["rc"] == 1


def test_a_run_that_prints_no_json_says_what_ansible_said(monkeypatch):
    monkeypatch.setenv("ANSIBLE_STDOUT_CALLBACK", "no.such.callback")
    monkeypatch.setattr(ansible_json, "JSON_CALLBACK", "no.such.callback")
    with pytest.raises(RuntimeError, match="printed no JSON"):
        ansible_json.run_module("ansible.builtin.ping", {"data": "x"}, timeout=120)
