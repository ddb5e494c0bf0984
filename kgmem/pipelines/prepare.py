"""The compute of an ingest batch — chunk, embed, extract — with no store access.

Below both `ingest` (which runs it in-process) and `workers` (which runs it in worker
processes): neither imports the other for it.
"""
from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass
from typing import Any

from ..graph.extract import document_subject
from ..memory.passages import chunk_document, embedding_text
from ..memory.store import Document, NewChunk
from ..memory.structure import MARKDOWN, prose_only


@dataclass
class Prepared:
    """A batch after the compute: chunks, their vectors and (graph on) their facts."""

    chunks: list[list[NewChunk]]
    vectors: Any
    facts: list[Any] | None


def prepare_batch(docs: list[Document], embedder: Any, extractor: Any, config: Any) -> Prepared:
    """The compute of a batch — chunk, embed, extract — with no store access (runs in workers)."""
    chunks = [chunk_document(doc, embedder, config) for doc in docs]
    vectors = embedder.embed([embedding_text(doc.title, ch.text, ch.heading)
                              for doc, cs in zip(docs, chunks) for ch in cs])
    facts = None
    if extractor is not None:
        voices = [doc.meta.get("voice") for doc, cs in zip(docs, chunks) for _ in cs]
        subjects = [document_subject(doc.title, doc.source, doc.meta.get("voice"))
                    for doc, cs in zip(docs, chunks) for _ in cs]
        facts = extractor.extract(graph_texts(docs, chunks), voices if any(voices) else None, subjects)
    return Prepared(chunks, vectors, facts)


def graph_texts(docs: list[Document], chunks: list[list[Any]]) -> list[str]:
    """What the graph extractor reads of each chunk: its text, or for a Markdown (or HTML)
    document its prose only: code blocks, heading marks and backticks blanked, offsets kept."""
    out = []
    for doc, cs in zip(docs, chunks):
        prose = prose_only(doc.text) if doc.meta.get("format") == MARKDOWN else None
        out.extend(prose[c.start : c.end] if prose is not None else c.text for c in cs)
    return out


def _libc(name: str) -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return getattr(libc, name)
    except (OSError, AttributeError):  # not glibc: nothing to do
        return None


_TRIM = _libc("malloc_trim")
_MALLOPT = _libc("mallopt")
M_MMAP_THRESHOLD = -3


def bound_allocations(mmap_mb: int) -> None:
    """Serve allocations of `mmap_mb` MiB or more (the embedder's attention scores and
    feed-forward activations, 12-25 MB a batch) from mmap, handed back at free, instead of
    glibc's heap, whose dynamic threshold otherwise rises to 32 MB and lets those blocks
    fragment the heap: an ingest's peak RSS then crept up batch after batch (README@f5760d8
    "Memory on large inputs"). Process-wide and harmless below the threshold; 0 leaves
    glibc's default."""
    if mmap_mb and _MALLOPT is not None:
        _MALLOPT(M_MMAP_THRESHOLD, int(mmap_mb) << 20)


def release_memory() -> None:
    """Hand freed heap memory back to the system after a batch. Without it glibc keeps
    what torch, the tokenizer and spaCy freed: measured on a long JSONL ingest, resident
    memory grew ~100 KB per document (806 -> 1,144 MB over 2,400 documents) and stayed
    flat at ~585 MB with it (README@f5760d8 "Speed")."""
    if _TRIM is not None:
        _TRIM(0)
