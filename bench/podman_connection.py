#!/usr/bin/env python3
"""The lab's connection against the collection's: the same tasks in one container (a benchmark, not a test).

The lab's and the Molecule scenarios' containers are reached through ``lab_podman``
(plugins/connection/lab_podman.py): ``containers.podman.podman`` with Ansible pipelining. This script
measures what that is worth. It starts one systemd container from the lab's base image and runs the
same playbook (``--tasks`` tasks of the kinds the roles run most: command, stat, file, copy,
lineinfile, and a minimal fact gathering) through each connection, alternating, ``--repeat`` times;
it reports each run's wall time, the medians, the ratio collection/lab (how many times faster the
lab's connection is), and the machine's load before and after.

    .venv/bin/python bench/podman_connection.py --repeat 5 --json results/podman_connection.json

Needs the base image (make images); takes about a minute per repeat on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from upgrade_downtime import ROOT, median, playbook  # noqa: E402
from workstation_fleet import env  # noqa: E402  (the project's containers.conf and ansible.cfg)

CONTAINER = "cu-bench-connection"
IMAGE = "localhost/cu-debian12:latest"
CONNECTIONS = ("containers.podman.podman", "lab_podman")

# One round of the task kinds the roles run most; the playbook repeats it.
ROUND = [
    {"name": "Command", "ansible.builtin.command": {"argv": ["uname", "-r"]}, "changed_when": False},
    {"name": "Stat", "ansible.builtin.stat": {"path": "/etc/os-release"}},
    {"name": "Directory", "ansible.builtin.file": {"path": "/root/cu-bench", "state": "directory", "mode": "0755"}},
    {"name": "Copy", "ansible.builtin.copy": {"content": "{{ range(200) | join(',') }}\n",
                                              "dest": "/root/cu-bench/file", "mode": "0644"}},
    {"name": "Line", "ansible.builtin.lineinfile": {"path": "/root/cu-bench/file", "line": "end"}},
    {"name": "Facts", "ansible.builtin.setup": {"gather_subset": ["min"]}},
]


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], env=env(), capture_output=True, text=True, check=check, timeout=300)


def write_playbook(workdir: Path, tasks: int) -> Path:
    body = [dict(task, name=f"{task['name']} {i}") for i in range(tasks) for task in [ROUND[i % len(ROUND)]]]
    play = [{"name": "Bench", "hosts": CONTAINER, "gather_facts": False, "tasks": body}]
    path = workdir / "bench.yml"
    path.write_text(json.dumps(play, indent=1))
    return path


def run_once(workdir: Path, book: Path, connection: str, label: str) -> dict:
    inventory = workdir / f"{label}.json"
    hostvars = {"ansible_connection": connection, "ansible_python_interpreter": "/usr/bin/python3"}
    inventory.write_text(json.dumps({"all": {"hosts": {CONTAINER: hostvars}}}))
    log = workdir / f"{label}.log"
    started = time.monotonic()
    with log.open("w") as out:
        rc = subprocess.run(playbook("-i", str(inventory), str(book)), cwd=ROOT, env=env(), stdout=out,
                            stderr=subprocess.STDOUT, check=False).returncode  # fmt: skip
    wall = time.monotonic() - started
    if rc != 0:
        raise SystemExit(f"the playbook failed through {connection}: see {log}")
    return {"connection": connection, "wall_s": round(wall, 2), "log": str(log)}


def summarise(runs: list[dict], tasks: int) -> dict:
    walls = {c: median([r["wall_s"] for r in runs if r["connection"] == c]) for c in CONNECTIONS}
    ratios = []
    for repeat in sorted({r["repeat"] for r in runs}):
        mine = {r["connection"]: r["wall_s"] for r in runs if r["repeat"] == repeat}
        if all(c in mine for c in CONNECTIONS):
            ratios.append(mine[CONNECTIONS[0]] / mine[CONNECTIONS[1]])
    return {
        "tasks": tasks,
        "median_wall_s": walls,
        "median_per_task_s": {c: round(w / tasks, 3) for c, w in walls.items() if w is not None},
        "median_ratio_collection_to_lab": median(ratios),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=60)
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("--workdir", type=Path, default=ROOT / "results" / "bench-podman-connection",
                        help="the playbook, inventories and each run's log (kept)")
    args = parser.parse_args()
    if args.repeat < 1 or args.tasks < 1:
        parser.error("--repeat and --tasks must be at least 1")
    podman("rm", "-f", "-t", "0", CONTAINER, check=False)
    podman("run", "-d", "--name", CONTAINER, "--systemd", "always", IMAGE, "/sbin/init")
    try:
        podman("exec", CONTAINER, "systemctl", "is-system-running", "--wait", check=False)
        workdir = args.workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        book = write_playbook(workdir, args.tasks)
        load_before = list(os.getloadavg())
        runs = []
        for repeat in range(1, args.repeat + 1):
            # Alternate which goes first, so a trend in the machine's load falls on both.
            order = CONNECTIONS if repeat % 2 else tuple(reversed(CONNECTIONS))
            for connection in order:
                run = run_once(workdir, book, connection, f"r{repeat}-{connection}")
                run["repeat"] = repeat
                runs.append(run)
                print(json.dumps(run), flush=True)
        result = summarise(runs, args.tasks)
        result.update(runs=runs, load_before=load_before, load_after=list(os.getloadavg()), cores=os.cpu_count())
    finally:
        podman("rm", "-f", "-t", "0", CONTAINER, check=False)
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
