"""The passage store end to end: real SQLite, FAISS and all-MiniLM-L6-v2 on real text."""
from __future__ import annotations

import json

import numpy as np
import pytest

from kgmem import Config, Memory
from kgmem.errors import NotFoundError, SchemaVersionError, StoreMismatchError
from kgmem.eval import Dataset, dense_reference, evaluate_modes

from .conftest import DATA


class CountingEmbedder:
    """Wraps the real embedder and counts the texts it is asked to embed."""

    def __init__(self, inner):
        self.inner = inner
        self.name, self.dim, self.max_tokens = inner.name, inner.dim, inner.max_tokens
        self.embedded = 0

    def embed(self, texts):
        self.embedded += len(texts)
        return self.inner.embed(texts)

    def token_offsets(self, texts):
        return self.inner.token_offsets(texts)


def test_ingest_search_and_hit_fields(wiki_memory, wiki_questions):
    q = wiki_questions[0]
    for mode in ("dense", "lexical", "hybrid"):
        hits = wiki_memory.search(q["question"], k=5, mode=mode)
        assert 0 < len(hits) <= 5
        top = hits[0]
        doc = wiki_memory.get(top.doc_id)
        assert doc.text[top.start : top.end] == top.text
        assert top.title == doc.title
        assert top.ranks and set(top.ranks) <= ({"dense", "lexical"} if mode == "hybrid" else {mode})
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    stats = wiki_memory.stats()
    assert stats["documents"] == 300 and stats["vectors"] == stats["chunks"] >= 300
    assert wiki_memory.check() == []


def test_store_dense_equals_independent_exact_reference(wiki_memory, embedder):
    """The store must not lose quality: dense search over it ranks like exact IP over "title\\ntext"."""
    ds = Dataset(
        corpus=[json.loads(line) for line in (DATA / "wiki-300.jsonl").open()],
        questions=[json.loads(line) for line in (DATA / "questions.jsonl").open()],
    )
    ref = dense_reference(ds, embedder.embed)
    (ours,) = evaluate_modes(wiki_memory.search, ds, ["dense"])
    for k in (2, 5, 10):
        assert abs(ours.recall[k] - ref.recall[k]) <= 100 / len(ds.questions) / 2 + 1e-9


def test_reingest_unchanged_embeds_nothing_and_changed_replaces(tmp_path, embedder, wiki_records):
    counting = CountingEmbedder(embedder)
    recs = wiki_records[:40]
    with Memory(tmp_path / "s", embedder=counting) as mem:
        first = mem.ingest(recs)
        assert (first.added, first.unchanged, first.replaced) == (40, 0, 0)
        n = counting.embedded
        again = mem.ingest(recs)
        assert (again.added, again.unchanged, again.replaced, again.chunks) == (0, 40, 0, 0)
        assert counting.embedded == n
        changed = dict(recs[3], text=recs[3]["text"] + " Zanzibarian quokkas were added later.")
        rep = mem.ingest([changed])
        assert (rep.added, rep.replaced) == (0, 1)
        hits = mem.search("Zanzibarian quokkas", k=3, mode="lexical")
        assert hits and hits[0].doc_id == recs[3]["id"]
        assert mem.stats()["documents"] == 40
        assert mem.check() == []


def test_delete_removes_every_trace(tmp_path, embedder, wiki_records):
    with Memory(tmp_path / "s", embedder=embedder) as mem:
        mem.ingest(wiki_records[:30])
        victim = wiki_records[5]
        before = mem.stats()
        removed = mem.delete(victim["id"])
        assert removed >= 1
        after = mem.stats()
        assert after["chunks"] == before["chunks"] - removed == after["vectors"]
        for mode in ("dense", "lexical", "hybrid"):
            assert all(h.doc_id != victim["id"] for h in mem.search(victim["title"] + " " + victim["text"][:200], k=30, mode=mode))
        assert mem.get(victim["id"]) is None
        assert mem.check() == []
        with pytest.raises(NotFoundError):
            mem.delete("no-such-doc")
    # the deletion is on disk: reopen and look again
    with Memory(tmp_path / "s", embedder=embedder) as mem:
        assert mem.get(victim["id"]) is None and mem.check() == []
        assert len(mem.passages.vectors) == mem.stats()["chunks"]


def test_strings_get_content_hash_ids_and_lexical_is_safe_with_query_syntax(memory):
    rep = memory.ingest(["Ada Lovelace wrote the first program.", "Ada Lovelace wrote the first program."])
    assert rep.added == 1 and rep.unchanged == 0
    (doc_id,) = memory.passages.sql.document_ids()
    assert doc_id.startswith("doc-")
    # FTS5 syntax in user text must not raise
    for q in ['"unbalanced', "NEAR(a b)", "a AND OR NOT", "col:ada", "*", "Ada) (Lovelace"]:
        memory.search(q, k=3, mode="lexical")
        memory.search(q, k=3, mode="hybrid")
    assert memory.search("Lovelace", k=1, mode="lexical")[0].doc_id == doc_id
    assert memory.search("   ", k=3) == []


def test_empty_document_is_a_failure_not_a_crash(memory):
    rep = memory.ingest([{"id": "e", "text": "   "}, {"id": "f", "text": "fine text"}])
    assert rep.added == 1 and rep.failed and "empty" in rep.failed[0][1]


def test_store_remembers_its_settings(tmp_path, embedder):
    cfg = Config(chunk_tokens=120)
    with Memory(tmp_path / "s", cfg, embedder=embedder) as mem:
        mem.ingest(["some text"])
    with Memory(tmp_path / "s", embedder=embedder) as mem:
        assert mem.config.chunk_tokens == 120
    with pytest.raises(StoreMismatchError, match="chunk_tokens"):
        Memory(tmp_path / "s", Config(chunk_tokens=200), embedder=embedder)
    with pytest.raises(StoreMismatchError, match="embedder"):
        Memory(tmp_path / "s", Config(chunk_tokens=120, embedder="other-model"), embedder=embedder)


def test_newer_schema_is_refused(tmp_path, embedder):
    with Memory(tmp_path / "s", embedder=embedder) as mem:
        mem.passages.sql.conn.execute(
            "INSERT INTO migrations(component, name, applied_at) VALUES ('memory', '9999_future', 0)"
        )
    with pytest.raises(SchemaVersionError, match="newer kgmem"):
        Memory(tmp_path / "s", embedder=embedder)


def test_vectors_behind_sqlite_are_repaired_on_open(tmp_path, embedder, wiki_records):
    """A crash between the SQLite commit and the FAISS save: the next open re-embeds."""
    store = tmp_path / "s"
    with Memory(store, embedder=embedder) as mem:
        mem.ingest(wiki_records[:10])
        saved = (store / "vectors.faiss").read_bytes(), (store / "vectors.json").read_bytes()
        mem.ingest(wiki_records[10:20])
        mem.delete(wiki_records[0]["id"])
    # put back the older vector file, as if the process died before saving
    (store / "vectors.faiss").write_bytes(saved[0])
    (store / "vectors.json").write_bytes(saved[1])
    with Memory(store, embedder=embedder) as mem:
        assert mem.check() == []
        assert len(mem.passages.vectors) == mem.stats()["chunks"]
        ids = set(mem.passages.vectors.ids().tolist())
        assert ids == set(mem.passages.sql.chunk_ids())
        hit = mem.search(wiki_records[15]["text"], k=1, mode="dense")[0]
        assert hit.doc_id == wiki_records[15]["id"]
        vec = mem.passages.vectors.reconstruct(hit.chunk_id)
        assert np.isclose(np.linalg.norm(vec), 1.0, atol=1e-3)


def test_an_older_store_is_migrated_on_open(tmp_path, embedder, extractor, wiki_records):
    """A store from before graph migration 0002 gets it applied, and its graph backfilled."""
    with Memory(tmp_path / "s", embedder=embedder, extractor=extractor) as mem:
        mem.ingest(wiki_records[:5])
        conn = mem.passages.sql.conn
        conn.execute("DROP TABLE graph_documents")
        conn.execute("DELETE FROM migrations WHERE component = 'graph' AND name = '0002_graph_documents'")
    with Memory(tmp_path / "s", embedder=embedder, extractor=extractor) as mem:
        names = {r[0] for r in mem.passages.sql.conn.execute("SELECT name FROM migrations WHERE component = 'graph'")}
        assert "0002_graph_documents" in names
        assert mem.graph.missing([r["id"] for r in wiki_records[:5]]) == []
        assert mem.check() == []


def test_large_store_switches_to_ivf_and_keeps_every_guarantee(tmp_path, embedder, wiki_records, wiki_questions):
    """Past ann_threshold the vectors move to IVF when saved: same ids, deletes still work,
    reopen reads IVF, and with every cell probed it ranks like exact search."""
    config = Config(ann_threshold=150, ann_nprobe=4)
    with Memory(tmp_path / "s", config=config, embedder=embedder) as mem:
        mem.ingest(wiki_records[:200])
    with Memory(tmp_path / "s", config=config, embedder=embedder) as mem:
        vectors = mem.passages.vectors
        assert vectors.kind == "ivf" and len(vectors) == mem.stats()["chunks"]
        assert mem.stats()["vector_index"] == "ivf"
        ids = vectors.ids()
        assert sorted(ids.tolist()) == sorted(mem.passages.sql.chunk_ids())
        matrix = vectors.vectors(ids)
        queries = embedder.embed([q["question"] for q in wiki_questions])
        scores, found = vectors.search(queries, 5, nprobe=vectors.index.nlist)
        exact = np.sort(queries @ matrix.T, axis=1)[:, ::-1][:, :5]
        np.testing.assert_allclose(scores, exact, atol=1e-5)
        victim = wiki_records[3]["id"]
        mem.delete(victim)
        assert all(h.doc_id != victim for h in mem.search(wiki_records[3]["text"][:200], k=20, mode="dense"))
        assert mem.check() == []
    # shrinking well below the threshold goes back to exact search
    small = Config(ann_threshold=100_000)
    with Memory(tmp_path / "s", config=small, embedder=embedder) as mem:
        mem.delete(wiki_records[4]["id"])
    with Memory(tmp_path / "s", config=small, embedder=embedder) as mem:
        assert mem.passages.vectors.kind == "flat" and mem.check() == []


def test_postings_budget_drops_the_commonest_words_first(wiki_memory):
    """Under a tight budget BM25 reads only the rarest words, with frequencies from FTS5's
    vocabulary and words stemmed as FTS5 stems them ("rivers" -> "river")."""
    from kgmem.memory.lexical import PostingsBudget

    conn = wiki_memory.passages.sql._fts()
    words = ["rivers", "american", "hollywood"]
    PostingsBudget().select(conn, words)  # creates the vocabulary views
    df = dict(conn.execute("SELECT term, doc FROM temp.kgmem_vocab WHERE term IN ('river', 'american', 'hollywood')"))
    assert df["river"] > df["american"] > df["hollywood"] >= 1
    fits_two = PostingsBudget(budget=max(5, df["hollywood"]) + df["american"], min_df=5)
    assert fits_two.select(conn, words) == ["american", "hollywood"]
    assert PostingsBudget(budget=5, min_df=5).select(conn, words) == ["hollywood"]
    assert PostingsBudget(budget=5, min_df=5).select(conn, ["rivers"]) == ["rivers"]  # one is always kept
    # the default budget leaves every query on a small store alone
    assert PostingsBudget().select(conn, words) == words


def test_a_long_document_is_stored_in_parts_that_follow_its_versions(memory, wiki_records, tmp_path):
    from kgmem.pipelines.readers import ReaderOptions

    opts = ReaderOptions(part_chars=8000)  # small parts, so that small real text has several
    texts = [r["text"] for r in wiki_records]
    big = tmp_path / "big.txt"
    big.write_text("\n\n".join(texts[:60]))
    first = memory.ingest_paths(big, options=opts)
    ids = memory.passages.sql.document_ids()
    assert first.added == len(ids) >= 4 and all(i.startswith(f"{big}#") for i in ids)
    # the parts are the file, in order, character for character
    parts = sorted((memory.get(i) for i in ids), key=lambda d: d.meta["part"])
    assert "".join(p.text for p in parts) == big.read_text()
    assert all(len(p.text) <= 8000 and p.meta["part_of"] == str(big) for p in parts)
    assert parts[1].title == "big (part 2)"
    # shorter: the unchanged part is skipped, the rest replaced or dropped
    big.write_text("\n\n".join(texts[:30]))
    shorter = memory.ingest_paths(big, options=opts)
    assert shorter.unchanged >= 1 and shorter.stale_parts >= 1
    assert "".join(d.text for d in sorted((memory.get(i) for i in memory.passages.sql.document_ids()),
                                          key=lambda d: d.meta["part"])) == big.read_text()
    # short enough to be one document: the parts go
    big.write_text(texts[0])
    memory.ingest_paths(big, options=opts)
    assert memory.passages.sql.document_ids() == [str(big)] and memory.check() == []
    # a long record is cut the same way, and deleting it by its id takes every part
    record = {"id": "long", "title": "Long", "text": "\n\n".join(texts[:40])}
    report = memory.ingest([record], options=opts)
    assert report.added >= 3 and memory.get("long") is None
    assert memory.search(texts[35][:120], k=1, mode="lexical")[0].doc_id.startswith("long#")
    assert memory.delete("long") > 0 and memory.passages.sql.document_ids() == [str(big)]
    assert memory.check() == []


def test_a_long_ingest_keeps_its_vectors_in_the_log_not_in_memory(tmp_path, embedder, wiki_records):
    """New vectors are appended to vectors.log: the writer's in-memory index does not grow
    with them, a reader replays them, a stopped writer's uncommitted bytes are dropped, and
    a repair folds the log into the index file."""
    store = tmp_path / "s"
    config = Config(write_memory_mb=0, docs_per_batch=4, checkpoint_batches=1)
    with Memory(store, config=config, embedder=embedder) as mem:
        report = mem.ingest(wiki_records[:16])
        assert mem.passages.vectors._index.ntotal == 0  # the writer holds none of them
        log = store / "vectors.log"
        assert log.stat().st_size >= report.chunks * (8 + 4 * embedder.dim)
        mem.delete(wiki_records[0]["id"])
        with Memory(store, embedder=embedder) as reader:
            assert reader.check() == []
            assert len(reader.passages.vectors) == reader.stats()["chunks"]
            hit = reader.search(wiki_records[9]["text"][:300], k=1, mode="dense")[0]
            assert hit.doc_id == wiki_records[9]["id"]
            mem.ingest(wiki_records[16:20])  # the reader picks up only the log's new records
            assert reader.search(wiki_records[18]["text"][:300], k=1, mode="dense")[0].doc_id == wiki_records[18]["id"]
            assert reader.check() == []
    # a writer stopped after appending, before its state: the bytes past the state are not read
    with open(store / "vectors.log", "ab") as fh:
        fh.write(b"\x00" * 1000)
    with Memory(store, embedder=embedder) as mem:
        assert mem.check() == []
        mem.ingest(wiki_records[20:22])  # appends from the committed length on
        assert mem.check() == [] and len(mem.passages.vectors) == mem.stats()["chunks"]
        mem.repair()
        assert not (store / "vectors.log").exists()
    with Memory(store, embedder=embedder) as mem:
        assert mem.check() == [] and mem.stats()["vectors"] == mem.stats()["chunks"]


def test_a_writer_appending_to_a_store_never_reads_its_index_file(tmp_path, embedder, wiki_records, monkeypatch):
    """Opening a store leaves vectors.faiss on disk until something reads the vectors: a
    writer that only appends (an ingest into a store of a million chunks) never holds the
    ones already there; the first search reads the file and replays the log."""
    import faiss

    store = tmp_path / "s"
    with Memory(store, embedder=embedder) as mem:
        mem.ingest(wiki_records[:12])  # folded: these vectors are in vectors.faiss
    reads: list[str] = []
    real = faiss.read_index
    monkeypatch.setattr(faiss, "read_index", lambda path, *flags: reads.append(path) or real(path, *flags))
    with Memory(store, config=Config(write_memory_mb=0), embedder=embedder) as mem:
        mem.ingest(wiki_records[12:20])
        mem.delete(wiki_records[0]["id"])
        stats = mem.stats()  # counted from the writers' states
        assert reads == [] and stats["vectors"] == stats["chunks"] and stats["vector_index"] == "flat"
        hit = mem.search(wiki_records[15]["text"][:300], k=1, mode="dense")[0]
        assert hit.doc_id == wiki_records[15]["id"] and len(reads) == 1
        assert mem.check() == [] and len(mem.passages.vectors) == mem.stats()["chunks"]
        assert mem.search(wiki_records[3]["text"][:300], k=1, mode="dense")[0].doc_id == wiki_records[3]["id"]
    with Memory(store, embedder=embedder) as mem:  # and the next process sees all of it
        assert mem.check() == [] and mem.stats()["vectors"] == mem.stats()["chunks"]


def test_a_torn_vector_log_is_one_line_and_repair_rebuilds_it(tmp_path, embedder, wiki_records):
    from kgmem.errors import CorruptStoreError

    store = tmp_path / "s"
    with Memory(store, config=Config(write_memory_mb=0), embedder=embedder) as mem:
        mem.ingest(wiki_records[:6])
        chunks = mem.stats()["chunks"]
    log = store / "vectors.log"
    log.write_bytes(log.read_bytes()[: log.stat().st_size // 2])
    with Memory(store, embedder=embedder) as mem:
        with pytest.raises(CorruptStoreError, match="vectors.log is damaged .*kgmem check --repair"):
            mem.search("Journal of Psychotherapy Integration", mode="dense")
        assert any("vectors.log is damaged" in p for p in mem.check())
        assert mem.repair()["re_embedded"] == chunks
        assert mem.check() == [] and not log.exists()
