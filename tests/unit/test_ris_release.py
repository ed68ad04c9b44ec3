"""cu-ris releases 1.0 and 1.1 as shipped: built archives, unpacked, their own bin/ scripts run as processes.

Real components only: the build script, sqlite3, DCMTK dump2dcm (and wlmscpfs + findscu where a
worklist query proves something), python-hl7 as the independent parser of the ACKs, pydicom for the
worklist files, loopback sockets. The upgrade path is the one a site runs: orders stored by 1.0,
backup and migration with 1.1, 1.1 serving them, and 1.0 refusing the migrated database but
starting again on the backup.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import hl7
import pydicom
import pytest
from hl7_fixtures import RisListener as Listener
from support import free_port

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "tools" / "build_ris_release.py"
PACKAGE = ROOT / "products" / "cu_ris" / "cu_ris"
DUMP2DCM = "/usr/bin/dump2dcm"
WLMSCPFS = "/usr/bin/wlmscpfs"
FINDSCU = "/usr/bin/findscu"  # DCMTK's, not pynetdicom's app of the same name in the venv
MTIME = int(datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC).timestamp())
SCHEMAS = {"1.0": 1, "1.1": 2}
COLUMNS_1 = [
    "id",
    "accession",
    "patient_id",
    "patient_name",
    "modality",
    "station_aet",
    "scheduled",
    "procedure",
    "study_uid",
    "status",
    "message",
    "received_at",
    "control_id",
]

for tool in (DUMP2DCM, WLMSCPFS, FINDSCU):
    if not os.access(tool, os.X_OK):
        raise RuntimeError(f"DCMTK {tool} is not installed: run `make deps` (apt-get install dcmtk)")


# ------------------------------------------------------------------ build and unpack


def build(*args):
    proc = subprocess.run([sys.executable, str(BUILD), *map(str, args)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    """{version: unpacked release root}, plus the build results under key 'builds'."""
    dist = tmp_path_factory.mktemp("dist")
    builds = build("--all", dist)
    unpacked = tmp_path_factory.mktemp("releases")
    roots = {}
    for item in builds:
        with tarfile.open(item["file"]) as tar:
            tar.extractall(unpacked, filter="data")
        roots[item["version"]] = unpacked / f"cu-ris-{item['version']}"
    return {"builds": {item["version"]: item for item in builds}, **roots}


def run_bin(root, name, *args, timeout=30):
    return subprocess.run(
        [sys.executable, str(root / "bin" / name), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def migrate(root, db, *args):
    proc = run_bin(root, "ris-migrate", "--db", db, *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def orders(root, db, *args):
    proc = run_bin(root, "ris-orders", "--db", db, *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def query(db, sql, *params):
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute(sql, params)]
    finally:
        conn.close()


def user_version(db):
    return query(db, "PRAGMA user_version")[0]["user_version"]


# ------------------------------------------------------------------ the listener as a process


@contextlib.contextmanager
def listening(root, db, worklist, *extra, **kw):
    listener = Listener(root, db, worklist, *extra, **kw)
    try:
        yield listener
    finally:
        listener.stop()


def refused_start(root, db, worklist):
    """Run a listener that must refuse to start: (exit code, stderr)."""
    proc = run_bin(
        root, "ris-listener", "--db", db, "--worklist-dir", worklist, "--host", "127.0.0.1", "--port", "0", timeout=15
    )
    assert "READY" not in proc.stdout
    return proc.returncode, proc.stderr


# ------------------------------------------------------------------ HL7


MSH = "MSH|^~\\&|TEST|TEST|RIS|RAD|20240101000000||ORM^O01|{cid}|P|2.5.1"


def orm(cid, accession, control="NW", modality="CT", station="CT01", scheduled="20240304153000", **kw):
    """An ORM^O01 with OBR-18 accession, OBR-21 station, OBR-24 modality, OBR-36 scheduled time."""
    patient = kw.get("patient_id", "SYN" + accession)
    obr = ["OBR", "1", accession, accession, kw.get("procedure", "C1^CT HEAD")] + [""] * 13
    obr += [accession, "", "", station, "", "", modality] + [""] * 11 + [scheduled]
    return "\r".join(
        [
            MSH.format(cid=cid),
            f"PID|1||{patient}^^^H^MR||{kw.get('name', 'ZZTEST^SYNTHETIC')}||{kw.get('pid7', '19700101')}|O",
            f"ORC|{control}|{accession}|{accession}",
            "|".join(obr),
        ]
    )


def frame(text):
    return b"\x0b" + text.encode("utf-8") + b"\x1c\x0d"


def read_frame(sock, timeout=10):
    sock.settimeout(timeout)
    buf = b""
    while b"\x1c" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a whole frame: {buf!r}")
        buf += chunk
    return buf[buf.index(b"\x0b") + 1 : buf.index(b"\x1c")]


@dataclasses.dataclass
class Ack:
    code: str
    control_id: str
    text: str
    err_code: str
    err_location: str


def parse_ack(payload):
    """The ACK read by python-hl7 (an independent parser)."""
    msg = hl7.parse(payload.decode("utf-8"))
    assert str(msg.segment("MSH")[9]).startswith("ACK")
    msa = msg.segment("MSA")
    err_code = err_location = ""
    with contextlib.suppress(KeyError):
        err = msg.segment("ERR")
        err_location = str(err[2])
        err_code = str(msg.extract_field("ERR", 1, 3, 1, 1))
    text = str(msa[3]) if len(msa) > 3 else ""
    return Ack(str(msa[1]), str(msa[2]), text, err_code, err_location)


def exchange(listener, text):
    with socket.create_connection((listener.host, listener.port), timeout=10) as sock:
        sock.sendall(frame(text))
        return parse_ack(read_frame(sock))


# ------------------------------------------------------------------ DICOM worklist


@contextlib.contextmanager
def worklist_scp(base):
    port = free_port()
    proc = subprocess.Popen(
        [WLMSCPFS, "-dfp", str(base), "-ll", "warn", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def find_worklist(port, out, accession):
    """C-FIND on the worklist with DCMTK findscu -W for one accession number: the response datasets."""
    out = Path(out) / f"rsp-{time.monotonic_ns()}"
    out.mkdir()
    args = [FINDSCU, "-W", "-aet", "CUTEST", "-aec", "RIS1", "-X", "-od", str(out), "-k", f"0008,0050={accession}"]
    for tag in ("0010,0010", "0010,0020", "0020,000d", "0032,1060"):
        args += ["-k", tag]
    for tag in ("0008,0060", "0040,0001", "0040,0002", "0040,0003"):
        args += ["-k", f"0040,0100[0].{tag}"]
    proc = subprocess.run([*args, "127.0.0.1", str(port)], capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    return [pydicom.dcmread(str(p)) for p in sorted(out.iterdir())]


def site(tmp_path):
    """(database path, worklist base for wlmscpfs, worklist AE directory the listener writes)."""
    base = tmp_path / "worklist"
    (base / "RIS1").mkdir(parents=True)
    return tmp_path / "orders.sqlite", base, base / "RIS1"


def utc_iso():
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ================================================================== the build


def test_build_is_reproducible(releases, tmp_path):
    again = build("--all", tmp_path / "a")
    single = build("1.0", tmp_path / "b")
    for item in again:
        first = releases["builds"][item["version"]]
        assert item["sha256"] == first["sha256"]
        assert Path(item["file"]).read_bytes() == Path(first["file"]).read_bytes()
        assert hashlib.sha256(Path(item["file"]).read_bytes()).hexdigest() == item["sha256"]
        assert item["schema"] == SCHEMAS[item["version"]]
    assert single["sha256"] == releases["builds"]["1.0"]["sha256"]
    assert releases["builds"]["1.0"]["sha256"] != releases["builds"]["1.1"]["sha256"]


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_archive_layout_and_release_json(releases, version):
    path = releases["builds"][version]["file"]
    data = Path(path).read_bytes()
    assert data[3] == 0  # gzip flags: no file name
    assert data[4:8] == b"\0\0\0\0"  # gzip header mtime 0
    top = f"cu-ris-{version}"
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    migrations = ["0001_initial.sql", "0002_order_changes.sql"][: SCHEMAS[version]]
    expected = {
        top: 0o755,
        f"{top}/release.json": 0o644,
        f"{top}/bin": 0o755,
        **{f"{top}/bin/{name}": 0o755 for name in ("ris-listener", "ris-migrate", "ris-orders")},
        f"{top}/lib": 0o755,
        f"{top}/lib/cu_ris": 0o755,
        **{f"{top}/lib/cu_ris/{name}": 0o644 for name in modules},
        f"{top}/migrations": 0o755,
        **{f"{top}/migrations/{name}": 0o644 for name in migrations},
    }
    with tarfile.open(path) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == sorted(expected)
        for m in members:
            assert (m.mode, m.uid, m.gid, m.mtime) == (expected[m.name], 0, 0, MTIME), m.name
            assert m.isdir() or m.isfile()
        manifest = json.loads(tar.extractfile(f"{top}/release.json").read())
    assert manifest == {"product": "cu-ris", "version": version, "schema": SCHEMAS[version]}
    assert "__init__.py" in modules and "listener.py" in modules
    assert (f"{top}/migrations/0002_order_changes.sql" in expected) is (version == "1.1")


# ================================================================== release 1.0


def test_v10_migrate_creates_schema_1(releases, tmp_path):
    r10, db = releases["1.0"], tmp_path / "orders.sqlite"
    status = migrate(r10, db, "--status")
    assert status == {"db": str(db), "schema": 0, "release_schema": 1, "pending": ["0001_initial"], "orders": None}
    assert not db.exists()  # --status changes nothing
    assert migrate(r10, db) == {"db": str(db), "from": 0, "to": 1, "applied": ["0001_initial"]}
    assert user_version(db) == 1
    assert [row["name"] for row in query(db, "PRAGMA table_info(orders)")] == COLUMNS_1
    assert query(db, "SELECT name FROM sqlite_master WHERE name = 'order_events'") == []
    assert migrate(r10, db) == {"db": str(db), "from": 1, "to": 1, "applied": []}
    assert migrate(r10, db, "--status")["pending"] == []


def test_v10_stores_nw_and_ca_refuses_xo_and_serves_the_worklist(releases, tmp_path):
    r10 = releases["1.0"]
    db, base, wl = site(tmp_path)
    migrate(r10, db)
    with worklist_scp(base) as scp, listening(r10, db, wl) as listener:
        ack = exchange(listener, orm("C1", "ACC1", modality="CT", station="CT01"))
        assert (ack.code, ack.control_id) == ("AA", "C1")
        assert "stored" in ack.text
        row = query(db, "SELECT * FROM orders")[0]
        assert {k: row[k] for k in ("accession", "patient_id", "patient_name", "modality", "station_aet")} == {
            "accession": "ACC1",
            "patient_id": "SYNACC1",
            "patient_name": "ZZTEST^SYNTHETIC",
            "modality": "CT",
            "station_aet": "CT01",
        }
        assert (row["scheduled"], row["procedure"], row["status"]) == ("2024-03-04T15:30:00", "CT HEAD", "scheduled")
        assert (row["message"], row["control_id"]) == (orm("C1", "ACC1"), "C1")
        found = find_worklist(scp, tmp_path, "ACC1")
        assert [ds.AccessionNumber for ds in found] == ["ACC1"]
        assert found[0].PatientID == "SYNACC1"
        assert found[0].StudyInstanceUID == row["study_uid"]
        assert found[0].ScheduledProcedureStepSequence[0].ScheduledStationAETitle == "CT01"

        middle = utc_iso()
        assert exchange(listener, orm("C2", "ACC2")).code == "AA"
        assert [o["accession"] for o in orders(r10, db, "list", "--changed-since", middle)] == ["ACC2"]

        xo = exchange(listener, orm("C3", "ACC1", control="XO", modality="MR"))
        assert (xo.code, xo.err_code, xo.err_location) == ("AR", "200", "ORC^1^1")
        assert xo.text == "unsupported order control XO (this release handles NW and CA)"
        assert query(db, "SELECT * FROM orders WHERE accession = 'ACC1'")[0] == row

        ca = exchange(listener, orm("C4", "ACC1", control="CA"))
        assert ca.code == "AA" and "worklist entry removed" in ca.text
        assert not (wl / "ACC1.wl").exists()
        assert find_worklist(scp, tmp_path, "ACC1") == []
        cancelled = query(db, "SELECT * FROM orders WHERE accession = 'ACC1'")[0]
        assert (cancelled["status"], cancelled["control_id"]) == ("cancelled", "C4")
        assert cancelled["received_at"] > row["received_at"]  # schema 1: the time of the last accepted message
        # schema 1 has no updated_at: --changed-since reads received_at, so the cancelled order shows again
        assert [o["accession"] for o in orders(r10, db, "list", "--changed-since", middle)] == ["ACC1", "ACC2"]
        assert [o["accession"] for o in orders(r10, db, "list", "--since-id", "1")] == ["ACC2"]
        assert orders(r10, db, "count") == {"orders": 2, "scheduled": 1, "cancelled": 1, "max_id": 2}
        assert len(find_worklist(scp, tmp_path, "ACC2")) == 1


# ================================================================== upgrade 1.0 -> 1.1 and back


def orders_by_10(releases, tmp_path):
    """A 1.0 site with four orders (one cancelled), its listener stopped: (db, base, wl, orders before)."""
    r10 = releases["1.0"]
    db, base, wl = site(tmp_path)
    migrate(r10, db)
    with listening(r10, db, wl) as listener:
        for i in range(1, 5):
            assert exchange(listener, orm(f"U{i}", f"UPG{i}", modality="CT")).code == "AA"
        assert exchange(listener, orm("U5", "UPG2", control="CA")).code == "AA"
    return db, base, wl, orders(r10, db, "list")


def test_upgrade_keeps_every_order_and_enables_xo(releases, tmp_path):
    r10, r11 = releases["1.0"], releases["1.1"]
    db, base, wl, before = orders_by_10(releases, tmp_path)
    assert [(o["accession"], o["status"]) for o in before] == [
        ("UPG1", "scheduled"),
        ("UPG2", "cancelled"),
        ("UPG3", "scheduled"),
        ("UPG4", "scheduled"),
    ]
    entry3 = (wl / "UPG3.wl").read_bytes()
    backup = tmp_path / "orders-before-1.1.sqlite"
    assert migrate(r11, db, "--backup", backup) == {
        "db": str(db),
        "from": 1,
        "to": 2,
        "applied": ["0002_order_changes"],
    }
    assert user_version(backup) == 1
    assert orders(r10, backup, "list") == before

    after = orders(r11, db, "list")
    assert len(after) == len(before)
    for old, new in zip(before, after, strict=True):
        assert new == {**old, "revision": 1, "updated_at": old["received_at"]}
    events = query(db, "SELECT accession, control, received_at, control_id FROM order_events ORDER BY id")
    assert events == [
        {
            "accession": o["accession"],
            "control": "CA" if o["status"] == "cancelled" else "NW",
            "received_at": o["received_at"],
            "control_id": o["control_id"],
        }
        for o in before
    ]

    with worklist_scp(base) as scp, listening(r11, db, wl) as listener:
        changed_from = utc_iso()
        ack = exchange(listener, orm("X1", "UPG1", control="XO", modality="MR", station="MR01", scheduled="20240305"))
        assert (ack.code, ack.text) == ("AA", "order XO: revision 2 stored, worklist entry rewritten")
        found = find_worklist(scp, tmp_path, "UPG1")
        sps = found[0].ScheduledProcedureStepSequence[0]
        assert (sps.Modality, sps.ScheduledStationAETitle, sps.ScheduledProcedureStepStartDate) == (
            "MR",
            "MR01",
            "20240305",
        )
        for accession, what in (("UPG2", "only a cancelled order has"), ("UPG9", "no order has")):
            refused = exchange(listener, orm("X2" + accession, accession, control="XO"))
            assert (refused.code, refused.err_code, refused.err_location) == ("AE", "204", "OBR^1^18")
            assert refused.text.startswith(f"unknown order: {what} this OBR-18 accession number")
        assert exchange(listener, orm("N5", "UPG5")).code == "AA"

    now = {o["accession"]: o for o in orders(r11, db, "list")}
    upg1 = now["UPG1"]
    assert (upg1["revision"], upg1["modality"], upg1["station_aet"], upg1["control_id"]) == (2, "MR", "MR01", "X1")
    assert upg1["scheduled"] == "2024-03-05T00:00:00"
    assert upg1["updated_at"] >= changed_from > before[0]["received_at"]
    assert {k: v for k, v in now["UPG3"].items() if k not in ("revision", "updated_at")} == before[2]
    assert (wl / "UPG3.wl").read_bytes() == entry3
    assert "UPG9" not in now and now["UPG5"]["revision"] == 1
    assert [o["accession"] for o in orders(r11, db, "list", "--changed-since", changed_from)] == ["UPG1", "UPG5"]
    assert query(db, "SELECT accession, control, control_id FROM order_events WHERE id > 4 ORDER BY id") == [
        {"accession": "UPG1", "control": "XO", "control_id": "X1"},
        {"accession": "UPG5", "control": "NW", "control_id": "N5"},
    ]


def test_rollback_needs_the_backup(releases, tmp_path):
    r10, r11 = releases["1.0"], releases["1.1"]
    db, _, wl, before = orders_by_10(releases, tmp_path)
    backup = tmp_path / "backup.sqlite"
    migrate(r11, db, "--backup", backup)
    migrated = db.read_bytes()

    code, err = refused_start(r10, db, wl)
    assert code == 78
    assert f"database {db} has schema 2, release 1.0 needs 1: restore the database that matches this release" in err
    proc = run_bin(r10, "ris-migrate", "--db", db)
    assert proc.returncode == 78 and "restore the database that matches this release (rollback)" in proc.stderr
    assert db.read_bytes() == migrated

    again = run_bin(r11, "ris-migrate", "--db", db, "--backup", backup)
    assert again.returncode == 78 and f"backup file {backup} already exists" in again.stderr
    assert user_version(backup) == 1

    with listening(r10, backup, wl) as listener:
        assert exchange(listener, orm("R1", "UPG1", control="CA")).code == "AA"
    restored = orders(r10, backup, "list")
    assert restored[1:] == before[1:] and restored[0]["status"] == "cancelled"


def test_listener_refuses_missing_or_wrong_schema_database(releases, tmp_path):
    r10, r11 = releases["1.0"], releases["1.1"]
    db, _, wl = site(tmp_path)
    code, err = refused_start(r10, db, wl)
    assert code == 78
    assert f"database {db} does not exist: create it with `bin/ris-migrate --db {db}` from this release" in err
    assert not db.exists()
    proc = run_bin(r10, "ris-orders", "--db", db, "count")  # read-only: never creates it either
    assert proc.returncode == 78 and not db.exists()

    sqlite3.connect(db).close()  # an empty file: schema 0
    code, err = refused_start(r10, db, wl)
    assert (code, err.strip()) == (
        78,
        f"ris-listener: database {db} has schema 0, release 1.0 needs 1: run `bin/ris-migrate --db {db}` "
        "from this release",
    )
    migrate(r10, db)
    code, err = refused_start(r11, db, wl)
    assert code == 78
    assert f"database {db} has schema 1, release 1.1 needs 2: run `bin/ris-migrate --db {db}` from this release" in err

    db.write_text("not a database at all, " * 100)
    code, err = refused_start(r11, db, wl)
    assert code == 78 and "cannot be opened as an SQLite database" in err


def test_failed_migration_leaves_the_database_byte_for_byte(releases, tmp_path):
    broken = tmp_path / "cu-ris-1.1-broken"
    shutil.copytree(releases["1.1"], broken)
    db = tmp_path / "orders.sqlite"
    migrate(releases["1.0"], db)
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            "INSERT INTO orders (accession, status, message, received_at) VALUES ('B1', 'scheduled', 'MSH|', 'x')"
        )
    conn.close()
    original = db.read_bytes()

    (broken / "migrations" / "0002_order_changes.sql").write_text(
        "ALTER TABLE orders ADD COLUMN revision INTEGER NOT NULL DEFAULT 1;\n"
        "CREATE TABLE order_events (id INTEGER PRIMARY KEY, accession TEXT);\n"
        "INSERT INTO order_events (accession) SELECT accession FROM no_such_table;\n"
    )
    proc = run_bin(broken, "ris-migrate", "--db", db)
    assert proc.returncode == 1
    assert "0002_order_changes failed and was rolled back: no such table: no_such_table" in proc.stderr
    assert "is at schema 1 as before" in proc.stderr
    assert db.read_bytes() == original

    (broken / "migrations" / "0002_order_changes.sql").write_text(
        "ALTER TABLE orders ADD COLUMN revision INTEGER;\nCOMMIT;\nDROP TABLE orders;\n"
    )
    proc = run_bin(broken, "ris-migrate", "--db", db)
    assert proc.returncode == 1 and "COMMIT statements are not allowed in a migration" in proc.stderr
    assert db.read_bytes() == original

    fresh = tmp_path / "fresh.sqlite"  # a database this run would create: left absent, not empty
    (broken / "migrations" / "0001_initial.sql").write_text(
        "CREATE TABLE orders (id INTEGER);\nSELECT x FROM nowhere;\n"
    )
    proc = run_bin(broken, "ris-migrate", "--db", fresh)
    assert proc.returncode == 1 and "0001_initial failed and was rolled back" in proc.stderr
    assert not fresh.exists()

    assert migrate(releases["1.1"], db)["applied"] == ["0002_order_changes"]  # the real one still applies
    assert orders(releases["1.1"], db, "count") == {"orders": 1, "scheduled": 1, "cancelled": 0, "max_id": 1}


# ================================================================== an AA means the order is stored


def test_no_worklist_entry_no_order(releases, tmp_path):
    r11 = releases["1.1"]
    db, _, wl = site(tmp_path)
    migrate(r11, db)
    with listening(r11, db, wl, dump2dcm="/bin/false") as listener:
        ack = exchange(listener, orm("F1", "FAIL1"))
        assert (ack.code, ack.err_code) == ("AE", "207")
        assert ack.text == "worklist entry could not be created (dump2dcm exit 1); the order is not stored"
    (wl / "FAIL2.wl").mkdir()  # the entry cannot be renamed into place (root ignores read-only directories)
    with listening(r11, db, wl) as listener:
        ack = exchange(listener, orm("F2", "FAIL2"))
        assert (ack.code, ack.err_code) == ("AE", "207")
        assert ack.text.startswith("worklist entry could not be written (Is a directory)")
    assert orders(r11, db, "count")["orders"] == 0
    assert query(db, "SELECT COUNT(*) AS n FROM order_events") == [{"n": 0}]
    assert sorted(os.listdir(wl)) == ["FAIL2.wl", "lockfile"]


def test_failed_change_keeps_the_previous_order_and_entry(releases, tmp_path):
    r11 = releases["1.1"]
    db, _, wl = site(tmp_path)
    migrate(r11, db)
    flag = tmp_path / "dump2dcm-fails"
    wrapper = tmp_path / "dump2dcm"
    wrapper.write_text(f'#!/bin/sh\n[ -e "{flag}" ] && exit 3\nexec {DUMP2DCM} "$@"\n')
    wrapper.chmod(0o755)
    with listening(r11, db, wl, dump2dcm=str(wrapper)) as listener:
        assert exchange(listener, orm("K1", "KEEP1", modality="CT")).code == "AA"
        row, entry = orders(r11, db, "list")[0], (wl / "KEEP1.wl").read_bytes()
        flag.touch()
        ack = exchange(listener, orm("K2", "KEEP1", control="XO", modality="MR"))
        assert ack.code == "AE"
        assert ack.text == "worklist entry could not be created (dump2dcm exit 3); the order is not stored"
        assert orders(r11, db, "list") == [row]
        assert (wl / "KEEP1.wl").read_bytes() == entry
        assert pydicom.dcmread(wl / "KEEP1.wl").ScheduledProcedureStepSequence[0].Modality == "CT"
        flag.unlink()
        assert exchange(listener, orm("K3", "KEEP1", control="XO", modality="MR")).code == "AA"
    assert pydicom.dcmread(wl / "KEEP1.wl").ScheduledProcedureStepSequence[0].Modality == "MR"
    assert [e["control_id"] for e in query(db, "SELECT control_id FROM order_events ORDER BY id")] == ["K1", "K3"]


def test_a_failed_commit_undoes_the_worklist_change(releases, tmp_path):
    """A reader holding the database (a long report) makes the COMMIT fail after the entry was written."""
    r11 = releases["1.1"]
    db, _, wl = site(tmp_path)
    migrate(r11, db)
    with listening(r11, db, wl) as listener:
        assert exchange(listener, orm("L1", "LOCK1", modality="CT")).code == "AA"
        row, entry = orders(r11, db, "list")[0], (wl / "LOCK1.wl").read_bytes()
        reader = sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None)
        try:
            reader.execute("BEGIN")
            reader.execute("SELECT COUNT(*) FROM orders").fetchone()  # a shared lock until the read ends
            for control, cid, accession in (("XO", "L2", "LOCK1"), ("NW", "L3", "LOCK2")):
                ack = exchange(listener, orm(cid, accession, control=control, modality="MR"))
                assert (ack.code, ack.err_code) == ("AE", "207")
                assert ack.text == "the order could not be committed (database is locked); the order is not stored"
        finally:
            reader.close()
        assert (wl / "LOCK1.wl").read_bytes() == entry  # the rewritten entry was put back
        assert not (wl / "LOCK2.wl").exists()  # the new entry was removed
        assert orders(r11, db, "list") == [row]
        assert exchange(listener, orm("L4", "LOCK2")).code == "AA"  # and the listener goes on
    assert [e["control_id"] for e in query(db, "SELECT control_id FROM order_events ORDER BY id")] == ["L1", "L4"]


def test_ris_orders_filters_follow_the_schema(releases, tmp_path):
    r10, r11 = releases["1.0"], releases["1.1"]
    db = tmp_path / "orders.sqlite"
    migrate(r11, db)
    conn = sqlite3.connect(db)
    with conn:
        for i, (status, received, updated) in enumerate(
            [("scheduled", "2026-01-01T08:00:00.000000Z", "2026-01-03T08:00:00.000000Z"),
             ("cancelled", "2026-01-02T08:00:00.000000Z", "2026-01-02T08:00:00.000000Z"),
             ("scheduled", "2026-01-01T09:00:00.000000Z", "2026-01-01T09:00:00.000000Z")],
            start=1,
        ):  # fmt: skip
            conn.execute(
                "INSERT INTO orders (accession, status, message, received_at, updated_at) VALUES (?, ?, 'MSH|', ?, ?)",
                (f"Q{i}", status, received, updated),
            )
    conn.close()
    for release in (r10, r11):  # any release reads any schema; schema 2 filters on updated_at
        assert [o["accession"] for o in orders(release, db, "list", "--changed-since", "2026-01-02")] == ["Q1", "Q2"]
        since = orders(release, db, "list", "--changed-since", "2026-01-02T10:00:00+02:00")  # 08:00Z, inclusive
        assert [o["accession"] for o in since] == ["Q1", "Q2"]
        assert [o["accession"] for o in orders(release, db, "list", "--since-id", "2")] == ["Q3"]
        assert orders(release, db, "count") == {"orders": 3, "scheduled": 2, "cancelled": 1, "max_id": 3}
    assert orders(r11, db, "list")[0]["revision"] == 1
    bad = run_bin(r11, "ris-orders", "--db", db, "list", "--changed-since", "yesterday")
    assert bad.returncode == 2 and "not an ISO 8601 date/time" in bad.stderr


def test_duplicates_retransmissions_and_unknown_cancels(releases, tmp_path):
    r11 = releases["1.1"]
    db, _, wl = site(tmp_path)
    migrate(r11, db)
    with listening(r11, db, wl) as listener:
        first = orm("D1", "DUP1")
        assert exchange(listener, first).code == "AA"
        again = exchange(listener, first)  # the sender did not get the ACK and sends the same message
        assert (again.code, again.text) == ("AA", "order NW: already stored (a retransmission of D1); nothing changed")
        other = exchange(listener, orm("D2", "DUP1", modality="MR"))
        assert (other.code, other.err_code, other.err_location) == ("AE", "205", "OBR^1^18")
        assert other.text == "OBR-18 accession number belongs to a scheduled order: send XO to change it"
        assert exchange(listener, orm("D3", "DUP1", control="CA")).code == "AA"
        twice = exchange(listener, orm("D4", "DUP1", control="CA"))
        assert (twice.code, twice.text) == ("AA", "order CA: already cancelled; nothing changed")
        reuse = exchange(listener, orm("D5", "DUP1"))
        assert (reuse.code, reuse.err_code) == ("AE", "205") and "belongs to a cancelled order" in reuse.text
        unknown = exchange(listener, orm("D6", "NOPE1", control="CA"))
        assert (unknown.code, unknown.err_code, unknown.err_location) == ("AE", "204", "OBR^1^18")
        assert unknown.text.startswith("unknown order")
    rows = orders(r11, db, "list")
    assert [(o["accession"], o["status"], o["control_id"]) for o in rows] == [("DUP1", "cancelled", "D3")]
    assert [e["control"] for e in query(db, "SELECT control FROM order_events ORDER BY id")] == ["NW", "CA"]
    assert sorted(os.listdir(wl)) == ["lockfile"]


# ================================================================== the old listener's protections


def test_escaping_dates_and_masked_logs(releases, tmp_path):
    r11 = releases["1.1"]
    db, _, wl = site(tmp_path)
    migrate(r11, db)
    with listening(r11, db, wl) as listener:
        text = orm(
            "E1",
            "ESC1",
            station="CT\\S\\01",
            scheduled="20240304153000.1234+0100",
            procedure="C1^HEAD \\T\\ NECK \\S\\ 2 \\F\\ W/O \\R\\ CONTRAST",
            patient_id="SYNPHI777",
        )
        assert exchange(listener, text).code == "AA"
        bad = exchange(listener, orm("E2", "ESC2", scheduled="20241399"))
        assert (bad.code, bad.err_code, bad.err_location) == ("AE", "102", "OBR^1^36")
        assert "OBR-36 scheduled date/time '20241399' is not a real date" in bad.text
        path = exchange(listener, orm("E3", "../x"))
        assert (path.code, path.err_code, path.err_location) == ("AE", "102", "OBR^1^18")
        injected = exchange(listener, orm("E4", "INJ1", name="EVIL](0008,0050) SH [X^NAME"))
        assert injected.code == "AA"
        log = listener.log_text()
    assert sorted(os.listdir(wl)) == ["ESC1.wl", "INJ1.wl", "lockfile"]
    evil = pydicom.dcmread(wl / "INJ1.wl")
    assert evil.AccessionNumber == "INJ1" and "]" not in str(evil.PatientName)
    ds = pydicom.dcmread(wl / "ESC1.wl")
    assert ds.ScheduledProcedureStepSequence[0].ScheduledStationAETitle == "CT^01"
    assert ds.RequestedProcedureDescription == "HEAD & NECK ^ 2 | W/O ~ CONTRAST"
    row = orders(r11, db, "list")
    assert [(o["accession"], o["station_aet"], o["procedure"], o["scheduled"]) for o in row][0] == (
        "ESC1",
        "CT^01",
        "HEAD & NECK ^ 2 | W/O ~ CONTRAST",
        "2024-03-04T15:30:00",
    )
    assert [o["accession"] for o in row] == ["ESC1", "INJ1"]
    assert "accession=*** patient=***" in log
    assert "SYNPHI777" not in log and "ESC1" not in log and "ZZTEST" not in log


def test_frame_size_and_connection_limits(releases, tmp_path):
    r11 = releases["1.1"]
    db, _, wl = site(tmp_path)
    migrate(r11, db)
    held = []
    with listening(r11, db, wl, "--max-frame-bytes", "2000", "--max-connections", "2", "--idle-timeout", "30") as lst:
        try:
            with socket.create_connection((lst.host, lst.port), timeout=10) as sock:
                sock.sendall(frame(orm("BIG1", "BIG1") + "\rNTE|1||" + "A" * 8000))
                big = parse_ack(read_frame(sock))
                rest = sock.recv(100)
            assert (big.code, big.control_id, big.err_code) == ("AR", "BIG1", "207")
            assert "message larger than 2000 bytes" in big.text and rest == b""
            for i in range(2):  # two connections that got an answer, then stay open and idle
                sock = socket.create_connection((lst.host, lst.port), timeout=10)
                held.append(sock)
                sock.sendall(frame(orm(f"H{i}", f"HOLD{i}")))
                assert parse_ack(read_frame(sock)).code == "AA"
            t0 = time.monotonic()
            with socket.create_connection((lst.host, lst.port), timeout=10) as extra:
                extra.settimeout(10)
                with contextlib.suppress(ConnectionResetError):
                    assert extra.recv(100) == b""  # closed at once, not after the 30 s idle timeout
            assert time.monotonic() - t0 < 5
            held.pop().close()
            deadline = time.monotonic() + 10
            while True:
                try:
                    assert exchange(lst, orm("H9", "HOLD9")).code == "AA"
                    break
                except (ConnectionError, OSError):
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            assert "--max-connections" in lst.log_text()
        finally:
            for sock in held:
                sock.close()
    assert [o["accession"] for o in orders(r11, db, "list")] == ["HOLD0", "HOLD1", "HOLD9"]


def test_the_lab_catalogue_pins_these_builds(tmp_path):
    """A change to products/cu_ris changes the archives: the lab catalogue's sha256 must follow, or the
    artifact method refuses the release (as it must refuse any archive it was not told about)."""
    import yaml

    root = Path(__file__).resolve().parents[2]
    catalogue = yaml.safe_load((root / "inventories" / "lab" / "group_vars" / "all" / "catalogue.yml").read_text())
    built = json.loads(subprocess.run([sys.executable, str(root / "tools" / "build_ris_release.py"), "--all",
                                       str(tmp_path)], capture_output=True, text=True, check=True).stdout)
    for item in built:
        entry = catalogue["release_catalogue"]["cu-ris"][item["version"]]
        assert entry["artifacts"][0] == {"name": Path(item["file"]).name, "sha256": item["sha256"]}, (
            f"rebuild changed cu-ris {item['version']}: put sha256 {item['sha256']} in the lab catalogue"
        )
