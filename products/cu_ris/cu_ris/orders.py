# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""ris-orders: read the order database (read-only: it is opened with ``mode=ro``, never created).

    ris-orders --db PATH list [--since-id N] [--changed-since ISO]
    ris-orders --db PATH count

``list`` prints a JSON list of the orders, every column, by id: ``--since-id N`` keeps ids greater
than N; ``--changed-since`` keeps orders changed at or after that time (schema 2: ``updated_at``;
schema 1: ``received_at``, the time of the last accepted message). ``count`` prints
``{"orders", "scheduled", "cancelled", "max_id"}``. Any schema with an orders table is read, so the
same command compares a database before and after a migration.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sqlite3
import sys

from cu_ris import EX_CONFIG, ConfigError
from cu_ris.store import connect, table_names, user_version


def open_readonly(path):
    if not os.path.exists(path):
        raise ConfigError(f"database {path} does not exist (ris-orders only reads; bin/ris-migrate creates it)")
    conn = connect(path, "ro")
    if "orders" not in table_names(conn):
        found = user_version(conn)
        conn.close()
        raise ConfigError(f"database {path} has schema {found} and no orders table: run `bin/ris-migrate --db {path}`")
    return conn


def iso_utc(text):
    """An ISO 8601 date or date and time (UTC when it has no offset) in the stored format."""
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date/time: {text!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def list_orders(conn, since_id=None, changed_since=None):
    columns = [row[1] for row in conn.execute("PRAGMA table_info(orders)")]
    where, params = [], []
    if since_id is not None:
        where.append("id > ?")
        params.append(since_id)
    if changed_since is not None:
        where.append(("updated_at" if "updated_at" in columns else "received_at") + " >= ?")
        params.append(changed_since)
    clause = " WHERE " + " AND ".join(where) if where else ""
    sql = f"SELECT * FROM orders{clause} ORDER BY id"  # noqa: S608 - our column names; the values are bound
    return [dict(row) for row in conn.execute(sql, params)]


def count_orders(conn):
    row = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(status = 'scheduled'), 0), COALESCE(SUM(status = 'cancelled'), 0), "
        "COALESCE(MAX(id), 0) FROM orders"
    ).fetchone()
    return {"orders": row[0], "scheduled": row[1], "cancelled": row[2], "max_id": row[3]}


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="ris-orders", description=__doc__.split("\n")[0])
    p.add_argument("--db", required=True, help="the order database (opened read-only)")
    sub = p.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="the orders as a JSON list, every column")
    listing.add_argument("--since-id", type=int, help="only orders with an id greater than N")
    listing.add_argument("--changed-since", type=iso_utc, help="only orders changed at or after this ISO 8601 time")
    sub.add_parser("count", help="how many orders, by status, and the highest id")
    return p.parse_args(argv)


def main(argv=None, root=None):
    args = parse_args(argv)
    try:
        conn = open_readonly(args.db)
    except ConfigError as exc:
        print(f"ris-orders: {exc}", file=sys.stderr)
        return EX_CONFIG
    except sqlite3.Error as exc:
        print(f"ris-orders: database {args.db}: {exc}", file=sys.stderr)
        return 1
    try:
        result = list_orders(conn, args.since_id, args.changed_since) if args.command == "list" else count_orders(conn)
    except sqlite3.Error as exc:
        print(f"ris-orders: database {args.db}: {exc}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    print(json.dumps(result, indent=1))
    return 0
