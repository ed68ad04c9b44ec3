"""Run one Ansible module on localhost and read its result from the JSON callback.

Used where a script needs a module's result as data, not as text: the migration scenario's tests and
bench/reconcile.py call `dicom_reconcile` through Ansible this way.

The project's ansible.cfg enables the profile_tasks and timer callbacks, which print to stdout and
would break the JSON. Only the JSON callback is enabled here: an empty ANSIBLE_CALLBACKS_ENABLED is
not "none" to ansible-core 2.19 but a list holding one empty name, which fails the run before any
output (tests/unit/test_ansible_json.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
JSON_CALLBACK = "ansible.builtin.json"


def env() -> dict[str, str]:
    """The environment of a run whose stdout is one JSON document."""
    return dict(
        os.environ, ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK=JSON_CALLBACK,
        ANSIBLE_CALLBACKS_ENABLED=JSON_CALLBACK,
    )  # fmt: skip


def run_module(module: str, args: dict, timeout: int = 3600, python: str | None = None) -> tuple[int, dict]:
    """(ansible's return code, the module's result) of `module` run with `args` on localhost.

    `python` is the interpreter the module runs with (the one running this script by default)."""
    python = python or sys.executable
    proc = subprocess.run(
        [str(Path(python).parent / "ansible"), "localhost", "-i", "localhost,", "-c", "local",
         "-e", f"ansible_python_interpreter={python}", "-m", module, "-a", json.dumps(args)],
        cwd=PROJECT, env=env(), capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    try:
        document = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise RuntimeError(
            f"ansible {module} printed no JSON (rc {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        ) from exc
    return proc.returncode, document["plays"][0]["tasks"][0]["hosts"]["localhost"]
