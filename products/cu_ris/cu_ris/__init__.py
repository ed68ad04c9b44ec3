# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""cu-ris: the lab RIS as a versioned product (HL7 orders in, SQLite store, DICOM worklist out).

Modules:

- ``release``: the release this code runs as (``release.json`` next to ``bin/``) and its migrations;
- ``message``: HL7 v2 parsing, field checks and ACKs;
- ``worklist``: DCMTK worklist entries (``.wl``) derived from an order row;
- ``store``: the SQLite order store (schema per release, ``PRAGMA user_version``);
- ``listener``: the MLLP server (``bin/ris-listener``);
- ``migrate``: schema migrations and backups (``bin/ris-migrate``);
- ``orders``: read-only order queries (``bin/ris-orders``).

Standard library only: a host runs a release with the system ``python3`` and no pip packages.
"""

PRODUCT = "cu-ris"
EX_CONFIG = 78  # sysexits EX_CONFIG: the database or the release does not fit; an operator must act


class ConfigError(Exception):
    """A state an operator must fix (wrong schema, missing database, broken release): exit 78."""
