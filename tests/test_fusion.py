"""Fusion that adapts to its store: pseudo-questions after an ingest, votes saved in the
store, Config.fusion to override, and the per-question guard for BM25's confident top."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kgmem import Config, Memory
from kgmem.config import SettingError
from kgmem.retrieval import tuning
from kgmem.retrieval.search import guard
from kgmem.retrieval.tuning import FIXED_K, FIXED_WEIGHTS, FLOOR, parse_fusion, weights_from

ROOT = Path(__file__).resolve().parent.parent
PAGES = ROOT / "benchmarks" / "pydocs" / "pages"


def test_votes_stay_fixed_where_the_rankers_are_about_equal_and_follow_the_leader_where_not():
    # MuSiQue's measured strengths: the pseudo-questions' bias taken out, all about equal.
    weights, k = weights_from({"dense": 0.712, "lexical": 0.978, "graph": 0.849})
    assert weights == FIXED_WEIGHTS and k == FIXED_K
    # Python's docs: dense and the walk far behind BM25 on the store's own questions.
    weights, k = weights_from({"dense": 0.47, "lexical": 0.93, "graph": 0.67})
    assert weights["lexical"] == 1.0
    assert FLOOR <= weights["dense"] < weights["graph"] < 1.0
    assert k["lexical"] < FIXED_K["lexical"] and k["dense"] == FIXED_K["dense"]
    # Nothing measured at all: the fixed votes.
    assert weights_from({"dense": 0.0, "lexical": 0.0, "graph": 0.0}) == (FIXED_WEIGHTS, FIXED_K)


def test_config_fusion_is_adaptive_fixed_or_votes_and_anything_else_is_one_clear_error(monkeypatch):
    assert parse_fusion("adaptive") is None
    assert parse_fusion("fixed").weights == FIXED_WEIGHTS
    given = parse_fusion("dense=0.5, lexical=2")
    assert given.weights == {"dense": 0.5, "lexical": 2.0, "graph": 0.0} and given.source == "config"
    for bad in ("bm25=1", "dense=-1", "dense=x", "dense=0,graph=0", "lexical"):
        with pytest.raises(SettingError, match="fusion="):
            Config(fusion=bad)
    monkeypatch.setenv("KGMEM_FUSION", "fixed")
    assert Config().fusion == "fixed"


def test_guard_lets_a_confident_bm25_top_lead_and_leaves_an_unsure_one_alone():
    fused = [(7, 0.05), (3, 0.04), (9, 0.03), (1, 0.02)]
    # BM25's first scores well above its second (and its second above its third): both lead.
    led = guard(fused, [(1, 12.0), (9, 8.0), (3, 2.0)], ratio=1.05, most=2)
    assert [c for c, _ in led] == [1, 9, 7, 3]
    assert [c for c, _ in guard(fused, [(1, 12.0), (9, 8.0), (3, 2.0)], ratio=1.2, most=1)] == [1, 7, 3, 9]
    assert [s for _, s in led] == sorted((s for _, s in led), reverse=True)
    # Only one passage holds the question's words: it leads.
    assert [c for c, _ in guard(fused, [(9, 3.0)])] == [9, 7, 3, 1]
    # A flat BM25 top changes nothing; nor does an empty one.
    assert guard(fused, [(1, 10.0), (9, 9.9)]) == fused
    assert guard(fused, [(1, 10.0), (9, 9.0)], ratio=1.2) == fused
    assert guard(fused, []) == fused


@pytest.fixture(scope="module")
def docs_store(tmp_path_factory, embedder, extractor):
    mem = Memory(tmp_path_factory.mktemp("fusion") / "store", embedder=embedder, extractor=extractor)
    report = mem.ingest([PAGES / "howto-sorting.html", PAGES / "howto-logging.html", PAGES / "tutorial-classes.html"])
    yield mem, report
    mem.close()


def test_an_ingest_measures_the_store_on_its_own_pseudo_questions_and_keeps_the_votes(docs_store):
    mem, report = docs_store
    assert report.chunks >= tuning.MIN_CHUNKS
    fusion = report.fusion
    assert fusion is not None and fusion["source"] == "measured"
    assert 0 < fusion["questions"] <= report.chunks
    assert set(fusion["strength"]) == {"dense", "lexical", "graph"}
    assert all(0.0 <= v <= 1.0 for v in fusion["strength"].values())
    assert max(fusion["weights"].values()) == 1.0 and min(fusion["weights"].values()) >= FLOOR
    # Kept in the store: another Memory on it reads the same votes, and stats shows them.
    with Memory(mem.path) as other:
        assert other.fusion().as_dict() == fusion
        assert other.stats()["fusion"] == fusion
    # An ingest that does not grow the store by half does not measure again.
    again = mem.ingest([PAGES / "howto-sorting.html"])
    assert again.unchanged == 1 and again.fusion is None
    # Config overrides the measurement for this process.
    mem.config.fusion = "fixed"
    try:
        assert mem.fusion().source == "fixed" and mem.fusion().weights == FIXED_WEIGHTS
    finally:
        mem.config.fusion = "adaptive"


def test_identifiers_are_entities_whole_and_by_their_last_part():
    from kgmem.graph.extract import identifiers

    text = "Use functools.cmp_to_key() or dictConfig; see __repr__, e.g. the U.S. way, Python 3.11, my_var."
    found = [name for _, _, name in identifiers(text)]
    assert found == ["functools.cmp_to_key", "cmp_to_key", "dictConfig", "__repr__", "my_var"]
    for start, end, name in identifiers(text):
        assert text[start:end] == name


def test_a_question_naming_an_identifier_finds_the_passage_that_explains_it(docs_store):
    mem, _ = docs_store
    linked = {e.key for e in mem._searcher.graph.link("What does functools.cmp_to_key do?")}
    assert "functools cmp_to_key" in linked  # the walk starts from the identifier itself
    assert {e.key for e in mem._searcher.graph.link("What is cmp_to_key for?")} >= {"cmp_to_key"}
    for question in ("What does functools.cmp_to_key do?", "What is cmp_to_key for?"):
        for mode in ("auto", "lexical", "graph"):
            top = mem.search(question, k=3, mode=mode)[0]
            assert Path(top.source).name == "howto-sorting.html" and "cmp_to_key" in top.text, (question, mode)


def test_a_small_store_keeps_the_fixed_votes(memory):
    report = memory.ingest([{"id": "a", "text": "Ada Lovelace wrote the first program for the Analytical Engine."}])
    assert report.chunks < tuning.MIN_CHUNKS and report.fusion is None  # too few chunks to measure
    assert memory.fusion().source == "fixed" and memory.fusion().weights == FIXED_WEIGHTS


def test_cli_shows_the_fusion_and_refuses_a_bad_setting_in_one_line(docs_store):
    mem, _ = docs_store
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-m", "kgmem", "stats", "--store", str(mem.path)], capture_output=True,
                         text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    line = next(x for x in out.stdout.splitlines() if x.startswith("fusion"))
    assert "measured" in line and "lexical" in line and "MRR@10" in line
    bad = subprocess.run([sys.executable, "-m", "kgmem", "search", "--store", str(mem.path), "sorting"],
                         capture_output=True, text=True, env=dict(env, KGMEM_FUSION="bm25=1"), timeout=120)
    assert bad.returncode != 0
    assert "KGMEM_FUSION" in bad.stderr and "Traceback" not in bad.stderr


def test_remembered_turns_never_measure_the_fusion(memory):
    """Recall fuses turns its own way: a conversation's store does not spend an ingest on votes."""
    turns = [{"speaker": "Ana" if i % 2 else "Ben", "text": f"On day {i} we talked about the garden and plot {i}."}
             for i in range(tuning.MIN_CHUNKS + 5)]
    report = memory.remember(turns, conversation="garden", at="2026-11-21T18:05")
    assert len(report.ids) == len(turns) and report.fusion is None
