"""`KnowledgeGraph`: extraction at ingest, the tables, the networkx view and the questions
users ask of them (`entity`, `neighbors`, `path`, `export`)."""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

from ..memory.store import SQLiteStore
from .extract import ChunkFacts, Extractor, Voice, shared_extractor
from .resolve import canonical_key
from .store import GraphStore
from .view import GraphView


# Bounds on one `neighbors` call: a question about the graph costs the same on any store.
MAX_HOPS = 3
MAX_FACTS = 1000
MAX_EDGES = 50_000


@dataclass(frozen=True)
class Citation:
    doc_id: str
    chunk_id: int
    start: int  # character offsets in the document
    end: int


@dataclass
class Fact:
    subject: str
    predicate: str
    object: str
    citations: list[Citation] = field(default_factory=list)
    kind: str = "svo"

    def __str__(self) -> str:
        return f"{self.subject} —{self.predicate}→ {self.object}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject, "predicate": self.predicate, "object": self.object, "kind": self.kind,
            "citations": [c.__dict__ for c in self.citations],
        }


@dataclass
class Entity:
    name: str
    label: str
    key: str
    aliases: list[str]
    mentions: list[Citation]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "key": self.key, "aliases": self.aliases,
                "mentions": [c.__dict__ for c in self.mentions]}


class KnowledgeGraph:
    def __init__(
        self, sql: SQLiteStore, spacy_model: str, extractor: Extractor | None = None, extraction: str = "full"
    ):
        self.sql = sql
        self.extraction = extraction
        self.store = GraphStore(sql)
        self.view = GraphView(sql)
        self.spacy_model = spacy_model
        self._extractor = extractor

    # ------------------------------------------------------------------ ingest side
    @property
    def extractor(self) -> Extractor:
        if self._extractor is None:
            self._extractor = shared_extractor(self.spacy_model, self.extraction)
        return self._extractor

    def parser(self) -> Any:
        """A spaCy pipeline with the dependency parser (for reading questions): the store's
        own extractor's, or, when the store extracts with NER only, the full one."""
        if self.extraction == "full":
            return self.extractor.nlp
        return shared_extractor(self.spacy_model, "full").nlp

    def extract(self, texts: list[str], voices: Sequence[Voice | None] | None = None,
                subjects: Sequence[str | None] | None = None) -> list[ChunkFacts]:
        return self.extractor.extract(texts, voices, subjects)

    def write(self, doc_id: str, chunks: Sequence[tuple[int, int]], facts: Sequence[ChunkFacts]) -> None:
        self.store.write(doc_id, chunks, facts)

    def missing(self, doc_ids: list[str]) -> list[str]:
        return self.store.missing(doc_ids)

    def forget_documents(self, doc_ids: list[str]) -> None:
        self.store.forget_documents(doc_ids)

    def refresh(self) -> None:
        """Drop a cached view that another process's writes have made stale."""
        if self.view.built and self.view.generation != self.store.generation:
            self.view.invalidate()

    def commit_view(self) -> None:
        """Fold this process's committed changes into the view (the writer refreshed first,
        so the view held everything up to its own write)."""
        try:
            self.view.apply(self.store.take_pending())
        except KeyError:
            self.view.invalidate()  # never expected; rebuilt from the tables on next use
        self.view.generation = self.store.generation

    def reset_view(self) -> None:
        self.store.take_pending()
        self.view.invalidate()

    # ------------------------------------------------------------------ queries
    @property
    def nx(self) -> nx.MultiDiGraph:
        """The whole graph as a networkx MultiDiGraph (nodes: entity keys)."""
        gen = self.store.generation
        self.refresh()  # another process may have changed the graph
        if not self.view.built:
            self.view.generation = gen
        return self.view.graph()

    def resolve(self, name: str) -> int | None:
        key = canonical_key(name)
        return self.store.lookup([key]).get(key)

    def labels(self, names: Sequence[str]) -> dict[str, str]:
        """The entity type (PERSON, ORG, …) of each name that is an entity."""
        keys = {n: canonical_key(n) for n in names}
        ids = self.store.lookup(sorted(set(keys.values())))
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        found = dict(self.sql.conn.execute(f"SELECT id, label FROM entities WHERE id IN ({marks})",
                                           list(ids.values())).fetchall())
        return {n: found[ids[k]] for n, k in keys.items() if k in ids and ids[k] in found}

    def entity(self, name: str, max_mentions: int = 50) -> Entity | None:
        eid = self.resolve(name)
        if eid is None:
            return None
        conn = self.sql.conn
        key, ename, label = conn.execute("SELECT key, name, label FROM entities WHERE id = ?", (eid,)).fetchone()
        aliases = sorted(
            {r[0] for r in conn.execute("SELECT alias_key FROM aliases WHERE entity_id = ?", (eid,))}
            | {r[0] for r in conn.execute("SELECT DISTINCT text FROM mentions WHERE entity_id = ?", (eid,))} - {ename}
        )
        mentions = [
            Citation(*r) for r in conn.execute(
                "SELECT c.doc_id, m.chunk_id, m.start, m.end FROM mentions m JOIN chunks c ON c.id = m.chunk_id "
                "WHERE m.entity_id = ? ORDER BY m.id LIMIT ?", (eid, max_mentions),
            )
        ]
        return Entity(name=ename, label=label, key=key, aliases=aliases, mentions=mentions)

    def mentions_in(self, chunk_ids: Sequence[int]) -> dict[int, list[tuple[int, int, str, int]]]:
        """Each chunk's mentions: (start, end, label, entity id), document offsets."""
        out: dict[int, list[tuple[int, int, str, int]]] = {}
        ids = list(chunk_ids)
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            for cid, start, end, label, eid in self.sql.conn.execute(
                "SELECT chunk_id, start, end, label, entity_id FROM mentions "
                f"WHERE chunk_id IN ({','.join('?' * len(part))}) ORDER BY chunk_id, start", part,
            ):
                out.setdefault(cid, []).append((start, end, label, eid))
        return out

    def facts(self, relation_ids: Sequence[int]) -> list[Fact]:
        """Relations grouped by (subject, predicate, object), each with every citation."""
        grouped: dict[tuple[str, str, str], Fact] = {}
        ids = list(relation_ids)
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            rows = self.sql.conn.execute(
                "SELECT s.name, r.predicate, o.name, r.kind, c.doc_id, r.chunk_id, r.start, r.end "
                "FROM relations r JOIN entities s ON s.id = r.source_id JOIN entities o ON o.id = r.target_id "
                f"JOIN chunks c ON c.id = r.chunk_id WHERE r.id IN ({','.join('?' * len(part))})", part,
            )
            for sname, pred, oname, kind, doc_id, chunk_id, start, end in rows:
                fact = grouped.setdefault((sname, pred, oname), Fact(sname, pred, oname, kind=kind))
                fact.citations.append(Citation(doc_id, chunk_id, start, end))
        # Parsed relations before bare co-occurrence, the best supported first.
        return sorted(grouped.values(), key=lambda f: (f.kind == "cooc", -len(f.citations), f.subject, f.object))

    def neighbors(self, name: str, hops: int = 1, limit: int = 100) -> list[Fact]:
        """Facts around an entity, up to `hops` steps away (either direction), best
        supported first. `hops` is 1 to MAX_HOPS and `limit` at most MAX_FACTS; the walk
        stops after MAX_EDGES edges (a hub two hops out can reach most of a large graph)."""
        if not 1 <= hops <= MAX_HOPS:
            raise ValueError(f"hops must be from 1 to {MAX_HOPS}, not {hops}")
        if not 1 <= limit <= MAX_FACTS:
            raise ValueError(f"limit must be from 1 to {MAX_FACTS}, not {limit}")
        eid = self.resolve(name)
        if eid is None:
            return []
        g = self.nx
        start = self.view.key_of(eid)
        if start is None or start not in g:
            return []
        frontier, seen = {start}, {start}
        rel_ids: list[int] = []
        for _ in range(hops):
            nxt: set[str] = set()
            for node in frontier:
                for u, v, rid in itertools.chain(g.out_edges(node, keys=True), g.in_edges(node, keys=True)):
                    rel_ids.append(rid)
                    other = v if u == node else u
                    if other not in seen:
                        seen.add(other)
                        nxt.add(other)
                if len(rel_ids) >= MAX_EDGES:
                    break
            frontier = nxt
            if len(rel_ids) >= MAX_EDGES:
                break
        return self.facts(list(dict.fromkeys(rel_ids)))[:limit]

    def path(self, a: str, b: str) -> list[Fact]:
        """A shortest chain of facts linking two entities (ignoring direction); [] if none."""
        ea, eb = self.resolve(a), self.resolve(b)
        if ea is None or eb is None:
            return []
        ka, kb = self.view.key_of(ea), self.view.key_of(eb)
        g = self.nx
        try:
            nodes = nx.shortest_path(g.to_undirected(as_view=True), ka, kb)
        except (nx.NetworkXNoPath, nx.NodeNotFound):
            return []
        chain: list[Fact] = []
        for u, v in zip(nodes, nodes[1:]):
            edges = [(rid, d) for rid, d in g.get_edge_data(u, v, default={}).items()]
            edges += [(rid, d) for rid, d in g.get_edge_data(v, u, default={}).items()]
            # Prefer a parsed relation over a co-occurrence for each step.
            edges.sort(key=lambda e: e[1]["kind"] == "cooc")
            chain.extend(self.facts([edges[0][0]])[:1])
        return chain

    def connections(self, entity_ids: Sequence[int], chunk_id: int, limit: int = 10) -> tuple[list[str], list[Fact]]:
        """How entities reach a chunk: those it mentions itself, and facts linking them
        to entities it mentions (one hop)."""
        ids = list(entity_ids)
        if not ids:
            return [], []
        marks = ",".join("?" * len(ids))
        conn = self.sql.conn
        direct = [r[0] for r in conn.execute(
            f"SELECT DISTINCT e.name FROM mentions m JOIN entities e ON e.id = m.entity_id "
            f"WHERE m.chunk_id = ? AND m.entity_id IN ({marks})", [chunk_id, *ids])]
        in_chunk = "SELECT entity_id FROM mentions WHERE chunk_id = ?"
        rel = [r[0] for r in conn.execute(
            f"SELECT id FROM relations WHERE kind != 'cooc' AND ("
            f"(source_id IN ({marks}) AND target_id IN ({in_chunk})) OR "
            f"(target_id IN ({marks}) AND source_id IN ({in_chunk}))) LIMIT 200",
            [*ids, chunk_id, *ids, chunk_id])]
        return direct, self.facts(rel)[:limit]

    def export(self, path: str | Path, format: str | None = None, max_nodes: int = 400) -> Path:
        from .export import export_graph

        return export_graph(self.nx, Path(path), format, max_nodes=max_nodes)

    def counts(self) -> dict[str, int]:
        return self.store.counts()

    def check(self) -> list[str]:
        problems = self.store.check()
        if self.view.built:
            g = self.view.graph()
            n_rel = int(self.sql.conn.execute("SELECT count(*) FROM relations").fetchone()[0])
            n_ent = int(self.sql.conn.execute("SELECT count(*) FROM entities").fetchone()[0])
            if g.number_of_edges() != n_rel or g.number_of_nodes() != n_ent:
                problems.append(
                    f"graph view out of date: {g.number_of_nodes()} nodes / {g.number_of_edges()} edges "
                    f"in memory, {n_ent} / {n_rel} in the tables"
                )
        return problems
