#!/usr/bin/env python3
# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""DICOM check latency: association + C-ECHO + release, project client vs DCMTK echoscu.

    .venv/bin/python bench/echo_latency.py -n 50 --repeat 5 --json results/echo_latency.json

Starts its own Orthanc on loopback (temporary config and storage, free ports) unless
--host/--port/--aet name a running peer. Each repeat runs N cycles of every kind,
interleaved in rounds (round i runs the kinds in an order rotated by i) so that noise
on a shared machine hits all kinds alike:

* client            the project's client: DicomClient.echo() from
                    plugins/module_utils/dicom_client.py (imported as
                    ansible.module_utils.dicom_client, tuned by dicom_net.py)
* echoscu           DCMTK echoscu, default environment
* echoscu_nodelay   DCMTK echoscu with TCP_NODELAY=1 in its environment (its best)
* pynetdicom_plain  (--plain) a plain pynetdicom AE, no tuning, for reference

echoscu is timed as a whole process run (fork/exec included); the process start
floor (`echoscu --version`) is reported beside it. The client is timed around
DicomClient.echo(), one new association per cycle, in this process.

Goal (--check-goal makes a miss exit 1): client median <= 10 ms and at least 4x
faster than the best echoscu kind, both on the median of the per-repeat medians.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODULE_UTILS = REPO / "plugins" / "module_utils"

GOAL_MEDIAN_MS = 10.0
GOAL_RATIO = 4.0
CALLING_AE = "CLINUPG_BENCH"


# --------------------------------------------------------------------------- helpers


def _import_project_client():
    """Import dicom_client the way Ansible would: as ansible.module_utils.dicom_client."""
    import ansible.module_utils

    if str(MODULE_UTILS) not in ansible.module_utils.__path__:
        ansible.module_utils.__path__.insert(0, str(MODULE_UTILS))
    from ansible.module_utils import dicom_client, dicom_net

    return dicom_client, dicom_net


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-pct * len(ordered) // 100))))
    return ordered[rank - 1]


def _summary(values_ms: list[float]) -> dict:
    return {
        "n": len(values_ms),
        "median_ms": statistics.median(values_ms),
        "p90_ms": _percentile(values_ms, 90),
        "mean_ms": statistics.fmean(values_ms),
        "min_ms": min(values_ms),
        "max_ms": max(values_ms),
    }


def _cmd_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0].strip() if text else "unknown"


def machine_conditions(echoscu: str, orthanc: str | None) -> dict:
    import pydicom
    import pynetdicom

    info = {
        "kernel": platform.release(),
        "os": _os_release(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "pynetdicom": pynetdicom.__version__,
        "pydicom": pydicom.__version__,
        "echoscu": _cmd_version([echoscu, "--version"]),
        "loadavg_start": os.getloadavg(),
    }
    if orthanc:
        info["orthanc"] = _cmd_version([orthanc, "--version"])
    return info


def _os_release() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.platform()


# --------------------------------------------------------------------------- Orthanc


class Orthanc:
    """A throw-away Orthanc on loopback: temp config, storage and index, free ports."""

    def __init__(self, binary: str, aet: str = "ORTHANC") -> None:
        self.binary = binary
        self.aet = aet
        self.host = "127.0.0.1"
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.tmp: str | None = None

    def start(self, timeout: float = 30.0) -> None:
        last_log = ""
        for _attempt in range(3):  # a free port can be taken between probe and bind
            self.tmp = tempfile.mkdtemp(prefix="echo-latency-orthanc-")
            db = os.path.join(self.tmp, "db")
            os.mkdir(db)
            self.port = _free_port()
            config = {
                "Name": "echo-latency-bench",
                "DicomAet": self.aet,
                "DicomPort": self.port,
                "HttpPort": _free_port(),
                "HttpServerEnabled": False,
                "RemoteAccessAllowed": False,
                "StorageDirectory": db,
                "IndexDirectory": db,
                "DicomCheckCalledAet": True,
                "DicomAlwaysAllowEcho": True,
                "Plugins": [],
            }
            cfg = os.path.join(self.tmp, "orthanc.json")
            with open(cfg, "w") as fh:
                json.dump(config, fh)
            log = open(os.path.join(self.tmp, "orthanc.log"), "wb")  # noqa: SIM115 - lives as long as the process
            self.proc = subprocess.Popen(
                [self.binary, cfg], cwd=self.tmp, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            log.close()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with socket.create_connection((self.host, self.port), timeout=0.5):
                        return
                except OSError:
                    time.sleep(0.1)
            last_log = self._log_tail()
            self.stop()
        raise RuntimeError(f"Orthanc did not start on loopback; last log lines:\n{last_log}")

    def _log_tail(self) -> str:
        try:
            return "\n".join(Path(self.tmp, "orthanc.log").read_text(errors="replace").splitlines()[-15:])
        except (OSError, TypeError):
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


# --------------------------------------------------------------------------- kinds


class ClientKind:
    """The project's client code path: build_client(params).echo()."""

    name = "client"

    def __init__(self, host: str, port: int, aet: str) -> None:
        dicom_client, _ = _import_project_client()
        self.client = dicom_client.build_client(
            {"host": host, "port": port, "called_ae": aet, "calling_ae": CALLING_AE, "timeout": 10.0}
        )
        self.phases: dict[str, list[float]] = {}

    def once(self) -> float:
        t0 = time.perf_counter()
        result = self.client.echo()
        elapsed = time.perf_counter() - t0
        if result["status"] != 0x0000:
            raise RuntimeError(f"client C-ECHO status {result['status_hex']}")
        for phase, ms in result.get("timings", {}).items():
            self.phases.setdefault(phase, []).append(ms)
        return elapsed * 1000.0


class PlainPynetdicomKind:
    """Reference: an untuned pynetdicom AE (no dicom_net)."""

    name = "pynetdicom_plain"

    def __init__(self, host: str, port: int, aet: str) -> None:
        from pynetdicom import AE
        from pynetdicom.sop_class import Verification

        self.host, self.port, self.aet = host, port, aet
        self.ae = AE(ae_title=CALLING_AE)
        self.ae.add_requested_context(Verification)
        for attr in ("acse_timeout", "dimse_timeout", "network_timeout", "connection_timeout"):
            setattr(self.ae, attr, 10.0)

    def once(self) -> float:
        t0 = time.perf_counter()
        assoc = self.ae.associate(self.host, self.port, ae_title=self.aet)
        if not assoc.is_established:
            raise RuntimeError("plain pynetdicom association failed")
        status = assoc.send_c_echo()
        assoc.release()
        elapsed = time.perf_counter() - t0
        if "Status" not in status or status.Status != 0x0000:
            raise RuntimeError("plain pynetdicom C-ECHO failed")
        return elapsed * 1000.0


class EchoscuKind:
    def __init__(self, name: str, echoscu: str, host: str, port: int, aet: str, nodelay: bool) -> None:
        self.name = name
        self.cmd = [echoscu, "-aet", CALLING_AE, "-aec", aet, host, str(port)]
        self.env = dict(os.environ)
        self.env.pop("TCP_NODELAY", None)
        if nodelay:
            self.env["TCP_NODELAY"] = "1"

    def once(self) -> float:
        t0 = time.perf_counter()
        proc = subprocess.run(self.cmd, env=self.env, capture_output=True, timeout=30, check=False)
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{self.name} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")
        return elapsed * 1000.0


def echoscu_start_floor(echoscu: str, n: int = 20) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([echoscu, "--version"], capture_output=True, timeout=30, check=False)
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


# --------------------------------------------------------------------------- run


def run_once(kinds, n: int, warmup: int) -> dict[str, list[float]]:
    for kind in kinds:
        for _ in range(warmup):
            kind.once()
    samples: dict[str, list[float]] = {kind.name: [] for kind in kinds}
    for i in range(n):
        shift = i % len(kinds)
        for kind in kinds[shift:] + kinds[:shift]:
            samples[kind.name].append(kind.once())
    return samples


def _ratios(medians: dict[str, float]) -> dict[str, float]:
    client = medians["client"]
    out = {f"{name}/client": medians[name] / client for name in medians if name != "client"}
    out["best_echoscu/client"] = min(medians["echoscu"], medians["echoscu_nodelay"]) / client
    return out


def print_table(title: str, summaries: dict[str, dict], ratios: dict[str, float]) -> None:
    print(f"\n{title}")
    print(f"  {'kind':<18} {'n':>4} {'median ms':>10} {'p90 ms':>9} {'min ms':>8} {'max ms':>8}")
    for name, s in summaries.items():
        print(
            f"  {name:<18} {s['n']:>4} {s['median_ms']:>10.2f} {s['p90_ms']:>9.2f} "
            f"{s['min_ms']:>8.2f} {s['max_ms']:>8.2f}"
        )
    print("  ratios (median / client median): " + ", ".join(f"{k} {v:.1f}x" for k, v in ratios.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=50, help="cycles per kind per repeat (default 50)")
    parser.add_argument("--repeat", type=int, default=1, help="run the whole benchmark K times (default 1)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed cycles per kind per repeat (default 3)")
    parser.add_argument("--host", help="use a running peer instead of starting Orthanc")
    parser.add_argument("--port", type=int, help="DICOM port of the running peer")
    parser.add_argument("--aet", default="ORTHANC", help="called AE title (default ORTHANC)")
    parser.add_argument("--orthanc", default=shutil.which("Orthanc") or "/usr/sbin/Orthanc", help="Orthanc binary")
    parser.add_argument("--echoscu", default=shutil.which("echoscu", path="/usr/bin:/usr/local/bin") or "echoscu",
                        help="DCMTK echoscu binary (not pynetdicom's tool of the same name in the virtualenv)")
    parser.add_argument("--plain", action="store_true", help="also time an untuned pynetdicom AE (reference)")
    parser.add_argument("--json", metavar="FILE", help="save all samples and summaries as JSON")
    parser.add_argument("--check-goal", action="store_true", help="exit 1 unless the goal is met")
    args = parser.parse_args(argv)
    if args.n < 1 or args.repeat < 1 or args.warmup < 0:
        parser.error("-n and --repeat must be >= 1, --warmup >= 0")
    if bool(args.host) != bool(args.port):
        parser.error("--host and --port go together")

    logging.getLogger("pynetdicom").setLevel(logging.ERROR)
    orthanc = None
    if args.host:
        host, port = args.host, args.port
    else:
        orthanc = Orthanc(args.orthanc, args.aet)
        orthanc.start()
        host, port = orthanc.host, orthanc.port

    try:
        conditions = machine_conditions(args.echoscu, None if args.host else args.orthanc)
        conditions["peer"] = f"{args.aet}@{host}:{port}" + (" (own Orthanc)" if orthanc else " (given)")
        kinds = [
            ClientKind(host, port, args.aet),
            EchoscuKind("echoscu", args.echoscu, host, port, args.aet, nodelay=False),
            EchoscuKind("echoscu_nodelay", args.echoscu, host, port, args.aet, nodelay=True),
        ]
        if args.plain:
            kinds.append(PlainPynetdicomKind(host, port, args.aet))
        floor = echoscu_start_floor(args.echoscu)

        print(
            f"DICOM check latency: {args.n} cycles x {len(kinds)} kinds x {args.repeat} repeat(s), "
            f"interleaved; peer {conditions['peer']}"
        )
        print(
            f"machine: {conditions['os']}, kernel {conditions['kernel']}, {conditions['cpus']} CPUs, "
            f"load {conditions['loadavg_start'][0]:.2f}; python {conditions['python']}, "
            f"pynetdicom {conditions['pynetdicom']}; {conditions['echoscu']}; {conditions.get('orthanc', '')}"
        )

        repeats = []
        for r in range(args.repeat):
            samples = run_once(kinds, args.n, args.warmup)
            summaries = {name: _summary(vals) for name, vals in samples.items()}
            medians = {name: s["median_ms"] for name, s in summaries.items()}
            ratios = _ratios(medians)
            repeats.append({"samples_ms": samples, "summaries": summaries, "ratios": ratios})
            print_table(f"repeat {r + 1}/{args.repeat} (load {os.getloadavg()[0]:.2f})", summaries, ratios)

        names = [kind.name for kind in kinds]
        mom = {name: statistics.median(rep["summaries"][name]["median_ms"] for rep in repeats) for name in names}
        p90m = {name: statistics.median(rep["summaries"][name]["p90_ms"] for rep in repeats) for name in names}
        ratio_mom = _ratios(mom)
        ratio_spread = {
            key: (min(rep["ratios"][key] for rep in repeats), max(rep["ratios"][key] for rep in repeats))
            for key in ratio_mom
        }
        conditions["loadavg_end"] = os.getloadavg()

        print(f"\nover {args.repeat} repeat(s): median of per-repeat medians (and of p90s)")
        for name in names:
            lo = min(rep["summaries"][name]["median_ms"] for rep in repeats)
            hi = max(rep["summaries"][name]["median_ms"] for rep in repeats)
            print(f"  {name:<18} median {mom[name]:7.2f} ms  p90 {p90m[name]:7.2f} ms  (medians {lo:.2f}..{hi:.2f})")
        for key, value in ratio_mom.items():
            lo, hi = ratio_spread[key]
            print(f"  {key:<26} {value:5.1f}x  (per repeat {lo:.1f}x..{hi:.1f}x)")
        print(f"  echoscu process start floor (echoscu --version): {floor:.2f} ms")
        client_phases = {phase: statistics.median(v) for phase, v in kinds[0].phases.items()}
        if client_phases:
            text = ", ".join(f"{k} {v:.2f}" for k, v in client_phases.items())
            print(f"  client phases (median over all cycles): {text}")

        met = mom["client"] <= GOAL_MEDIAN_MS and ratio_mom["best_echoscu/client"] >= GOAL_RATIO
        print(
            f"\ngoal (client median <= {GOAL_MEDIAN_MS:g} ms and >= {GOAL_RATIO:g}x faster than best echoscu): "
            f"{'MET' if met else 'NOT MET'}"
        )

        if args.json:
            used_argv = argv if argv is not None else sys.argv[1:]
            out = {
                "command": " ".join(["bench/echo_latency.py", *used_argv]),
                "n": args.n,
                "repeat": args.repeat,
                "warmup": args.warmup,
                "conditions": conditions,
                "echoscu_start_floor_ms": floor,
                "client_phase_medians_ms": client_phases,
                "median_of_medians_ms": mom,
                "median_of_p90_ms": p90m,
                "ratios": ratio_mom,
                "ratio_spread": ratio_spread,
                "goal": {"median_ms": GOAL_MEDIAN_MS, "ratio": GOAL_RATIO, "met": met},
                "repeats": repeats,
            }
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(out, indent=2))
            print(f"saved {args.json}")
    finally:
        if orthanc is not None:
            with contextlib.suppress(Exception):
                orthanc.stop()

    if args.check_goal and not met:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
