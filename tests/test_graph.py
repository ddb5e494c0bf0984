"""The knowledge graph: spaCy extraction at ingest, resolution, exact deletes, the view, export."""
from __future__ import annotations

import json
import re
import random
import shutil
import subprocess
from pathlib import Path

import networkx as nx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kgmem.graph
from kgmem import Memory
from kgmem.graph.resolve import canonical_key, document_aliases


def test_canonical_keys():
    assert canonical_key("The Beatles'") == canonical_key("the beatles") == "beatles"
    assert canonical_key("G. Stanley Hall's") == "g stanley hall"
    assert canonical_key("  São   Paulo ") == "sao paulo"
    assert canonical_key("A") == "a"  # a lone article is a word, not nothing


def test_document_aliases_surnames_and_acronyms():
    links = document_aliases([
        ("g stanley hall", "G. Stanley Hall", "PERSON"),
        ("hall", "Hall", "PERSON"),
        ("world health organization", "World Health Organization", "ORG"),
        ("who", "WHO", "ORG"),
        ("smith", "Smith", "PERSON"),  # two full names end in smith: ambiguous, left alone
        ("john smith", "John Smith", "PERSON"),
        ("jane smith", "Jane Smith", "PERSON"),
    ])
    got = {(l.alias_key, l.target_key, l.kind) for l in links}
    assert got == {
        ("hall", "g stanley hall", "surname"),
        ("stanley hall", "g stanley hall", "variant"),
        ("who", "world health organization", "acronym"),
    }


def test_extraction_reads_relations_off_the_parse(extractor):
    text = (
        "The Journal of Psychotherapy Integration is a peer-reviewed journal published by the "
        "American Psychological Association. G. Stanley Hall, the founder of the American Journal of "
        "Psychology, was born in Ashfield. Hall, who was the first president of the American "
        "Psychological Association, died in 1924. Paris is the capital of France."
    )
    (facts,) = extractor.extract([text])
    rels = {(facts.mentions[r.source].text, r.predicate, facts.mentions[r.target].text) for r in facts.relations}
    assert ("American Psychological Association", "published", "Journal of Psychotherapy Integration") in rels
    assert ("G. Stanley Hall", "founder_of", "American Journal of Psychology") in rels
    assert ("G. Stanley Hall", "born_in", "Ashfield") in rels
    assert ("Hall", "president_of", "American Psychological Association") in rels
    assert ("Paris", "capital_of", "France") in rels
    for m in facts.mentions:
        assert text[m.start : m.end] == m.text


def test_graph_is_built_at_ingest_and_answers_queries(wiki_memory):
    g = wiki_memory.graph
    stats = wiki_memory.stats()
    assert stats["entities"] > 1000 and stats["relations"] > 500 and stats["aliases"] > 10
    hall = g.entity("Stanley Hall")  # resolves through the surname alias too
    assert hall is not None and hall.label == "PERSON" and "Hall" in hall.aliases
    for c in hall.mentions:
        assert wiki_memory.get(c.doc_id).text[c.start : c.end] in ("G. Stanley Hall", "Hall", "Stanley Hall")
    facts = g.neighbors("American Psychological Association")
    assert any(f.predicate == "president_of" and f.subject == "G. Stanley Hall" for f in facts)
    chain = g.path("Journal of Psychotherapy Integration", "G. Stanley Hall")
    assert 1 <= len(chain) <= 3
    names = {chain[0].subject, chain[0].object, chain[-1].subject, chain[-1].object}
    assert {"Journal of Psychotherapy Integration", "G. Stanley Hall"} <= names
    # every citation points at the sentence the fact came from
    for f in facts:
        for c in f.citations:
            span = wiki_memory.get(c.doc_id).text[c.start : c.end]
            assert f.subject.split()[-1].lower() in span.lower() or f.object.split()[-1].lower() in span.lower()
    assert g.entity("no such entity anywhere") is None
    assert g.neighbors("no such entity anywhere") == [] and g.path("Paris", "no such entity") == []


def _view_matches_tables(mem: Memory) -> None:
    live = mem.graph.nx
    edges = {(u, v, k) for u, v, k in live.edges(keys=True)}
    nodes = dict(live.nodes(data="mentions"))
    mem.graph.view.invalidate()
    fresh = mem.graph.nx
    assert edges == {(u, v, k) for u, v, k in fresh.edges(keys=True)}
    assert nodes == dict(fresh.nodes(data="mentions"))


def test_deleting_half_the_documents_leaves_an_exact_graph(tmp_path, embedder, extractor, wiki_records):
    with Memory(tmp_path / "s", embedder=embedder, extractor=extractor) as mem:
        mem.ingest(wiki_records[:80])
        _ = mem.graph.nx  # build the view so that deletes must update it incrementally
        ids = [r["id"] for r in wiki_records[:80]]
        random.Random(7).shuffle(ids)
        for doc_id in ids[:40]:
            mem.delete(doc_id)
        assert mem.check() == []
        conn = mem.passages.sql.conn
        assert conn.execute("SELECT count(*) FROM mentions m JOIN chunks c ON c.id = m.chunk_id "
                            "WHERE c.doc_id IN (%s)" % ",".join("?" * 40), ids[:40]).fetchone()[0] == 0
        live_chunks = set(mem.passages.sql.chunk_ids())
        assert all(d["chunk_id"] in live_chunks for _, _, d in mem.graph.nx.edges(data=True))
        _view_matches_tables(mem)


def test_alias_merge_can_be_undone(memory):
    memory.ingest([{"id": "d1", "title": "Bio", "text": "Grace Hopper was born in New York. Hopper worked for the Navy."}])
    merged = memory.graph.entity("Grace Hopper")
    assert merged is not None and "Hopper" in merged.aliases
    assert memory.graph.store.undo_alias("hopper", "d1")
    assert memory.check() == []
    own = memory.graph.entity("Hopper")
    assert own is not None and own.key == "hopper"
    assert memory.graph.entity("Grace Hopper").key == "grace hopper"
    _view_matches_tables(memory)


def test_export_formats(wiki_memory, tmp_path):
    g = wiki_memory.graph
    back = nx.read_graphml(g.export(tmp_path / "g.graphml"))
    assert back.number_of_nodes() == g.nx.number_of_nodes()
    assert back.number_of_edges() == g.nx.number_of_edges()
    assert nx.read_gexf(g.export(tmp_path / "g.gexf")).number_of_nodes() == g.nx.number_of_nodes()
    page = g.export(tmp_path / "g.html", max_nodes=150).read_text()
    data = json.loads(page.split('<script id="graph-data" type="application/json">')[1].split("</script>")[0])
    assert len(data["nodes"]) == 150 and data["edges"]
    busiest = max(g.nx.degree(), key=lambda kv: kv[1])[0]
    assert g.nx.nodes[busiest]["name"] in {n["name"] for n in data["nodes"]}
    # self-contained: nothing is fetched from elsewhere; Cytoscape.js is inline, with its licence notice
    assert " src=" not in page and " href=" not in page and "@import" not in page
    assert "cytoscape" in page and "The Cytoscape Consortium" in (
        Path(kgmem.graph.__file__).parent / "assets" / "LICENSE-cytoscape.txt").read_text()
    with pytest.raises(ValueError, match="unknown export format"):
        g.export(tmp_path / "g.xyz")


TEXTS = [
    "Ada Lovelace worked with Charles Babbage in London.",
    "Charles Babbage designed the Analytical Engine. Babbage lived in London.",
    "The World Health Organization (WHO) is based in Geneva.",
    "Geneva is a city in Switzerland. Marie Curie visited Geneva.",
    "Marie Curie was born in Warsaw. Curie won the Nobel Prize.",
]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.tuples(st.sampled_from(["put", "delete"]), st.integers(0, 5), st.integers(0, 4)), min_size=1, max_size=12))
def test_random_ingest_replace_delete_sequences_keep_the_store_consistent(tmp_path_factory, embedder, extractor, ops):
    with Memory(tmp_path_factory.mktemp("prop") / "s", embedder=embedder, extractor=extractor) as mem:
        _ = mem.graph.nx
        present: dict[str, str] = {}
        for op, doc, text in ops:
            doc_id = f"d{doc}"
            if op == "put":
                body = TEXTS[text] + (f" Version {text}." if doc % 2 else "")
                mem.ingest([{"id": doc_id, "title": f"T{doc}", "text": body}])
                present[doc_id] = body
            elif doc_id in present:
                mem.delete(doc_id)
                del present[doc_id]
        assert mem.check() == []
        assert sorted(mem.passages.sql.document_ids()) == sorted(present)
        assert {mem.get(d).text for d in present} == set(present.values())
        _view_matches_tables(mem)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt-get install chromium)")
def test_html_view_renders_in_headless_chromium(wiki_memory, tmp_path):
    page = wiki_memory.graph.export(tmp_path / "g.html", max_nodes=80)
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000"]
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    # Cytoscape laid the graph out without a script error: every node drawn, and edges
    assert 'data-ready="1"' in dom and 'data-nodes="80"' in dom
    assert int(re.search(r'data-edges="(\d+)"', dom).group(1)) > 0
    shot = tmp_path / "g.png"
    subprocess.run([*flags, "--window-size=1000,700", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 20_000


def test_local_pagerank_matches_the_full_power_iteration(wiki_memory, wiki_questions):
    """The push-style walk computes the same series as 30 full mat-vecs: exactly with
    epsilon 0, and the same top passages with the default epsilon."""
    import numpy as np
    import scipy.sparse as sp

    retriever = wiki_memory._searcher.graph
    mat = retriever.matrix()
    P = sp.csc_matrix((mat.data, mat.indices, mat.indptr), shape=(mat.n, mat.n)).tocsr()
    d, rounds = retriever.settings.damping, retriever.settings.iterations
    compared = 0
    for q in wiki_questions:
        linked = retriever.link(q["question"])
        seeds = mat.entity_index([e.entity_id for e in linked])
        if not len(seeds):
            continue
        mass = np.full(len(seeds), 1.0 / len(seeds))
        restart = np.zeros(mat.n)
        restart[seeds] = mass
        p = restart.copy()
        for _ in range(rounds - 1):  # the local walk's `rounds` terms: (1-d) sum_{t<rounds} d^t P^t r
            p = restart + d * (P @ p)
        full = (1 - d) * p
        nodes, scores = mat.personalized_pagerank(seeds, mass, d, rounds, epsilon=0.0)
        local = np.zeros(mat.n)
        local[nodes] = scores
        np.testing.assert_allclose(local, full, atol=1e-9)
        nodes, scores = mat.personalized_pagerank(seeds, mass, d, rounds, epsilon=retriever.settings.push_epsilon)
        approx = np.zeros(mat.n)
        approx[nodes] = scores
        top = lambda v: set(np.argsort(-v[mat.n_e:])[:10].tolist())  # noqa: E731
        assert len(top(approx) & top(full)) >= 8
        compared += 1
    assert compared >= len(wiki_questions) // 2


def test_graph_matrix_is_cached_on_disk_and_rebuilt_when_the_graph_changes(memory, wiki_records):
    from kgmem.retrieval.graph import MATRIX_NAME

    memory.ingest(wiki_records[:20])
    retriever = memory._searcher.graph
    first = retriever.matrix()
    cache = memory.path / MATRIX_NAME
    assert cache.exists()
    retriever._matrix = None  # a new reader: loads the file instead of the tables
    assert np_equal(retriever.matrix().indices, first.indices)
    memory.ingest(wiki_records[20:30])
    assert len(retriever.matrix().chunk_ids) == memory.stats()["chunks"] > len(first.chunk_ids)


def np_equal(a, b) -> bool:
    import numpy as np

    return a.shape == b.shape and bool(np.array_equal(a, b))



def test_readers_keep_their_matrix_while_a_write_is_under_way(tmp_path, embedder, extractor, wiki_records,
                                                               monkeypatch):
    """The graph matrix is built once per write, by the writer; a reader asking between the
    writer's batches keeps the matrix it has instead of rebuilding it for each batch."""
    from kgmem import Config, Memory
    from kgmem.retrieval import graph as graph_module

    builds: list[str] = []
    real_build = graph_module._Matrix.build.__func__
    monkeypatch.setattr(graph_module._Matrix, "build",
                        classmethod(lambda cls, *a, **kw: builds.append("build") or real_build(cls, *a, **kw)))
    store = tmp_path / "s"
    with Memory(store, embedder=embedder, extractor=extractor) as writer:
        writer.ingest(wiki_records[:10])
    assert builds == ["build"]  # by the writer, at the end of its write
    reader = Memory(store, embedder=embedder, extractor=extractor)
    question = "Who was the first president of the American Psychological Association?"
    assert reader.search(question, k=3, mode="graph")
    assert builds == ["build"]  # the reader loaded the writer's matrix
    seen: list[int] = []

    def between_batches(progress):
        seen.append(reader.search(question, k=3, mode="graph")[0].chunk_id)

    with Memory(store, Config(docs_per_batch=10), embedder=embedder, extractor=extractor) as writer:
        writer.ingest(wiki_records[10:60], on_progress=between_batches)
    assert len(seen) == 5 and builds == ["build", "build"]  # five batches, one build, by the writer
    assert reader.search(question, k=3, mode="graph")
    assert builds == ["build", "build"] and reader._searcher.graph._generation == reader.graph.store.generation
    # hops and results are bounded
    with pytest.raises(ValueError, match="hops"):
        reader.graph.neighbors("American Psychological Association", hops=4)
    with pytest.raises(ValueError, match="limit"):
        reader.graph.neighbors("American Psychological Association", limit=10**6)
    assert len(reader.graph.neighbors("American Psychological Association", hops=3, limit=5)) == 5
    reader.close()


def test_document_subject_is_the_title_without_its_disambiguation():
    from kgmem.graph.extract import document_subject

    assert document_subject("The Prestige (film)") == "The Prestige"
    assert document_subject("Leland, North Carolina") == "Leland, North Carolina"
    assert document_subject("notes", source="/home/me/notes.txt") is None  # only the file's name
    assert document_subject("8 May 2023", voice={"first": "Ann"}) is None  # a conversation's turn
    assert document_subject("") is None and document_subject("1999") is None
    assert document_subject("one two three four five six seven eight nine") is None  # not a name


def test_the_subject_is_an_entity_of_every_chunk_and_pronouns_resolve_to_it(extractor):
    from kgmem.graph.resolve import canonical_key

    texts = ["Christopher Edward Nolan is a British-American film director. He was born in Westminster.",
             "It was directed by Christopher Nolan and released in 2006."]
    nolan, prestige = extractor.extract(texts, None, ["Christopher Nolan", "The Prestige"])
    rels = {(f.mentions[r.source].key, r.predicate, f.mentions[r.target].key)
            for f in (nolan, prestige) for r in f.relations}
    # "He" opens a sentence as its subject: the fact is about the document's subject.
    assert ("christopher nolan", "born_in", "westminster") in rels
    assert ("christopher nolan", "directed", "prestige") in rels  # "It": the film
    assert nolan.subject == "christopher nolan" and prestige.subject == canonical_key("The Prestige")
    # A chunk that never names its subject still mentions it, with a zero-width span.
    (bare,) = extractor.extract(["The film stars Hugh Jackman."], None, ["The Prestige"])
    assert [(m.key, m.start, m.end) for m in bare.mentions if m.key == "prestige"] == [("prestige", 0, 0)]
    (plain,) = extractor.extract(["He was born in Westminster."])
    assert all(m.text != "He" for m in plain.mentions)  # no subject given: the pronoun stays a pronoun


def test_the_walk_prefers_the_passage_about_an_entity_to_those_that_name_it(memory):
    memory.ingest([  # the passage about Leeds comes last: a tie in the walk would rank it last
        *({"id": f"visit-{i}", "title": f"Trip {i}",
           "text": f"In {1990 + i} the band {name} played a concert in Leeds and then in Sheffield."}
          for i, name in enumerate(["Pulp", "Blur", "Oasis", "Suede", "Elastica"])),
        {"id": "leeds", "title": "Leeds", "text": "The city lies on the River Aire in West Yorkshire. "
         "It has the largest shopping centre of the county."},
    ])
    subject_of = dict(memory.passages.sql.conn.execute(
        "SELECT g.doc_id, e.key FROM graph_documents g JOIN entities e ON e.id = g.subject_id"))
    assert subject_of["leeds"] == "leeds" and subject_of["visit-0"] == "trip 0"
    ranking = memory._searcher.graph.rank("Leeds", 3)  # the walk alone, no dense seeds
    top = memory.passages.chunks([ranking.chunks[0][0]])[ranking.chunks[0][0]]
    assert top.doc_id == "leeds"  # five passages name Leeds; one is about it


def test_a_ranking_with_its_own_rrf_constant_counts_its_first_ranks_more():
    from kgmem.retrieval.fusion import reciprocal_rank_fusion

    rankings = {"walk": [(1, 0.0), (2, 0.0), (3, 0.0)], "dense": [(3, 0.0), (4, 0.0), (1, 0.0)]}
    plain = [item for item, _ in reciprocal_rank_fusion(rankings)]
    sharp = [item for item, _ in reciprocal_rank_fusion(rankings, k_of={"walk": 5})]
    assert plain[:2] == [1, 3] or plain[:2] == [3, 1]  # symmetric: 1st+3rd each
    assert sharp[0] == 1 and sharp.index(2) < sharp.index(4)  # the walk's top now leads


def test_a_graph_too_big_for_the_writers_budget_is_built_by_the_first_query(tmp_path, embedder, extractor,
                                                                              wiki_records):
    """Past `write_memory_mb` the writer leaves the walk's matrix (and folding its vectors)
    to readers: the first graph query builds the matrix and saves it, and it is the matrix
    the writer would have built, streamed from the same tables."""
    import numpy as np

    from kgmem import Config, Memory
    from kgmem.retrieval.graph import MATRIX_NAME, _Matrix

    store = tmp_path / "s"
    with Memory(store, Config(write_memory_mb=0), embedder=embedder, extractor=extractor) as writer:
        writer.ingest(wiki_records[:12])
        need = _Matrix.build_bytes(writer.passages.sql)
    assert need > 0 and not (store / MATRIX_NAME).exists() and (store / "vectors.log").exists()
    with Memory(store, embedder=embedder, extractor=extractor) as reader:
        hits = reader.search("Who was the first president of the American Psychological Association?", k=3,
                             mode="graph")
        assert hits and (store / MATRIX_NAME).exists()
        held = reader._searcher.graph.matrix()
        assert reader.check() == []
        # a COO build of the same tables, the way scipy would do it directly
        conn = reader.passages.sql.conn
        ent = np.array([r[0] for r in conn.execute("SELECT id FROM entities ORDER BY id")])
        chunk = np.array([r[0] for r in conn.execute("SELECT id FROM chunks ORDER BY id")])
        rows, cols, vals = [], [], []
        for r, c, w in _Matrix._edges(conn, ent, chunk, 1.0, reader._searcher.graph.settings.subject_weight):
            rows.append(r), cols.append(c), vals.append(np.full(len(r), w))
        import scipy.sparse as sp

        n = len(ent) + len(chunk)
        adj = sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
        adj.sum_duplicates()
        degree = np.asarray(adj.sum(axis=0)).ravel()
        expected = adj.data / np.repeat(np.where(degree > 0, degree, 1), np.diff(adj.indptr))
        assert np.array_equal(held.indptr, adj.indptr) and np.array_equal(held.indices, adj.indices)
        np.testing.assert_allclose(held.data, expected, rtol=1e-5)
    with Memory(store, embedder=embedder, extractor=extractor) as writer:  # the default budget
        writer.ingest(wiki_records[12:14])
        assert writer._searcher.graph._generation == writer.graph.store.generation  # built at the write's end
