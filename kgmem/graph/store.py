"""Graph tables in the store's SQLite file: entities, aliases, mentions, relations.

Mentions and relations hang off chunks, so deleting a document's chunks removes its
facts exactly; entities left with no mention are pruned in the same transaction.
Changes are also queued for the cached networkx view, which applies them after the
transaction commits (or is dropped and rebuilt if it rolls back).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..memory.migrations import Migration
from ..memory.store import SQLiteStore
from .extract import NOUN_PHRASE, ChunkFacts
from .resolve import document_aliases

GRAPH_MIGRATIONS = [
    Migration(
        "graph",
        "0001_entities_mentions_relations",
        """
        CREATE TABLE entities (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            key TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            label TEXT NOT NULL
        );
        CREATE TABLE mentions (
            id INTEGER PRIMARY KEY,
            entity_id INTEGER NOT NULL REFERENCES entities(id),
            chunk_id INTEGER NOT NULL REFERENCES chunks(id) ON DELETE CASCADE,
            key TEXT NOT NULL,
            text TEXT NOT NULL,
            label TEXT NOT NULL,
            start INTEGER NOT NULL,
            end INTEGER NOT NULL
        );
        CREATE INDEX mentions_entity ON mentions(entity_id);
        CREATE INDEX mentions_chunk ON mentions(chunk_id);
        CREATE TABLE relations (
            id INTEGER PRIMARY KEY,
            source_id INTEGER NOT NULL REFERENCES entities(id),
            target_id INTEGER NOT NULL REFERENCES entities(id),
            predicate TEXT NOT NULL,
            kind TEXT NOT NULL,
            source_key TEXT NOT NULL,
            target_key TEXT NOT NULL,
            chunk_id INTEGER NOT NULL REFERENCES chunks(id) ON DELETE CASCADE,
            start INTEGER NOT NULL,
            end INTEGER NOT NULL
        );
        CREATE INDEX relations_source ON relations(source_id);
        CREATE INDEX relations_target ON relations(target_id);
        CREATE INDEX relations_chunk ON relations(chunk_id);
        -- A merge: inside doc_id, mentions keyed alias_key were given to entity_id.
        CREATE TABLE aliases (
            alias_key TEXT NOT NULL,
            entity_id INTEGER NOT NULL REFERENCES entities(id),
            kind TEXT NOT NULL,
            doc_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            PRIMARY KEY (alias_key, doc_id)
        );
        CREATE INDEX aliases_entity ON aliases(entity_id);
        """,
    ),
    Migration(
        "graph",
        "0002_graph_documents",
        """
        -- Documents whose facts are in the graph: a store filled with the graph off
        -- (or by an older kgmem) gets the rest extracted on the next ingest.
        CREATE TABLE graph_documents (
            doc_id TEXT PRIMARY KEY REFERENCES documents(id) ON DELETE CASCADE
        );
        INSERT INTO graph_documents(doc_id)
            SELECT DISTINCT c.doc_id FROM mentions m JOIN chunks c ON c.id = m.chunk_id;
        """,
    ),
    Migration(
        "graph",
        "0003_document_subjects",
        """
        -- The entity a document is about (its title, extract.document_subject): the graph
        -- walk sends an entity's mass to the passages about it before those that only
        -- mention it. Null for documents written before, or with no subject.
        ALTER TABLE graph_documents ADD COLUMN subject_id INTEGER;
        """,
    ),
]


@dataclass
class ViewDelta:
    """What the networkx view must learn once the transaction commits."""

    entities: dict[int, tuple[str, str, str]] = field(default_factory=dict)  # id -> key, name, label
    relations: list[tuple[int, int, int, str, str, int]] = field(default_factory=list)
    removed_relations: list[tuple[int, int, int]] = field(default_factory=list)  # id, source, target
    removed_entities: list[int] = field(default_factory=list)
    touched: set[int] = field(default_factory=set)  # entities whose mention count changed
    rebuild: bool = False


class GraphStore:
    def __init__(self, sql: SQLiteStore):
        self.sql = sql
        self.conn = sql.conn
        sql.migrate(GRAPH_MIGRATIONS)
        self.pending = ViewDelta()

    # ------------------------------------------------------------------ writing
    def _entity_ids(self, wanted: dict[str, tuple[str, str]]) -> dict[str, int]:
        """Ids for keys, creating entities that do not exist yet (key -> (name, label))."""
        keys = list(wanted)
        found: dict[str, int] = {}
        for i in range(0, len(keys), 500):
            part = keys[i : i + 500]
            rows = self.conn.execute(
                f"SELECT key, id, label FROM entities WHERE key IN ({','.join('?' * len(part))})", part
            )
            for key, eid, label in rows:
                found[key] = eid
                name, new_label = wanted[key]
                # A noun phrase later recognised as a named entity takes the better label.
                if label == NOUN_PHRASE and new_label != NOUN_PHRASE:
                    self.conn.execute("UPDATE entities SET label = ?, name = ? WHERE id = ?", (new_label, name, eid))
                    self.pending.entities[eid] = (key, name, new_label)
        for key in keys:
            if key not in found:
                name, label = wanted[key]
                cur = self.conn.execute("INSERT INTO entities(key, name, label) VALUES (?, ?, ?)", (key, name, label))
                found[key] = int(cur.lastrowid)
                self.pending.entities[found[key]] = (key, name, label)
        return found

    def write(self, doc_id: str, chunks: Sequence[tuple[int, int]], facts: Sequence[ChunkFacts]) -> None:
        """Store one document's facts; `chunks` are (chunk id, chunk start offset in the document).

        The caller holds the transaction.
        """
        self.conn.execute("INSERT OR IGNORE INTO graph_documents(doc_id) VALUES (?)", (doc_id,))
        self._bump()
        links = document_aliases(
            (m.key, m.text, m.label) for f in facts for m in f.mentions
        )
        redirect = {link.alias_key: link.target_key for link in links}
        # Name: the first mention spelled with the entity's own key; label: the first named-entity label.
        names: dict[str, str] = {}
        labels: dict[str, str] = {}
        for m in (m for f in facts for m in f.mentions):
            key = redirect.get(m.key, m.key)
            if key == m.key:
                names.setdefault(key, m.text)
            if labels.get(key, NOUN_PHRASE) == NOUN_PHRASE:
                labels[key] = m.label
        wanted = {key: (names.get(key, key), label) for key, label in labels.items()}
        ids = self._entity_ids(wanted)
        for link in links:
            self.conn.execute(
                "INSERT OR REPLACE INTO aliases(alias_key, entity_id, kind, doc_id) VALUES (?, ?, ?, ?)",
                (link.alias_key, ids[link.target_key], link.kind, doc_id),
            )
        subject = next((f.subject for f in facts if f.subject), None)
        if subject is not None:
            self.conn.execute("UPDATE graph_documents SET subject_id = ? WHERE doc_id = ?",
                              (ids.get(redirect.get(subject, subject)), doc_id))
        self.pending.touched.update(ids.values())
        for (chunk_id, offset), f in zip(chunks, facts):
            ent = [ids[redirect.get(m.key, m.key)] for m in f.mentions]
            self.conn.executemany(
                "INSERT INTO mentions(entity_id, chunk_id, key, text, label, start, end) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(ent[i], chunk_id, m.key, m.text, m.label, offset + m.start, offset + m.end) for i, m in enumerate(f.mentions)],
            )
            for r in f.relations:
                if ent[r.source] == ent[r.target]:
                    continue  # an alias made both ends one entity
                cur = self.conn.execute(
                    "INSERT INTO relations(source_id, target_id, predicate, kind, source_key, target_key, "
                    "chunk_id, start, end) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (ent[r.source], ent[r.target], r.predicate, r.kind, f.mentions[r.source].key,
                     f.mentions[r.target].key, chunk_id, offset + r.start, offset + r.end),
                )
                self.pending.relations.append((int(cur.lastrowid), ent[r.source], ent[r.target], r.predicate, r.kind, chunk_id))

    def _bump(self) -> None:
        # Readers in other processes rebuild their graph matrix and view when this moves.
        self.conn.execute(
            "INSERT INTO meta(key, value) VALUES ('graph_generation', '1') "
            "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
        )

    @property
    def generation(self) -> int:
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'graph_generation'").fetchone()
        return int(row[0]) if row else 0

    def forget_documents(self, doc_ids: Sequence[str]) -> None:
        """Delete the documents' mentions, relations and aliases, and entities left with no mention."""
        with self.sql.transaction():
            self._bump()
            for doc_id in doc_ids:
                chunk_sql = "SELECT id FROM chunks WHERE doc_id = ?"
                self.pending.removed_relations.extend(
                    tuple(r) for r in self.conn.execute(
                        f"SELECT id, source_id, target_id FROM relations WHERE chunk_id IN ({chunk_sql})", (doc_id,)
                    )
                )
                touched = [r[0] for r in self.conn.execute(
                    f"SELECT DISTINCT entity_id FROM mentions WHERE chunk_id IN ({chunk_sql})", (doc_id,)
                )]
                self.conn.execute(f"DELETE FROM relations WHERE chunk_id IN ({chunk_sql})", (doc_id,))
                self.conn.execute(f"DELETE FROM mentions WHERE chunk_id IN ({chunk_sql})", (doc_id,))
                self.conn.execute("DELETE FROM aliases WHERE doc_id = ?", (doc_id,))
                self.conn.execute("DELETE FROM graph_documents WHERE doc_id = ?", (doc_id,))
                self.pending.touched.update(touched)
                self._prune(touched)

    def _prune(self, entity_ids: Sequence[int]) -> None:
        for i in range(0, len(entity_ids), 500):
            part = list(entity_ids[i : i + 500])
            marks = ",".join("?" * len(part))
            orphans = [r[0] for r in self.conn.execute(
                f"SELECT id FROM entities WHERE id IN ({marks}) "
                "AND NOT EXISTS (SELECT 1 FROM mentions m WHERE m.entity_id = entities.id)",
                part,
            )]
            if orphans:
                omarks = ",".join("?" * len(orphans))
                # Relations always touch mentioned entities; a damaged store may not (repair).
                gone = self.conn.execute(
                    f"SELECT id, source_id, target_id FROM relations WHERE source_id IN ({omarks}) "
                    f"OR target_id IN ({omarks})", orphans + orphans).fetchall()
                if gone:
                    self.pending.removed_relations.extend(tuple(r) for r in gone)
                    self.conn.execute(f"DELETE FROM relations WHERE id IN ({','.join('?' * len(gone))})",
                                      [r[0] for r in gone])
                self.conn.execute(f"DELETE FROM aliases WHERE entity_id IN ({omarks})", orphans)
                self.conn.execute(f"DELETE FROM entities WHERE id IN ({omarks})", orphans)
                self.pending.removed_entities.extend(orphans)

    def undo_alias(self, alias_key: str, doc_id: str) -> bool:
        """Take back a merge: the document's mentions keyed alias_key get their own entity again."""
        with self.sql.transaction():
            row = self.conn.execute(
                "SELECT entity_id FROM aliases WHERE alias_key = ? AND doc_id = ?", (alias_key, doc_id)
            ).fetchone()
            if row is None:
                return False
            merged_into = row[0]
            sample = self.conn.execute(
                "SELECT m.text, m.label FROM mentions m JOIN chunks c ON c.id = m.chunk_id "
                "WHERE c.doc_id = ? AND m.key = ? LIMIT 1", (doc_id, alias_key)
            ).fetchone()
            own = self._entity_ids({alias_key: (sample[0], sample[1]) if sample else (alias_key, NOUN_PHRASE)})[alias_key]
            in_doc = "chunk_id IN (SELECT id FROM chunks WHERE doc_id = ?)"
            self.conn.execute(
                f"UPDATE mentions SET entity_id = ? WHERE key = ? AND entity_id = ? AND {in_doc}",
                (own, alias_key, merged_into, doc_id),
            )
            for end in ("source", "target"):
                self.conn.execute(
                    f"UPDATE relations SET {end}_id = ? WHERE {end}_key = ? AND {end}_id = ? AND {in_doc}",
                    (own, alias_key, merged_into, doc_id),
                )
            self.conn.execute("DELETE FROM aliases WHERE alias_key = ? AND doc_id = ?", (alias_key, doc_id))
            self._prune([merged_into])
            self._bump()
            # Edges moved between nodes: rebuilding the view is simpler than patching it.
            self.pending = ViewDelta(rebuild=True)
        return True

    # ------------------------------------------------------------------ reading
    def missing(self, doc_ids: Sequence[str]) -> list[str]:
        """Those of the documents whose facts are not in the graph yet."""
        done: set[str] = set()
        ids = list(doc_ids)
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            done.update(r[0] for r in self.conn.execute(
                f"SELECT doc_id FROM graph_documents WHERE doc_id IN ({','.join('?' * len(part))})", part
            ))
        return [d for d in ids if d not in done]

    def lookup(self, keys: Sequence[str]) -> dict[str, int]:
        """Entity ids for canonical keys, directly or through an alias."""
        out: dict[str, int] = {}
        keys = [k for k in dict.fromkeys(keys) if k]
        for i in range(0, len(keys), 500):
            part = keys[i : i + 500]
            marks = ",".join("?" * len(part))
            for key, eid in self.conn.execute(f"SELECT key, id FROM entities WHERE key IN ({marks})", part):
                out[key] = eid
            for key, eid in self.conn.execute(
                f"SELECT alias_key, entity_id FROM aliases WHERE alias_key IN ({marks}) "
                "GROUP BY alias_key, entity_id ORDER BY count(*) DESC", part
            ):
                out.setdefault(key, eid)
        return out

    def counts(self) -> dict[str, int]:
        one = lambda sql: int(self.conn.execute(sql).fetchone()[0])  # noqa: E731
        return {
            "entities": one("SELECT count(*) FROM entities"),
            "aliases": one("SELECT count(*) FROM aliases"),
            "mentions": one("SELECT count(*) FROM mentions"),
            "relations": one("SELECT count(*) FROM relations WHERE kind != 'cooc'"),
            "co_occurrences": one("SELECT count(*) FROM relations WHERE kind = 'cooc'"),
        }

    def repair(self) -> dict[str, int]:
        """Remove what points nowhere (facts of vanished chunks, entities with no mention)."""
        fixed = {}
        with self.sql.transaction():
            for table in ("relations", "mentions"):
                cur = self.conn.execute(f"DELETE FROM {table} WHERE chunk_id NOT IN (SELECT id FROM chunks)")
                fixed[f"{table}_of_missing_chunks"] = cur.rowcount
            cur = self.conn.execute(
                "DELETE FROM relations WHERE source_id NOT IN (SELECT id FROM entities) "
                "OR target_id NOT IN (SELECT id FROM entities)")
            fixed["relations_of_missing_entities"] = cur.rowcount
            orphans = [r[0] for r in self.conn.execute(
                "SELECT id FROM entities e WHERE NOT EXISTS (SELECT 1 FROM mentions m WHERE m.entity_id = e.id)")]
            self._prune(orphans)
            fixed["entities_without_mentions"] = len(orphans)
            self._bump()
        self.pending = ViewDelta(rebuild=True)
        return fixed

    # (query counting a kind of damage, what to call it)
    CHECKS = (
        ("SELECT count(*) FROM entities e WHERE NOT EXISTS (SELECT 1 FROM mentions m WHERE m.entity_id = e.id)",
         "entities have no mention"),
        ("SELECT count(*) FROM mentions WHERE chunk_id NOT IN (SELECT id FROM chunks)",
         "mentions point at deleted chunks"),
        ("SELECT count(*) FROM relations WHERE chunk_id NOT IN (SELECT id FROM chunks)",
         "relations point at deleted chunks"),
        ("SELECT count(*) FROM relations WHERE source_id NOT IN (SELECT id FROM entities) "
         "OR target_id NOT IN (SELECT id FROM entities)", "relations point at missing entities"),
        ("SELECT count(*) FROM mentions WHERE entity_id NOT IN (SELECT id FROM entities)",
         "mentions point at missing entities"),
        ("SELECT count(*) FROM aliases WHERE entity_id NOT IN (SELECT id FROM entities)",
         "aliases point at missing entities"),
        ("SELECT count(*) FROM mentions m JOIN chunks c ON c.id = m.chunk_id WHERE m.start < c.start OR m.end > c.end",
         "mentions lie outside their chunk"),
    )

    def check(self) -> list[str]:
        problems = []
        for sql, what in self.CHECKS:
            n = int(self.conn.execute(sql).fetchone()[0])
            if n:
                problems.append(f"{n} {what}")
        return problems

    def take_pending(self) -> ViewDelta:
        delta, self.pending = self.pending, ViewDelta()
        return delta
