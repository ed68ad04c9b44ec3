# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""Trees of hard links that protect directories of write-once files (a PACS's stored files), and
their restore. Shared by the snapshot role's modules snapshot_links and snapshot_podman_freeze."""

import json
import os
import shutil
import stat
import time

MANIFEST_VERSION = 1


class LinkError(Exception):
    pass


def _rel(path, root):
    rel = os.path.relpath(path, root)
    return "" if rel == "." else rel


def _excluded(rel, excludes):
    return any(rel == ex or rel.startswith(ex + "/") for ex in excludes)


def _walk(root, excludes):
    """(dirs, files, symlinks) of the tree: lists of (rel, lstat) sorted by path, root included in dirs."""
    dirs, files, links = [], [], []

    def fail(err):
        raise LinkError(f"cannot read {err.filename}: {err.strerror}")

    for here, subdirs, names in os.walk(root, onerror=fail):
        rel_here = _rel(here, root)
        dirs.append((rel_here, os.lstat(here)))
        for name in [d for d in subdirs if os.path.islink(os.path.join(here, d))]:
            subdirs.remove(name)  # a symbolic link to a directory: kept as a link, not walked
            names.append(name)
        subdirs[:] = sorted(d for d in subdirs if not _excluded(os.path.join(rel_here, d), excludes))
        for name in sorted(names):
            rel = os.path.join(rel_here, name)
            if _excluded(rel, excludes):
                continue
            st = os.lstat(os.path.join(here, name))
            if stat.S_ISREG(st.st_mode):
                files.append((rel, st))
            elif stat.S_ISLNK(st.st_mode):
                links.append((rel, st))
            else:
                raise LinkError(
                    f"{os.path.join(here, name)} is neither a directory, a regular file nor a symbolic link; "
                    "a hard-link snapshot protects data directories only"
                )
    return dirs, files, links


def excludes_of(src, exclude):
    out = []
    for path in exclude:
        rel = os.path.relpath(os.path.normpath(path), src)
        if rel == "." or rel.startswith(".."):
            raise LinkError(f"exclude entry {path} is not inside src {src}")
        out.append(rel)
    return out


def _device(path):
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return os.stat(path).st_dev, path


def create(src, dest, manifest, excludes, check_mode):
    if not os.path.isdir(src):
        raise LinkError(f"src {src} is not a directory")
    if os.path.lexists(dest):
        raise LinkError(f"dest {dest} already exists; choose another snapshot name or remove that snapshot")
    if os.path.lexists(manifest):
        raise LinkError(f"manifest {manifest} already exists; choose another snapshot name or remove that snapshot")
    if os.path.commonpath([os.path.abspath(manifest), os.path.abspath(dest)]) == os.path.abspath(dest):
        raise LinkError("manifest must be outside dest")
    if os.path.commonpath([os.path.abspath(dest), os.path.abspath(src)]) == os.path.abspath(src):
        raise LinkError(f"dest {dest} must be outside src {src}, or the links would be linked again")
    src_dev = os.stat(src).st_dev
    dest_dev, existing = _device(os.path.dirname(dest))
    if src_dev != dest_dev:
        raise LinkError(
            f"hard links cannot cross file systems: {src} and {existing} (where {dest} would be) are on "
            "different file systems; set the snapshot's link directory to one on the file system of " + src
        )
    created_ns = time.time_ns()
    dirs, files, links = _walk(src, excludes)
    entry = {"dirs": [], "files": [], "symlinks": []}
    for rel, st in dirs:
        entry["dirs"].append([rel, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid])
    for rel, st in files:
        entry["files"].append([rel, st.st_size, st.st_mtime_ns, st.st_ino])
    for rel, _st in links:
        entry["symlinks"].append([rel, os.readlink(os.path.join(src, rel))])
    data = {
        "version": MANIFEST_VERSION,
        "src": src,
        "dest": dest,
        "excludes": excludes,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "created_ns": created_ns,
        **entry,
    }
    result = {"files": len(files), "bytes": sum(st.st_size for _rel_, st in files)}
    if check_mode:
        return result
    os.makedirs(os.path.dirname(dest), mode=0o700, exist_ok=True)
    os.makedirs(os.path.dirname(manifest), mode=0o700, exist_ok=True)
    try:
        for rel, _mode, _uid, _gid in entry["dirs"]:
            os.makedirs(os.path.join(dest, rel), mode=0o700, exist_ok=True)
        for rel, _size, _mtime, _ino in entry["files"]:
            os.link(os.path.join(src, rel), os.path.join(dest, rel))
        for rel, target in entry["symlinks"]:
            os.symlink(target, os.path.join(dest, rel))
        for rel, mode, uid, gid in reversed(entry["dirs"]):
            path = os.path.join(dest, rel)
            os.chown(path, uid, gid)
            os.chmod(path, mode)
    except OSError as err:
        raise LinkError(f"linking {err.filename} failed: {err.strerror}") from err
    tmp = manifest + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, separators=(",", ":"))
    os.chmod(tmp, 0o600)
    os.replace(tmp, manifest)
    result["manifest_bytes"] = os.path.getsize(manifest)
    return result


def load(manifest, dest):
    try:
        with open(manifest, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError as err:
        raise LinkError(f"manifest {manifest} does not exist") from err
    except (OSError, ValueError) as err:
        raise LinkError(f"manifest {manifest} cannot be read: {err}") from err
    if data.get("version") != MANIFEST_VERSION:
        raise LinkError(f"manifest {manifest} has version {data.get('version')}, expected {MANIFEST_VERSION}")
    if not os.path.isdir(dest):
        raise LinkError(f"the tree of links {dest} is missing")
    return data


# A file that changed after the snapshot although its modification time was within this many
# seconds of it was being written at that instant: the application had not finished (nor
# acknowledged) it, so it is not part of the snapshot (see check).
IN_FLIGHT_S = 10


def check(data, dest, report_max):
    """Every manifest file still in dest, same size, mtime and inode.

    Returns (mismatches, in_flight). A file written when the snapshot was taken (a paused container
    in the middle of storing it) grows afterwards under the same inode: its recorded modification
    time is within IN_FLIGHT_S of the snapshot and it only grew. The application had not finished
    it, so its index at the snapshot does not name it: it is in flight, not a mismatch, and a
    restore leaves it out. Any other change to a protected file is a mismatch (the write-once
    rule broken) and makes the tree unusable.
    """
    bad, in_flight = [], []
    window = data.get("created_ns", 0) - IN_FLIGHT_S * 1_000_000_000
    for rel, size, mtime, ino in data["files"]:
        try:
            st = os.lstat(os.path.join(dest, rel))
        except FileNotFoundError:
            bad.append(f"{rel}: missing")
            continue
        if not stat.S_ISREG(st.st_mode) or st.st_ino != ino:
            bad.append(f"{rel}: replaced")
        elif st.st_size != size or st.st_mtime_ns != mtime:
            if data.get("created_ns") and mtime >= window and st.st_size >= size and st.st_mtime_ns >= mtime:
                in_flight.append(rel)
            else:
                bad.append(f"{rel}: rewritten in place (size {st.st_size}, recorded {size})")
        if len(bad) >= report_max:
            break
    return bad, in_flight


def restore(src, dest, data, excludes, check_mode, report_max, in_flight=()):
    """Make src the tree of the manifest; files in flight at the snapshot are not part of it."""
    skip = set(in_flight)
    files = {rel: ino for rel, _size, _mtime, ino in data["files"] if rel not in skip}
    symlinks = dict(data["symlinks"])
    dirs = {rel: (mode, uid, gid) for rel, mode, uid, gid in data["dirs"]}
    removed, linked_back, unchanged, sample = 0, 0, 0, []

    def note(what, rel):
        if len(sample) < report_max:
            sample.append(f"{what} {rel}")

    extra_dirs = []
    if os.path.isdir(src):
        live_dirs, live_files, live_links = _walk(src, excludes)
        for rel, st in live_files + live_links:
            path = os.path.join(src, rel)
            if rel in files and stat.S_ISREG(st.st_mode) and st.st_ino == files[rel]:
                unchanged += 1
                continue
            if rel in symlinks and stat.S_ISLNK(st.st_mode) and os.readlink(path) == symlinks[rel]:
                unchanged += 1
                continue
            if rel in files:
                continue  # another inode: linked back below (atomically replaced)
            removed += 1
            note("removed", rel)
            if not check_mode:
                os.unlink(path)
        extra_dirs = [rel for rel, _st in live_dirs if rel not in dirs]
    if not check_mode:
        for rel in sorted(dirs):
            os.makedirs(os.path.join(src, rel), mode=0o700, exist_ok=True)
    for rel, ino in files.items():
        path = os.path.join(src, rel)
        try:
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode) and st.st_ino == ino:
                continue
        except FileNotFoundError:
            pass
        linked_back += 1
        note("linked back", rel)
        if not check_mode:
            if os.path.isdir(path) and not os.path.islink(path):
                raise LinkError(f"{path} is a directory now; the snapshot has a file there")
            tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.cu-restore")
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.link(os.path.join(dest, rel), tmp)
            os.replace(tmp, path)
    for rel, target in symlinks.items():
        path = os.path.join(src, rel)
        if os.path.islink(path) and os.readlink(path) == target:
            continue
        linked_back += 1
        note("linked back", rel)
        if not check_mode:
            if os.path.lexists(path):
                os.unlink(path)
            os.symlink(target, path)
    if not check_mode:
        for rel in sorted(extra_dirs, key=lambda r: r.count("/"), reverse=True):
            path = os.path.join(src, rel)
            try:
                os.rmdir(path)
            except OSError as err:
                raise LinkError(
                    f"{path} was not in the snapshot and is not empty after the restore: {err.strerror}"
                ) from err
        for rel, (mode, uid, gid) in dirs.items():
            path = os.path.join(src, rel)
            st = os.lstat(path)
            if (st.st_uid, st.st_gid) != (uid, gid):
                os.chown(path, uid, gid)
            if stat.S_IMODE(st.st_mode) != mode:
                os.chmod(path, mode)
    return {"removed": removed, "linked_back": linked_back, "unchanged": unchanged, "sample": sample}


def remove(dest, manifest, check_mode):
    changed = os.path.lexists(dest) or os.path.lexists(manifest)
    if changed and not check_mode:
        if os.path.isdir(dest) and not os.path.islink(dest):
            for here, subdirs, _names in os.walk(dest):
                for d in subdirs:  # a protected tree may hold read-only directories
                    os.chmod(os.path.join(here, d), 0o700)
            os.chmod(dest, 0o700)
            shutil.rmtree(dest)
        elif os.path.lexists(dest):
            os.unlink(dest)
        if os.path.lexists(manifest):
            os.unlink(manifest)
    return changed


def exit_with(module, run):
    """Exit the module with run(module)'s result, or fail it with the message of a LinkError or an OSError."""
    try:
        module.exit_json(**run(module))
    except LinkError as err:
        module.fail_json(msg=str(err))
    except OSError as err:
        module.fail_json(msg=f"{err.filename or ''}: {err.strerror}")
