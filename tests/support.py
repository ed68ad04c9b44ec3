# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""Helpers shared by the unit tests: import paths, free ports, processes, the module runner.

Kept out of conftest.py so that test files import them by a name of their own
(`from support import run_module`): `from conftest import ...` is ambiguous once
a second conftest.py (tests/integration) is collected in the same run.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import ansible.module_utils
import pytest
from ansible.module_utils import _internal as _ansible_internal

REPO = Path(__file__).resolve().parents[1]
MODULE_UTILS = REPO / "plugins" / "module_utils"
MODULES = REPO / "plugins" / "modules"

# Make `from ansible.module_utils.dicom_client import ...` and `import dicom_echo` work.
if str(MODULE_UTILS) not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(str(MODULE_UTILS))
for _p in (str(MODULES), str(MODULE_UTILS)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from ansible.module_utils.testing import patch_module_args  # noqa: E402

LOOPBACK = "127.0.0.1"
# DCMTK tools are looked up in the system directories only: pynetdicom installs
# Python tools of the same names (echoscu, findscu, storescu) into the virtualenv.
DCMTK_PATH = "/usr/bin:/usr/local/bin"


def makefile_lanes() -> list[list[str]]:
    """The lanes of the Makefile's TEST_LANES (tools/test_lanes.sh), each a list of its items."""
    line = re.search(r"^TEST_LANES := (.*)$", (REPO / "Makefile").read_text(), re.MULTILINE).group(1)
    return [lane.split() for lane in re.findall(r'"([^"]*)"', line)]


def dcmtk(tool: str) -> str | None:
    """Absolute path of a DCMTK tool, or None when DCMTK is not installed."""
    return shutil.which(tool, path=DCMTK_PATH)

SCU_AE = "CLINUPG"
MOVE_AE = "CLINUPG-MOVE"
NOGET_AE = "CLINUPG-NOGET"


# --------------------------------------------------------------------------- helpers


def prometheus_samples(text: str) -> dict:
    """{(name, frozenset(labels)): value} of a Prometheus text file, as prometheus_client's parser reads it.

    Used by the unit test of the monitor and by the lab scenario's (molecule/lab/tests/test_monitor.py).
    """
    from prometheus_client.parser import text_string_to_metric_families

    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def free_port() -> int:
    """A free TCP port on loopback (bind to 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def wait_for_port(port: int, host: str = LOOPBACK, timeout: float = 15.0, proc=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def rest_side(orthanc, timeout: float = 10) -> dict:
    """The REST options of one archive (an OrthancPeer of conftest) for dicom_reconcile and pacs_migrate."""
    return {"url": orthanc.url, "username": orthanc.user, "password": orthanc.password, "timeout": timeout}


def run_module(module, args: dict, check_mode: bool = False) -> dict:
    """Run ``module.main()`` with ``args``; return the JSON result (``failed: True`` on fail_json).

    ``_rc`` holds the exit code. A traceback escaping ``main()`` propagates to the test.

    A module runs in its own process where Ansible is not "the controller". Once any test has
    imported controller code (a filter plugin imports ansible.errors), ansible-core would route
    the module's warnings to the controller's display instead of the result, so the module is run
    with that flag off, as it is on a managed host.
    """
    payload = dict(args)
    if check_mode:
        payload["_ansible_check_mode"] = True
    out = io.StringIO()
    was_controller = _ansible_internal.is_controller
    _ansible_internal.is_controller = False
    try:
        with patch_module_args(payload), contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exc:
            module.main()
    finally:
        _ansible_internal.is_controller = was_controller
    text = out.getvalue()
    try:
        result = json.loads(text)
    except json.JSONDecodeError:
        raise AssertionError(f"module printed non-JSON output (exit {exc.value.code}): {text!r}") from None
    result["_rc"] = exc.value.code
    return result


def run_playbook_with_vars(inventory, playbook, variables: dict, vars_file, out, timeout: int):
    """Run ``playbook`` with ``variables`` (written to ``vars_file``, given as ``-e @file``) and return
    (the completed process, the JSON the playbook wrote to ``out``, or {} when it wrote none)."""
    from pathlib import Path as _Path

    out = _Path(out)
    out.unlink(missing_ok=True)
    _Path(vars_file).write_text(json.dumps(variables))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    proc = subprocess.run(
        [str(_Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), str(playbook),
         "-e", f"@{vars_file}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )
    facts = json.loads(out.read_text()) if out.exists() else {}
    return proc, facts
