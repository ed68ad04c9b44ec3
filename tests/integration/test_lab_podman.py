# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""The lab's connection (plugins/connection/lab_podman.py) on a real container: a pipelined module
gets all of a large standard input (podman once truncated ``exec -i`` input), every task is one
``podman exec``, files still travel (copy in; fetch out, from a volume too), and async tasks (not pipelined)
still run."""

import hashlib
import json
import re
import secrets
import subprocess

from conftest import ENV, REPO, VENV_BIN, container_host_vars


def run(tmp_path, container, tasks, verbosity=""):
    play = [{"name": "Lab connection", "hosts": "box", "gather_facts": False, "tasks": tasks}]
    book = tmp_path / f"play-{secrets.token_hex(3)}.yml"
    book.write_text(json.dumps(play))
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"all": {"hosts": {"box": container_host_vars(container)}}}))
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(book)] + ([verbosity] if verbosity else [])
    return subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300, check=False)


def test_a_large_module_payload_arrives_whole_in_one_exec(tmp_path, snaptest_container):
    # 3 MiB of text as the module's stdin argument: it travels inside the pipelined module payload.
    text = "".join(f"{i:07d} synthetic line of the connection test\n" for i in range(80_000))
    expected = hashlib.sha256(text.encode()).hexdigest()
    tasks = [
        {"name": "Hash the payload in the container", "ansible.builtin.command": {"argv": ["sha256sum"], "stdin": text,
                                                                                 "stdin_add_newline": False},
         "register": "hashed", "changed_when": False},
        {"name": "Show it", "ansible.builtin.debug": {"msg": "HASH={{ hashed.stdout.split()[0] }}"}},
    ]
    proc = run(tmp_path, snaptest_container, tasks, verbosity="-vvv")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert f"HASH={expected}" in proc.stdout
    execs = [line for line in proc.stdout.splitlines() if re.search(r"RUN \[b'\S*podman', b'exec'", line)]
    # The module on standard input, nothing else: no temporary directory, no copy, no removal, no mount.
    assert len(execs) == 1, "\n".join(execs)
    assert "b'--interactive'" in execs[0]
    assert " PUT " not in proc.stdout
    assert "b'mount'" not in proc.stdout


def test_files_travel_and_async_tasks_run(tmp_path, snaptest_container):
    # /srv/vol is a named volume: the collection's plugin fetched from the mounted root file system,
    # where a file on a volume is not, and failed.
    fetched = tmp_path / "fetched"
    tasks = [
        {"name": "Copy a file in", "ansible.builtin.copy": {"content": "copied by lab_podman\n",
                                                            "dest": "/srv/vol/in.txt", "mode": "0644"}},
        {"name": "Fetch it back", "ansible.builtin.fetch": {"src": "/srv/vol/in.txt", "dest": f"{fetched}/",
                                                            "flat": True}},
        {"name": "Run in the background", "ansible.builtin.command": {"argv": ["sh", "-c", "sleep 2; echo done"]},
         "async": 60, "poll": 0, "register": "job", "changed_when": False},
        {"name": "Wait for it", "ansible.builtin.async_status": {"jid": "{{ job.ansible_job_id }}"},
         "register": "waited", "until": "waited.finished", "retries": 30, "delay": 1},
        {"name": "Show it", "ansible.builtin.debug": {"msg": "ASYNC={{ waited.stdout }}"}},
    ]
    proc = run(tmp_path, snaptest_container, tasks)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert (fetched / "in.txt").read_text() == "copied by lab_podman\n"
    assert "ASYNC=done" in proc.stdout
