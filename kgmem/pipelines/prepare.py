"""The compute of an ingest batch — chunk, embed, extract — with no store access.

Below both `ingest` (which runs it in-process) and `workers` (which runs it in worker
processes): neither imports the other for it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..memory.passages import chunk_document, embedding_text
from ..memory.store import Document, NewChunk


@dataclass
class Prepared:
    """A batch after the compute: chunks, their vectors and (graph on) their facts."""

    chunks: list[list[NewChunk]]
    vectors: Any
    facts: list[Any] | None


def prepare_batch(docs: list[Document], embedder: Any, extractor: Any, config: Any) -> Prepared:
    """The compute of a batch — chunk, embed, extract — with no store access (runs in workers)."""
    chunks = [chunk_document(doc, embedder, config) for doc in docs]
    pairs = [(doc.title, ch.text) for doc, cs in zip(docs, chunks) for ch in cs]
    vectors = embedder.embed([embedding_text(t, x) for t, x in pairs])
    facts = extractor.extract([x for _, x in pairs]) if extractor is not None else None
    return Prepared(chunks, vectors, facts)
