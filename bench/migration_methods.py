#!/usr/bin/env python3
# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""The ways one Orthanc can copy its archive into another, measured side by side (a benchmark, not a test).

The issue asks migrate.yml to choose "the fastest method that keeps every instance byte for byte
(Orthanc's own transfer jobs, C-MOVE/C-GET, or REST), measured, not guessed". This bench measures,
on the same seeded source (bench/migration.py's varied synthetic archive) and into fresh empty targets:

- ``zip``: ``pacs_migrate`` with ``method: archive`` (the default of migrate.yml): ZIP batches of 200
  instances, 4 at a time, the source writing them (/tools/create-archive), the target unpacking them;
- ``instance``: ``pacs_migrate`` with ``method: instance``: one file at a time, 4 at a time;
- ``peer``: the source's own transfer job over HTTP (POST /peers/{target}/store, one job);
- ``cstore``: the source's own C-STORE job to the target (POST /modalities/{target}/store, one job: one
  association, what a C-MOVE from the target would also give);
- ``cstore2``: two such jobs at once, each with half the studies;
- ``cloner``: orthanc-tools' OrthancCloner (4 threads), the peer of the issue's goal (``make bench-deps``);
- ``ceiling``: not a method but the target's own limit: the same ZIP batches as ``zip``, fetched from the
  source before the clock starts, then only posted to the target, 4 at a time. No copy through this
  target's REST API can be faster on this machine.

Each target is then reconciled with the source (every instance's recorded MD5), and a run counts only
with 0 discrepancies. Printed and written: the wall time and instances per second of each run, the
machine's load before each, and the medians per method.

    .venv/bin/python bench/migration_methods.py --studies 20 --repeat 3 --json results/migration_methods.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tools"))

import ansible_json  # noqa: E402
from migration import INSTANCES, SERIES, Orthanc, module_utils, reconcile, run_cloner  # noqa: E402
from upgrade_downtime import RESULTS, ROOT, median  # noqa: E402

METHODS = ("zip", "instance", "peer", "cstore", "cstore2", "cloner", "ceiling")
# Studies per ZIP in ceiling: pacs_migrate's default batch of 200 instances, in whole studies.
BATCH_STUDIES = max(1, 200 // (SERIES * INSTANCES))
JOB_TIMEOUT_S = 1800


def wait_job(orthanc: Orthanc, job: str) -> None:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        state = orthanc.get(f"/jobs/{job}")
        if state["State"] == "Success":
            return
        if state["State"] == "Failure":
            raise SystemExit(f"job {job} failed: {state.get('ErrorDescription')} ({state.get('ErrorDetails')})")
        time.sleep(0.1)
    raise SystemExit(f"job {job} did not finish within {JOB_TIMEOUT_S} s")


def post_json(orthanc: Orthanc, path: str, body: dict) -> dict:
    return orthanc.post(path, json.dumps(body).encode())


def fetch_batches(source: Orthanc, studies: list[str]) -> list[bytes]:
    """The source's ZIPs of BATCH_STUDIES studies each, as pacs_migrate's archive method asks for them."""
    groups = [studies[k : k + BATCH_STUDIES] for k in range(0, len(studies), BATCH_STUDIES)]
    body = [json.dumps({"Resources": group, "Synchronous": True}).encode() for group in groups]
    return [source._request("/tools/create-archive", b, method="POST", raw=True) for b in body]


def copy(method: str, source: Orthanc, target: Orthanc, studies: list[str], batches: list[bytes]) -> float:
    """Copy the source into the target by one method; the seconds it took."""
    if method == "cloner":
        return run_cloner(source, target, 4)
    started = time.monotonic()
    if method == "ceiling":
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda data: target.post("/instances", data), batches))
    elif method in ("zip", "instance"):
        args = {"source": source.rest(), "target": target.rest(), "workers": 4,
                "method": "archive" if method == "zip" else "instance"}  # fmt: skip
        _, result = ansible_json.run_module("pacs_migrate", args)
        if result.get("failed"):
            raise SystemExit(f"pacs_migrate failed: {result.get('msg')}")
    elif method == "peer":
        source.put("/peers/target", {"Url": target.url + "/", "Username": target.user, "Password": target.password})
        wait_job(source, post_json(source, "/peers/target/store", {"Resources": studies, "Asynchronous": True})["ID"])
    else:
        source.put("/modalities/target", {"AET": target.aet, "Host": "127.0.0.1", "Port": target.dicom_port})
        jobs = 2 if method == "cstore2" else 1
        bodies = [{"Resources": studies[k::jobs], "Asynchronous": True} for k in range(jobs)]
        ids = [post_json(source, "/modalities/target/store", body)["ID"] for body in bodies]
        for job in ids:
            wait_job(source, job)
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=20, help="studies of 5 x 10 instances (default 20: 1,000)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}")
    parser.add_argument("--json", type=Path, default=RESULTS / "migration_methods.json")
    args = parser.parse_args(argv)
    methods = args.methods.split(",")
    if args.studies < 1 or args.repeat < 1 or not set(methods) <= set(METHODS):
        parser.error(f"--studies and --repeat must be 1 or more, --methods of {', '.join(METHODS)}")
    if "cloner" in methods:
        try:
            import orthanc_tools  # noqa: F401
        except ImportError:
            parser.error("orthanc-tools is not installed: run make bench-deps")
    _, dicom_synth = module_utils()
    seed = ROOT / "lab" / "state" / f"bench-migration-{args.studies}x{SERIES}x{INSTANCES}-64px"
    manifest = dicom_synth.generate_studies(seed, args.studies, SERIES, INSTANCES, 64, varied=True)
    workdir = Path(tempfile.mkdtemp(prefix="cu-bench-methods-"))
    source = Orthanc(workdir, "source", aet="SOURCE")
    runs = []
    try:
        for entry in manifest.values():
            source.post("/instances", (seed / entry["path"]).read_bytes())
        studies = source.get("/studies")
        for repeat in range(1, args.repeat + 1):
            for method in methods:
                target = Orthanc(workdir, f"target-{method}-{repeat}", aet="TARGET")
                load = os.getloadavg()[0]
                try:
                    batches = fetch_batches(source, studies) if method == "ceiling" else []
                    wall = copy(method, source, target, studies, batches)
                    check = reconcile(source, target)
                finally:
                    target.stop()
                runs.append({"repeat": repeat, "method": method, "instances": len(manifest), "wall_s": round(wall, 2),
                             "instances_per_second": round(len(manifest) / wall, 1), "valid": check["passed"],
                             "discrepancies": check["discrepancies"], "load_before": round(load, 2)})  # fmt: skip
                print(json.dumps(runs[-1]), flush=True)
    finally:
        source.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    summary = {method: {"median_instances_per_second": median([r["instances_per_second"] for r in runs
                                                                if r["method"] == method and r["valid"]]),
                        "invalid_runs": sum(1 for r in runs if r["method"] == method and not r["valid"])}
               for method in methods}  # fmt: skip
    summary["machine"] = {"cpus": os.cpu_count(), "load_end": [round(x, 2) for x in os.getloadavg()]}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"summary": summary, "runs": runs}, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
