"""The static profile: a model2vec table distilled from the packaged MiniLM, on real text.

The table is distilled once into KGMEM_CACHE (`make install` does it; else the first
use here, about a minute) and read from there.
"""
from __future__ import annotations

import numpy as np
import pytest

from kgmem import Config, Memory
from kgmem.errors import KgmemError, StoreMismatchError

pytest.importorskip("model2vec")


@pytest.fixture(scope="module")
def static():
    from kgmem.memory.embedders import StaticEmbedder

    return StaticEmbedder(threads=2)


def test_static_vectors_are_unit_length_and_rank_a_passage_first(static, wiki_records):
    texts = [r["title"] + "\n" + r["text"] for r in wiki_records[:64]]
    vectors = static.embed(texts)
    assert vectors.shape == (64, Config.profile("static").embedding_dim) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    # a passage's own title finds it among the 64 (a lookup table, yet a vector space)
    titles = static.embed([r["title"] for r in wiki_records[:64]])
    first = np.argmax(titles @ vectors.T, axis=1)
    assert (first == np.arange(64)).mean() > 0.8
    assert static.embed([]).shape == (0, vectors.shape[1])


def test_static_store_chunks_as_the_default_store_does(static, embedder, wiki_records):
    from kgmem.memory.passages import chunk_document
    from kgmem.memory.store import Document

    long = Document(id="long", title="Long", text=" ".join(r["text"] for r in wiki_records[:12]))
    a = chunk_document(long, static, Config.profile("static"))
    b = chunk_document(long, embedder, Config())
    assert len(a) > 2 and [(c.start, c.end, c.text) for c in a] == [(c.start, c.end, c.text) for c in b]


def test_static_profile_store_is_searchable_remembered_and_never_mixed(static, tmp_path, wiki_records, extractor):
    store = tmp_path / "s"
    with Memory(store, config=Config.profile("static"), extractor=extractor) as mem:
        report = mem.ingest(wiki_records[:60])
        assert report.added == 60 and not report.failed
        assert mem.check() == []
    with Memory(store, extractor=extractor) as mem:  # read with the embedder it was built with
        assert mem.config.embedder == "all-MiniLM-L6-v2-static" and mem.passages.embedder.runtime == "static"
        record = wiki_records[7]
        assert record["id"] in {h.doc_id for h in mem.search(record["title"], k=5)}
        assert mem.stats()["embedder"] == "all-MiniLM-L6-v2-static"
        with pytest.raises(StoreMismatchError, match="use a new store"):
            mem.use_profile("fast")
    with pytest.raises(StoreMismatchError, match="embedder"):
        Memory(store, config=Config())  # MiniLM's vectors into a static store: refused
    with Memory(tmp_path / "d", config=Config()) as mem, pytest.raises(StoreMismatchError, match="use a new store"):
        mem.use_profile("static")


def test_fastest_profile_store_is_searchable_and_remembered(tmp_path, wiki_records):
    with Memory(tmp_path / "s", config=Config.profile("fastest")) as mem:
        report = mem.ingest(wiki_records[:80])
        assert report.added == 80 and not report.failed
        counts = mem.graph.counts()
        # NER-only: named entities and co-occurrence, no parsed relations or noun phrases
        assert counts["entities"] > 100 and counts["co_occurrences"] > 100 and counts["relations"] == 0
        assert mem.check() == []
    with Memory(tmp_path / "s") as mem:
        assert mem.config.embedder_runtime == "static" and mem.config.graph_extraction == "ner"
        record = wiki_records[10]
        assert record["id"] in {h.doc_id for h in mem.search(record["title"], k=5)}
        assert mem.passages.embedder.runtime == "static"
        assert mem.stats()["embedder_runtime"] == "static" and mem.stats()["graph_extraction"] == "ner"


def test_static_ingest_starts_workers_for_more_than_one_batch_and_stores_the_same(tmp_path, wiki_records, extractor):
    """Auto workers: spaCy on every core once embedding is cheap; a store the same as one
    process makes (chunks, vectors, facts)."""
    records = wiki_records[:48]
    stores = {}
    for name, batch in (("one", 256), ("many", 16)):  # one batch: in this process; three: in two workers
        config = Config.profile("static", docs_per_batch=batch, threads=2)
        assert config.workers == 0 and config.ingest_workers() == 2
        with Memory(tmp_path / name, config=config, extractor=extractor) as mem:
            assert mem.ingest(records).added == len(records)
            ids = sorted(mem.passages.sql.chunk_ids())
            chunks = mem.passages.sql.chunks(ids)
            stores[name] = ([(c.doc_id, c.start, c.end, c.text) for c in (chunks[i] for i in ids)],
                            mem.passages.vectors.vectors(np.array(ids)), mem.graph.counts())
    assert stores["one"][0] == stores["many"][0] and stores["one"][2] == stores["many"][2]
    assert np.abs(stores["one"][1] - stores["many"][1]).max() < 1e-5
    assert Config().ingest_workers() == 1 and Config(workers=3).ingest_workers() == 3


def test_a_static_name_runs_only_on_the_static_runtime():
    from kgmem.memory.embedders import make_embedder

    with pytest.raises(KgmemError, match="only on 'static'"):
        make_embedder("all-MiniLM-L6-v2-static", "torch")
    with pytest.raises(KgmemError, match="only on 'static'"):
        make_embedder("all-MiniLM-L6-v2", "static")
