#!/usr/bin/env python3
"""Patching 1 and then N Linux workstations through one site package cache (a benchmark, not a test).

Setup, once per invocation (``bench/workstation_fleet.yml``): a PACS container with synthetic
studies (the workstations' image-load check reads them) and a template workstation configured by
``roles/workstation_linux`` (apt sources with the security suites, apt through the bench's package
cache, the viewer held), committed as the image every measured workstation starts from. The image
``localhost/cu-debian12`` is built without Debian's updates and security suites, so every
workstation starts with the same real pending updates.

Each measurement, for 1 and then for N workstations (default 8), in every repeat:

1. a cold package cache: the bench's own apt-cacher-ng (Debian's, started by this script on port
   3143 with its own cache and log directories, so the site's cache on 3142 is not touched), its
   cache emptied;
2. that many workstation containers from the template image;
3. ``playbooks/patch_workstations.yml`` as a site runs it, in one batch (``workstation_batch`` =
   the number of workstations, forks at least that many): precheck, snapshot, stage, switch, and the
   verification on each workstation (C-ECHO, an image retrieved with C-GET and rendered), timed;
4. the controller's memory sampled every 0.2 s while it runs: the sum of the resident memory of
   the playbook's whole process tree (ansible-playbook, its forks, the ``podman exec`` of the
   connection) and of its Python processes alone; the peak of each;
5. the bytes the cache fetched from upstream and served (the fleet summary's ``package_cache``, read
   from apt-cacher-ng's transfer log by the project's ``package_cache_stats``).

A measurement counts only when every workstation ends ``upgraded``. It reports per measurement and
as medians over the repeats: the wall time of N against 1, the peak memory, the upstream bytes of N
against 1, and the machine's load.

    .venv/bin/python bench/workstation_fleet.py --repeat 3 --json results/workstation_fleet.json

Goals (issue "Radiology workstations"): N workstations in at most 2x the time of one; upstream bytes
for N at most 1.2x those of one. ``--check-goal`` exits 1 when a median misses a goal. Needs the
base image (make images) and about 10 minutes per repeat on 2 cores; takes no lab host.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from upgrade_downtime import RESULTS, ROOT, median, playbook  # noqa: E402

GOAL_TIME_RATIO = 2.0
GOAL_UPSTREAM_RATIO = 1.2
CACHE_PORT = 3143
PACS_PORTS = (15242, 15042)  # DICOM and REST of the bench's PACS on loopback (the lab's are 14242, 18042)
PREFIX = "cu-bench-"
START_IMAGE = "localhost/cu-bench-ws-start:latest"
BASE_IMAGE = "localhost/cu-debian12:latest"
# Where the flow's podman snapshots go (roles/snapshot, snapshot_podman_image_repository): the bench
# removes its workstations' snapshots there, never its own start image.
SNAPSHOT_REPOSITORY = "localhost/cu-snapshot"
# Every workstation the bench may run (up to 32) may query and retrieve on its PACS (C-FIND, C-GET).
MODALITIES = "{{ range(1, 33) | map('regex_replace', '^', 'bench-ws') | workstation_modalities }}"


def env() -> dict:
    out = dict(os.environ)
    out["CONTAINERS_CONF"] = str(ROOT / "lab" / "containers.conf")
    out["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    out["ANSIBLE_NOCOLOR"] = "1"
    return out


def podman(*args: str, check: bool = True) -> str:
    proc = subprocess.run(["podman", *args], env=env(), capture_output=True, text=True, check=False, timeout=600)
    if check and proc.returncode != 0:
        raise SystemExit(f"podman {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def gateway() -> str:
    return json.loads(podman("network", "inspect", "podman"))[0]["subnets"][0]["gateway"]


class Cache:
    """The bench's own apt-cacher-ng (Debian's binary, this script's directories and port)."""

    def __init__(self, workdir: Path):
        self.dir = workdir / "apt-cacher-ng"
        self.proc: subprocess.Popen | None = None

    @property
    def log_dir(self) -> Path:
        return self.dir / "log"

    def start(self, empty: bool) -> None:
        self.stop()
        if empty and self.dir.exists():
            shutil.rmtree(self.dir)
        for sub in ("cache", "log", "run"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        options = {
            "ForeGround": "1",
            "Port": str(CACHE_PORT),
            "BindAddress": "0.0.0.0",  # noqa: S104 - the containers reach it on podman's gateway
            "CacheDir": str(self.dir / "cache"),
            "LogDir": str(self.log_dir),
            "PidFile": str(self.dir / "run" / "pid"),
            "SocketPath": str(self.dir / "run" / "socket"),
            "VerboseLog": "1",
            "UnbufferLogs": "1",
            "ReportPage": "acng-report.html",
        }
        cmd = ["/usr/sbin/apt-cacher-ng", "-c", "/etc/apt-cacher-ng", *(f"{k}={v}" for k, v in options.items())]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=(self.dir / "stderr.log").open("w"))
        for _ in range(100):
            probe = subprocess.run(
                ["curl", "-fsS", "-o", "/dev/null", f"http://127.0.0.1:{CACHE_PORT}/acng-report.html"], check=False
            )
            if probe.returncode == 0:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise SystemExit(f"apt-cacher-ng did not start on port {CACHE_PORT}: see {self.dir / 'stderr.log'}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
        self.proc = None


def inventory(workdir: Path, workstations: int, template: bool) -> Path:
    """The bench's inventory: the lab's group_vars/all (catalogue, windows, credentials), its PACS,
    and the workstations (or the template) as podman containers named cu-bench-<host>."""
    inv = workdir / "inventory"
    (inv / "group_vars").mkdir(parents=True, exist_ok=True)
    link = inv / "group_vars" / "all"
    if not link.exists():
        link.symlink_to(ROOT / "inventories" / "lab" / "group_vars" / "all")
    container = {
        "ansible_connection": "lab_podman",
        "ansible_host": PREFIX + "{{ inventory_hostname }}",
        "ansible_python_interpreter": "/usr/bin/python3",
        "lab_host_container_name": PREFIX + "{{ inventory_hostname }}",
        "lab_host_image": BASE_IMAGE,
        "lab_host_apt_cache_dir": "",  # every measurement downloads through the cache
    }
    names = [f"bench-ws{i}" for i in range(1, workstations + 1)]
    fleet = {name: {} for name in (["bench-template"] if template else names)}
    hosts = {
        "all": {
            "hosts": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}},
            "children": {
                "bench_setup": {"hosts": {"bench-pacs": {}, "bench-template": {}} if template else {}},
                "bench_template": {"hosts": {"bench-template": {}} if template else {}},
                "bench": {"vars": container, "children": {"pacs": {}, "workstations": {}}},
                "pacs": {
                    "hosts": {
                        "bench-pacs": {
                            "pacs_server_dicom_aet": "PACS1",
                            # The preflight of patch_workstations.yml checks every PACS of the inventory.
                            "pacs_server_target_version": "1.10.1",
                            # The seed and the precheck reach it from the controller.
                            "lab_host_published_ports": [
                                f"127.0.0.1:{PACS_PORTS[0]}:4242",
                                f"127.0.0.1:{PACS_PORTS[1]}:8042",
                            ],
                            "endpoint_dicom_port": PACS_PORTS[0],
                            "endpoint_rest_url": f"http://127.0.0.1:{PACS_PORTS[1]}",
                            # Every workstation the bench may run may query and retrieve (C-FIND, C-GET).
                            "pacs_server_modalities": MODALITIES,
                        }
                    }
                },
                "workstations": {"children": {"workstations_linux": {"hosts": fleet}}},
                "workstations_linux": {
                    "vars": {
                        "workstation_linux_target_version": "3.6.7",
                        "workstation_linux_pacs_host": "{{ (lookup('ansible.builtin.pipe', 'podman inspect "
                        + PREFIX
                        + "bench-pacs') | from_json | first).NetworkSettings.IPAddress }}",
                        "workstation_linux_pacs_port": 4242,
                        "workstation_linux_pacs_aet": "PACS1",
                        "workstation_linux_package_cache_url": f"http://{gateway()}:{CACHE_PORT}",
                        "snapshot_provider": "podman",
                    }
                },
            },
        }
    }
    (inv / "hosts.json").write_text(json.dumps(hosts, indent=2))
    return inv / "hosts.json"


def remove_containers() -> None:
    names = podman("ps", "-a", "--format", "{{.Names}}").split()
    bench = [n for n in names if n.startswith(PREFIX + "bench-ws")]
    if bench:
        podman("rm", "-f", "-t", "2", *bench)


def snapshot_images(rows: list[str]) -> list[str]:
    """Of podman's image names, the snapshots the runs took of the bench's workstations."""
    return [r for r in rows if r.startswith(SNAPSHOT_REPOSITORY + "/bench-ws")]


def remove_snapshot_images() -> None:
    """The podman snapshots the runs took of the bench's workstations (kept by the flow's retention)."""
    mine = snapshot_images(podman("images", "--format", "{{.Repository}}:{{.Tag}}").split())
    if mine:
        podman("rmi", "-f", *mine, check=False)


def setup(workdir: Path, cache: Cache, workstations: int) -> None:
    cache.start(empty=True)
    inv = inventory(workdir, workstations, template=True)
    log = workdir / "setup.log"
    extra = ["-e", f"clinical_upgrade_evidence_dir={workdir / 'results'}"]
    rc = subprocess.run(
        playbook("-i", str(inv), str(HERE / "workstation_fleet.yml"), *extra),
        cwd=ROOT,
        env=env(),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        check=False,
    ).returncode
    if rc != 0:
        raise SystemExit(f"bench setup failed: see {log}")
    podman("commit", PREFIX + "bench-template", START_IMAGE)
    podman("rm", "-f", "-t", "2", PREFIX + "bench-template")


def start_workstations(count: int, cpus: float | None = None) -> None:
    limit = ["--cpus", str(cpus)] if cpus else []
    for i in range(1, count + 1):
        name = f"bench-ws{i}"
        podman(
            "run", "-d", "--name", PREFIX + name, "--hostname", name, "--systemd", "always", *limit,
            "--label", "org.clinical-upgrade.bench=true", START_IMAGE, "/sbin/init",
        )  # fmt: skip
    for i in range(1, count + 1):
        subprocess.run(
            ["podman", "exec", f"{PREFIX}bench-ws{i}", "systemctl", "is-system-running", "--wait"],
            env=env(), capture_output=True, check=False, timeout=120,
        )  # fmt: skip


def children(pid: int) -> dict[int, tuple[int, bool]]:
    """The process tree under pid: {pid: (resident bytes, is a Python process)}."""
    parent, rss, python = {}, {}, {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            parent[int(entry.name)] = int(fields[1])
            rss[int(entry.name)] = int((entry / "statm").read_text().split()[1]) * page
            python[int(entry.name)] = "python" in stat[stat.index("(") + 1 : stat.rindex(")")]
        except (OSError, ValueError, IndexError):
            continue
    tree, todo = {}, [pid]
    while todo:
        current = todo.pop()
        if current in rss:
            tree[current] = (rss[current], python[current])
        todo.extend(p for p, pp in parent.items() if pp == current)
    return tree


def cgroup_cpu_seconds(cgroup_file: str, root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPU seconds used so far by the cgroup a process is in, from the text of its /proc/PID/cgroup:
    cgroup v1's cpuacct.usage (nanoseconds) or v2's cpu.stat usage_usec. Processes that have exited
    still count, so the difference of two readings is what the container used in between."""
    for line in cgroup_file.splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpuacct" in controllers.split(","):
            usage = root / "cpuacct" / path.lstrip("/") / "cpuacct.usage"
            if usage.exists():
                return int(usage.read_text()) / 1e9
    for line in cgroup_file.splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0" and controllers == "":
            stat = root / "unified" / path.lstrip("/") / "cpu.stat"
            stat = stat if stat.exists() else root / path.lstrip("/") / "cpu.stat"
            if stat.exists():
                fields = dict(row.split() for row in stat.read_text().splitlines() if row.strip())
                return int(fields["usage_usec"]) / 1e6
    return None


def container_cpu_seconds(names: list[str]) -> dict[str, float | None]:
    """CPU seconds each running container's cgroup has used so far (None where unreadable)."""
    out: dict[str, float | None] = {}
    for name in names:
        pid = podman("inspect", "--format", "{{.State.Pid}}", name, check=False).strip()
        try:
            out[name] = cgroup_cpu_seconds(Path(f"/proc/{pid}/cgroup").read_text())
        except (OSError, ValueError, KeyError):
            out[name] = None
    return out


def process_cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of one running process (its own, not its children's)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_delta(before: dict[str, float | None], after: dict[str, float | None]) -> float | None:
    """The CPU seconds a group of containers used between two readings (None if any is unreadable)."""
    if not before or any(before.get(k) is None or after.get(k) is None for k in before):
        return None
    return round(sum(after[k] - before[k] for k in before), 1)


class MemorySampler(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.done = pid, threading.Event()
        self.peak_tree = self.peak_python = 0

    def run(self) -> None:
        while not self.done.wait(0.2):
            tree = children(self.pid)
            self.peak_tree = max(self.peak_tree, sum(r for r, _ in tree.values()))
            self.peak_python = max(self.peak_python, sum(r for r, py in tree.values() if py))


def measure(workdir: Path, cache: Cache, count: int, repeat: int, cpus: float | None = None) -> dict:
    remove_containers()
    cache.start(empty=True)
    start_workstations(count, cpus)
    inv = inventory(workdir, count, template=False)
    results = workdir / f"results-r{repeat}-n{count}"
    results.mkdir(parents=True, exist_ok=True)
    log = workdir / f"patch-r{repeat}-n{count}.log"
    run_env = env() | {"ANSIBLE_FORKS": str(max(5, count + 1))}
    cmd = playbook(
        "-i", str(inv), "playbooks/patch_workstations.yml",
        "-e", f"workstation_batch={count}", "-e", "workstation_max_fail_percentage=0",
        "-e", "package_cache_host=localhost", "-e", f"package_cache_log_dir={cache.log_dir}",
        "-e", f"clinical_upgrade_evidence_dir={results}",
    )  # fmt: skip
    workstations = [f"{PREFIX}bench-ws{i}" for i in range(1, count + 1)]
    pacs = [PREFIX + "bench-pacs"]
    ws_before, pacs_before = container_cpu_seconds(workstations), container_cpu_seconds(pacs)
    cache_before = process_cpu_seconds(cache.proc.pid)
    # The controller: ansible-playbook and every process it waited for (its forks, the podman exec
    # clients of the connection), counted when the playbook ends and this script reaps it.
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_before = os.getloadavg()
    started = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=run_env, stdout=out, stderr=subprocess.STDOUT)
        sampler = MemorySampler(proc.pid)
        sampler.start()
        rc = proc.wait()
        sampler.done.set()
        sampler.join()
    wall = time.monotonic() - started
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    controller_cpu = (children_after.ru_utime + children_after.ru_stime) - (
        children_before.ru_utime + children_before.ru_stime
    )
    ws_cpu = cpu_delta(ws_before, container_cpu_seconds(workstations))
    pacs_cpu = cpu_delta(pacs_before, container_cpu_seconds(pacs))
    cache_cpu = round(process_cpu_seconds(cache.proc.pid) - cache_before, 1)
    fleet = json.loads((results / "fleet-latest.json").read_text())
    outcomes = {w["host"]: w["outcome"] for w in fleet["workstations"]}
    cache_stats = fleet.get("package_cache") or {}
    remove_containers()
    remove_snapshot_images()
    return {
        "workstations": count,
        "repeat": repeat,
        "rc": rc,
        "valid": rc == 0 and set(outcomes.values()) == {"upgraded"},
        "outcomes": outcomes,
        "wall_s": round(wall, 1),
        "workstation_cpus": cpus,
        "cpu_s": {
            "controller": round(controller_cpu, 1),
            "workstations": ws_cpu,
            "pacs": pacs_cpu,
            "package_cache": cache_cpu,
        },
        "peak_tree_rss_mb": round(sampler.peak_tree / 2**20, 1),
        "peak_python_rss_mb": round(sampler.peak_python / 2**20, 1),
        "upstream_bytes": cache_stats.get("upstream_bytes"),
        "served_bytes": cache_stats.get("served_bytes"),
        "packages_installed": sum(w.get("changes") or 0 for w in fleet["workstations"]),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "log": str(log),
    }


def summarise(runs: list[dict], workstations: int) -> dict:
    def med(count: int, key: str):
        return median([r[key] for r in runs if r["workstations"] == count and r["valid"]])

    one_wall, n_wall = med(1, "wall_s"), med(workstations, "wall_s")
    one_up, n_up = med(1, "upstream_bytes"), med(workstations, "upstream_bytes")
    ratios = [
        (n["wall_s"] / o["wall_s"], n["upstream_bytes"] / o["upstream_bytes"])
        for o in runs
        for n in runs
        if o["repeat"] == n["repeat"] and o["workstations"] == 1 and n["workstations"] == workstations
        and o["valid"] and n["valid"] and o["upstream_bytes"]
    ]  # fmt: skip
    return {
        "workstations": workstations,
        "valid_runs": sum(r["valid"] for r in runs),
        "runs": len(runs),
        "median_wall_s": {"1": one_wall, str(workstations): n_wall},
        "median_time_ratio": median([t for t, _ in ratios]),
        "median_upstream_bytes": {"1": one_up, str(workstations): n_up},
        "median_upstream_ratio": median([u for _, u in ratios]),
        "median_served_bytes": {"1": med(1, "served_bytes"), str(workstations): med(workstations, "served_bytes")},
        "median_peak_tree_rss_mb": {
            "1": med(1, "peak_tree_rss_mb"),
            str(workstations): med(workstations, "peak_tree_rss_mb"),
        },
        "median_peak_python_rss_mb": {
            "1": med(1, "peak_python_rss_mb"),
            str(workstations): med(workstations, "peak_python_rss_mb"),
        },
        # Where the CPU went (median seconds per part): the controller (Ansible and the podman exec
        # clients of its connection), the workstations' containers together, the PACS, the cache.
        "median_cpu_s": {
            str(count): {
                part: median([r["cpu_s"][part] for r in runs if r["workstations"] == count and r["valid"]])
                for part in ("controller", "workstations", "pacs", "package_cache")
            }
            for count in (1, workstations)
        },
        "workstation_cpus": runs[0]["workstation_cpus"] if runs else None,
        "goals": {"time_ratio_at_most": GOAL_TIME_RATIO, "upstream_ratio_at_most": GOAL_UPSTREAM_RATIO},
        "machine": {"cpus": os.cpu_count(), "load_end": [round(x, 2) for x in os.getloadavg()]},
    }


def goals_missed(summary: dict) -> list[str]:
    missed = []
    if summary["valid_runs"] < summary["runs"]:
        missed.append(f"{summary['runs'] - summary['valid_runs']} measurement(s) did not upgrade every workstation")
    if summary["median_time_ratio"] is None or summary["median_time_ratio"] > GOAL_TIME_RATIO:
        missed.append(f"time ratio {summary['median_time_ratio']} > {GOAL_TIME_RATIO}")
    if summary["median_upstream_ratio"] is None or summary["median_upstream_ratio"] > GOAL_UPSTREAM_RATIO:
        missed.append(f"upstream ratio {summary['median_upstream_ratio']} > {GOAL_UPSTREAM_RATIO}")
    return missed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workstations", "-n", type=int, default=8, help="the fleet's size N (default 8)")
    parser.add_argument("--repeat", type=int, default=3, help="repeats of 1 then N (default 3)")
    parser.add_argument("--json", type=Path, default=RESULTS / "workstation_fleet.json")
    parser.add_argument("--workdir", type=Path, help="keep logs and evidence here (default: a temporary directory)")
    parser.add_argument("--check-goal", action="store_true", help="exit 1 when a median misses a goal")
    parser.add_argument(
        "--workstation-cpus",
        type=float,
        help="give each workstation container this many CPUs (podman --cpus), in the run of 1 as in the run "
        "of N, as a site's workstations each have their own; default: no limit, all share the machine",
    )
    args = parser.parse_args(argv)
    if args.workstation_cpus is not None and not 0 < args.workstation_cpus <= (os.cpu_count() or 1):
        parser.error(f"--workstation-cpus must be above 0 and at most this machine's {os.cpu_count()} CPUs")
    if not 2 <= args.workstations <= 32:
        parser.error("--workstations must be between 2 and 32 (the bench PACS knows 32 workstation AE titles)")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="cu-bench-fleet-"))
    workdir.mkdir(parents=True, exist_ok=True)
    cache = Cache(workdir)
    runs: list[dict] = []
    try:
        setup(workdir, cache, args.workstations)
        for repeat in range(1, args.repeat + 1):
            for count in (1, args.workstations):
                result = measure(workdir, cache, count, repeat, args.workstation_cpus)
                runs.append(result)
                print(json.dumps({k: v for k, v in result.items() if k != "outcomes"}), flush=True)
    finally:
        cache.stop()
        remove_containers()
        # --ignore: the template is gone after the setup, and without it podman removed neither.
        podman("rm", "-f", "--ignore", "-t", "2", PREFIX + "bench-pacs", PREFIX + "bench-template", check=False)
        podman("rmi", "-f", START_IMAGE, check=False)
        remove_snapshot_images()
    summary = summarise(runs, args.workstations)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"summary": summary, "runs": runs}, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    missed = goals_missed(summary)
    for line in missed:
        print(f"goal missed: {line}", file=sys.stderr)
    return 1 if args.check_goal and missed else 0


if __name__ == "__main__":
    sys.exit(main())
