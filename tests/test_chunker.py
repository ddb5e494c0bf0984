"""Chunking: sentence-aware, bounded by tokens, offsets exact (real tokenizer + properties)."""
from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from kgmem.memory.chunker import chunk_text, sentence_spans


def whitespace_tokens(texts):
    """A deterministic stand-in tokenizer for pure-logic properties: one token per word."""
    return [[(m.start(), m.end()) for m in re.finditer(r"\S+", t)] for t in texts]


def test_sentence_spans_trim_and_split():
    text = "  First one. Second one!\nThird line\n\n  Fourth?  "
    spans = sentence_spans(text)
    assert [text[s:e] for s, e in spans] == ["First one.", "Second one!", "Third line", "Fourth?"]


def test_chunks_respect_token_limit_and_overlap_with_real_tokenizer(embedder, wiki_records):
    text = " ".join(r["text"] for r in wiki_records[:12])
    chunks = chunk_text(text, embedder.token_offsets, max_tokens=64, overlap=16)
    assert len(chunks) > 5
    for ch in chunks:
        assert ch.text == text[ch.start : ch.end]
        assert len(embedder.token_offsets([ch.text])[0]) <= 64
    # consecutive chunks overlap (a shared sentence) or at least touch, and move forward
    for a, b in zip(chunks, chunks[1:]):
        assert b.start > a.start and b.start <= a.end + 2
    assert chunks[0].start == 0 and chunks[-1].end == len(text.rstrip())


def test_one_huge_sentence_is_cut_at_token_boundaries(embedder):
    text = "word " * 1000
    chunks = chunk_text(text, embedder.token_offsets, max_tokens=100)
    assert len(chunks) == 10
    assert all(c.n_tokens <= 100 for c in chunks)
    assert all(text[c.start : c.end] == c.text for c in chunks)


def test_empty_text_has_no_chunks(embedder):
    assert chunk_text("   \n ", embedder.token_offsets, 50) == []


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(alphabet=st.sampled_from("ab .!?\nXY"), max_size=400),
    limit=st.integers(1, 30),
    overlap=st.integers(0, 20),
)
def test_offsets_cover_every_word_and_stay_in_bounds(text, limit, overlap):
    chunks = chunk_text(text, whitespace_tokens, max_tokens=limit, overlap=overlap)
    covered = set()
    for ch in chunks:
        assert 0 <= ch.start < ch.end <= len(text)
        assert ch.text == text[ch.start : ch.end]
        assert ch.n_tokens <= limit
        covered.update(range(ch.start, ch.end))
    # every non-space character of the document is in some chunk
    assert all(i in covered for i, c in enumerate(text) if not c.isspace())
    assert [c.ord for c in chunks] == list(range(len(chunks)))
