"""Ingest: readers → chunker → embedder (+ graph extractor) → one transaction per batch.

Unchanged documents (same id, same content hash) cost nothing; a changed one replaces
its old version inside the same transaction that writes the new one. Vectors are
added to FAISS after each commit and the file is saved every few batches and at the
end; a crash in between is repaired on the next open (see PassageStore.reconcile).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..memory.passages import PassageStore
from ..memory.store import Document, NewChunk
from .readers import Failure, Notice, ReaderOptions, Skipped, finalize, iter_documents


class GraphWriter(Protocol):
    """What ingest needs of the graph layer (kgmem.graph.KnowledgeGraph provides it)."""

    def extract(self, texts: list[str]) -> list[Any]: ...

    def write(self, doc_id: str, chunks: list[tuple[int, int]], facts: list[Any]) -> None: ...

    def forget_documents(self, doc_ids: list[str]) -> None: ...

    def missing(self, doc_ids: list[str]) -> list[str]: ...

    def commit_view(self) -> None: ...

    def reset_view(self) -> None: ...


@dataclass
class IngestReport:
    added: int = 0
    unchanged: int = 0
    replaced: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    chunks: int = 0
    seconds: float = 0.0
    words: int = 0
    skipped: list[str] = field(default_factory=list)
    notices: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def as_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "unchanged": self.unchanged,
            "replaced": self.replaced,
            "failed": [{"item": i, "reason": r} for i, r in self.failed],
            "chunks": self.chunks,
            "words": self.words,
            "seconds": round(self.seconds, 3),
            "skipped": self.skipped,
            "notices": [{"item": i, "message": m} for i, m in self.notices],
        }


@dataclass
class Progress:
    """Handed to a progress callback after every batch."""

    documents: int
    chunks: int
    words: int
    seconds: float
    report: IngestReport


class StopIngest(Exception):
    """Raised by a progress callback (or on Ctrl-C) to stop after the current batch."""


def _batches(stream: Iterable[Any], size: int, report: IngestReport) -> Iterable[list[Document]]:
    batch: list[Document] = []
    for item in stream:
        if isinstance(item, Document):
            batch.append(item)
            if len(batch) >= size:
                yield batch
                batch = []
        elif isinstance(item, Failure):
            report.failed.append((item.item, item.reason))
        elif isinstance(item, Notice):
            report.notices.append((item.item, item.message))
        elif isinstance(item, Skipped):
            report.skipped.append(item.item)
    if batch:
        yield batch


def ingest(
    passages: PassageStore,
    items: Iterable[Any],
    graph: GraphWriter | None = None,
    options: ReaderOptions | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> IngestReport:
    report = IngestReport()
    started = time.perf_counter()
    cfg = passages.config
    try:
        batches = _batches(iter_documents(items, options), cfg.docs_per_batch, report)
        for n, batch in enumerate(batches, 1):
            _ingest_batch(passages, batch, graph, report)
            if on_progress:
                on_progress(
                    Progress(
                        documents=report.added + report.replaced + report.unchanged,
                        chunks=report.chunks,
                        words=report.words,
                        seconds=time.perf_counter() - started,
                        report=report,
                    )
                )
            if n % cfg.checkpoint_batches == 0:
                passages.save_vectors()
    except BaseException:
        if graph is not None:
            graph.reset_view()  # a batch may have rolled back: rebuild the view on next use
        raise
    finally:
        # Whatever happened, leave SQLite and FAISS in agreement on disk.
        passages.save_vectors()
        report.seconds = time.perf_counter() - started
    return report


def _ingest_batch(
    passages: PassageStore, batch: list[Document], graph: GraphWriter | None, report: IngestReport
) -> None:
    for doc in batch:
        finalize(doc)
    # Within one batch the last version of an id wins.
    unique: dict[str, Document] = {}
    for doc in batch:
        unique[doc.id] = doc
    known = passages.sql.document_hashes(list(unique))
    todo: list[tuple[Document, list[NewChunk]]] = []
    replacing: list[str] = []
    unchanged: list[str] = []
    for doc in unique.values():
        if known.get(doc.id) == doc.hash:
            report.unchanged += 1
            unchanged.append(doc.id)
            continue
        if not doc.text.strip():
            report.failed.append((doc.source or doc.id, "no text to index (empty document)"))
            continue
        if doc.id in known:
            replacing.append(doc.id)
        todo.append((doc, passages.chunk(doc)))
    if graph is not None and unchanged:
        _backfill_graph(passages, graph, graph.missing(unchanged))
    if not todo:
        return

    pairs = [(doc.title, ch.text) for doc, chunks in todo for ch in chunks]
    vectors = passages.embed_chunks(pairs)
    facts = graph.extract([t for _, t in pairs]) if graph is not None else None

    new_ids: list[int] = []
    with passages.sql.transaction():
        if replacing:
            if graph is not None:
                graph.forget_documents(replacing)
            removed = passages.sql.delete_documents(replacing)
        else:
            removed = []
        offset = 0
        for doc, chunks in todo:
            ids = passages.sql.add_document(doc, chunks)
            if graph is not None and facts is not None:
                located = [(cid, ch.start) for cid, ch in zip(ids, chunks)]
                graph.write(doc.id, located, facts[offset : offset + len(ids)])
            offset += len(ids)
            new_ids.extend(ids)
        generation = passages.sql.bump_generation()
    if graph is not None:
        graph.commit_view()
    passages.vectors.remove(removed)
    passages.vectors.add(new_ids, vectors)
    passages.vectors.generation = generation

    report.replaced += len(replacing)
    report.added += len(todo) - len(replacing)
    report.chunks += len(new_ids)
    report.words += sum(len(doc.text.split()) for doc, _ in todo)


def _backfill_graph(passages: PassageStore, graph: GraphWriter, doc_ids: list[str]) -> None:
    """Extract facts for stored documents that have none (stored with the graph off)."""
    if not doc_ids:
        return
    stored = {d: passages.sql.chunks_of(d) for d in doc_ids}
    facts = graph.extract([c.text for d in doc_ids for c in stored[d]])
    offset = 0
    with passages.sql.transaction():
        for d in doc_ids:
            chunks = stored[d]
            graph.write(d, [(c.id, c.start) for c in chunks], facts[offset : offset + len(chunks)])
            offset += len(chunks)
    graph.commit_view()
