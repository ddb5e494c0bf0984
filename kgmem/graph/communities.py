"""Communities: which passages and entities belong together, in two levels.

Level 0, inside each document: Louvain (networkx, seeded) over the graph of the
document's chunks and the entities they mention (chunk–entity edges weighted by
mentions, consecutive chunks linked: a text runs on from one passage to the next).
Level 1, across documents: Louvain over the level-0 communities, linked by the
entities they share, each weighted by its rarity (a word every community uses links
nothing). Each chunk also gets its centrality in its document (PageRank over the same
graph): summaries read the central passages first.

Kept up to date lazily, never at ingest: `update()` runs before communities are read
and reclusters level 0 only for documents added or changed since (by content hash);
level 1 is rebuilt from the level-0 communities when any changed or went. A
community's `key` hashes its chunks' ids and their documents' hashes, so a cached
summary keyed by it is never served for passages that changed.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from ..memory.migrations import Migration
from ..memory.store import SQLiteStore

COMMUNITY_MIGRATIONS = [
    Migration(
        "communities",
        "0001_communities",
        """
        CREATE TABLE communities (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            level INTEGER NOT NULL,              -- 0: inside one document; 1: across documents
            doc_id TEXT REFERENCES documents(id) ON DELETE CASCADE,  -- level 0 only
            parent INTEGER,                      -- a level-0 community's level-1 community
            key TEXT NOT NULL,                   -- hash of its chunks: the summary cache's key
            size INTEGER NOT NULL,               -- chunks
            top TEXT NOT NULL DEFAULT '[]'       -- JSON: its most telling entities' names
        );
        CREATE INDEX communities_doc ON communities(doc_id);
        CREATE INDEX communities_parent ON communities(parent);
        CREATE TABLE community_chunks (
            community_id INTEGER NOT NULL REFERENCES communities(id) ON DELETE CASCADE,
            chunk_id INTEGER NOT NULL REFERENCES chunks(id) ON DELETE CASCADE,
            rank REAL NOT NULL,                  -- the chunk's centrality in its document
            PRIMARY KEY (chunk_id, community_id)
        );
        CREATE INDEX community_chunks_community ON community_chunks(community_id);
        -- Documents clustered, at the content hash they had then.
        CREATE TABLE community_documents (
            doc_id TEXT PRIMARY KEY REFERENCES documents(id) ON DELETE CASCADE,
            hash TEXT NOT NULL
        );
        CREATE TABLE community_summaries (
            key TEXT NOT NULL,
            backend TEXT NOT NULL,
            words INTEGER NOT NULL,
            text TEXT NOT NULL,
            chunks TEXT NOT NULL,                -- JSON: the chunk ids its [n] markers name, in order
            PRIMARY KEY (key, backend, words)
        );
        """,
    ),
]

TOP_ENTITIES = 8
MAX_SHARED = 50  # an entity in more level-0 communities than this links none of them
SEED = 0


@dataclass
class Community:
    id: int
    level: int
    doc_id: str | None
    parent: int | None
    key: str
    size: int  # chunks
    top: list[str]  # most telling entities, best first
    chunks: list[int] = field(default_factory=list)  # central first
    children: list[int] = field(default_factory=list)  # level 1: its level-0 communities

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "level": self.level, "doc_id": self.doc_id, "parent": self.parent,
                "size": self.size, "top": self.top, "chunks": self.chunks, "children": self.children}


@dataclass
class UpdateReport:
    documents: int = 0  # documents reclustered
    level0: int = 0  # level-0 communities in the store afterwards
    level1: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def _hash(parts: Sequence[Any]) -> str:
    return hashlib.sha256("\n".join(map(str, parts)).encode()).hexdigest()[:24]


class Communities:
    def __init__(self, sql: SQLiteStore):
        self.sql = sql
        self.conn = sql.conn
        self._chunks = 0  # passages in the store, counted once per update
        sql.migrate(COMMUNITY_MIGRATIONS)

    # ------------------------------------------------------------------ maintenance
    def _level0_stamp(self) -> str:
        n, total = self.conn.execute(
            "SELECT count(*), coalesce(sum(id), 0) FROM communities WHERE level = 0").fetchone()
        return f"{n}:{total}"  # ids are never reused: any level-0 change moves it

    def stale(self) -> tuple[list[str], bool]:
        """(documents to recluster: new or changed; whether level 1 must be rebuilt).

        A deleted document takes its level-0 rows with it (ON DELETE CASCADE), which
        moves the level-0 stamp that level 1 was built from."""
        rows = self.conn.execute(
            "SELECT d.id, d.hash, c.hash FROM documents d LEFT JOIN community_documents c ON c.doc_id = d.id"
        ).fetchall()
        changed = [doc for doc, h, seen in rows if h != seen]
        return changed, bool(changed) or self.sql.get_meta("communities_level0", "0:0") != self._level0_stamp()

    def update(self, progress: Callable[[int, int], None] | None = None) -> UpdateReport:
        """Recluster what changed (see the module's notes). The caller holds the writer lock."""
        changed, corpus = self.stale()
        report = UpdateReport(documents=len(changed))
        if changed or corpus:
            with self.sql.transaction():
                self._chunks = self.conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
                for i, doc_id in enumerate(changed):
                    self._cluster_document(doc_id)
                    if progress is not None:
                        progress(i + 1, len(changed))
                self._cluster_corpus()
                self.sql.set_meta("communities_level0", self._level0_stamp())
        counts = self.counts()
        report.level0, report.level1 = counts["communities"], counts["topics"]
        return report

    def _cluster_document(self, doc_id: str) -> None:
        self.conn.execute("DELETE FROM communities WHERE doc_id = ?", (doc_id,))
        chunks = [r[0] for r in self.conn.execute("SELECT id FROM chunks WHERE doc_id = ? ORDER BY ord", (doc_id,))]
        dhash = self.conn.execute("SELECT hash FROM documents WHERE id = ?", (doc_id,)).fetchone()[0]
        self.conn.execute("INSERT OR REPLACE INTO community_documents(doc_id, hash) VALUES (?, ?)", (doc_id, dhash))
        if not chunks:
            return
        g = nx.Graph()
        g.add_nodes_from(("c", c) for c in chunks)
        for a, b in zip(chunks, chunks[1:]):
            g.add_edge(("c", a), ("c", b), weight=1.0)
        mentions: dict[int, Counter] = defaultdict(Counter)
        for chunk, entity, n in self.conn.execute(
            "SELECT m.chunk_id, m.entity_id, count(*) FROM mentions m JOIN chunks c ON c.id = m.chunk_id "
            "WHERE c.doc_id = ? GROUP BY m.chunk_id, m.entity_id", (doc_id,),
        ):
            mentions[chunk][entity] = n
            g.add_edge(("c", chunk), ("e", entity), weight=float(n))
        rank = nx.pagerank(g, weight="weight") if g.number_of_edges() else {n: 1.0 for n in g}
        parts = nx.community.louvain_communities(g, weight="weight", seed=SEED) if g.number_of_edges() else [set(g)]
        order = {c: i for i, c in enumerate(chunks)}
        groups = [sorted((n[1] for n in part if n[0] == "c"), key=order.__getitem__) for part in parts]
        groups = sorted((grp for grp in groups if grp), key=lambda grp: order[grp[0]])
        for grp in groups:
            counts: Counter = Counter()
            for c in grp:
                counts.update(mentions.get(c, {}))
            cid = self._insert(0, doc_id, _hash([dhash, *grp]), len(grp), self._top(counts))
            self.conn.executemany(
                "INSERT INTO community_chunks(community_id, chunk_id, rank) VALUES (?, ?, ?)",
                [(cid, c, rank[("c", c)]) for c in grp],
            )

    def _insert(self, level: int, doc_id: str | None, key: str, size: int, top: list[str]) -> int:
        cur = self.conn.execute(
            "INSERT INTO communities(level, doc_id, key, size, top) VALUES (?, ?, ?, ?, ?)",
            (level, doc_id, key, size, json.dumps(top)),
        )
        return int(cur.lastrowid)

    def _top(self, counts: Counter) -> list[str]:
        """The community's most telling entities: often in it, rare elsewhere."""
        if not counts:
            return []
        ids = list(counts)[:2000]
        total = self._chunks or 1
        spread: dict[int, int] = {}
        names: dict[int, str] = {}
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            marks = ",".join("?" * len(part))
            spread.update(self.conn.execute(
                f"SELECT entity_id, count(DISTINCT chunk_id) FROM mentions WHERE entity_id IN ({marks}) "
                "GROUP BY entity_id", part,
            ).fetchall())
            names.update(self.conn.execute(f"SELECT id, name FROM entities WHERE id IN ({marks})", part).fetchall())
        score = {e: counts[e] * math.log(1 + total / spread.get(e, 1)) for e in ids if e in names}
        best = sorted(score, key=lambda e: (-score[e], names[e]))
        out: list[str] = []
        for e in best:
            if names[e].lower() not in (n.lower() for n in out):
                out.append(names[e])
            if len(out) == TOP_ENTITIES:
                break
        return out

    def _cluster_corpus(self) -> None:
        """Level 1: Louvain over level-0 communities linked by the rare entities they share."""
        self.conn.execute("DELETE FROM communities WHERE level = 1")
        low = [r[0] for r in self.conn.execute("SELECT id FROM communities WHERE level = 0 ORDER BY id")]
        if not low:
            return
        holders: dict[int, Counter] = defaultdict(Counter)  # entity -> level-0 community -> mentions
        for comm, entity, n in self.conn.execute(
            "SELECT cc.community_id, m.entity_id, count(*) FROM community_chunks cc "
            "JOIN communities c ON c.id = cc.community_id AND c.level = 0 "
            "JOIN mentions m ON m.chunk_id = cc.chunk_id GROUP BY cc.community_id, m.entity_id"
        ):
            holders[entity][comm] = n
        g = nx.Graph()
        g.add_nodes_from(low)
        for entity, comms in holders.items():
            if not 1 < len(comms) <= MAX_SHARED:
                continue
            idf = math.log(len(low) / len(comms))
            items = sorted(comms.items())
            for i, (a, na) in enumerate(items):
                for b, nb in items[i + 1 :]:
                    w = idf * min(na, nb)
                    if w > 0:
                        prev = g.get_edge_data(a, b, {"weight": 0.0})["weight"]
                        g.add_edge(a, b, weight=prev + w)
        if g.number_of_edges():
            parts = nx.community.louvain_communities(g, weight="weight", seed=SEED)
        else:
            parts = [{n} for n in low]
        info = {r[0]: (r[1], r[2]) for r in self.conn.execute("SELECT id, key, size FROM communities WHERE level = 0")}
        for part in sorted(parts, key=min):
            kids = sorted(part)
            counts: Counter = Counter()
            for entity, comms in holders.items():
                n = sum(comms.get(k, 0) for k in kids)
                if n:
                    counts[entity] = n
            cid = self._insert(1, None, _hash([info[k][0] for k in kids]), sum(info[k][1] for k in kids),
                               self._top(counts))
            self.conn.executemany("UPDATE communities SET parent = ? WHERE id = ?", [(cid, k) for k in kids])

    # ------------------------------------------------------------------ reading
    def list(self, level: int | None = None, doc_ids: Sequence[str] | None = None) -> list[Community]:
        """Communities, largest first; `doc_ids` keeps the level-0 communities of those
        documents (and the level-1 communities that hold them)."""
        where, args = [], []
        if level is not None:
            where.append("level = ?")
            args.append(level)
        if doc_ids is not None:
            marks = ",".join("?" * len(doc_ids)) or "NULL"
            where.append(f"(doc_id IN ({marks}) OR id IN (SELECT parent FROM communities WHERE doc_id IN ({marks})))")
            args += [*doc_ids, *doc_ids]
        sql = "SELECT id, level, doc_id, parent, key, size, top FROM communities"
        rows = self.conn.execute(sql + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY size DESC, id",
                                 args).fetchall()
        out = [Community(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6])) for r in rows]
        ids = [c.id for c in out]
        members: dict[int, list[tuple[float, int]]] = defaultdict(list)
        kids: dict[int, list[int]] = defaultdict(list)
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            marks = ",".join("?" * len(part))
            for cid, chunk, rank in self.conn.execute(
                f"SELECT community_id, chunk_id, rank FROM community_chunks WHERE community_id IN ({marks})", part
            ):
                members[cid].append((rank, chunk))
            for parent, cid, chunk, rank in self.conn.execute(
                f"SELECT c.parent, c.id, cc.chunk_id, cc.rank FROM communities c JOIN community_chunks cc "
                f"ON cc.community_id = c.id WHERE c.parent IN ({marks})", part,
            ):
                members[parent].append((rank, chunk))
                if cid not in kids[parent]:
                    kids[parent].append(cid)
        for c in out:
            c.chunks = [chunk for _, chunk in sorted(members.get(c.id, []), key=lambda rc: (-rc[0], rc[1]))]
            c.children = kids.get(c.id, [])
        return out

    def homes(self, chunk_ids: Sequence[int]) -> dict[int, int]:
        """Each chunk's level-0 community."""
        out: dict[int, int] = {}
        ids = list(chunk_ids)
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            out.update(self.conn.execute(
                "SELECT cc.chunk_id, cc.community_id FROM community_chunks cc JOIN communities c "
                f"ON c.id = cc.community_id AND c.level = 0 WHERE cc.chunk_id IN ({','.join('?' * len(part))})",
                part,
            ).fetchall())
        return out

    def counts(self) -> dict[str, int]:
        sql = "SELECT count(*) FROM communities WHERE level = ?"
        level0, level1 = (self.conn.execute(sql, (lvl,)).fetchone()[0] for lvl in (0, 1))
        return {"communities": level0, "topics": level1}

    # ------------------------------------------------------------------ summary cache
    def cached(self, key: str, backend: str, words: int) -> tuple[str, list[int]] | None:
        row = self.conn.execute(
            "SELECT text, chunks FROM community_summaries WHERE key = ? AND backend = ? AND words = ?",
            (key, backend, words),
        ).fetchone()
        return (row[0], json.loads(row[1])) if row else None

    def cache(self, key: str, backend: str, words: int, text: str, chunks: Sequence[int]) -> None:
        """Keep a community's summary; entries whose community went are pruned here."""
        with self.sql.transaction():
            self.conn.execute(
                "INSERT OR REPLACE INTO community_summaries(key, backend, words, text, chunks) VALUES (?, ?, ?, ?, ?)",
                (key, backend, words, text, json.dumps(list(chunks))),
            )
            self.conn.execute("DELETE FROM community_summaries WHERE key NOT IN (SELECT key FROM communities)")
