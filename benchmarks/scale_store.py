"""Build 10k-1M-chunk stores from real sentences, for the scale benchmark.

Embedding a million chunks takes this machine about 14 hours, so large stores are
synthesised from a real corpus (the shared musique passages, or data/ without them):

- every passage is split into sentences; each sentence is embedded with the real
  embedder and parsed with the real spaCy extractor, once (cached in the cache folder);
- a synthetic chunk is a run of sentences from one passage (its title too) plus one
  or two sentences from one of that passage's 10 nearest passages, so its text stays
  on one topic and its words follow the corpus's distribution;
- its vector is the normalised sum of its sentences' and title's vectors (not the
  embedding of the joined text: the same neighbourhood, without 14 hours of compute);
- its graph facts are its sentences' mentions and parsed relations, at their offsets.
  Co-occurrence edges are left out: no query step reads them.

The store is written with the real schema (documents, chunks, FTS5, entities,
mentions, relations), vectors through the real `VectorIndex` (so IVF above the
threshold), and the graph matrix built by the real retriever. Only what fills it is
bulk SQL instead of the embedder and parser. Word counts follow the corpus, so every
entity and term recurs ~N/4k times more often than in it: a harder graph and posting
lists than a real corpus of that size would have.
"""
from __future__ import annotations

import json
import pickle
import re
import sqlite3
import time
from pathlib import Path

import numpy as np

from kgmem import Config, Memory
from kgmem.memory.vectors import IndexSettings, VectorIndex

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
BLOCK = 50_000  # chunks written per transaction


def load_pool(corpus: list[dict], cache: Path, profile: str = "default") -> dict:
    """Sentences of the corpus with their vectors and facts (cached). Another profile's pool
    is the default one with its sentences and titles embedded by that profile's embedder."""
    path = cache / (f"pool-{len(corpus)}.pkl" if profile == "default" else f"pool-{len(corpus)}-{profile}.pkl")
    if path.exists():
        return pickle.loads(path.read_bytes())
    if profile != "default":
        from kgmem.memory.embedders import make_embedder

        pool = dict(load_pool(corpus, cache))
        cfg = Config.profile(profile)
        embedder = make_embedder(cfg.embedder, cfg.embedder_runtime, threads=cfg.threads)
        t0 = time.perf_counter()
        pool["sentence_vectors"] = embedder.embed(pool["sentences"])
        pool["title_vectors"] = embedder.embed(pool["titles"])
        pool["seconds"] = time.perf_counter() - t0
        path.write_bytes(pickle.dumps(pool))
        return pool
    from kgmem.graph.extract import shared_extractor
    from kgmem.memory.embedders import shared_embedder

    config = Config()
    titles, sentences, owner = [], [], []
    for i, doc in enumerate(corpus):
        titles.append(doc.get("title", ""))
        for sent in _SENTENCE.split(doc["text"].strip()):
            if sent:
                sentences.append(sent)
                owner.append(i)
    t0 = time.perf_counter()
    embedder = shared_embedder(config.embedder, threads=config.threads)
    sentence_vectors = embedder.embed(sentences)
    title_vectors = embedder.embed(titles)
    facts = shared_extractor(config.spacy_model).extract(sentences)
    pool = {
        "titles": titles, "sentences": sentences, "owner": np.array(owner),
        "sentence_vectors": sentence_vectors, "title_vectors": title_vectors,
        "facts": [(f.mentions, [r for r in f.relations if r.kind != "cooc"]) for f in facts],
        "seconds": time.perf_counter() - t0,
    }
    cache.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(pool))
    return pool


def plan_chunks(pool: dict, n: int, seed: int = 0) -> list[tuple[int, list[int]]]:
    """(passage, sentence indices) for n synthetic chunks."""
    rng = np.random.default_rng(seed)
    owner = pool["owner"]
    by_passage: dict[int, list[int]] = {}
    for s, p in enumerate(owner.tolist()):
        by_passage.setdefault(p, []).append(s)
    passages = np.array(sorted(by_passage))
    pv = np.stack([pool["sentence_vectors"][by_passage[p]].sum(0) for p in passages])
    pv /= np.linalg.norm(pv, axis=1, keepdims=True)
    near = np.argsort(-(pv @ pv.T), axis=1)[:, 1:11]
    plans = []
    for _ in range(n):
        b = int(rng.integers(len(passages)))
        own = by_passage[int(passages[b])]
        length = int(rng.integers(max(1, len(own) // 2), len(own) + 1))
        start = int(rng.integers(0, len(own) - length + 1))
        chosen = own[start : start + length]
        for _ in range(int(rng.integers(1, 3))):
            other = by_passage[int(passages[near[b, rng.integers(near.shape[1])]])]
            chosen = chosen + [other[int(rng.integers(len(other)))]]
        plans.append((int(passages[b]), chosen))
    return plans


def build(path: Path, pool: dict, n: int, config: Config | None = None, seed: int = 0) -> dict:
    """Write an n-chunk store at path; returns what was built and how long it took."""
    t_start = time.perf_counter()
    config = config or Config()
    Memory(path, config=config).close()  # the real schema, migrations and settings
    plans = plan_chunks(pool, n, seed)
    sentences, facts = pool["sentences"], pool["facts"]
    keys: dict[str, int] = {}
    names: list[tuple[int, str, str, str]] = []
    for mentions, _ in facts:
        for m in mentions:
            if m.key not in keys:
                keys[m.key] = len(keys) + 1
                names.append((keys[m.key], m.key, m.text, m.label))
    conn = sqlite3.connect(path / "kgmem.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO entities(id, key, name, label) VALUES (?, ?, ?, ?)", names)
    conn.execute("COMMIT")
    counts = {"mentions": 0, "relations": 0, "words": 0}
    now = time.time()
    for lo in range(0, n, BLOCK):
        docs, chunks, mrows, rrows = [], [], [], []
        for i in range(lo, min(n, lo + BLOCK)):
            passage, chosen = plans[i]
            cid, doc_id = i + 1, f"syn-{i:07d}"
            parts, offset = [], 0
            for s in chosen:
                mentions, relations = facts[s]
                for m in mentions:
                    mrows.append((keys[m.key], cid, m.key, m.text, m.label, offset + m.start, offset + m.end))
                for r in relations:
                    a, b = mentions[r.source], mentions[r.target]
                    rrows.append((keys[a.key], keys[b.key], r.predicate, r.kind, a.key, b.key, cid,
                                  offset + r.start, offset + r.end))
                parts.append(sentences[s])
                offset += len(sentences[s]) + 1
            text = " ".join(parts)
            words = text.count(" ") + 1
            counts["words"] += words
            docs.append((doc_id, pool["titles"][passage], "synthetic", str(i), text, now))
            chunks.append((cid, doc_id, 0, 0, len(text), text, int(words * 1.3)))
        counts["mentions"] += len(mrows)
        counts["relations"] += len(rrows)
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO documents(id, title, source, hash, text, added_at) VALUES (?, ?, ?, ?, ?, ?)", docs)
        conn.executemany("INSERT INTO chunks(id, doc_id, ord, start, end, text, n_tokens) VALUES (?, ?, ?, ?, ?, ?, ?)", chunks)
        conn.executemany("INSERT INTO mentions(entity_id, chunk_id, key, text, label, start, end) VALUES (?, ?, ?, ?, ?, ?, ?)", mrows)
        conn.executemany(
            "INSERT INTO relations(source_id, target_id, predicate, kind, source_key, target_key, chunk_id, start, end) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rrows)
        conn.executemany("INSERT INTO graph_documents(doc_id) VALUES (?)", [(d[0],) for d in docs])
        conn.execute("COMMIT")
    t_fts = time.perf_counter()
    conn.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('rebuild')")
    fts_s = time.perf_counter() - t_fts
    for key in ("generation", "graph_generation"):
        conn.execute("INSERT INTO meta(key, value) VALUES (?, '1') ON CONFLICT(key) DO UPDATE SET value = '1'", (key,))
    conn.close()

    t_vec = time.perf_counter()
    vectors = VectorIndex(path, config.embedding_dim, IndexSettings(config.ann_threshold, config.ann_nprobe))
    sv, tv = pool["sentence_vectors"], pool["title_vectors"]
    for lo in range(0, n, BLOCK):
        block = np.zeros((min(n, lo + BLOCK) - lo, sv.shape[1]), np.float32)
        for j, (passage, chosen) in enumerate(plans[lo : lo + BLOCK]):
            block[j] = sv[chosen].sum(0) + tv[passage]
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        vectors.add(np.arange(lo + 1, lo + 1 + len(block)), block)
    vectors.generation = 1
    vectors.save(fold=True)  # picks the layout: IVF above the threshold
    vec_s = time.perf_counter() - t_vec

    t_graph = time.perf_counter()
    with Memory(path) as mem:
        with mem.lock:
            mem._after_write()  # what a writer does when its write ends: the walk's matrix, BM25's word counts
        stats = mem.stats()
    graph_s = time.perf_counter() - t_graph
    info = {
        "chunks": n, "entities": len(keys), **counts, "vector_layout": vectors.kind,
        "seconds": {"total": round(time.perf_counter() - t_start, 1), "fts": round(fts_s, 1),
                    "vectors": round(vec_s, 1), "graph_matrix": round(graph_s, 1)},
        "disk_mb": round(sum(f.stat().st_size for f in path.iterdir()) / 2**20),
        "stats": {k: stats[k] for k in ("documents", "chunks", "vectors")},
    }
    (path / "scale.json").write_text(json.dumps(info, indent=1))
    return info
