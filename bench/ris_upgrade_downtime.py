#!/usr/bin/env python3
"""HL7 unavailability of the lab RIS upgrade, cu-ris 1.0 -> 1.1 (a benchmark, not a test).

For each repeat it:

1. recreates the lab's ris1 at its starting point (cu-ris 1.0) and gives it ``--orders`` orders
   (default 1,000, sent by ``tools/order_sender.py`` as fast as the RIS takes them);
2. runs ``playbooks/upgrade_ris.yml --limit ris1,localhost`` while an ordering system
   (``tools/order_sender.py``) sends an ORM^O01 new order every 100 ms (2 s timeout) and records every
   answer; afterwards every order the RIS acknowledged AA is looked up in its database;
3. the peer, on the upgraded RIS in the same repeat: ``systemctl restart ris-mllp-listener``, the
   plainest way to restart the HL7 interface, measured with the same sender;
4. unless ``--no-rollback``: recreates ris1 again and runs the same upgrade with a verification 1.1
   cannot pass (``upgrade_expected_version=1.1-injected-fault``), so that it rolls back with the orders
   1.1 acknowledged kept and re-delivered; again every acknowledged order is looked up.

An outage is the time from the first order not acknowledged to the next acknowledged one
(``order_sender.unavailability``); each is attributed to the steps of the run it overlapped. It
reports, per run and as medians over the repeats: the longest outage overlapping the switch, the
longest of the whole run, the restart's, their ratio, the switch's own measured phases, the orders
acknowledged and lost, and the machine's load.

    .venv/bin/python bench/ris_upgrade_downtime.py --repeat 3 --json results/ris_upgrade_downtime.json

Needs the lab (make lab-up: ris1, and pacs1 for the workflow check) and takes a few minutes per
repeat. Goals (issue "RIS upgrade"): the HL7 interface unavailable at most 1 s during the switch; zero
acknowledged orders lost. ``--check-goal`` exits 1 when a median misses a goal or an order was lost.
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
sys.path.insert(0, str(HERE.parent / "tools"))

from order_sender import Sender, acknowledged, records, unavailability  # noqa: E402
from upgrade_downtime import RESULTS, ROOT, latest_evidence, median, playbook, run  # noqa: E402
from upgrade_downtime import attribute as pacs_attribute  # noqa: E402

GOAL_SWITCH_UNAVAILABLE_S = 1.0
HL7 = ("127.0.0.1", 12575)
CONTAINER = "cu-lab-ris1"
INTERVAL = 0.1


def podman(*args: str, check: bool = True) -> str:
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(ROOT / "lab" / "containers.conf"))
    return subprocess.run(["podman", *args], env=env, capture_output=True, text=True, check=check, timeout=300).stdout


def fresh_ris1(logdir: Path, orders: int) -> None:
    for name, book in (("lab_down", "playbooks/lab_down.yml"), ("lab_up", "playbooks/lab.yml")):
        rc, _ = run(playbook(book, "--limit", "ris1,localhost"), logdir / f"{name}.log")
        if rc != 0:
            raise SystemExit(f"recreating ris1 failed: see {logdir / f'{name}.log'}")
    if orders:
        seed = Sender(*HL7, logdir / "seed-orders.jsonl", interval=0.0, max_count=orders, prefix="SEED")
        seed.run()
        if seed.summary()["acknowledged"] != orders:
            raise SystemExit(f"ris1 took {seed.summary()} of the {orders} seed orders")


def stored_accessions() -> set[str]:
    out = podman("exec", CONTAINER, "/opt/cu-ris/current/bin/ris-orders", "--db", "/var/lib/ris/orders.sqlite", "list")
    return {row["accession"] for row in json.loads(out)}


def attribute(outages: list[dict], steps: list[dict]) -> list[dict]:
    """Each outage with the steps of the run it overlapped (upgrade_downtime.attribute's overlap)."""
    spans = [(o["start"], o["end"]) for o in outages]
    return [{**o, "steps": a["steps"]} for o, a in zip(outages, pacs_attribute(spans, steps, 0.0), strict=True)]


def with_sender(out: Path, action) -> tuple[dict, list[dict]]:
    """Run ``action()`` while the ordering system sends; return (its result, the sender's records)."""
    out.unlink(missing_ok=True)
    sender = Sender(*HL7, out, interval=INTERVAL, max_seconds=3600, prefix="BENCH")
    sender.start()
    time.sleep(1.0)
    try:
        result = action()
        time.sleep(1.0)
    finally:
        sender.stop()
        sender.join(timeout=30)
    return result, records(out)


def lost(out: Path) -> tuple[int, int]:
    acks = acknowledged(out)
    stored = stored_accessions()
    return len(acks), sum(1 for a in acks if a["accession"] not in stored)


def upgrade_run(kind: str, logdir: Path, args) -> dict:
    fresh_ris1(logdir, args.orders)
    extra = ["-e", "upgrade_expected_version=1.1-injected-fault"] if kind == "rollback" else []
    started = time.time()
    sent = logdir / f"{kind}-orders.jsonl"
    (rc, wall), recs = with_sender(sent, lambda: run(
        playbook("playbooks/upgrade_ris.yml", "--limit", "ris1,localhost", *extra), logdir / f"{kind}.log"))
    evidence = latest_evidence(started, "ris1")
    outages = attribute(unavailability(recs, INTERVAL)["outages"], evidence.get("steps") or [])
    acked, missing = lost(sent)
    switch_outages = [o["seconds"] for o in outages if "switch" in o["steps"]]
    result = {
        "kind": kind, "rc": rc, "wall_s": round(wall, 1), "outcome": evidence.get("outcome"),
        "orders_acknowledged": acked, "orders_lost": missing,
        "longest_s": max((o["seconds"] for o in outages), default=0.0),
        "switch_unavailable_s": max(switch_outages, default=0.0),
        "switch_phases": (evidence.get("switch") or {}).get("phases"),
        "outages": outages, "load": os.getloadavg(),
    }
    if kind == "rollback":
        result["preserved"] = (evidence.get("preserved") or {}).get("count")
        result["redelivered"] = len((evidence.get("redelivered") or {}).get("delivered") or [])
        result["rollback_wall_s"] = (evidence.get("timings") or {}).get("rollback_wall_s")
    return result


def restart_run(logdir: Path) -> dict:
    """The peer: a plain restart of the running listener, measured with the same ordering system."""
    sent = logdir / "restart-orders.jsonl"
    _, recs = with_sender(sent, lambda: podman("exec", CONTAINER, "systemctl", "restart", "ris-mllp-listener"))
    acked, missing = lost(sent)
    outages = unavailability(recs, INTERVAL)["outages"]
    return {"kind": "restart", "longest_s": max((o["seconds"] for o in outages), default=0.0),
            "orders_acknowledged": acked, "orders_lost": missing, "load": os.getloadavg()}


def summarise(repeats: list[dict]) -> dict:
    ups = [r["upgrade"] for r in repeats]
    restarts = [r["restart"] for r in repeats]
    rollbacks = [r["rollback"] for r in repeats if r.get("rollback")]
    ratio = [u["switch_unavailable_s"] / r["longest_s"] for u, r in zip(ups, restarts, strict=True) if r["longest_s"]]
    summary = {
        "repeats": len(repeats),
        "upgraded": sum(u["outcome"] == "upgraded" for u in ups),
        "switch_unavailable_s_median": median([u["switch_unavailable_s"] for u in ups]),
        "switch_unavailable_s_all": [u["switch_unavailable_s"] for u in ups],
        "longest_unavailable_s_median": median([u["longest_s"] for u in ups]),
        "restart_unavailable_s_median": median([r["longest_s"] for r in restarts]),
        "switch_to_restart_ratio_median": median(ratio),
        "orders_acknowledged": sum(u["orders_acknowledged"] for u in ups + restarts + rollbacks),
        "orders_lost": sum(u["orders_lost"] for u in ups + restarts + rollbacks),
        "load_after": os.getloadavg(),
        "goal_switch_unavailable_s": GOAL_SWITCH_UNAVAILABLE_S,
    }
    if rollbacks:
        summary.update({
            "rolled_back": sum(r["outcome"] == "rolled_back" for r in rollbacks),
            "rollback_longest_unavailable_s_median": median([r["longest_s"] for r in rollbacks]),
            "rollback_wall_s_median": median([r["rollback_wall_s"] for r in rollbacks]),
            "rollback_redelivered": [r["redelivered"] for r in rollbacks],
        })
    return summary


def goals_missed(summary: dict) -> list[str]:
    missed = []
    switch = summary["switch_unavailable_s_median"]
    if switch is None or switch > GOAL_SWITCH_UNAVAILABLE_S:
        missed.append(f"HL7 unavailable {summary['switch_unavailable_s_median']} s during the switch "
                      f"(goal {GOAL_SWITCH_UNAVAILABLE_S} s)")
    if summary["orders_lost"]:
        missed.append(f"{summary['orders_lost']} acknowledged orders lost (goal 0)")
    if summary["upgraded"] != summary["repeats"]:
        missed.append(f"{summary['repeats'] - summary['upgraded']} upgrade(s) did not end upgraded")
    if "rolled_back" in summary and summary["rolled_back"] != summary["repeats"]:
        missed.append(f"{summary['repeats'] - summary['rolled_back']} faulty run(s) did not end rolled_back")
    return missed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeat", type=int, default=3, help="repeats (default 3)")
    p.add_argument("--orders", type=int, default=1000, help="orders in ris1 before each run (default 1000)")
    p.add_argument("--no-rollback", dest="rollback", action="store_false", help="skip the faulty run")
    p.add_argument("--json", type=Path, help="write every run and the summary here")
    p.add_argument("--check-goal", action="store_true", help="exit 1 when a goal is missed")
    args = p.parse_args(argv)
    if args.repeat < 1 or args.orders < 0:
        p.error("--repeat must be at least 1 and --orders at least 0")
    logdir = RESULTS / "bench-ris"
    logdir.mkdir(parents=True, exist_ok=True)
    repeats = []
    for i in range(args.repeat):
        upgrade = upgrade_run("upgrade", logdir, args)
        restart = restart_run(logdir)
        rollback = upgrade_run("rollback", logdir, args) if args.rollback else None
        repeats.append({"upgrade": upgrade, "restart": restart, "rollback": rollback})
        print(json.dumps({"repeat": i + 1, "switch_unavailable_s": upgrade["switch_unavailable_s"],
                          "restart_s": restart["longest_s"], "lost": upgrade["orders_lost"]
                          + restart["orders_lost"] + (rollback or {}).get("orders_lost", 0),
                          "rollback": (rollback or {}).get("outcome")}), flush=True)
    summary = summarise(repeats)
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": summary, "repeats": repeats}, indent=1) + "\n")
    missed = goals_missed(summary)
    for line in missed:
        print(f"GOAL MISSED: {line}", file=sys.stderr)
    return 1 if missed and args.check_goal else 0


if __name__ == "__main__":
    sys.exit(main())
