"""Named schema migrations, applied in order and recorded, one list per layer."""
from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

import sqlite_utils

from ..errors import SchemaVersionError


@dataclass(frozen=True)
class Migration:
    component: str
    name: str
    sql: str


def _statements(sql: str) -> list[str]:
    # executescript() would COMMIT the caller's transaction; split and run one by one instead.
    out, buf = [], ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out


def pending(conn: sqlite3.Connection, migrations: list[Migration]) -> list[str]:
    """Names of the migrations a store lacks, read without writing (a store on read-only
    media is opened this way); a store written by a newer kgmem is refused."""
    if not migrations:
        return []
    has_table = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'migrations'").fetchone()
    component = migrations[0].component
    done = {r[0] for r in conn.execute("SELECT name FROM migrations WHERE component = ?", (component,))} \
        if has_table else set()
    unknown = sorted(done - {m.name for m in migrations})
    if unknown:
        raise SchemaVersionError(
            f"this store was written by a newer kgmem ({component} schema has {', '.join(unknown)}); "
            "upgrade kgmem to open it"
        )
    return [m.name for m in migrations if m.name not in done]


def apply_migrations(conn: sqlite3.Connection, migrations: list[Migration]) -> list[str]:
    """Apply the migrations a store lacks (inside the caller's transaction); return their names.

    A store holding migrations of this component that this code does not know was
    written by a newer kgmem: refuse it rather than guess.
    """
    sqlite_utils.Database(conn)["migrations"].create(
        {"component": str, "name": str, "applied_at": float}, pk=("component", "name"),
        not_null={"component", "name", "applied_at"}, if_not_exists=True,
    )
    todo = set(pending(conn, migrations))
    applied = []
    for m in migrations:
        if m.name not in todo:
            continue
        for stmt in _statements(m.sql):
            conn.execute(stmt)
        conn.execute(
            "INSERT INTO migrations(component, name, applied_at) VALUES (?, ?, ?)",
            (m.component, m.name, time.time()),
        )
        applied.append(m.name)
    return applied


def schema_version(conn: sqlite3.Connection) -> dict[str, int]:
    rows = conn.execute("SELECT component, count(*) FROM migrations GROUP BY component")
    return {r[0]: int(r[1]) for r in rows}
