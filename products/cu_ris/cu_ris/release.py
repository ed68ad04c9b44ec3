# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""The release this code runs as: ``<root>/release.json`` and ``<root>/migrations/NNNN_name.sql``.

The same source builds every release (tools/build_ris_release.py); a release differs by its
release.json (version, schema) and the migrations it ships (0001 up to its schema). The code
follows the schema of its release, never the newest code it could run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re

from cu_ris import PRODUCT, ConfigError

MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclasses.dataclass(frozen=True)
class Migration:
    number: int
    name: str  # the file name without .sql, e.g. 0002_order_changes
    path: str


@dataclasses.dataclass(frozen=True)
class Release:
    root: str
    version: str
    schema: int
    migrations: tuple[Migration, ...]

    @classmethod
    def load(cls, root: str | None = None) -> Release:
        """The release at ``root`` (default: the one holding this package, ``<root>/lib/cu_ris``).

        ConfigError when release.json or the migrations do not fit together.
        """
        if root is None:
            root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        path = os.path.join(root, "release.json")
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError:
            raise ConfigError(
                f"{path} not found: run the bin/ scripts of a built release (tools/build_ris_release.py), "
                "not those of the source tree"
            ) from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path} is not readable JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("product") != PRODUCT:
            raise ConfigError(f"{path} does not describe a {PRODUCT} release")
        version, schema = data.get("version"), data.get("schema")
        if not isinstance(version, str) or not version:
            raise ConfigError(f"{path}: version must be a non-empty string")
        if not isinstance(schema, int) or isinstance(schema, bool) or schema < 1:
            raise ConfigError(f"{path}: schema must be an integer of at least 1")
        migrations = cls._migrations(os.path.join(root, "migrations"))
        numbers = [m.number for m in migrations]
        if numbers != list(range(1, schema + 1)):
            raise ConfigError(
                f"release {version} at {root} needs migrations 1 to {schema} and ships {numbers or 'none'}: "
                "the release is damaged; unpack its archive again"
            )
        return cls(root=root, version=version, schema=schema, migrations=tuple(migrations))

    @staticmethod
    def _migrations(directory: str) -> list[Migration]:
        try:
            names = sorted(os.listdir(directory))
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            match = MIGRATION_NAME.match(name)
            if match:
                found.append(Migration(int(match.group(1)), name[: -len(".sql")], os.path.join(directory, name)))
        return found
