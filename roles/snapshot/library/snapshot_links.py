#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0

import json
import os
import shutil
import stat
import time

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: snapshot_links
short_description: Protect a directory of write-once files with hard links, and restore it from them
description:
  - A PACS such as Orthanc writes each stored file once under a new name and never rewrites it. Such a
    directory needs no copy to be restorable. A tree of hard links to its files keeps every one of them
    (a file the application deletes later stays reachable through the link), costs one directory entry
    per file instead of the file's bytes, and takes a fraction of a second for thousands of files.
  - With O(state=present), builds that tree at O(dest) (same directories, modes and owners; a hard link
    for each regular file; the same symbolic links) and writes a manifest (path, size, modification time
    and inode of every file) to O(manifest). O(dest) must be on the file system of O(src) (hard links
    cannot cross file systems); the module refuses otherwise, naming both.
  - With O(state=verified), checks that every file of the manifest is still in O(dest) with its size,
    modification time and inode, i.e. that nothing rewrote a protected file in place. Only reads.
  - With O(state=restored), first does the same check and changes nothing when it fails; then makes
    O(src) exactly the tree of the manifest. Files that are not in it (written after the snapshot) are
    removed, files that are missing or are another inode are linked back from O(dest), directory modes
    and owners are set again. Run it with the application stopped.
  - With O(state=absent), removes O(dest) and O(manifest) (the files themselves stay wherever another
    link to them exists).
  - Paths under O(exclude) are neither linked nor touched by a restore (for example a database index
    kept in the same directory, which is rewritten in place and must be copied instead).
  - Used by the snapshot role's files provider (on the host) and podman provider (on the controller,
    for named volumes).
options:
  src:
    description: The protected directory (absolute path). Required with O(state=present) and O(state=restored).
    type: path
  dest:
    description: Where the tree of links is (absolute path, must not exist for state=present).
    type: path
    required: true
  manifest:
    description: Path of the JSON manifest (outside O(dest)).
    type: path
    required: true
  exclude:
    description: Absolute paths inside O(src) (files or directories) left out.
    type: list
    elements: path
    default: []
  state:
    description: What to do.
    type: str
    choices: [present, verified, restored, absent]
    default: present
  report_max:
    description: How many paths a failure or a restore names.
    type: int
    default: 10
attributes:
  check_mode:
    support: full
    description: Counts what would be linked, removed or restored and changes nothing.
notes:
  - Protecting files by hard links is correct only for files the application never rewrites in place.
    The manifest's size and modification time of each file detect such a rewrite (O(state=verified)).
  - Rootless podman keeps volume files under other user ids; the kernel's protected_hardlinks setting
    then forbids linking them. Run the podman provider as root or export such volumes instead.
author: clinical-upgrade contributors
"""

EXAMPLES = r"""
- name: Protect Orthanc's storage (the index beside it is copied by the files provider)
  snapshot_links:
    src: /var/lib/orthanc/db-v6
    dest: /var/lib/orthanc/.clinical-upgrade-snapshots/s1/db-v6
    manifest: /var/lib/orthanc/.clinical-upgrade-snapshots/s1/db-v6.json
    exclude: [/var/lib/orthanc/db-v6/index]

- name: Restore it, Orthanc stopped
  snapshot_links:
    src: /var/lib/orthanc/db-v6
    dest: /var/lib/orthanc/.clinical-upgrade-snapshots/s1/db-v6
    manifest: /var/lib/orthanc/.clinical-upgrade-snapshots/s1/db-v6.json
    exclude: [/var/lib/orthanc/db-v6/index]
    state: restored
"""

RETURN = r"""
files:
  description: Regular files in the manifest (state=present counts what it links).
  returned: state != absent
  type: int
bytes:
  description: Sum of their sizes (bytes the links keep without copying them).
  returned: state != absent
  type: int
manifest_bytes:
  description: Size of the manifest (state=present), the only bytes written besides directory entries.
  returned: state=present and not check mode
  type: int
seconds:
  description: Time the operation took.
  returned: always
  type: float
removed:
  description: Files removed from O(src) by a restore because they were not in the snapshot.
  returned: state=restored
  type: int
linked_back:
  description: Files linked back into O(src) by a restore (missing, or another inode).
  returned: state=restored
  type: int
unchanged:
  description: Files a restore found already in place.
  returned: state=restored
  type: int
sample:
  description: Up to O(report_max) of the paths removed or linked back, relative to O(src).
  returned: state=restored
  type: list
  elements: str
"""

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


def _excludes(src, exclude):
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


def check(data, dest, report_max):
    """Every manifest file still in dest, same size, mtime and inode; returns the mismatches."""
    bad = []
    for rel, size, mtime, ino in data["files"]:
        try:
            st = os.lstat(os.path.join(dest, rel))
        except FileNotFoundError:
            bad.append(f"{rel}: missing")
            continue
        if not stat.S_ISREG(st.st_mode) or st.st_ino != ino:
            bad.append(f"{rel}: replaced")
        elif st.st_size != size or st.st_mtime_ns != mtime:
            bad.append(f"{rel}: rewritten in place (size {st.st_size}, recorded {size})")
        if len(bad) >= report_max:
            break
    return bad


def restore(src, dest, data, excludes, check_mode, report_max):
    files = {rel: ino for rel, _size, _mtime, ino in data["files"]}
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


def run(module):
    p = module.params
    src = os.path.normpath(p["src"] or "/")
    dest = os.path.normpath(p["dest"])
    manifest = os.path.normpath(p["manifest"])
    for name, value in (("src", src), ("dest", dest), ("manifest", manifest)):
        if not os.path.isabs(value):
            raise LinkError(f"{name} must be an absolute path, got {value}")
    started = time.monotonic()
    state = p["state"]
    if state == "absent":
        changed = remove(dest, manifest, module.check_mode)
        return {"changed": changed, "seconds": round(time.monotonic() - started, 3)}
    excludes = _excludes(src, p["exclude"]) if p["src"] else []
    if state == "present":
        result = create(src, dest, manifest, excludes, module.check_mode)
        return {"changed": True, **result, "seconds": round(time.monotonic() - started, 3)}
    data = load(manifest, dest)
    bad = check(data, dest, p["report_max"])
    totals = {"files": len(data["files"]), "bytes": sum(f[1] for f in data["files"])}
    if bad:
        raise LinkError(
            f"the tree of links {dest} no longer matches its manifest, so it cannot restore {src} and nothing "
            f"was changed: {'; '.join(bad)}"
        )
    if state == "verified":
        return {"changed": False, **totals, "seconds": round(time.monotonic() - started, 3)}
    result = restore(src, dest, data, excludes, module.check_mode, p["report_max"])
    changed = bool(result["removed"] or result["linked_back"])
    return {"changed": changed, **totals, **result, "seconds": round(time.monotonic() - started, 3)}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            src=dict(type="path"),
            dest=dict(type="path", required=True),
            manifest=dict(type="path", required=True),
            exclude=dict(type="list", elements="path", default=[]),
            state=dict(type="str", choices=["present", "verified", "restored", "absent"], default="present"),
            report_max=dict(type="int", default=10),
        ),
        required_if=[("state", "present", ["src"]), ("state", "restored", ["src"])],
        supports_check_mode=True,
    )
    try:
        module.exit_json(**run(module))
    except LinkError as err:
        module.fail_json(msg=str(err))
    except OSError as err:
        module.fail_json(msg=f"{err.filename or ''}: {err.strerror}")


if __name__ == "__main__":
    main()
