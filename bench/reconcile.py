#!/usr/bin/env python3
"""Reconciling two archives of about 100,000 instances: dicom_reconcile against orthanc-tools'
OrthancComparator (a benchmark, not a test).

Setup, once (kept in ``lab/state/bench-reconcile-<N>`` for the next run): the project's varied synthetic
archive (``--studies`` x 4 series x 25 instances, 16 px images: the count matters here, not the size) is
stored into a source Orthanc (Debian's, a process of its own on loopback) in ZIP batches; the target is a
copy of the source's storage and index, in which the bench then deletes 5 instances and alters 1 (known
discrepancies both tools must find).

Each repeat, on the same two running archives:

* ``reconcile``: the ``dicom_reconcile`` module run by Ansible (``ansible localhost -m dicom_reconcile``,
  method rest, its default deep check of 500 studies' files); it must report exactly the 5 missing and the
  1 differing instance;
* ``comparator``: orthanc-tools' ``OrthancComparator`` at ``Instance`` level, as sites run it (the target
  Orthanc compares itself with the source, which it queries over DICOM C-FIND, day by day over the study
  dates), with its 1 s pause per day taken out (``time.sleep`` patched away), so that only its work is
  timed, which is the comparison least favourable to the project.

Reported per repeat and as medians: the wall time of each, the ratio comparator / reconcile within each
repeat, and the machine's load.

    make bench-deps                                     # orthanc-tools 0.23.0 (hl7 kept at the project's)
    .venv/bin/python bench/reconcile.py --repeat 3 --json results/reconcile.json

Goals (issue "Migration to a new PACS"): reconcile at most 60 s and at least 10x faster than the
comparator at instance level. ``--check-goal`` exits 1 when a median misses a goal.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tools"))

import ansible_json  # noqa: E402
from migration import Orthanc, module_utils  # noqa: E402
from upgrade_downtime import RESULTS, ROOT, median  # noqa: E402

GOAL_SECONDS = 60.0
GOAL_RATIO = 10.0
SERIES, INSTANCES = 4, 25
DELETED, ALTERED = 5, 1
# Studies whose files the deep check compares: the "at least 500" (dicom_reconcile's default).
# inject() alters an instance in this sample, and run_reconcile() passes the same number.
SAMPLE_STUDIES = 500


def seed(state: Path, studies: int) -> None:
    """The source archive in state/source (created once), and the list of its studies' dates."""
    if (state / "ready").exists():
        return
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    _, dicom_synth = module_utils()
    files = state / "files"
    manifest = dicom_synth.generate_studies(files, studies, SERIES, INSTANCES, 16, varied=True)
    source = Orthanc(state, "source")
    try:
        batch = []
        for entry in manifest.values():
            batch.append(entry["path"])
            if len(batch) == 1000:
                upload(source, files, batch)
                batch = []
        if batch:
            upload(source, files, batch)
        count = source.get("/statistics")["CountInstances"]
        if count != len(manifest):
            raise SystemExit(f"the source holds {count} of {len(manifest)} instances after seeding")
    finally:
        source.proc.terminate()
        source.proc.wait(timeout=120)
        source.log.close()
    shutil.rmtree(files)
    (state / "ready").write_text(json.dumps({"instances": len(manifest), "studies": studies}))


def upload(orthanc: Orthanc, root: Path, paths: list[str]) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as archive:
        for rel in paths:
            archive.write(root / rel, rel)
    orthanc.post("/instances", buf.getvalue())


def start_pair(state: Path, workdir: Path) -> tuple[Orthanc, Orthanc]:
    """The source (from its kept storage) and the target (a copy of it), each registered with the other."""
    for name in ("source", "target"):
        shutil.copytree(state / "source" / "db", workdir / name / "db")
    source = Orthanc(workdir, "source", keep=True, aet="SOURCE")
    target = Orthanc(workdir, "target", keep=True, aet="TARGET")
    for me, other, alias in ((source, target, "target"), (target, source, "source")):
        me.put(f"/modalities/{alias}", {"AET": other.aet, "Host": "127.0.0.1", "Port": other.dicom_port})
    return source, target


def inject(target: Orthanc) -> tuple[list[str], str]:
    """Delete DELETED instances and alter one on the target; their SOP Instance UIDs.

    The deep check compares the files of a sample of the studies (SAMPLE_STUDIES of the 1,000 by default, chosen
    reproducibly by ``archive_reconcile.sample_studies``), as the issue specifies; the bench alters an
    instance of a sampled study, so that every run proves the deep check finds what it compares. The
    deleted instances are found by the inventory, which covers every instance, wherever they are."""
    from pydicom import dcmread

    archive_reconcile, _ = module_utils()
    studies = {s["MainDicomTags"]["StudyInstanceUID"]: s["ID"] for s in target.get("/studies?expand")}
    sampled = archive_reconcile.sample_studies(set(studies), SAMPLE_STUDIES)
    ids = sorted(target.get("/instances?since=0&limit=200"))
    in_sample = sorted(i["ID"] for i in target.get(f"/studies/{studies[sampled[len(sampled) // 2]]}/instances"))
    ids = [i for i in ids if i not in in_sample][:DELETED] + in_sample[:1]
    uids = [target.get(f"/instances/{i}")["MainDicomTags"]["SOPInstanceUID"] for i in ids]
    for key in ids[:DELETED]:
        target.delete(f"/instances/{key}")
    key = ids[DELETED]
    ds = dcmread(io.BytesIO(target.get_bytes(f"/instances/{key}/file")))
    ds.SeriesDescription = "ALTERED BY THE BENCH"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    target.delete(f"/instances/{key}")
    target.post("/instances", out.getvalue())
    return sorted(uids[:DELETED]), uids[DELETED]


def run_reconcile(source: Orthanc, target: Orthanc) -> tuple[float, dict]:
    args = {"source": source.rest(), "target": target.rest(), "max_discrepancy_percent": 100,
            "sample_size": SAMPLE_STUDIES}
    started = time.monotonic()
    _, result = ansible_json.run_module("dicom_reconcile", args)
    return time.monotonic() - started, result


def run_comparator(source: Orthanc, target: Orthanc, studies: int) -> float:
    import orthanc_tools.orthanc_comparator as comparator_module
    from orthanc_api_client import OrthancApiClient

    first = datetime.date(2020, 1, 6)  # dicom_synth's first study date; study s is s days later
    comparator = comparator_module.OrthancComparator(
        api_client=OrthancApiClient(target.url, user=target.user, pwd=target.password),
        from_study_date=first, to_study_date=first + datetime.timedelta(days=studies - 1),
        modality="source", level="Instance",
    )  # fmt: skip
    real_sleep = comparator_module.time.sleep
    comparator_module.time.sleep = lambda _seconds: None  # its throttling pause, not its work
    try:
        started = time.monotonic()
        comparator.execute()
        return time.monotonic() - started
    finally:
        comparator_module.time.sleep = real_sleep


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=1000, help="studies of 4 x 25 instances (1000: 100,000)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, default=RESULTS / "reconcile.json")
    parser.add_argument("--check-goal", action="store_true")
    args = parser.parse_args(argv)
    if args.studies < 1 or args.repeat < 1:
        parser.error("--studies and --repeat must be 1 or more")
    try:
        import orthanc_tools  # noqa: F401
    except ImportError:
        parser.error("orthanc-tools is not installed: run make bench-deps")
    state = ROOT / "lab" / "state" / f"bench-reconcile-{args.studies}"
    seed(state, args.studies)
    workdir = Path(tempfile.mkdtemp(prefix="cu-bench-reconcile-"))
    runs = []
    source, target = start_pair(state, workdir)
    try:
        deleted, altered = inject(target)
        for repeat in range(1, args.repeat + 1):
            load = os.getloadavg()[0]
            wall, result = run_reconcile(source, target)
            found_ok = (sorted(e["sop_instance_uid"] for e in result.get("missing", [])) == deleted
                        and [e["sop_instance_uid"] for e in result.get("differing", [])] == [altered])  # fmt: skip
            runs.append({"repeat": repeat, "contender": "reconcile", "wall_s": round(wall, 2), "valid": found_ok,
                         "instances": result.get("source", {}).get("instances"),
                         "studies_sampled": result.get("deep_check", {}).get("studies_sampled"),
                         "instances_compared": result.get("deep_check", {}).get("instances_compared"),
                         "timings_s": result.get("timings_s"), "load_before": round(load, 2)})  # fmt: skip
            if not found_ok:  # what it found instead, to see why the run does not count
                runs[-1]["found"] = {key: [e.get("sop_instance_uid") for e in result.get(key, [])][:20]
                                     for key in ("missing", "extra", "differing", "unreadable")}  # fmt: skip
                runs[-1]["expected"] = {"missing": deleted, "differing": [altered], "msg": result.get("msg")}
            print(json.dumps(runs[-1]), flush=True)
            load = os.getloadavg()[0]
            wall = run_comparator(source, target, args.studies)
            runs.append({"repeat": repeat, "contender": "comparator", "wall_s": round(wall, 2), "valid": True,
                         "load_before": round(load, 2)})  # fmt: skip
            print(json.dumps(runs[-1]), flush=True)
    finally:
        source.stop()
        target.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    summary = summarise(runs)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"summary": summary, "runs": runs}, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    missed = (summary["median_reconcile_s"] is None or summary["median_reconcile_s"] > GOAL_SECONDS
              or summary["median_ratio"] is None or summary["median_ratio"] < GOAL_RATIO or summary["invalid_runs"])
    return 1 if args.check_goal and missed else 0


def summarise(runs: list[dict]) -> dict:
    def wall(tag, n):
        match = [r["wall_s"] for r in runs if r["contender"] == tag and r["repeat"] == n and r["valid"]]
        return match[0] if match else None

    repeats = sorted({r["repeat"] for r in runs})
    ratios = [wall("comparator", n) / wall("reconcile", n)
              for n in repeats if wall("comparator", n) and wall("reconcile", n)]  # fmt: skip
    return {
        "instances": next((r["instances"] for r in runs if r.get("instances")), None),
        "median_reconcile_s": median([wall("reconcile", n) for n in repeats]),
        "median_comparator_s": median([wall("comparator", n) for n in repeats]),
        "median_ratio": median(ratios),
        "invalid_runs": sum(not r["valid"] for r in runs),
        "goals": {"reconcile_s_at_most": GOAL_SECONDS, "ratio_at_least": GOAL_RATIO},
        "machine": {"cpus": os.cpu_count(), "load_end": [round(x, 2) for x in os.getloadavg()]},
    }


if __name__ == "__main__":
    sys.exit(main())
