#!/usr/bin/env python3
# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""Build the cu-ris release archives from products/cu_ris, reproducibly (byte-identical every time).

    .venv/bin/python tools/build_ris_release.py 1.1 OUTDIR     # OUTDIR/cu-ris-1.1.tar.gz
    .venv/bin/python tools/build_ris_release.py --all OUTDIR   # every release

``cu-ris-<version>.tar.gz`` holds one directory ``cu-ris-<version>/``: ``release.json``
(``{"product": "cu-ris", "version": ..., "schema": ...}``), ``bin/ris-listener``,
``bin/ris-migrate``, ``bin/ris-orders``, ``lib/cu_ris/*.py`` and ``migrations/`` with the migrations
0001 up to the release's schema. The same source builds every release; what differs is
release.json and the migrations included.

Reproducible: entries sorted by name, mtime 2026-01-01T00:00:00Z, uid/gid 0 (root), modes 0755 for
directories and bin/, 0644 for the rest, ustar format; gzip with header mtime 0 and no file name.
Prints JSON: ``{"file", "sha256", "version", "schema"}`` (a list of them with --all).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import sys
import tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(ROOT, "products", "cu_ris")
RELEASES = {"1.0": 1, "1.1": 2}  # version -> schema
PRODUCT = "cu-ris"
MTIME = 1767225600  # 2026-01-01T00:00:00Z
BIN = ("ris-listener", "ris-migrate", "ris-orders")
MIGRATION = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def release_files(version):
    """{archive path under the top directory: (mode, bytes)} of one release."""
    schema = RELEASES[version]
    manifest = json.dumps({"product": PRODUCT, "version": version, "schema": schema}) + "\n"
    files = {"release.json": (0o644, manifest.encode())}
    for name in BIN:
        files[f"bin/{name}"] = (0o755, _read(os.path.join(SOURCE, "bin", name)))
    package = os.path.join(SOURCE, "cu_ris")
    for name in sorted(os.listdir(package)):
        if name.endswith(".py"):
            files[f"lib/cu_ris/{name}"] = (0o644, _read(os.path.join(package, name)))
    numbers = []
    for name in sorted(os.listdir(os.path.join(SOURCE, "migrations"))):
        match = MIGRATION.match(name)
        if match and int(match.group(1)) <= schema:
            numbers.append(int(match.group(1)))
            files[f"migrations/{name}"] = (0o644, _read(os.path.join(SOURCE, "migrations", name)))
    if numbers != list(range(1, schema + 1)):
        raise SystemExit(f"build_ris_release: release {version} needs migrations 1 to {schema}, found {numbers}")
    return files


def _read(path):
    with open(path, "rb") as fh:
        return fh.read()


def _info(name, mode, size=0, directory=False):
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = mode
    info.size = size
    info.mtime = MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def archive_bytes(version):
    top = f"{PRODUCT}-{version}"
    files = release_files(version)
    directories = {top}
    for path in files:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            directories.add(top + "/" + "/".join(parts[:i]))
    entries = [(name, None) for name in directories]
    entries += [(f"{top}/{path}", data) for path, data in files.items()]
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in sorted(entries, key=lambda entry: entry[0]):
            if data is None:
                tar.addfile(_info(name, 0o755, directory=True))
            else:
                mode, content = data
                tar.addfile(_info(name, mode, len(content)), io.BytesIO(content))
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, compresslevel=9, mtime=0) as gz:
        gz.write(raw.getvalue())
    return packed.getvalue()


def build(version, outdir):
    data = archive_bytes(version)
    os.makedirs(outdir, exist_ok=True)
    path = os.path.abspath(os.path.join(outdir, f"{PRODUCT}-{version}.tar.gz"))
    partial = f"{path}.partial-{os.getpid()}"
    with open(partial, "wb") as fh:
        fh.write(data)
    os.replace(partial, path)
    return {"file": path, "sha256": hashlib.sha256(data).hexdigest(), "version": version, "schema": RELEASES[version]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("version", nargs="?", choices=sorted(RELEASES), help="the release to build")
    p.add_argument("outdir", nargs="?", help="directory for the archive")
    p.add_argument("--all", metavar="OUTDIR", help="build every release into OUTDIR")
    args = p.parse_args(argv)
    if args.all:
        if args.version or args.outdir:
            p.error("--all OUTDIR takes no version")
        print(json.dumps([build(version, args.all) for version in sorted(RELEASES)], indent=1))
    elif args.version and args.outdir:
        print(json.dumps(build(args.version, args.outdir), indent=1))
    else:
        p.error("give VERSION OUTDIR, or --all OUTDIR")
    return 0


if __name__ == "__main__":
    sys.exit(main())
