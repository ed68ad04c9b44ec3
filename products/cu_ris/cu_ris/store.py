# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""The SQLite order store. The schema version is ``PRAGMA user_version``.

Schema 1 (release 1.0): ``orders``, one row per accession; ``message`` is the last HL7 message
accepted for the order, as received, and ``received_at`` (UTC) and ``control_id`` belong to it.
Schema 2 (release 1.1) adds ``orders.revision`` (1, then +1 per XO), ``orders.updated_at`` (UTC,
set on every change) and ``order_events`` (one row per accepted NW, XO or CA).

The listener opens an existing database only (``mode=rw``: never created by accident), and only at
its release's schema; the readers open it read-only (``mode=ro``).
"""

from __future__ import annotations

import datetime
import os
import sqlite3
import urllib.parse

from cu_ris import ConfigError

BUSY_TIMEOUT_S = 3.0  # how long a writer waits for a lock held by a reader (then the sender gets AE)
CHANGE_COLUMNS = ("patient_id", "patient_name", "modality", "station_aet", "scheduled", "procedure", "study_uid")


class StoreError(Exception):
    """The store cannot take the order now (the sender gets AE and may send it again)."""


def utc_now():
    """UTC ISO 8601 with microseconds and Z: the format of received_at and updated_at (sorts as text)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def connect(path, mode):
    """A connection in autocommit mode (transactions are explicit); ``mode`` is ro, rw or rwc."""
    uri = f"file:{urllib.parse.quote(os.path.abspath(path))}?mode={mode}"
    conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    return conn


def user_version(conn):
    return conn.execute("PRAGMA user_version").fetchone()[0]


def table_names(conn):
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
    return sorted(row[0] for row in rows)


def missing_message(path, release):
    return (
        f"database {path} does not exist: create it with `bin/ris-migrate --db {path}` from this release "
        f"(release {release.version}, schema {release.schema}); the listener never creates a database, so that a "
        "wrong path is not silently a new, empty one"
    )


def mismatch_message(path, found, release):
    """What to do when the database's schema is not the release's (None when it is)."""
    head = f"database {path} has schema {found}, release {release.version} needs {release.schema}"
    if found < release.schema:
        return f"{head}: run `bin/ris-migrate --db {path}` from this release"
    if found > release.schema:
        return (
            f"{head}: restore the database that matches this release (rollback): the backup taken before the "
            "migration (`bin/ris-migrate --backup`), or run the release that migrated it"
        )
    return None


def open_for_listener(path, release):
    """The OrderStore of an existing database at the release's schema; ConfigError otherwise."""
    if not os.path.exists(path):
        raise ConfigError(missing_message(path, release))
    try:
        conn = connect(path, "rw")
        found = user_version(conn)
    except sqlite3.Error as exc:
        raise ConfigError(f"database {path} cannot be opened as an SQLite database: {exc}") from None
    problem = mismatch_message(path, found, release)
    if problem:
        conn.close()
        raise ConfigError(problem)
    return OrderStore(conn, release.schema)


class OrderStore:
    """Order rows of one database, for one writer thread at a time (the listener holds its lock)."""

    def __init__(self, conn, schema):
        self.conn = conn
        self.schema = schema

    def begin(self):
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            found = user_version(self.conn)
        except sqlite3.Error as exc:
            self.rollback()
            raise StoreError(f"the order database is not available ({exc})") from None
        if found != self.schema:
            self.rollback()
            raise StoreError(
                f"the order database now has schema {found}, this listener runs schema {self.schema}: "
                "it was changed under the running listener; restart it"
            )

    def commit(self):
        try:
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"the order could not be committed ({exc})") from None

    def rollback(self):
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def get(self, accession):
        row = self.conn.execute("SELECT * FROM orders WHERE accession = ?", (accession,)).fetchone()
        return dict(row) if row else None

    def _event(self, accession, control, control_id, now):
        if self.schema >= 2:
            self.conn.execute(
                "INSERT INTO order_events (accession, control, received_at, control_id) VALUES (?, ?, ?, ?)",
                (accession, control, now, control_id),
            )

    def insert(self, accession, values, message, control_id, now):
        """A new scheduled order (NW)."""
        columns = {
            "accession": accession,
            **{name: values[name] for name in CHANGE_COLUMNS},
            "status": "scheduled",
            "message": message,
            "received_at": now,
            "control_id": control_id,
        }
        if self.schema >= 2:
            columns.update(revision=1, updated_at=now)
        names = ", ".join(columns)
        marks = ", ".join("?" for _ in columns)
        self.conn.execute(f"INSERT INTO orders ({names}) VALUES ({marks})", tuple(columns.values()))  # noqa: S608 - column names are ours
        self._event(accession, "NW", control_id, now)
        return self.get(accession)

    def change(self, accession, values, message, control_id, now):
        """The scheduled order with the values of an XO: revision + 1 (schema 2 only)."""
        sets = {name: values[name] for name in CHANGE_COLUMNS}
        sets.update(message=message, received_at=now, control_id=control_id, updated_at=now)
        assignments = ", ".join(f"{name} = ?" for name in sets)
        self.conn.execute(
            f"UPDATE orders SET {assignments}, revision = revision + 1 WHERE accession = ?",  # noqa: S608 - our names
            (*sets.values(), accession),
        )
        self._event(accession, "XO", control_id, now)
        return self.get(accession)

    def cancel(self, accession, message, control_id, now):
        """The order cancelled (CA)."""
        sets = {"status": "cancelled", "message": message, "received_at": now, "control_id": control_id}
        if self.schema >= 2:
            sets["updated_at"] = now
        assignments = ", ".join(f"{name} = ?" for name in sets)
        self.conn.execute(
            f"UPDATE orders SET {assignments} WHERE accession = ?",  # noqa: S608 - column names are ours
            (*sets.values(), accession),
        )
        self._event(accession, "CA", control_id, now)
        return self.get(accession)
