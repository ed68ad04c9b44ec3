#!/usr/bin/env python3
# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""Faulty copies of a cu-ris release archive, for the rollback scenario (molecule/ris_rollback).

    fault_release.py cannot-start SRC.tar.gz DEST.tar.gz   # bin/ris-listener exits 1 at once
    fault_release.py tampered     SRC.tar.gz DEST.tar.gz   # one byte of a member changed, same name

``cannot-start`` is a well-formed release (the same release.json, migrations and tools) whose listener
cannot start: its entry script prints why and exits 1, as a release with a broken dependency would.
The migration runs, so a rollback must restore the migrated database. ``tampered`` keeps every name
and size but changes one byte of lib/cu_ris/listener.py: what the catalogue's sha256 must catch.
Prints {"file", "sha256"} (the values for a catalogue entry).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import sys
import tarfile

BROKEN_LISTENER = b"""#!/usr/bin/env python3
import sys
print("ris-listener: injected fault: this release's listener cannot start (molecule ris_rollback)", file=sys.stderr)
sys.exit(1)
"""


def rewrite(src: str, dest: str, change) -> dict:
    with tarfile.open(src, "r:gz") as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as out:
        for member, data in members:
            data = change(member, data)
            if data is not None:
                member.size = len(data)
            out.addfile(member, io.BytesIO(data) if data is not None else None)
    with open(dest, "wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", mtime=0, filename="") as gz:
        gz.write(buffer.getvalue())
    with open(dest, "rb") as fh:
        return {"file": dest, "sha256": hashlib.sha256(fh.read()).hexdigest()}


def cannot_start(member, data):
    return BROKEN_LISTENER if member.name.endswith("/bin/ris-listener") else data


def tampered(member, data):
    if member.name.endswith("/lib/cu_ris/listener.py"):
        return data[:-2] + (b"#" if data[-2:-1] != b"#" else b" ") + data[-1:]
    return data


def main(argv):
    if len(argv) != 3 or argv[0] not in ("cannot-start", "tampered"):
        print(__doc__, file=sys.stderr)
        return 2
    print(json.dumps(rewrite(argv[1], argv[2], cannot_start if argv[0] == "cannot-start" else tampered)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
