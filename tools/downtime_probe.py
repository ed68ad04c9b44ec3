#!/usr/bin/env python3
# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""The downtime probe: a C-ECHO to the clinical system every INTERVAL seconds, every answer recorded,
so that the evidence of an upgrade run can say when, and for how long, the system could not accept a
DICOM association (roles/upgrade starts it before the lock and stops it after the verification).

    .venv/bin/python tools/downtime_probe.py run   --port 14242 --called-ae PACS1 --out probe.jsonl
    .venv/bin/python tools/downtime_probe.py start --port 14242 --called-ae PACS1 --out probe.jsonl \\
        --pidfile probe.pid --log probe.log
    .venv/bin/python tools/downtime_probe.py stop  --pidfile probe.pid --out probe.jsonl

``run`` probes in the foreground until SIGTERM/SIGINT or ``--max-seconds``. ``start`` runs the same
probe as a detached process (a session of its own; stdin and stdout to /dev/null, stderr to
``--log``), returns once the first answer is recorded and prints ``{"pid", "out", "first"}``; it exits
non-zero, saying why on stderr, when the probe cannot run (a wrong option, a missing library, an
unwritable file, a process that died). ``stop`` ends the process named in ``--pidfile`` (SIGTERM,
SIGKILL after ``--wait`` seconds; only a probe started with that pid file), removes the pid file
(and an empty ``--log``) and prints ``{"was_running", "pid", "signal", "samples"}``.

Each echo is one association (associate, C-ECHO, release) made by the project's DICOM client
(``plugins/module_utils/dicom_client.py``) with a short timeout, so that a system that does not
answer shows as a failed echo, not a hang. ``--out`` is JSON lines, appended: a header
``{"probe": "dicom_echo", "target", "interval_s", "timeout_s", "pid", "started"}``, one line per echo
``{"t": epoch when it started, "ok": true|false, "ms": its duration, "reason": why it failed}``
(``reason`` is a ``DicomError.reason`` such as ``connection_refused`` or ``timeout``), and, when the
probe ends on its own terms, ``{"stopped": epoch, "samples": n, "why": "signal"|"max_seconds"}``.
``--connection`` takes the connection as a JSON object with the dicom_echo module's option names
(what ``clinical_endpoint``'s ``args`` give); the single options override it. It talks only to the
address it is given.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULE_UTILS = ROOT / "plugins" / "module_utils"
CONNECTION_KEYS = (
    "host",
    "port",
    "called_ae",
    "calling_ae",
    "tls",
    "tls_ca_cert",
    "tls_client_cert",
    "tls_client_key",
    "tls_check_hostname",
)


def client_module():
    """The project's DICOM client (it imports its sibling as ansible.module_utils.dicom_net)."""
    import ansible.module_utils

    if str(MODULE_UTILS) not in ansible.module_utils.__path__:
        ansible.module_utils.__path__.insert(0, str(MODULE_UTILS))
    from ansible.module_utils import dicom_client

    return dicom_client


def connection_params(args) -> dict:
    """The client's parameters: --connection, then the single options, then the timeout."""
    params = {}
    if args.connection:
        given = json.loads(args.connection)
        if not isinstance(given, dict):
            raise ValueError("--connection must be a JSON object with dicom_echo's option names")
        params.update({k: v for k, v in given.items() if k in CONNECTION_KEYS and v is not None})
    for key in ("host", "port", "called_ae", "calling_ae"):
        value = getattr(args, key)
        if value is not None:
            params[key] = value
    params["timeout"] = args.timeout
    return params


def target_name(params: dict) -> str:
    return f"{params.get('called_ae')}@{params.get('host')}:{params.get('port')}"


class Probe:
    """C-ECHO every ``interval`` seconds until ``halt`` is set or ``max_seconds`` have passed."""

    def __init__(self, params: dict, out: Path, interval: float, max_seconds: float, on_first=None):
        dicom_client = client_module()
        self.client = dicom_client.build_client(params)
        self.error = dicom_client.DicomError
        self.params, self.out, self.interval, self.max_seconds = params, out, interval, max_seconds
        self.on_first = on_first
        self.halt = threading.Event()
        self.samples = 0

    def echo(self) -> dict:
        started = time.time()
        tick = time.perf_counter()
        sample = {"t": round(started, 3), "ok": False}
        try:
            self.client.echo()
            sample["ok"] = True
        except self.error as exc:
            sample["reason"] = exc.reason
        except Exception as exc:  # a probe must survive whatever the peer does  # noqa: BLE001
            sample["reason"] = f"error: {type(exc).__name__}: {exc}"
        sample["ms"] = round((time.perf_counter() - tick) * 1000.0, 1)
        return sample

    def run(self) -> str:
        deadline = time.monotonic() + self.max_seconds
        why = "signal"
        with self.out.open("a", encoding="utf-8") as handle:
            header = {
                "probe": "dicom_echo",
                "target": target_name(self.params),
                "interval_s": self.interval,
                "timeout_s": self.params["timeout"],
                "pid": os.getpid(),
                "started": round(time.time(), 3),
            }
            handle.write(json.dumps(header, sort_keys=True) + "\n")
            handle.flush()
            while not self.halt.is_set():
                if time.monotonic() >= deadline:
                    why = "max_seconds"
                    break
                tick = time.monotonic()
                sample = self.echo()
                handle.write(json.dumps(sample, sort_keys=True) + "\n")
                handle.flush()
                self.samples += 1
                if self.samples == 1 and self.on_first is not None:
                    self.on_first(sample)
                self.halt.wait(max(0.0, self.interval - (time.monotonic() - tick)))
            handle.write(
                json.dumps({"stopped": round(time.time(), 3), "samples": self.samples, "why": why}, sort_keys=True)
                + "\n"
            )
        return why


def check_options(args) -> dict:
    """Everything that can be checked before the probe runs; raises ValueError saying what to fix."""
    if not 0 < args.interval <= 60:
        raise ValueError(f"--interval must be more than 0 and at most 60 seconds, got {args.interval}")
    if args.max_seconds <= 0:
        raise ValueError(f"--max-seconds must be positive, got {args.max_seconds}")
    params = connection_params(args)
    dicom_client = client_module()
    missing = dicom_client.missing_libraries()
    if missing:
        raise ValueError("missing Python libraries: " + ", ".join(f"{name} ({err})" for name, err in missing))
    defaults = {name: spec.get("default") for name, spec in dicom_client.dicom_argument_spec().items()}
    try:
        dicom_client.validate_connection_params({**defaults, **params})
    except dicom_client.DicomError as exc:
        raise ValueError(exc.msg) from None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(str(args.out), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640))
    return params


def run_probe(args, params: dict, on_first=None) -> str:
    probe = Probe(params, args.out, args.interval, args.max_seconds, on_first)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: probe.halt.set())
    return probe.run()


def last_sample(out: Path) -> dict | None:
    try:
        lines = out.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except ValueError:  # a line being written
            continue
        if isinstance(record, dict) and "t" in record:
            return record
    return None


def start(args) -> int:
    """Run the probe detached; return once its first answer is recorded."""
    params = check_options(args)
    if args.pidfile is None:
        raise ValueError("start needs --pidfile (stop reads it)")
    ready_r, ready_w = os.pipe()
    child = os.fork()
    if child == 0:  # the first child: a session of its own, then a grandchild that is nobody's child
        os.close(ready_r)
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        devnull = os.open(os.devnull, os.O_RDWR)
        log = os.open(str(args.log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640) if args.log else devnull
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.dup2(log, 2)
        code = 0
        try:
            args.pidfile.write_text(f"{os.getpid()}\n", encoding="utf-8")

            def ready(_sample):
                try:
                    os.write(ready_w, b"ready\n")
                    os.close(ready_w)
                except OSError:  # start gave up waiting; the probe goes on all the same
                    pass

            run_probe(args, params, ready)
        except BaseException as exc:  # noqa: BLE001 - whatever ends the probe goes to its log
            print(f"downtime probe ended: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            code = 1
        os._exit(code)
    os.close(ready_w)
    os.waitpid(child, 0)
    readable, _, _ = select.select([ready_r], [], [], args.timeout * 3 + 10)
    answer = os.read(ready_r, 64) if readable else b""
    os.close(ready_r)
    if not answer.startswith(b"ready"):
        where = f"; see {args.log}" if args.log else ""
        print(f"the downtime probe did not record its first answer{where}", file=sys.stderr)
        return 1
    pid = int(args.pidfile.read_text(encoding="utf-8").strip())
    print(
        json.dumps(
            {"pid": pid, "out": str(args.out), "target": target_name(params), "first": last_sample(args.out)},
            sort_keys=True,
        )
    )
    return 0


def is_probe(pid: int, pidfile: Path) -> bool:
    """Whether pid is a probe this script started with this pid file (a pid file may outlive its process,
    and its pid may have been given to another process since)."""
    try:
        parts = [p.decode(errors="replace") for p in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")]
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return False
    names = [Path(part).name for part in parts]
    if Path(__file__).name not in names:
        return False
    args = parts[names.index(Path(__file__).name) + 1 :]
    if not args or args[0] not in ("start", "run") or "--pidfile" not in args[:-1]:
        return False
    given = args[args.index("--pidfile") + 1]
    return os.path.realpath(os.path.join(cwd, given)) == os.path.realpath(pidfile)


def stop(args) -> int:
    """End the probe of --pidfile; print what it recorded."""
    if args.pidfile is None:
        raise ValueError("stop needs --pidfile")
    result = {"was_running": False, "pid": None, "signal": None, "samples": None}
    try:
        result["pid"] = int(args.pidfile.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        result["why"] = f"no readable pid file {args.pidfile}: the probe was not running"
    pid = result["pid"]
    if pid is not None and is_probe(pid, args.pidfile):
        result["was_running"] = True
        os.kill(pid, signal.SIGTERM)
        result["signal"] = "TERM"
        deadline = time.monotonic() + args.wait
        while is_probe(pid, args.pidfile) and time.monotonic() < deadline:
            time.sleep(0.05)
        if is_probe(pid, args.pidfile):
            os.kill(pid, signal.SIGKILL)
            result["signal"] = "KILL"
    elif pid is not None:
        result["why"] = f"process {pid} is not the probe of {args.pidfile}: the probe had ended before it was stopped"
    args.pidfile.unlink(missing_ok=True)
    if args.log is not None and args.log.exists() and args.log.stat().st_size == 0:
        args.log.unlink()  # the probe had nothing to say
    if args.out is not None and args.out.exists():
        result["samples"] = sum(1 for line in args.out.read_text(encoding="utf-8").splitlines() if '"t":' in line)
    print(json.dumps(result, sort_keys=True))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["run", "start", "stop"])
    parser.add_argument("--connection", help="JSON object: host, port, called_ae, calling_ae, tls, tls_ca_cert, ...")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--called-ae")
    parser.add_argument("--calling-ae")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between echoes (default 0.2)")
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds for each network step (default 1)")
    parser.add_argument("--max-seconds", type=float, default=21600.0, help="stop after this long (default 6 h)")
    parser.add_argument("--out", type=Path, help="JSON lines, a header and one line per echo (appended)")
    parser.add_argument("--pidfile", type=Path, help="start writes the probe's pid here; stop reads it")
    parser.add_argument("--log", type=Path, help="start: the detached probe's error output (stop removes it if empty)")
    parser.add_argument("--wait", type=float, default=10.0, help="stop: seconds before SIGKILL (default 10)")
    args = parser.parse_args(argv)
    try:
        if args.action == "stop":
            return stop(args)
        if args.out is None:
            raise ValueError(f"{args.action} needs --out")
        if args.action == "start":
            return start(args)
        params = check_options(args)
        why = run_probe(args, params)
        print(json.dumps({"out": str(args.out), "why": why}, sort_keys=True))
        return 0
    except (ValueError, OSError) as exc:
        print(f"downtime probe: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
