#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: package_cache_stats
short_description: Mark apt-cacher-ng's transfer log, or count what it fetched and served since a mark
description:
  - Reads the transfer log of the site package cache, apt-cacher-ng (C(<LogDir>/apt-cacher.log), by
    default C(/var/log/apt-cacher-ng/apt-cacher.log)), on the cache host.
  - Without O(since), returns only RV(mark), the log's current position (its inode, the offset of the
    end of its last complete line, its first line and the host's clock). Take it before the transfers
    that are to be counted (roles/package_cache C(tasks/mark.yml)).
  - With O(since) (a mark from an earlier call), counts every line written after the mark (RV(stats)),
    and returns a new RV(mark) at the end of what was read, so that the next range starts there.
  - "apt-cacher-ng writes one line per transfer, C(time|type|bytes|client|path): C(time) is the host's
    clock in seconds since the epoch; type C(I) is a response read from upstream (a mirror), C(O) a
    response sent to a client, C(E) an error response sent to a client; C(bytes) counts the HTTP
    response as it went over the connection, header and body; C(client) is the address of the
    client that asked, C(path) the file with the repository's alias (C(secdeb/pool/...)). A response
    that upstream answered with an error has C( [HTTP error, code: 404]) after its path. Lines of
    other types (C(M), maintenance messages) are not transfers and are skipped."
  - Index files (C(InRelease), C(Packages) and their C(by-hash) copies) are counted like packages, since
    the site pays for them. RV(stats.by_kind) splits the numbers into index files, packages and others.
  - "Log rotation: Debian's logrotate renames the log to C(apt-cacher.log.1) (and compresses it to
    C(.2.gz) at the next rotation). When the marked log is no longer C(apt-cacher.log) - its inode
    changed, or it is shorter than the mark's offset - the module finds the marked file among the
    rotated ones (by inode, and by its first line for a compressed one), reads it from the mark's offset,
    then every newer file whole, and says so (RV(stats.rotated), a warning). When no file holds the mark
    any more, it counts the lines whose time is at or after the mark's time in all the files there are
    (RV(stats.method=time)) and warns."
  - Read-only; runs on the cache host. Python standard library only.
version_added: "0.4.0"
author:
  - clinical-upgrade contributors
options:
  path:
    description:
      - Absolute path of apt-cacher-ng's transfer log (C(apt-cacher.log) in its C(LogDir)). Rotated
        logs are looked for beside it (C(<path>.1), C(<path>.2.gz), ...).
    type: path
    default: /var/log/apt-cacher-ng/apt-cacher.log
  since:
    description:
      - The mark from which to count, as an earlier call returned it in RV(mark) (keys C(path),
        C(inode), C(offset), C(first_line), C(time); C(device) optional).
      - Omit it to take a mark only.
    type: dict
attributes:
  check_mode:
    support: full
    details: The module only reads, so it runs unchanged in check mode.
  diff_mode:
    support: none
notes:
  - apt-cacher-ng buffers its log unless C(UnbufferLogs) (C(Debug) bit 1) is set; roles/package_cache
    sets it, so that a line is in the file as soon as its transfer ends.
  - The per-client numbers need C(VerboseLog) 1 (apt-cacher-ng's default; the role sets it). Lines
    without a client are counted under the client C(unknown), with a warning.
  - A line that is not complete yet (no newline at the end of the current log) is left for the next
    range - RV(mark) points to its start.
  - In RV(stats.method=time), lines of the mark's second that were logged before the mark are
    counted too (the log has whole seconds).
seealso:
  - name: Apt-Cacher NG user manual
    description: Configuration (LogDir, VerboseLog, UnbufferLogs) and the report page.
    link: https://www.unix-ag.uni-kl.de/~bloch/acng/html/index.html
"""

EXAMPLES = r"""
- name: Mark the cache's log before the workstations download
  package_cache_stats:
  register: __package_cache_mark

- name: Count what the cache fetched from upstream and served since the mark
  package_cache_stats:
    since: "{{ __package_cache_mark.mark }}"
  register: __package_cache_counted

- name: Show the bytes the site paid for
  ansible.builtin.debug:
    msg: >-
      {{ __package_cache_counted.stats.upstream_bytes }} bytes from upstream,
      {{ __package_cache_counted.stats.served_bytes }} bytes to
      {{ __package_cache_counted.stats.clients | length }} workstations
"""

RETURN = r"""
log:
  description: The log that was read (O(path)).
  returned: always
  type: str
  sample: /var/log/apt-cacher-ng/apt-cacher.log
mark:
  description:
    - The log's position after this call - give it as O(since) to count from here.
    - C(offset) is the end of the last complete line, C(first_line) the file's first line (empty for an
      empty file), C(time) the host's clock (seconds since the epoch).
  returned: always
  type: dict
  sample: {"path": "/var/log/apt-cacher-ng/apt-cacher.log", "inode": 2310433, "device": 2049,
           "offset": 1361, "first_line": "1796233825|I|34980|127.0.0.1|secdeb/dists/bookworm-security/InRelease",
           "time": 1796233830}
stats:
  description: What was transferred since O(since). C(null) without O(since).
  returned: always
  type: dict
  contains:
    upstream_bytes:
      description:
        - Bytes of the responses read from upstream (C(I) lines, error responses included) - what the site paid for.
      type: int
    served_bytes:
      description: Bytes of the responses sent to clients (C(O) lines; error responses are in C(error_bytes)).
      type: int
    clients:
      description: C(served_bytes) per client address (IPv4-mapped IPv6 addresses written as IPv4).
      type: dict
    files_fetched:
      description: Files read from upstream (C(I) lines without an HTTP error).
      type: int
    files_served:
      description: Files sent to clients (C(O) lines).
      type: int
    fetch_errors:
      description: Responses upstream answered with an HTTP error (C(I) lines marked C([HTTP error, code ...])).
      type: int
    error_responses:
      description: Error responses sent to clients (C(E) lines).
      type: int
    error_bytes:
      description: Bytes of the error responses sent to clients.
      type: int
    by_kind:
      description:
        - The same numbers per kind of file - C(index) (C(dists/), C(by-hash), C(InRelease), C(Packages)...),
          C(package) (C(pool/), C(.deb)) and C(other) - each with C(upstream_bytes), C(served_bytes),
          C(files_fetched), C(files_served).
      type: dict
    since:
      description: The mark's time (seconds since the epoch).
      type: int
    until:
      description: The host's clock when the log was read.
      type: int
    first_time:
      description: Time of the first counted line; C(null) when none was.
      type: int
    last_time:
      description: Time of the last counted line; C(null) when none was.
      type: int
    lines:
      description: Transfer lines counted.
      type: int
    skipped_lines:
      description: Lines in the range that are not transfers (C(M) messages) or could not be read.
      type: int
    method:
      description:
        - C(offset) - from the mark's offset in the marked file.
        - C(time) - no file holds the mark any more; the lines at or after the mark's time.
      type: str
    rotated:
      description: Whether the log was rotated since the mark (more than one file was read).
      type: bool
    complete:
      description: Whether the files read hold the whole range (false when a rotated log holding part of it is gone).
      type: bool
    files_read:
      description: The files read, oldest first.
      type: list
      elements: str
  sample: {"upstream_bytes": 763958, "served_bytes": 1765926, "clients": {"127.0.0.1": 1457834, "127.0.0.2": 308092},
           "files_fetched": 4, "files_served": 7, "fetch_errors": 1, "error_responses": 1, "error_bytes": 613,
           "by_kind": {"index": {"upstream_bytes": 455696, "served_bytes": 841650, "files_fetched": 3,
                                 "files_served": 4},
                       "package": {"upstream_bytes": 308262, "served_bytes": 924276, "files_fetched": 1,
                                   "files_served": 3},
                       "other": {"upstream_bytes": 0, "served_bytes": 0, "files_fetched": 0, "files_served": 0}},
           "since": 1796233820, "until": 1796233830, "first_time": 1796233825, "last_time": 1796233825, "lines": 13,
           "skipped_lines": 0, "method": "offset", "rotated": false, "complete": true,
           "files_read": ["/var/log/apt-cacher-ng/apt-cacher.log"]}
"""

import gzip
import os
import re
import time

from ansible.module_utils.basic import AnsibleModule

DEFAULT_LOG = "/var/log/apt-cacher-ng/apt-cacher.log"
MARK_KEYS = ("path", "inode", "offset", "first_line", "time")
KINDS = ("index", "package", "other")
ERROR_SUFFIX = re.compile(r" \[HTTP error[^\]]*\]$")
ROTATED_SUFFIX = re.compile(r"^\.(\d+)(\.gz)?$")
INDEX_NAMES = re.compile(r"(^|/)(InRelease|Release|Release\.gpg|Packages|Sources|Translation-[^/]+|Contents-[^/]+"
                         r"|Index)(\.(gz|xz|bz2|lzma|zst|diff))?$")
FIRST_LINE_MAX = 1024


class StatsError(Exception):
    """A problem that fails the task; the message says what to fix."""


# --------------------------------------------------------------------------- files


class LogFile:
    """The current log or one of its rotations (``compressed`` for ``.gz``)."""

    def __init__(self, path: str, number: int):
        self.path = path
        self.number = number  # 0 = the current log
        self.compressed = path.endswith(".gz")

    def open(self):
        return gzip.open(self.path, "rb") if self.compressed else open(self.path, "rb")  # noqa: SIM115

    def first_line(self) -> str:
        with self.open() as handle:
            line = handle.readline(FIRST_LINE_MAX + 1)
        return _first_line_text(line) if line.endswith(b"\n") else ""

    def stat(self):
        return os.stat(self.path)


def _first_line_text(raw: bytes) -> str:
    return raw[:FIRST_LINE_MAX].decode("utf-8", "replace").rstrip("\r\n")


def log_files(path: str) -> list[LogFile]:
    """The current log (if there is one) and its rotations, newest first."""
    files = [LogFile(path, 0)] if os.path.isfile(path) else []
    directory, base = os.path.split(path)
    rotated = []
    try:
        names = os.listdir(directory)
    except OSError as exc:
        raise StatsError(f"cannot list the log directory {directory}: {exc.strerror}; check path") from None
    for name in names:
        if not name.startswith(base):
            continue
        match = ROTATED_SUFFIX.match(name[len(base):])
        if match:
            rotated.append(LogFile(os.path.join(directory, name), int(match.group(1))))
    return files + sorted(rotated, key=lambda f: f.number)


def take_mark(path: str) -> dict:
    """The position after the last complete line of the current log."""
    try:
        st = os.stat(path)
        with open(path, "rb") as handle:
            first = handle.readline(FIRST_LINE_MAX + 1)
            offset = _complete_end(handle, st.st_size)
    except FileNotFoundError:
        raise StatsError(
            f"apt-cacher-ng's transfer log {path} does not exist: apt-cacher-ng writes it once it runs with "
            "LogDir set (roles/package_cache configures both); check path and that the service runs"
        ) from None
    except OSError as exc:
        raise StatsError(f"cannot read {path}: {exc.strerror}; the task must run as root (become: true)") from None
    return {
        "path": path,
        "inode": st.st_ino,
        "device": st.st_dev,
        "offset": offset,
        "first_line": _first_line_text(first) if first.endswith(b"\n") else "",
        "time": int(time.time()),
    }


def _complete_end(handle, size: int) -> int:
    """Offset just after the last newline of the file (0 without one)."""
    pos = size
    while pos > 0:
        start = max(0, pos - 65536)
        handle.seek(start)
        block = handle.read(pos - start)
        newline = block.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        pos = start
    return 0


def check_mark(since: dict, path: str) -> dict:
    missing = [key for key in MARK_KEYS if key not in since]
    if missing:
        raise StatsError(
            f"since lacks {', '.join(missing)}: give the mark an earlier package_cache_stats call returned "
            "(roles/package_cache tasks/mark.yml sets package_cache_mark)"
        )
    mark = dict(since)
    for key in ("inode", "offset", "time"):
        try:
            mark[key] = int(mark[key])
        except (TypeError, ValueError):
            raise StatsError(f"since.{key} must be a whole number; got {since[key]!r}") from None
    if mark["offset"] < 0:
        raise StatsError(f"since.offset must be 0 or more; got {mark['offset']}")
    if mark.get("device") is not None:
        mark["device"] = int(mark["device"])
    mark["first_line"] = str(mark["first_line"] or "")
    if mark["path"] != path:
        raise StatsError(
            f"the mark was taken on {mark['path']}, but path is {path}: count with the path the mark was taken on"
        )
    return mark


def holds_mark(log: LogFile, mark: dict) -> bool:
    """Whether ``log`` is the file the mark was taken on (it may have been renamed or compressed since)."""
    try:
        if log.compressed:
            # gzip changes the inode: only the first line identifies it; the offset is checked while reading
            return bool(mark["first_line"]) and log.first_line() == mark["first_line"]
        st = log.stat()
        same_inode = st.st_ino == mark["inode"] and mark.get("device") in (None, st.st_dev)
        if st.st_size < mark["offset"]:
            return False  # truncated, or another file: the marked lines are not there
        if not same_inode and (log.number == 0 or not mark["first_line"]):
            return False  # the current log must be the same file; a rotated copy (copytruncate) may not be
        return not mark["first_line"] or log.first_line() == mark["first_line"]
    except (OSError, EOFError, gzip.BadGzipFile):
        return False


# --------------------------------------------------------------------------- lines


def kind_of(path: str) -> str:
    if path.endswith((".deb", ".udeb", ".ddeb", ".dsc", ".rpm")) or "/pool/" in path or path.startswith("pool/"):
        return "package"
    if "/dists/" in path or "/by-hash/" in path or INDEX_NAMES.search(path):
        return "index"
    return "other"


def client_of(field: str | None) -> str:
    if not field:
        return "unknown"
    if field.lower().startswith("::ffff:") and "." in field:
        return field[7:]
    return field


def parse_line(raw: bytes):
    """(time, type, bytes, client, path, error) of a transfer line; None for any other line."""
    text = raw.decode("utf-8", "replace").rstrip("\r\n")
    parts = text.split("|", 4)
    if len(parts) < 3 or parts[1] not in ("I", "O", "E"):
        return None
    try:
        when, size = int(parts[0]), int(parts[2])
    except ValueError:
        return None
    if size < 0:
        return None
    path = parts[4] if len(parts) == 5 else ""
    error = bool(ERROR_SUFFIX.search(path))
    if error:
        path = ERROR_SUFFIX.sub("", path)
    return when, parts[1], size, client_of(parts[3] if len(parts) >= 4 else None), path, error


def empty_stats() -> dict:
    return {
        "upstream_bytes": 0, "served_bytes": 0, "clients": {}, "files_fetched": 0, "files_served": 0,
        "fetch_errors": 0, "error_responses": 0, "error_bytes": 0,
        "by_kind": {kind: {"upstream_bytes": 0, "served_bytes": 0, "files_fetched": 0, "files_served": 0}
                    for kind in KINDS},
        "first_time": None, "last_time": None, "lines": 0, "skipped_lines": 0,
    }


def count(stats: dict, raw: bytes, not_before: int | None = None) -> bool:
    """Count one line; whether it was a transfer in the range."""
    entry = parse_line(raw) if raw.endswith(b"\n") else None  # a cut line (a crash) is no transfer
    if entry is None:
        stats["skipped_lines"] += 1
        return False
    when, kind_letter, size, client, path, error = entry
    if not_before is not None and when < not_before:
        return False
    stats["lines"] += 1
    stats["first_time"] = when if stats["first_time"] is None else min(stats["first_time"], when)
    stats["last_time"] = when if stats["last_time"] is None else max(stats["last_time"], when)
    if client == "unknown":
        stats["_no_client"] = True
    kind = stats["by_kind"][kind_of(path)]
    if kind_letter == "I":
        stats["upstream_bytes"] += size
        kind["upstream_bytes"] += size
        if error:
            stats["fetch_errors"] += 1
        else:
            stats["files_fetched"] += 1
            kind["files_fetched"] += 1
    elif kind_letter == "O":
        stats["served_bytes"] += size
        kind["served_bytes"] += size
        stats["files_served"] += 1
        kind["files_served"] += 1
        stats["clients"][client] = stats["clients"].get(client, 0) + size
    else:
        stats["error_responses"] += 1
        stats["error_bytes"] += size
    return True


def read_lines(log: LogFile, offset: int, until_complete: bool):
    """Yield the lines of ``log`` from ``offset``; return (via StopIteration value) the end offset.

    With ``until_complete`` a last line without a newline is not yielded (it is still being written),
    and the returned offset is its start.
    """
    with log.open() as handle:
        if offset:
            skipped = handle.seek(offset) if not log.compressed else _skip(handle, offset)
            if skipped != offset:
                raise StatsError(f"{log.path} is shorter than the mark's offset {offset}")
        position = offset
        for raw in handle:
            if not raw.endswith(b"\n") and until_complete:
                break
            position += len(raw)
            yield raw
    return position


def _skip(handle, offset: int) -> int:
    done = 0
    while done < offset:
        chunk = handle.read(min(1 << 20, offset - done))
        if not chunk:
            break
        done += len(chunk)
    return done


# --------------------------------------------------------------------------- the range


def count_since(path: str, mark: dict, warn) -> tuple[dict, dict]:
    """(stats, new mark) of everything logged after ``mark``."""
    files = log_files(path)
    if not files or files[0].number != 0:
        raise StatsError(
            f"apt-cacher-ng's transfer log {path} does not exist: check path, and that apt-cacher-ng runs with "
            "LogDir set"
        )
    stats = empty_stats()
    current = files[0]
    marked = next((i for i, log in enumerate(files) if holds_mark(log, mark)), None)
    read = []
    end = 0
    if marked is not None:
        stats["method"] = "offset"
        stats["complete"] = True
        chosen = list(reversed(files[: marked + 1]))  # oldest first
        for log in chosen:
            end = _consume(read_lines(log, mark["offset"] if log is files[marked] else 0, log is current), stats)
            read.append(log.path)
        if marked > 0:
            warn(
                f"apt-cacher-ng's log was rotated since the mark: {path} is {_describe(current, mark)}; counted "
                f"{files[marked].path} from the mark's offset {mark['offset']}, then " + ", ".join(read[1:])
            )
    else:
        stats["method"] = "time"
        chosen = list(reversed(files))
        oldest_first = _first_time(chosen[0])
        stats["complete"] = oldest_first is not None and oldest_first <= mark["time"]
        for log in chosen:
            before = stats["lines"]
            end = _consume(read_lines(log, 0, log is current), stats, not_before=mark["time"])
            if stats["lines"] > before or log is current:
                read.append(log.path)
        warn(
            f"no log file holds the mark any more: {path} is {_describe(current, mark)}, and no rotated log beside "
            f"it is the marked file (inode {mark['inode']}, first line {mark['first_line']!r}). Counted the lines "
            f"logged at or after the mark's time {mark['time']} in " + ", ".join(log.path for log in chosen)
            + ("" if stats["complete"] else "; the oldest log starts after the mark, so part of the range is lost")
        )
    stats["rotated"] = len(read) > 1
    stats["files_read"] = read
    stats["since"] = mark["time"]
    stats["until"] = int(time.time())
    if stats.pop("_no_client", False):
        warn("some log lines have no client address (apt-cacher-ng VerboseLog 0): they are counted under 'unknown'")
    if stats["skipped_lines"]:
        warn(f"{stats['skipped_lines']} lines in the range are not transfer lines and were not counted")
    st = current.stat()
    new_mark = {"path": path, "inode": st.st_ino, "device": st.st_dev, "offset": end,
                "first_line": current.first_line(), "time": stats["until"]}
    return stats, new_mark


def _describe(current: LogFile, mark: dict) -> str:
    st = current.stat()
    what = ("the marked file, truncated since" if st.st_ino == mark["inode"]
            else f"a new file (inode {st.st_ino}, the mark's was {mark['inode']})")
    beyond = (f": the mark's offset {mark['offset']} is beyond its end ({st.st_size} bytes)"
              if st.st_size < mark["offset"] else f" of {st.st_size} bytes")
    return what + beyond


def _consume(lines, stats: dict, not_before: int | None = None) -> int:
    while True:
        try:
            raw = next(lines)
        except StopIteration as stop:
            return stop.value
        count(stats, raw, not_before)


def _first_time(log: LogFile):
    """Time of the first line of ``log`` (None when it has none or cannot be read)."""
    try:
        with log.open() as handle:
            for raw in handle:
                stamp = raw.split(b"|", 1)[0]
                if stamp.isdigit():
                    return int(stamp)
    except (OSError, EOFError, gzip.BadGzipFile):
        return None
    return None


def summary(stats: dict) -> str:
    return (
        f"{stats['upstream_bytes']} bytes from upstream ({stats['files_fetched']} files), "
        f"{stats['served_bytes']} bytes served ({stats['files_served']} files) to {len(stats['clients'])} clients"
        + (" - the log was rotated" if stats["rotated"] else "")
        + ("" if stats["complete"] else " - INCOMPLETE: part of the range is no longer in the logs")
    )


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "default": DEFAULT_LOG},
            "since": {"type": "dict"},
        },
        supports_check_mode=True,
    )
    path, since = module.params["path"], module.params["since"]
    if not os.path.isabs(path) or path.endswith("/"):
        module.fail_json(msg=f"path must be the absolute path of apt-cacher-ng's log file, such as {DEFAULT_LOG}; "
                         f"got {path!r}", changed=False, log=path, mark=None, stats=None)
    try:
        if since is None:
            mark = take_mark(path)
            module.exit_json(changed=False, log=path, mark=mark, stats=None,
                             msg=f"marked {path} at offset {mark['offset']}")
        stats, mark = count_since(path, check_mark(since, path), module.warn)
    except StatsError as exc:
        module.fail_json(msg=str(exc), changed=False, log=path, mark=None, stats=None)
    except OSError as exc:
        module.fail_json(msg=f"cannot read {exc.filename or path}: {exc.strerror or exc}; the task must run as root "
                         "(become: true) on the cache host", changed=False, log=path, mark=None, stats=None)
    module.exit_json(changed=False, log=path, mark=mark, stats=stats, msg=summary(stats))


if __name__ == "__main__":
    main()
