"""plugins/modules/package_cache_stats.py on apt-cacher-ng's transfer log as apt-cacher-ng really writes it.

The fixtures are the lines apt-cacher-ng 3.7.4 (Debian 12, VerboseLog 1, UnbufferLogs 1) wrote for this run,
through it as a proxy on 127.0.0.1:

1. apt-get update + apt-get download tzdata with a throw-away state directory, from 127.0.0.1 (bookworm-security);
2. the same again from a second throw-away directory, from 127.0.0.1;
3. the .deb with curl --interface 127.0.0.2, then a .deb that does not exist (404), from 127.0.0.2;
4. the log rotated as logrotate does it (renamed to apt-cacher.log.1, SIGUSR1), then the .deb with curl
   --interface 127.0.0.3: that line is in the new apt-cacher.log.

``package_cache_apt-cacher.log.1`` holds 1-3, ``package_cache_apt-cacher.log`` holds 4. The numbers below
are read off the fixture by hand; the .deb is 307,832 bytes (``stat`` of the file apt-get saved).
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import package_cache_stats
import pytest
import yaml
from ansible.module_utils.common import warnings as module_warnings
from support import run_module

FIXTURES = Path(__file__).resolve().parent / "fixtures"
BEFORE_ROTATION = (FIXTURES / "package_cache_apt-cacher.log.1").read_bytes()
AFTER_ROTATION = (FIXTURES / "package_cache_apt-cacher.log").read_bytes()
LINES = BEFORE_ROTATION.splitlines(keepends=True)
RETURN_KEYS = set(yaml.safe_load(package_cache_stats.RETURN))
STATS_KEYS = set(yaml.safe_load(package_cache_stats.RETURN)["stats"]["contains"])
DEB_SIZE = 307832  # tzdata_2026f-0+deb12u1_all.deb
IN_RELEASE = "secdeb/dists/bookworm-security/InRelease"
T_BEFORE, T_AFTER = 1796233825, 1796233826  # the times in the fixture lines


def run(check_mode=False, **args):
    # A module's warnings are kept in a process-wide list until the process ends; a module runs once per
    # process on a host, but here many runs share one process: start each with none.
    module_warnings._global_warnings.clear()
    return run_module(package_cache_stats, args, check_mode=check_mode)


@pytest.fixture
def log(tmp_path) -> Path:
    path = tmp_path / "apt-cacher.log"
    path.write_bytes(b"")
    return path


def mark(log: Path) -> dict:
    r = run(path=str(log))
    assert r["_rc"] == 0 and r["changed"] is False, r
    return r["mark"]


def count(log: Path, since: dict, **kwargs) -> dict:
    r = run(path=str(log), since=since, **kwargs)
    assert r["_rc"] == 0, r
    return r


def warnings(result: dict) -> list[str]:
    return [w["event"]["msg"] if isinstance(w, dict) else w for w in result.get("warnings", [])]


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as handle:
        handle.write(data)


def rotate(log: Path) -> None:
    """What logrotate (create, delaycompress) does: older ones shift, .1 becomes .2.gz, the log becomes .1."""
    numbered = sorted((p for p in log.parent.glob(log.name + ".*")), key=lambda p: int(p.name.split(".")[2]),
                      reverse=True)
    for old in numbered:
        number = int(old.name.split(".")[2])
        target = log.parent / f"{log.name}.{number + 1}.gz"
        if old.name.endswith(".gz"):
            old.rename(target)
        else:
            with open(old, "rb") as src, gzip.open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            old.unlink()
    log.rename(log.parent / f"{log.name}.1")
    log.write_bytes(b"")


def test_a_mark_is_the_end_of_the_last_complete_line(log):
    append(log, BEFORE_ROTATION)
    r = run(path=str(log))
    assert set(r) >= RETURN_KEYS and r["stats"] is None and r["log"] == str(log)
    m = r["mark"]
    assert m["offset"] == len(BEFORE_ROTATION) == log.stat().st_size
    assert m["inode"] == log.stat().st_ino and m["device"] == log.stat().st_dev and m["path"] == str(log)
    assert m["first_line"] == f"{T_BEFORE}|I|34980|127.0.0.1|{IN_RELEASE}"
    assert "mark" in r["msg"] and str(len(BEFORE_ROTATION)) in r["msg"]


def test_the_captured_run_is_counted_exactly_index_files_included(log):
    since = mark(log)
    append(log, BEFORE_ROTATION)
    r = count(log, since)
    stats = r["stats"]
    assert set(stats) >= STATS_KEYS
    # I lines: InRelease 34980 (twice: apt asks with Cache-Control max-age=0), Packages by-hash 385736,
    # the .deb 308098, the 404's answer 164.
    assert stats["upstream_bytes"] == 34980 + 385736 + 308098 + 34980 + 164
    assert stats["files_fetched"] == 4 and stats["fetch_errors"] == 1
    # O lines: the first apt client (3), the second (3, from the cache but InRelease), curl from 127.0.0.2.
    assert stats["served_bytes"] == 2 * (35005 + 385820 + 308092) + 308092
    assert stats["files_served"] == 7
    assert stats["clients"] == {"127.0.0.1": 2 * (35005 + 385820 + 308092), "127.0.0.2": 308092}
    assert sum(stats["clients"].values()) == stats["served_bytes"]
    assert stats["error_responses"] == 1 and stats["error_bytes"] == 613
    assert stats["by_kind"]["index"] == {"upstream_bytes": 34980 + 385736 + 34980, "files_fetched": 3,
                                         "served_bytes": 2 * (35005 + 385820), "files_served": 4}
    assert stats["by_kind"]["package"] == {"upstream_bytes": 308098 + 164, "files_fetched": 1,
                                           "served_bytes": 3 * 308092, "files_served": 3}
    assert stats["by_kind"]["other"] == {"upstream_bytes": 0, "files_fetched": 0, "served_bytes": 0, "files_served": 0}
    # the bytes are the HTTP responses, header included: a few hundred bytes over the file itself
    assert 0 < 308098 - DEB_SIZE < 1024 and 0 < 308092 - DEB_SIZE < 1024
    assert stats["lines"] == len(LINES) and stats["skipped_lines"] == 0
    assert (stats["first_time"], stats["last_time"]) == (T_BEFORE, T_BEFORE)
    assert stats["method"] == "offset" and stats["rotated"] is False and stats["complete"] is True
    assert stats["files_read"] == [str(log)] and stats["since"] == since["time"] and stats["until"] >= since["time"]
    assert r["mark"]["offset"] == len(BEFORE_ROTATION) and warnings(r) == []
    assert r["msg"] == "763958 bytes from upstream (4 files), 1765926 bytes served (7 files) to 2 clients"


def test_only_the_lines_after_the_mark_count(log):
    first_client = b"".join(LINES[:6])
    append(log, first_client)
    since = mark(log)
    assert since["offset"] == len(first_client)
    append(log, b"".join(LINES[6:]))
    stats = count(log, since)["stats"]
    assert stats["upstream_bytes"] == 34980 + 164  # the second client's InRelease, and the 404
    assert stats["files_fetched"] == 1 and stats["files_served"] == 4
    assert stats["clients"] == {"127.0.0.1": 35005 + 385820 + 308092, "127.0.0.2": 308092}


def test_an_empty_range_counts_nothing_and_keeps_the_mark(log):
    append(log, BEFORE_ROTATION)
    since = mark(log)
    r = count(log, since)
    stats = r["stats"]
    assert stats["upstream_bytes"] == stats["served_bytes"] == stats["files_fetched"] == stats["files_served"] == 0
    assert stats["clients"] == {} and stats["lines"] == 0 and stats["first_time"] is None
    assert stats["rotated"] is False and stats["complete"] is True
    assert r["mark"]["offset"] == since["offset"] and r["mark"]["inode"] == since["inode"]
    assert r["msg"] == "0 bytes from upstream (0 files), 0 bytes served (0 files) to 0 clients"


def test_a_rotation_after_the_mark_is_followed_into_the_rotated_log_and_reported(log):
    append(log, b"".join(LINES[:6]))
    since = mark(log)
    append(log, b"".join(LINES[6:]))
    rotate(log)  # log -> log.1 (same inode), a new empty log
    append(log, AFTER_ROTATION)
    assert log.stat().st_size < since["offset"], "the mark's offset is beyond the new log's end"
    r = count(log, since)
    stats = r["stats"]
    assert stats["method"] == "offset" and stats["rotated"] is True and stats["complete"] is True
    assert stats["files_read"] == [f"{log}.1", str(log)]
    assert stats["clients"] == {"127.0.0.1": 35005 + 385820 + 308092, "127.0.0.2": 308092, "127.0.0.3": 308092}
    assert stats["upstream_bytes"] == 34980 + 164 and stats["last_time"] == T_AFTER
    assert warnings(r) == [
        f"apt-cacher-ng's log was rotated since the mark: {log} is a new file (inode {log.stat().st_ino}, the mark's "
        f"was {since['inode']}): the mark's offset {since['offset']} is beyond its end ({len(AFTER_ROTATION)} bytes); "
        f"counted {log}.1 from the mark's offset {since['offset']}, then {log}"]
    assert "the log was rotated" in r["msg"]
    # the new mark is the end of the new log: the next range starts there
    assert r["mark"]["inode"] == log.stat().st_ino and r["mark"]["offset"] == len(AFTER_ROTATION)
    again = count(log, r["mark"])
    assert again["stats"]["lines"] == 0 and again["stats"]["rotated"] is False


def test_a_marked_log_already_compressed_is_found_by_its_first_line(log):
    append(log, b"".join(LINES[:6]))
    since = mark(log)
    append(log, b"".join(LINES[6:]))
    rotate(log)
    append(log, AFTER_ROTATION[:0])
    rotate(log)  # the marked log is now apt-cacher.log.2.gz, .1 is empty
    append(log, AFTER_ROTATION)
    r = count(log, since)
    stats = r["stats"]
    assert stats["method"] == "offset" and stats["complete"] is True
    assert stats["files_read"] == [f"{log}.2.gz", f"{log}.1", str(log)]
    assert stats["served_bytes"] == 35005 + 385820 + 308092 + 308092 + 308092


def test_a_mark_beyond_the_end_with_no_rotated_log_counts_by_time_and_says_so(log):
    append(log, BEFORE_ROTATION)
    since = mark(log)
    log.write_bytes(AFTER_ROTATION)  # truncated and written again: the mark's offset is beyond the end
    since_second = dict(since, time=T_AFTER)
    r = count(log, since_second)
    stats = r["stats"]
    assert stats["method"] == "time" and stats["files_read"] == [str(log)]
    assert stats["clients"] == {"127.0.0.3": 308092} and stats["complete"] is True
    assert warnings(r) == [
        f"no log file holds the mark any more: {log} is the marked file, truncated since: the mark's offset "
        f"{len(BEFORE_ROTATION)} is beyond its end ({len(AFTER_ROTATION)} bytes), and no rotated log beside it is the "
        f"marked file (inode {since['inode']}, first line '{since['first_line']}'). Counted the lines logged at or "
        f"after the mark's time {T_AFTER} in {log}"]
    # a mark older than everything left: the range is known to be incomplete
    r = count(log, dict(since, time=T_BEFORE - 60))
    assert r["stats"]["complete"] is False and r["stats"]["served_bytes"] == 308092
    assert "INCOMPLETE" in r["msg"] and "part of the range is lost" in warnings(r)[0]


def test_a_line_being_written_is_left_for_the_next_range(log):
    since = mark(log)
    append(log, LINES[0] + LINES[1][:20])  # the second line is not complete yet
    r = count(log, since)
    assert r["stats"]["lines"] == 1 and r["stats"]["upstream_bytes"] == 34980 and r["stats"]["served_bytes"] == 0
    assert r["mark"]["offset"] == len(LINES[0])
    append(log, LINES[1][20:])
    r = count(log, r["mark"])
    assert r["stats"]["lines"] == 1 and r["stats"]["served_bytes"] == 35005


def test_other_lines_and_addresses_as_the_source_writes_them(log):
    """apt-cacher-ng's log.cc: M lines are messages; VerboseLog 0 leaves out client and path; a dual-stack
    socket gives IPv4 clients as IPv4-mapped IPv6 addresses."""
    since = mark(log)
    append(log, b"1796233900|M|Download of debrep/pool/main/x/x.deb aborted\n"
                b"1796233900|O|1000\n"
                b"1796233900|O|2000|::ffff:10.88.0.5|debrep/pool/main/t/tzdata/tzdata_1_all.deb\n"
                b"1796233900|O|3000|fd00::5|debrep/dists/bookworm/InRelease\n"
                b"not a log line\n")
    r = count(log, since)
    stats = r["stats"]
    assert stats["clients"] == {"unknown": 1000, "10.88.0.5": 2000, "fd00::5": 3000}
    assert stats["skipped_lines"] == 2 and stats["lines"] == 3
    assert stats["by_kind"]["other"]["served_bytes"] == 1000 and stats["by_kind"]["index"]["served_bytes"] == 3000
    assert warnings(r) == [
        "some log lines have no client address (apt-cacher-ng VerboseLog 0): they are counted under 'unknown'",
        "2 lines in the range are not transfer lines and were not counted"]


def test_check_mode_reads_the_same(log):
    since = mark(log)
    append(log, BEFORE_ROTATION)
    assert run(check_mode=True, path=str(log), since=since)["stats"] == count(log, since)["stats"]


@pytest.mark.parametrize(
    ("since", "fragment"),
    [
        ({"path": "X", "inode": 1, "time": 1}, "since lacks offset, first_line: give the mark an earlier"),
        ({"path": "X", "inode": 1, "offset": -5, "first_line": "", "time": 1}, "since.offset must be 0 or more"),
        ({"path": "X", "inode": "one", "offset": 0, "first_line": "", "time": 1}, "since.inode must be a whole number"),
        ({"path": "/var/log/apt-cacher-ng/apt-cacher.log", "inode": 1, "offset": 0, "first_line": "", "time": 1},
         "the mark was taken on /var/log/apt-cacher-ng/apt-cacher.log, but path is"),
    ],
)
def test_a_wrong_mark_is_refused_with_what_to_fix(log, since, fragment):
    since = {k: (str(log) if v == "X" else v) for k, v in since.items()}
    r = run(path=str(log), since=since)
    assert r["failed"] is True and fragment in r["msg"], r["msg"]
    assert r["stats"] is None and r["changed"] is False


def test_a_missing_log_or_a_relative_path_is_refused(tmp_path):
    r = run(path=str(tmp_path / "apt-cacher.log"))
    assert r["failed"] is True and "does not exist" in r["msg"] and "LogDir" in r["msg"]
    r = run(path="apt-cacher.log")
    assert r["failed"] is True and "must be the absolute path" in r["msg"]


def test_a_log_gone_after_the_mark_is_refused(log):
    since = mark(log)
    os.unlink(log)
    r = run(path=str(log), since=since)
    assert r["failed"] is True and "does not exist" in r["msg"]
