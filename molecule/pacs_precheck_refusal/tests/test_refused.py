"""Both refused runs stopped in the precheck; the host is byte-for-byte as before.

One exception, checked another way: Orthanc's SQLite index (db-v6/index, -wal, -shm) is a live
database that SQLite itself rewrites (WAL checkpoints) while Orthanc runs, with or without any
request. For it, the test compares what the database says instead: its change log position (every
change Orthanc makes is numbered there) and its counts.
"""

import json

import testlib

testinfra_hosts = ["ansible://pacs"]
HOST = "mol-upgrade-pacs"
REST = testlib.OrthancRest("http://127.0.0.1:26042")
LIVE_DB = ("/var/lib/orthanc/db-v6/index", "/var/lib/orthanc/db-v6/index-wal", "/var/lib/orthanc/db-v6/index-shm")

_SKIP = r"\( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /tmp -o -path /var/tmp " \
        r"-o -path /var/log -o -path /var/cache/apt -o -path /root/.ansible"


def test_disk_refusal_says_needed_and_available():
    log = (testlib.EPHEMERAL / "refusal-disk.log").read_text()
    assert "Precheck refused mol-upgrade-pacs, nothing was changed" in log
    assert "PRE-004" in log


def test_window_refusal_says_when_it_opens():
    log = (testlib.EPHEMERAL / "refusal-window.log").read_text()
    assert "Precheck refused mol-upgrade-pacs, nothing was changed" in log
    assert "PRE-007" in log


def test_files_are_byte_for_byte_unchanged(host):
    listing = host.check_output(
        f"find / -xdev {_SKIP} \\) -prune -o -type f -printf '%p %m %u:%g\\n' | sort"
        " | grep -v -e '^/root/files-before.txt ' -e '^/root/sha256-before.txt '")
    before = host.file("/root/files-before.txt").content_string
    before = "\n".join(line for line in before.splitlines()
                       if not line.startswith(("/root/files-before.txt ", "/root/sha256-before.txt ")))
    assert listing.strip() == before.strip()
    live_db = "|".join(LIVE_DB + ("/root/sha256-before.txt", "/root/files-before.txt"))
    check = host.run(f"grep -v -E '  ({live_db})$' /root/sha256-before.txt | sha256sum --quiet -c -")
    assert check.rc == 0, check.stdout[-2000:]


def test_the_pacs_database_recorded_no_change():
    # Orthanc itself logs Stable{Patient,Study,Series} a minute (StableAge) after the seed was stored;
    # that is its own housekeeping. Any other change would have been made by someone.
    before = json.loads((testlib.EPHEMERAL / "db-state-before.json").read_text())
    changes = REST.json(f"/changes?since={before['changes']['Last']}&limit=10000")["Changes"]
    other = [c for c in changes if c["ChangeType"] not in ("StablePatient", "StableStudy", "StableSeries")]
    assert not other, other[:5]
    assert REST.json("/statistics") == before["statistics"]


def test_nothing_was_installed_or_locked(host):
    assert host.package("orthanc").version.startswith("1.10.1")
    assert host.file("/etc/debian_version").content_string.startswith("12")
    assert not host.file("/var/lib/clinical-upgrade/run.lock").exists
    assert not host.file("/var/backups/clinical-upgrade").exists


def test_no_snapshot_was_taken():
    assert not list((testlib.RESULTS / "snapshots").glob(f"{HOST}/*.json"))


def test_evidence_says_refused_with_the_check():
    runs = testlib.evidence_files(HOST)
    assert [r["outcome"] for r in runs] == ["refused", "refused"]
    assert "PRE-004" in runs[0]["failed_step"] + runs[0]["message"]
    assert "PRE-007" in runs[1]["failed_step"] + runs[1]["message"]
    assert all(r["snapshot"] is None for r in runs)
