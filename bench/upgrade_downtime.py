#!/usr/bin/env python3
"""Downtime and rollback time of the lab PACS upgrade (a benchmark, not a test).

For each repeat it:

1. recreates the lab's pacs1 at its starting point (Debian 12, Orthanc 1.10.1, seeded),
2. runs ``playbooks/upgrade_pacs.yml --limit pacs1`` while a probe sends a C-ECHO every
   100 ms (the project's DICOM client, 1 s timeout) and records every answer,
3. recreates pacs1 again and runs the same upgrade with an injected fault, so that it rolls
   back: ``--fault verify`` (default) a verification the new version cannot pass
   (``bench/fault_pacs1.yml``), ``--fault config`` a configuration the new version cannot start
   with (``bench/fault_config_pacs1.yml``).

``--studies N`` seeds pacs1 with N studies of 30 instances (default 20: 600 instances; 334 gives
10,020), from a seed directory of its own (``lab/state/seed-<N>``).

Through every run a synthetic modality (``tools/modality_sender.py``) stores an instance every
200 ms; afterwards every store the PACS acknowledged is looked up on it (goal: none lost).
``--no-sender`` runs without it.

It reports, per run and as medians over the repeats: the longest and the total time the
PACS did not answer C-ECHO, each interval with the steps of the run it overlapped (snapshot,
switch, revert...), the upgrade's wall time, the switch downtime the playbook measured, the
longest time one store of the modality took (a hang), the machine's load, and for the faulty run
the rollback wall time and the time from the failure until the PACS answered again
(``back_after_failure_s``: the end of the outage the rollback caused, in the switch, preserve or
revert step; ``last_outage_end_after_failure_s``: the end of the run's last outage, whatever its
cause).

    .venv/bin/python bench/upgrade_downtime.py --repeat 3 --json results/upgrade_downtime.json

Needs the lab's images and the other lab hosts (make lab-up) and takes a few minutes per
repeat. Goals (issue "A live PACS"): 0 acknowledged stores lost; the upgrade under a sending
modality succeeds; longest unavailability at most 6 s; service back within 60 s of a failure; no
store hangs longer than 10 s. ``--check-goal`` exits 1 when a median misses a goal.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULE_UTILS = ROOT / "plugins" / "module_utils"
VENV_BIN = Path(sys.executable).parent
RESULTS = ROOT / "results"

GOAL_UNAVAILABLE_S = 6.0
GOAL_BACK_AFTER_FAILURE_S = 60.0
GOAL_LONGEST_STORE_S = 10.0
FAULTS = {"verify": "bench/fault_pacs1.yml", "config": "bench/fault_config_pacs1.yml"}


def _client_module():
    import ansible.module_utils

    if str(MODULE_UTILS) not in ansible.module_utils.__path__:
        ansible.module_utils.__path__.insert(0, str(MODULE_UTILS))
    from ansible.module_utils import dicom_client

    return dicom_client


class EchoProbe(threading.Thread):
    """C-ECHO every `interval` seconds; records (timestamp, ok) for each attempt."""

    def __init__(self, host: str, port: int, called_ae: str, calling_ae: str, interval: float = 0.1):
        super().__init__(daemon=True)
        dicom_client = _client_module()
        self.client = dicom_client.build_client(
            {"host": host, "port": port, "called_ae": called_ae, "calling_ae": calling_ae, "timeout": 1.0}
        )
        self.error = dicom_client.DicomError
        self.interval = interval
        self.samples: list[tuple[float, bool]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            started = time.time()
            try:
                self.client.echo()
                ok = True
            except self.error:
                ok = False
            self.samples.append((started, ok))
            self._halt.wait(max(0.0, self.interval - (time.time() - started)))

    def stop(self) -> list[tuple[float, bool]]:
        self._halt.set()
        self.join(timeout=5)
        return self.samples


def outages(samples: list[tuple[float, bool]]) -> list[tuple[float, float]]:
    """(start, end) of each run of failed echoes: from the last success before to the first success after."""
    spans, last_ok, down_since = [], None, None
    for ts, ok in samples:
        if not ok and down_since is None:
            down_since = last_ok if last_ok is not None else ts
        if ok:
            if down_since is not None:
                spans.append((down_since, ts))
                down_since = None
            last_ok = ts
    if down_since is not None and samples:
        spans.append((down_since, samples[-1][0]))
    return spans


def run(cmd: list[str], log: Path) -> tuple[int, float]:
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(ROOT / "lab" / "containers.conf"))
    env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    started = time.time()
    with log.open("w") as out:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    return proc.returncode, time.time() - started


def playbook(*args: str) -> list[str]:
    return [str(VENV_BIN / "ansible-playbook"), *args]


def fresh_pacs1(logdir: Path, studies: int) -> None:
    rc, _ = run(playbook("playbooks/lab_down.yml", "--limit", "pacs1"), logdir / "lab_down.log")
    if rc != 0:
        raise SystemExit(f"removing pacs1 failed: see {logdir / 'lab_down.log'}")
    seed_dir = str(ROOT / "lab" / "state" / f"seed-{studies}")
    seed = [] if studies == 20 else ["-e", json.dumps({"lab_seed_studies": studies, "lab_seed_dir": seed_dir})]
    rc, _ = run(playbook("playbooks/lab.yml", "--limit", "pacs1", *seed), logdir / "lab_up.log")
    if rc != 0:
        raise SystemExit(f"recreating pacs1 failed: see {logdir / 'lab_up.log'}")


def latest_evidence(since: float, host: str = "pacs1") -> dict:
    files = [p for p in RESULTS.glob(f"upgrade-*/{host}.json") if p.stat().st_mtime >= since]
    if not files:
        raise SystemExit(f"the upgrade wrote no evidence file for {host}")
    return json.loads(max(files, key=lambda p: p.stat().st_mtime).read_text())


def lab_rest():
    """pacs1's REST API with the lab's (synthetic) credential, for counting what survived."""
    import base64
    import urllib.request

    import yaml

    vault = ROOT / "inventories/lab/group_vars/all/vault.yml"
    password = yaml.safe_load(vault.read_text())["pacs_server_rest_password"]
    token = base64.b64encode(f"cuadmin:{password}".encode()).decode()

    def lookup(sop_uid: str) -> bool:
        req = urllib.request.Request("http://127.0.0.1:18042/tools/lookup", data=sop_uid.encode(), method="POST")
        req.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - the lab's loopback port
            return any(f.get("Type") == "Instance" for f in json.loads(resp.read()))

    return lookup


def _epoch(text: str) -> float:
    import datetime as dt

    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC).timestamp()


def attribute(spans: list[tuple[float, float]], steps: list[dict], started: float) -> list[dict]:
    """Each outage as {at_s (from the run's start), duration_s, steps it overlapped}."""
    out = []
    for a, b in spans:
        names = [s["name"] for s in steps if s.get("started") and s.get("ended")
                 and _epoch(s["started"]) <= b and _epoch(s["ended"]) >= a]
        out.append({"at_s": round(a - started, 1), "duration_s": round(b - a, 2), "steps": names})
    return out


def one_run(kind: str, logdir: Path, args) -> dict:
    fresh_pacs1(logdir, args.studies)
    probe = EchoProbe(args.host, args.port, args.aet, args.calling_aet)
    probe.start()
    sender = None
    if args.sender:
        sys.path.insert(0, str(ROOT / "tools"))
        from modality_sender import Sender, acknowledged

        sent = logdir / f"{kind}-sent.jsonl"
        sent.unlink(missing_ok=True)
        sender = Sender(args.host, args.port, args.aet, "CUMODALITY", sent, interval=0.2, max_seconds=1800)
        sender.start()
    time.sleep(1.0)
    extra = ["-i", "inventories/lab/hosts.yml", "-i", FAULTS[args.fault]] if kind == "rollback" else []
    started = time.time()
    rc, wall = run(playbook(*extra, "playbooks/upgrade_pacs.yml", "--limit", "pacs1,localhost"),
                   logdir / f"{kind}.log")
    time.sleep(2.0)
    samples = probe.stop()
    lost, acked, longest_store = None, None, None
    if sender is not None:
        sender.stop()
        sender.join(timeout=30)
        present = lab_rest()
        acks = acknowledged(sent)
        acked = len(acks)
        lost = sum(1 for a in acks if not present(a["sop_instance_uid"]))
        with sent.open() as handle:
            latencies = [json.loads(line).get("latency_ms") or 0 for line in handle if line.strip()]
        longest_store = round(max(latencies, default=0) / 1000, 2)
    evidence = latest_evidence(started)
    spans = outages(samples)
    result = {
        "kind": kind,
        "returncode": rc,
        "outcome": evidence["outcome"],
        "wall_s": round(wall, 1),
        "echo_attempts": len(samples),
        "longest_unavailable_s": round(max((b - a for a, b in spans), default=0.0), 2),
        "total_unavailable_s": round(sum(b - a for a, b in spans), 2),
        "outages": attribute(spans, evidence.get("steps") or [], started),
        "switch_downtime_s": evidence["timings"].get("switch_downtime_s"),
        "switch_phases": (evidence.get("switch") or {}).get("phases"),
        "acknowledged_stores": acked,
        "acknowledged_lost": lost,
        "longest_store_s": longest_store,
        "instances_seeded": args.studies * 30,
        "load_avg_1m_after": round(os.getloadavg()[0], 2),
    }
    if kind == "rollback":
        result["rollback_wall_s"] = evidence["timings"].get("rollback_wall_s")
        result.update(back_after_failure(spans, evidence.get("steps") or [],
                                         evidence["timings"].get("rollback_started_epoch"), started))
    return result


# The steps in which the rollback itself keeps the PACS from answering (it is stopped, then restored).
ROLLBACK_OUTAGE_STEPS = {"switch", "preserve", "revert"}


def back_after_failure(spans: list[tuple[float, float]], steps: list[dict], failed_at, started: float) -> dict:
    """How long after the failure the PACS answered again.

    ``back_after_failure_s``: from the failure (the rollback's start) to the end of the outage the
    rollback caused: the last outage after the failure that overlaps the switch (a failed start), the
    preserve (the PACS is stopped) or the revert. 0 when the PACS never stopped answering after it.
    ``last_outage_end_after_failure_s``: to the end of the last outage of the run, whatever its
    cause (a short one later, while the kept instances are re-delivered, counts here).
    """
    if failed_at is None:
        return {"failed_at_s": None, "back_after_failure_s": None, "last_outage_end_after_failure_s": None}
    failed_at = float(failed_at)
    attributed = attribute(spans, steps, started)
    after = [(a, b, o["steps"]) for (a, b), o in zip(spans, attributed, strict=True) if b >= failed_at]
    caused = [b for a, b, names in after if ROLLBACK_OUTAGE_STEPS.intersection(names)]
    return {
        "failed_at_s": round(failed_at - started, 1),
        "back_after_failure_s": round(max(caused) - failed_at, 1) if caused else 0.0,
        "last_outage_end_after_failure_s": round(max(b for a, b, _ in after) - failed_at, 1) if after else 0.0,
    }


def median(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 2) if values else None


def summarise(runs: list[dict], repeats: int, sender: bool, fault: str, instances: int) -> dict:
    """Medians and totals over the runs, with the goals and the machine."""
    up = [r for r in runs if r["kind"] == "upgrade"]
    rb = [r for r in runs if r["kind"] == "rollback"]
    summary = {
        "repeats": repeats,
        "upgrade": {
            "outcomes": [r["outcome"] for r in up],
            "median_longest_unavailable_s": median([r["longest_unavailable_s"] for r in up]),
            "median_total_unavailable_s": median([r["total_unavailable_s"] for r in up]),
            "median_wall_s": median([r["wall_s"] for r in up]),
            "median_switch_downtime_s": median([float(r["switch_downtime_s"]) for r in up if r["switch_downtime_s"]]),
            "acknowledged_stores": sum(r["acknowledged_stores"] or 0 for r in up),
            "acknowledged_lost": sum(r["acknowledged_lost"] or 0 for r in up),
            "median_longest_store_s": median([r["longest_store_s"] for r in up]),
        },
        "rollback": {
            "outcomes": [r["outcome"] for r in rb],
            "median_wall_s": median([r["wall_s"] for r in rb]),
            "median_rollback_wall_s": median([float(r["rollback_wall_s"]) for r in rb if r.get("rollback_wall_s")]),
            "median_back_after_failure_s": median([r.get("back_after_failure_s") for r in rb]),
            "median_last_outage_end_after_failure_s": median([r.get("last_outage_end_after_failure_s") for r in rb]),
            "median_longest_unavailable_s": median([r["longest_unavailable_s"] for r in rb]),
            "acknowledged_stores": sum(r["acknowledged_stores"] or 0 for r in rb),
            "acknowledged_lost": sum(r["acknowledged_lost"] or 0 for r in rb),
            "median_longest_store_s": median([r["longest_store_s"] for r in rb]),
        },
        "sender": sender,
        "fault": fault,
        "instances_seeded": instances,
        "goals": {"unavailable_s": GOAL_UNAVAILABLE_S, "back_after_failure_s": GOAL_BACK_AFTER_FAILURE_S,
                  "longest_store_s": GOAL_LONGEST_STORE_S},
        "machine": {"cores": os.cpu_count(), "load_avg": os.getloadavg()},
    }
    return summary


def goals_missed(runs: list[dict], summary: dict) -> list[str]:
    """What the runs missed of the goals (empty: every goal met)."""
    up = [r for r in runs if r["kind"] == "upgrade"]
    rb = [r for r in runs if r["kind"] == "rollback"]
    missed = []
    if up and not all(r["outcome"] == "upgraded" for r in up):
        missed.append("an upgrade run did not end upgraded")
    if rb and not all(r["outcome"] == "rolled_back" for r in rb):
        missed.append("a faulty run did not end rolled_back")
    longest = summary["upgrade"]["median_longest_unavailable_s"]
    if up and (longest is None or longest > GOAL_UNAVAILABLE_S):
        missed.append(f"median longest unavailability {longest} s > {GOAL_UNAVAILABLE_S} s")
    back = summary["rollback"]["median_back_after_failure_s"]
    if rb and (back is None or back > GOAL_BACK_AFTER_FAILURE_S):
        missed.append(f"median time back after the failure {back} s > {GOAL_BACK_AFTER_FAILURE_S} s")
    for kind_runs, name in ((up, "upgrade"), (rb, "rollback")):
        hang = median([r["longest_store_s"] for r in kind_runs])
        if hang is not None and hang > GOAL_LONGEST_STORE_S:
            missed.append(f"median longest store through the {name} runs {hang} s > {GOAL_LONGEST_STORE_S} s")
        lost_total = sum(r["acknowledged_lost"] or 0 for r in kind_runs)
        if lost_total:
            missed.append(f"{lost_total} acknowledged stores lost through the {name} runs (goal 0)")
    return missed


def rescore(path: Path) -> dict:
    """Add back_after_failure_s as defined now to rollback runs saved by the earlier version of this
    script, which saved as back_after_failure_s the end of the run's last outage after the failure.

    The failure's time is that end less the saved figure (the outages' at_s are rounded to 0.1 s);
    the saved figure becomes last_outage_end_after_failure_s. Runs saved by this version are kept.
    """
    data = json.loads(path.read_text())
    for run in data["runs"]:
        if run["kind"] != "rollback" or "failed_at_s" in run or run.get("back_after_failure_s") is None:
            continue
        ends = [(o["at_s"] + o["duration_s"], o["steps"]) for o in run["outages"]]
        last_end = max((end for end, _ in ends), default=None)
        old = float(run["back_after_failure_s"])
        if last_end is None or old == 0.0:
            run.update({"failed_at_s": None, "last_outage_end_after_failure_s": old})
            continue
        failed_at = last_end - old
        caused = [end for end, names in ends if end >= failed_at and ROLLBACK_OUTAGE_STEPS.intersection(names)]
        run.update({"failed_at_s": round(failed_at, 1), "last_outage_end_after_failure_s": old,
                    "back_after_failure_s": round(max(caused) - failed_at, 1) if caused else 0.0,
                    "rescored": "back_after_failure_s from the saved outages (bench --rescore)"})
    old_summary = data["summary"]
    data["summary"] = summarise(data["runs"], old_summary["repeats"], old_summary["sender"], old_summary["fault"],
                                old_summary["instances_seeded"])
    data["summary"]["machine"] = old_summary["machine"]
    path.write_text(json.dumps(data, indent=2) + "\n")
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=1, help="upgrade + rollback pairs to run (default 1)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=14242, help="pacs1's DICOM port on the controller")
    parser.add_argument("--aet", default="PACS1")
    parser.add_argument("--calling-aet", default="CUVERIFY")
    parser.add_argument("--only", choices=["upgrade", "rollback"], help="run one kind only")
    parser.add_argument("--json", type=Path, help="write all results here")
    parser.add_argument("--check-goal", action="store_true", help="exit 1 when a median misses its goal")
    parser.add_argument("--fault", choices=sorted(FAULTS), default="verify",
                        help="the rollback runs' fault: a failed verification or a configuration that cannot start")
    parser.add_argument("--studies", type=int, default=20, help="seeded studies of 30 instances (default 20)")
    parser.add_argument("--no-sender", dest="sender", action="store_false",
                        help="no modality storing every 200 ms during the runs (the default sends)")
    parser.add_argument("--rescore", type=Path, metavar="JSON",
                        help="recompute a results file saved by the earlier version of this script; runs nothing")
    args = parser.parse_args(argv)
    if args.rescore:
        data = rescore(args.rescore)
        print(json.dumps(data["summary"], indent=2))
        for m in goals_missed(data["runs"], data["summary"]):
            print("goal missed:", m, file=sys.stderr)
        return 0

    logdir = RESULTS / "bench-upgrade"
    logdir.mkdir(parents=True, exist_ok=True)
    kinds = [args.only] if args.only else ["upgrade", "rollback"]
    runs = []
    for i in range(args.repeat):
        for kind in kinds:
            r = one_run(kind, logdir, args)
            r["repeat"] = i + 1
            runs.append(r)
            print(json.dumps(r), flush=True)

    summary = summarise(runs, args.repeat, args.sender, args.fault, args.studies * 30)
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"runs": runs, "summary": summary}, indent=2) + "\n")

    missed = goals_missed(runs, summary)
    for m in missed:
        print("goal missed:", m, file=sys.stderr)
    return 1 if (missed and args.check_goal) else 0


if __name__ == "__main__":
    sys.exit(main())
