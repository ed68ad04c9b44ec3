#!/usr/bin/env python3
"""A PACS migration by playbooks/migrate.yml against orthanc-tools' OrthancCloner (a benchmark, not a test).

One source Orthanc (Debian's, a process of its own on loopback) is seeded once with the project's varied
synthetic archive (``--studies`` x 5 series x 10 instances, five modalities, four transfer syntaxes). Then,
in every repeat and in this order, each contender copies it into a fresh, empty target Orthanc of the same
kind:

* ``cloner``: orthanc-tools' ``OrthancCloner`` (its default mode: each instance downloaded from the
  source and uploaded to the target, ``worker_threads_count`` = ``--workers``), run over the source's
  existing changes (``execute(existing_changes_only=True)``), as sites use it;
* ``migrate``: ``playbooks/migrate.yml`` (stage full: prechecks, bulk copy in ZIP batches, delta pass,
  the reconciliation gate at 0 %, the report), ``pacs_migration_workers`` = ``--workers``;
* ``migrate-instance``: the same playbook with ``pacs_migration_method=instance`` (file by file), the
  measured alternative to the batches.

Each target is then reconciled with the source by the project's ``dicom_reconcile`` logic (every
instance, every file's MD5): a run counts only with 0 discrepancies. Reported per run and as medians
over the repeats: instances per second of the whole run (wall time, the playbook's start and its gate
included), of the copy alone (the playbook's report), the ratio migrate / cloner within each repeat,
and the machine's load.

    make bench-deps                                     # orthanc-tools 0.23.0 (hl7 kept at the project's)
    .venv/bin/python bench/migration.py --repeat 3 --json results/migration.json

Goal (issue "Migration to a new PACS"): migrate.yml at least 3x the cloner's instances per second, with
0 discrepancies. ``--check-goal`` exits 1 when the median ratio misses it.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from upgrade_downtime import MODULE_UTILS, RESULTS, ROOT, median, playbook  # noqa: E402

GOAL_RATIO = 3.0
SERIES, INSTANCES = 5, 10


def module_utils():
    import ansible.module_utils

    if str(MODULE_UTILS) not in ansible.module_utils.__path__:
        ansible.module_utils.__path__.insert(0, str(MODULE_UTILS))
    from ansible.module_utils import archive_reconcile, dicom_synth

    return archive_reconcile, dicom_synth


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Orthanc:
    """Debian's Orthanc as a process of its own: SQLite index, files on disk, REST with a password."""

    def __init__(self, base: Path, name: str, keep: bool = False, aet: str = "ORTHANC"):
        """keep: start on the storage and index already in base/name/db."""
        self.base = base / name
        self.storage = self.base / "db"
        self.storage.mkdir(parents=True, exist_ok=keep)
        self.aet = aet
        self.http_port, self.dicom_port = free_port(), free_port()
        self.user, self.password = "cuadmin", secrets.token_urlsafe(12)
        config = {
            "Name": name, "StorageDirectory": str(self.storage), "IndexDirectory": str(self.storage),
            "StorageCompression": False, "Plugins": [], "HttpPort": self.http_port, "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True, "RegisteredUsers": {self.user: self.password},
            "DicomAet": aet, "DicomPort": self.dicom_port, "DicomAlwaysAllowEcho": True,
            "DicomModalities": {"cu-verify": ["CUVERIFY", "127.0.0.1", 11112]}, "SaveJobs": False,
            "StoreMD5ForAttachments": True, "ConcurrentJobs": 2,
        }  # fmt: skip
        (self.base / "orthanc.json").write_text(json.dumps(config))
        self.log = (self.base / "orthanc.log").open("wb")
        self.proc = subprocess.Popen(["/usr/sbin/Orthanc", str(self.base / "orthanc.json")], stdout=self.log,
                                     stderr=subprocess.STDOUT, cwd=self.base)  # fmt: skip
        for _ in range(200):
            try:
                self.get("/system")
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.1)
        raise SystemExit(f"Orthanc did not start: see {self.base / 'orthanc.log'}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def _request(self, path, body=None, method=None, raw=False):
        import base64

        method = method or ("POST" if body is not None else "GET")
        req = urllib.request.Request(self.url + path, data=body, method=method)  # noqa: S310 - loopback
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode())
        with urllib.request.urlopen(req, timeout=600) as rsp:  # noqa: S310 - loopback
            data = rsp.read()
        return data if raw else json.loads(data or b"null")

    def get(self, path):
        return self._request(path)

    def get_bytes(self, path) -> bytes:
        return self._request(path, raw=True)

    def post(self, path, body: bytes):
        return self._request(path, body)

    def put(self, path, value):
        return self._request(path, json.dumps(value).encode(), method="PUT")

    def delete(self, path):
        return self._request(path, method="DELETE")

    def rest(self) -> dict:
        return {"url": self.url, "username": self.user, "password": self.password}

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)
        self.log.close()
        shutil.rmtree(self.base, ignore_errors=True)


def inventory(workdir: Path, source: Orthanc, target: Orthanc) -> Path:
    def host(o: Orthanc) -> dict:
        return {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                "endpoint_host": "127.0.0.1", "endpoint_dicom_port": o.dicom_port, "endpoint_rest_url": o.url,
                "pacs_server_dicom_aet": "ORTHANC", "pacs_server_rest_user": o.user,
                "pacs_server_rest_password": o.password, "pacs_server_storage_dir": str(o.storage)}  # fmt: skip

    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    hosts = {"all": {"hosts": {"localhost": local, "bench-source": host(source), "bench-target": host(target)}}}
    path = workdir / "inventory.json"
    path.write_text(json.dumps(hosts))
    return path


def reconcile(source: Orthanc, target: Orthanc) -> dict:
    archive_reconcile, _ = module_utils()
    sides = [archive_reconcile.OrthancInventory(archive_reconcile.RestPool(o.url, o.user, o.password, timeout=120))
             for o in (source, target)]  # fmt: skip
    try:
        result = archive_reconcile.reconcile(*sides, sample_size=10**6, deep_check="file", max_percent=0)
    finally:
        for side in sides:
            side.close()
    return {"passed": result["passed"], "discrepancies": result["discrepancies"], "target": result["target"]}


def run_cloner(source: Orthanc, target: Orthanc, workers: int) -> float:
    from orthanc_api_client import OrthancApiClient
    from orthanc_tools import OrthancCloner

    cloner = OrthancCloner(
        source=OrthancApiClient(source.url, user=source.user, pwd=source.password),
        destination=OrthancApiClient(target.url, user=target.user, pwd=target.password),
        worker_threads_count=workers,
    )
    started = time.monotonic()
    cloner.execute(existing_changes_only=True)
    return time.monotonic() - started


def run_migrate(workdir: Path, source: Orthanc, target: Orthanc, workers: int, method: str, tag: str):
    """(wall seconds of the whole playbook, its migration report)."""
    evidence = workdir / f"evidence-{tag}"
    cmd = playbook(
        "-i", str(inventory(workdir, source, target)), "playbooks/migrate.yml",
        "-e", "pacs_migration_source=bench-source", "-e", "pacs_migration_target=bench-target",
        "-e", f"pacs_migration_workers={workers}", "-e", f"pacs_migration_method={method}",
        "-e", "pacs_migration_max_discrepancy_percent=0", "-e", f"pacs_migration_evidence_dir={evidence}",
    )  # fmt: skip
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    log = workdir / f"migrate-{tag}.log"
    started = time.monotonic()
    with log.open("w") as out:
        rc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
    wall = time.monotonic() - started
    if rc != 0:
        raise SystemExit(f"migrate.yml failed (rc {rc}): see {log}")
    return wall, json.loads((evidence / "migration-latest.json").read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=60, help="studies of 5 x 10 instances (default 60: 3,000)")
    parser.add_argument("--workers", type=int, default=4, help="threads of the cloner and batches of migrate (4)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--size", type=int, default=64, help="image edge in pixels (default 64)")
    parser.add_argument("--json", type=Path, default=RESULTS / "migration.json")
    parser.add_argument("--check-goal", action="store_true", help="exit 1 when the median ratio misses the goal")
    args = parser.parse_args(argv)
    if args.studies < 1 or args.repeat < 1 or not 1 <= args.workers <= 32:
        parser.error("--studies and --repeat must be 1 or more, --workers 1 to 32")
    try:
        import orthanc_tools  # noqa: F401
    except ImportError:
        parser.error("orthanc-tools is not installed: run make bench-deps")
    _, dicom_synth = module_utils()
    workdir = Path(tempfile.mkdtemp(prefix="cu-bench-migration-"))
    seed = ROOT / "lab" / "state" / f"bench-migration-{args.studies}x{SERIES}x{INSTANCES}-{args.size}px"
    manifest = dicom_synth.generate_studies(seed, args.studies, SERIES, INSTANCES, args.size, varied=True)
    source = Orthanc(workdir, "source")
    runs = []
    try:
        for entry in manifest.values():
            source.post("/instances", (seed / entry["path"]).read_bytes())
        total = len(manifest)
        for repeat in range(1, args.repeat + 1):
            for tag, method in (("cloner", None), ("migrate", "archive"), ("migrate-instance", "instance")):
                target = Orthanc(workdir, f"target-{tag}-{repeat}")
                load = os.getloadavg()[0]
                try:
                    if method is None:
                        wall, copy_rate = run_cloner(source, target, args.workers), None
                    else:
                        wall, report = run_migrate(workdir, source, target, args.workers, method, f"{tag}-{repeat}")
                        copy_rate = report["copy"]["instances_per_second"]
                    check = reconcile(source, target)
                finally:
                    target.stop()
                run = {"repeat": repeat, "contender": tag, "instances": total, "wall_s": round(wall, 2),
                       "instances_per_second": round(total / wall, 1), "copy_instances_per_second": copy_rate,
                       "discrepancies": check["discrepancies"], "valid": check["passed"],
                       "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2)}  # fmt: skip
                runs.append(run)
                print(json.dumps(run), flush=True)
    finally:
        source.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    summary = summarise(runs)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"summary": summary, "runs": runs}, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    missed = summary["median_ratio"] is None or summary["median_ratio"] < GOAL_RATIO or summary["invalid_runs"]
    return 1 if args.check_goal and missed else 0


def summarise(runs: list[dict]) -> dict:
    def rate(tag, repeat):
        match = [r for r in runs if r["contender"] == tag and r["repeat"] == repeat and r["valid"]]
        return match[0]["instances_per_second"] if match else None

    repeats = sorted({r["repeat"] for r in runs})
    ratios = {tag: [rate(tag, n) / rate("cloner", n) for n in repeats if rate(tag, n) and rate("cloner", n)]
              for tag in ("migrate", "migrate-instance")}  # fmt: skip
    return {
        "instances": runs[0]["instances"] if runs else 0,
        "median_instances_per_second": {
            tag: median([r["instances_per_second"] for r in runs if r["contender"] == tag and r["valid"]])
            for tag in ("cloner", "migrate", "migrate-instance")
        },
        "median_copy_instances_per_second": {
            tag: median([r["copy_instances_per_second"] for r in runs if r["contender"] == tag and r["valid"]])
            for tag in ("migrate", "migrate-instance")
        },
        "median_ratio": median(ratios["migrate"]),
        "median_ratio_instance_method": median(ratios["migrate-instance"]),
        "invalid_runs": sum(not r["valid"] for r in runs),
        "goal_ratio_at_least": GOAL_RATIO,
        "machine": {"cpus": os.cpu_count(), "load_end": [round(x, 2) for x in os.getloadavg()]},
    }


if __name__ == "__main__":
    sys.exit(main())
