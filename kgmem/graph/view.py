"""A networkx MultiDiGraph over the graph tables, built once and then kept up to date.

Nodes are entity keys (with name, label, mention count); edges are relations and
co-occurrences (key = relation id; predicate, kind, chunk id). Ingest and delete
queue their changes; `apply` folds them in after the SQLite commit, so the view is
never rebuilt per ingest.
"""
from __future__ import annotations

import networkx as nx

from ..memory.store import SQLiteStore
from .store import ViewDelta


class GraphView:
    def __init__(self, sql: SQLiteStore):
        self.sql = sql
        self.conn = sql.conn
        self._graph: nx.MultiDiGraph | None = None
        self._key_of: dict[int, str] = {}
        self.generation = -1  # the graph generation the cached view reflects

    @property
    def built(self) -> bool:
        return self._graph is not None

    def graph(self) -> nx.MultiDiGraph:
        if self._graph is None:
            self._build()
        assert self._graph is not None
        return self._graph

    def key_of(self, entity_id: int) -> str | None:
        self.graph()
        return self._key_of.get(entity_id)

    def _build(self) -> None:
        with self.sql.snapshot():  # entities and relations from one committed state
            self._build_from_tables()

    def _build_from_tables(self) -> None:
        g = nx.MultiDiGraph()
        key_of: dict[int, str] = {}
        counts = dict(self.conn.execute("SELECT entity_id, count(*) FROM mentions GROUP BY entity_id").fetchall())
        for eid, key, name, label in self.conn.execute("SELECT id, key, name, label FROM entities"):
            key_of[eid] = key
            g.add_node(key, name=name, label=label, mentions=int(counts.get(eid, 0)))
        for rid, s, t, pred, kind, chunk in self.conn.execute(
            "SELECT id, source_id, target_id, predicate, kind, chunk_id FROM relations"
        ):
            g.add_edge(key_of[s], key_of[t], key=rid, predicate=pred, kind=kind, chunk_id=chunk)
        self._graph, self._key_of = g, key_of

    def invalidate(self) -> None:
        self._graph = None
        self._key_of = {}

    def apply(self, delta: ViewDelta) -> None:
        if self._graph is None:
            return  # built from the tables on first use
        if delta.rebuild:
            self.invalidate()
            return
        g = self._graph
        # Removals first: a replaced document may prune an entity and recreate its key.
        for rid, s, t in delta.removed_relations:
            ks, kt = self._key_of.get(s), self._key_of.get(t)
            if ks is not None and kt is not None and g.has_edge(ks, kt, key=rid):
                g.remove_edge(ks, kt, key=rid)
        for eid in delta.removed_entities:
            key = self._key_of.pop(eid, None)
            if key is not None and g.has_node(key):
                g.remove_node(key)
        for eid, (key, name, label) in delta.entities.items():
            self._key_of[eid] = key
            if g.has_node(key):
                g.nodes[key].update(name=name, label=label)
            else:
                g.add_node(key, name=name, label=label, mentions=0)
        for rid, s, t, pred, kind, chunk in delta.relations:
            g.add_edge(self._key_of[s], self._key_of[t], key=rid, predicate=pred, kind=kind, chunk_id=chunk)
        # Mention counts of the touched entities, read back from the table.
        touched = [e for e in delta.touched | set(delta.entities) if e in self._key_of]
        for i in range(0, len(touched), 500):
            part = touched[i : i + 500]
            rows = self.conn.execute(
                f"SELECT entity_id, count(*) FROM mentions WHERE entity_id IN ({','.join('?' * len(part))}) "
                "GROUP BY entity_id", part
            )
            for eid, n in rows:
                g.nodes[self._key_of[eid]]["mentions"] = int(n)
