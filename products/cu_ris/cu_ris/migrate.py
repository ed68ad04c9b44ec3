# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""ris-migrate: bring the order database to this release's schema, or report where it stands.

    ris-migrate --db PATH                  apply this release's pending migrations, one transaction each
    ris-migrate --db PATH --backup FILE    first write a consistent copy to FILE (sqlite3 backup API)
    ris-migrate --db PATH --status         report, change nothing

A missing database is created (only here: the listener refuses a missing one). Migration NNNN sets
``PRAGMA user_version = NNNN`` in its own transaction; a failing one is rolled back (the database
stays as it was before it) and the command exits 1. A database with a newer schema than the
release is refused (exit 78): restore the database that matches this release. ``--backup`` refuses
an existing FILE (exit 78): the copy it would replace may be the only one from before a migration.

Output (stdout, JSON): ``{"db", "from", "to", "applied"}``; with --status ``{"db", "schema",
"release_schema", "pending", "orders"}`` (``orders`` is null while there is no orders table).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sqlite3
import sys

from cu_ris import EX_CONFIG, ConfigError
from cu_ris.release import Release
from cu_ris.store import connect, mismatch_message, table_names, user_version

TRANSACTION_WORDS = {"BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE"}
LEADING_COMMENTS = re.compile(r"^(\s*(--[^\n]*\n|/\*.*?\*/))*\s*", re.S)


class MigrationError(Exception):
    """A migration failed and was rolled back (exit 1)."""


def statements(name, sql):
    """The statements of a migration file, in order; MigrationError for what only this tool may do."""
    found, buf = [], ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            found.append(buf.strip())
            buf = ""
    if LEADING_COMMENTS.sub("", buf + "\n").strip():
        raise MigrationError(f"{name}: the file ends inside a statement (a missing ';')")
    for stmt in found:
        body = LEADING_COMMENTS.sub("", stmt + "\n")
        first = body.split(None, 1)[0].upper().rstrip(";") if body.strip() else ""
        if first in TRANSACTION_WORDS or re.match(r"PRAGMA\s+user_version", body, re.I):
            raise MigrationError(
                f"{name}: {first} statements are not allowed in a migration (ris-migrate runs each migration in "
                "one transaction and sets user_version itself)"
            )
    return [stmt for stmt in found if LEADING_COMMENTS.sub("", stmt + "\n").strip()]


def apply_migration(conn, migration):
    """Run one migration and set user_version in one transaction; roll back and raise on failure."""
    with open(migration.path, encoding="utf-8") as fh:
        stmts = statements(migration.name, fh.read())
    conn.execute("BEGIN IMMEDIATE")
    try:
        for stmt in stmts:
            conn.execute(stmt)
        conn.execute(f"PRAGMA user_version = {migration.number:d}")
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise MigrationError(f"{migration.name} failed and was rolled back: {exc}") from None


def backup(conn, target):
    """A consistent copy of the open database at ``target`` (written aside, then renamed into place)."""
    if os.path.lexists(target):
        raise ConfigError(
            f"backup file {target} already exists: it may be the only copy from before a migration; "
            "move it away or choose another --backup file"
        )
    partial = f"{target}.partial-{os.getpid()}"
    try:
        dest = sqlite3.connect(partial)
        try:
            conn.backup(dest)
        finally:
            dest.close()
        with open(partial, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(partial, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        raise


def check_schema(conn, path, release):
    """The database's schema; ConfigError when it is newer than the release or not a cu-ris database."""
    found = user_version(conn)
    if found > release.schema:
        raise ConfigError(mismatch_message(path, found, release))
    if found == 0 and table_names(conn):
        raise ConfigError(
            f"database {path} has schema 0 but already holds tables ({', '.join(table_names(conn)[:5])}): "
            "it is not a cu-ris database; check --db"
        )
    return found


def migrate(path, release, backup_file=None):
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ConfigError(f"directory {directory} of --db does not exist: create it or fix the path")
    existed = os.path.exists(path)
    conn = connect(path, "rwc")
    try:
        found = check_schema(conn, path, release)
        if backup_file:
            backup(conn, backup_file)
        applied = []
        try:
            for migration in release.migrations:
                if migration.number > found:
                    apply_migration(conn, migration)
                    applied.append(migration.name)
        except MigrationError as exc:
            now = user_version(conn)
            raise MigrationError(
                f"{exc}; database {path} is at schema {now}"
                + (f" (applied by this run: {', '.join(applied)})" if applied else " as before")
            ) from None
        return {"db": os.path.abspath(path), "from": found, "to": user_version(conn), "applied": applied}
    finally:
        conn.close()
        if not existed and os.path.exists(path) and os.path.getsize(path) == 0:
            os.unlink(path)  # nothing was committed: leave no empty file behind


def status(path, release):
    """Where the database stands; opened read-only, a missing one is not created."""
    result = {"db": os.path.abspath(path), "schema": 0, "release_schema": release.schema, "pending": [], "orders": None}
    if os.path.exists(path):
        conn = connect(path, "ro")
        try:
            result["schema"] = user_version(conn)
            if "orders" in table_names(conn):
                result["orders"] = conn.execute("SELECT COUNT(*) FROM orders").fetchone()[0]
        finally:
            conn.close()
    result["pending"] = [m.name for m in release.migrations if m.number > result["schema"]]
    return result


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="ris-migrate", description=__doc__.split("\n")[0])
    p.add_argument("--db", required=True, help="the order database (created when missing)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--status", action="store_true", help="report the schema and pending migrations; change nothing")
    mode.add_argument("--backup", metavar="FILE", help="first write a consistent copy of the database to FILE (new)")
    return p.parse_args(argv)


def main(argv=None, root=None):
    args = parse_args(argv)
    try:
        release = Release.load(root)
        result = status(args.db, release) if args.status else migrate(args.db, release, args.backup)
    except ConfigError as exc:
        print(f"ris-migrate: {exc}", file=sys.stderr)
        return EX_CONFIG
    except (MigrationError, sqlite3.Error, OSError) as exc:
        print(f"ris-migrate: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0
