"""Sentence-aware chunking bounded by the embedder's own tokenizer.

Chunks are runs of whole sentences of at most `max_tokens` tokens; a sentence longer
than that is cut at token boundaries. Consecutive chunks share up to `overlap` tokens
of trailing sentences. Every chunk keeps its character offsets in the document.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from .store import NewChunk

TokenOffsets = Callable[[Sequence[str]], list[list[tuple[int, int]]]]

# A boundary is end punctuation (plus closing quotes/brackets) then whitespace before
# something that can start a sentence, or any line break. Mis-splits on abbreviations
# cost nothing here: sentences are only the unit chunks are packed from.
_BOUNDARY = re.compile(r"(?<=[.!?\u2026])[\"'\u201d\u2019)\]]*\s+(?=[\"'\u201c\u2018(\[]?[A-Z0-9])|\s*\n\s*")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence, whitespace trimmed, in order."""
    spans = []
    pos = 0
    for m in _BOUNDARY.finditer(text):
        spans.append((pos, m.start()))
        pos = m.end()
    spans.append((pos, len(text)))
    out = []
    for start, end in spans:
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if end > start:
            out.append((start, end))
    return out


def chunk_text(
    text: str,
    token_offsets: TokenOffsets,
    max_tokens: int,
    overlap: int = 0,
) -> list[NewChunk]:
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")
    spans = sentence_spans(text)
    if not spans:
        return []
    offsets = token_offsets([text[s:e] for s, e in spans])
    # pieces: (start, end, tokens), each at most max_tokens long
    pieces: list[tuple[int, int, int]] = []
    for (s, e), offs in zip(spans, offsets):
        if len(offs) <= max_tokens:
            pieces.append((s, e, max(len(offs), 1)))
            continue
        for i in range(0, len(offs), max_tokens):
            window = offs[i : i + max_tokens]
            end = e if i + max_tokens >= len(offs) else s + window[-1][1]
            pieces.append((s + window[0][0], end, len(window)))

    chunks: list[NewChunk] = []
    i = 0
    while i < len(pieces):
        j, total = i, 0
        while j < len(pieces) and total + pieces[j][2] <= max_tokens:
            total += pieces[j][2]
            j += 1
        start, end = pieces[i][0], pieces[j - 1][1]
        chunks.append(NewChunk(ord=len(chunks), start=start, end=end, text=text[start:end], n_tokens=total))
        if j >= len(pieces):
            break
        # Step back over trailing pieces worth at most `overlap` tokens (always advancing).
        k, shared = j, 0
        while k - 1 > i and shared + pieces[k - 1][2] <= overlap:
            k -= 1
            shared += pieces[k][2]
        i = k
    return chunks
