"""Ingest: readers → chunker → embedder (+ graph extractor) → one transaction per batch.

Unchanged documents (same id, same content hash) cost nothing; a changed one replaces
its old version inside the same transaction that writes the new one. Vectors are
added to FAISS after each commit and the file is saved every few batches and at the
end; a crash in between is repaired on the next open (see PassageStore.reconcile).
"""
from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..graph.extract import document_subject
from ..memory.passages import PassageStore
from ..memory.store import Document
from .parts import split_document
from .prepare import Prepared, bound_allocations, graph_texts, prepare_batch, release_memory
from .readers import Failure, Notice, ReaderOptions, Skipped, finalize, iter_documents

log = logging.getLogger("kgmem")


class GraphWriter(Protocol):
    """What ingest needs of the graph layer (kgmem.graph.KnowledgeGraph provides it)."""

    extractor: Any  # has extract(texts) -> facts; loaded on first use

    def extract(self, texts: list[str], voices: list[Any] | None = None,
                subjects: list[str | None] | None = None) -> list[Any]: ...

    def write(self, doc_id: str, chunks: list[tuple[int, int]], facts: list[Any]) -> None: ...

    def forget_documents(self, doc_ids: list[str]) -> None: ...

    def missing(self, doc_ids: list[str]) -> list[str]: ...

    def commit_view(self) -> None: ...

    def reset_view(self) -> None: ...


@dataclass
class IngestReport:
    """What an ingest did (`Memory.ingest`, `Memory.ingest_paths`, `kgmem ingest --json`).

    Attributes:
        added: Documents stored for the first time.
        unchanged: Documents already stored with the same content (nothing was redone).
        replaced: Documents whose content changed, replaced in one transaction.
        failed: `(item, reason)` for each input that could not be read; the rest went on.
        chunks: Chunks written.
        seconds: Wall time of the ingest.
        words: Words read.
        skipped: Files of other types met in a directory.
        notices: `(item, message)`: e.g. invalid UTF-8 decoded with replacement.
        stale_parts: Parts of an older version of a long document, deleted.
        ids: The documents stored or found unchanged, in input order.
        fusion: The fusion the store measured on its own pseudo-questions at the end of
            this ingest (`FusionTuning.as_dict()`), or None when it was not measured again
            (the store has not grown by half since, or `Config.fusion` is not "adaptive").
    """

    added: int = 0
    unchanged: int = 0
    replaced: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    chunks: int = 0
    seconds: float = 0.0
    words: int = 0
    skipped: list[str] = field(default_factory=list)
    notices: list[tuple[str, str]] = field(default_factory=list)
    stale_parts: int = 0  # parts of an older version of a long document, deleted
    ids: list[str] = field(default_factory=list)  # the documents stored or found unchanged, in order
    fusion: dict[str, Any] | None = None

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
            "stale_parts": self.stale_parts,
            "ids": self.ids,
            "fusion": self.fusion,
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


@dataclass
class Parts:
    """Documents stored as parts in this ingest (id -> parts seen) and, when the store
    holds any parts, documents stored whole: their other parts, left from an older
    version, go at the end."""

    parted: dict[str, int] = field(default_factory=dict)
    whole: set[str] = field(default_factory=set)
    track_whole: bool = False


def track_part(doc: Document, parts: Parts) -> None:
    """Note a document (or a part of one) as stored by this ingest, for `_drop_stale_parts`."""
    part_of = doc.meta.get("part_of")
    if part_of is not None:
        parts.parted[part_of] = max(parts.parted.get(part_of, 0), int(doc.meta.get("part", 0)))
    elif parts.track_whole:
        parts.whole.add(doc.id)


def note(item: Failure | Notice | Skipped, report: IngestReport) -> None:
    """A reader's failure, notice or skipped file, into the report."""
    if isinstance(item, Failure):
        report.failed.append((item.item, item.reason))
    elif isinstance(item, Notice):
        report.notices.append((item.item, item.message))
    elif isinstance(item, Skipped):
        report.skipped.append(item.item)


def _batches(
    stream: Iterable[Any], size: int, chars: int, part_chars: int, report: IngestReport, parts: Parts
) -> Iterable[list[Document]]:
    """Documents in batches of at most `size` documents and about `chars` characters;
    a document over `part_chars` is cut into parts first."""
    batch: list[Document] = []
    held = 0
    for item in stream:
        if isinstance(item, Document):
            for doc in split_document(finalize(item), part_chars):
                track_part(doc, parts)
                batch.append(doc)
                held += len(doc.text)
                if len(batch) >= size or held >= chars:
                    yield batch
                    batch, held = [], 0
        else:
            note(item, report)
    if batch:
        yield batch


def remove_documents(passages: PassageStore, graph: GraphWriter | None, doc_ids: list[str]) -> list[int]:
    """Delete documents with their chunks, vectors and graph facts in one transaction; the
    graph view follows the commit (or is rebuilt if it rolled back). Returns chunk ids."""
    try:
        removed = passages.delete(doc_ids, before=graph.forget_documents if graph is not None else None)
    except BaseException:
        if graph is not None:
            graph.reset_view()
        raise
    if graph is not None:
        graph.commit_view()
    return removed


def _drop_stale_parts(passages: PassageStore, graph: GraphWriter | None, parts: Parts) -> int:
    """Parts of an older, longer version (or the whole old version of a document now in
    parts, or the parts of one now whole) are deleted."""
    stale = passages.sql.stale_parts(parts.parted, parts.whole)
    if stale:
        remove_documents(passages, graph, stale)
    return len(stale)


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
    bound_allocations(cfg.malloc_mmap_mb)

    def progress() -> None:
        if on_progress:
            on_progress(Progress(
                documents=report.added + report.replaced + report.unchanged, chunks=report.chunks,
                words=report.words, seconds=time.perf_counter() - started, report=report,
            ))

    options = options or ReaderOptions()
    parts = Parts(track_whole=passages.sql.has_parts())
    batches = _batches(iter_documents(items, options), cfg.docs_per_batch, cfg.batch_chars, options.part_chars,
                       report, parts)
    workers = cfg.ingest_workers()
    if workers > 1 and not cfg.workers:
        # Auto: an input of one batch (a note, a request to the server) is done before
        # the workers would have loaded their models.
        head = list(itertools.islice(batches, 2))
        workers = workers if len(head) > 1 else 1
        batches = itertools.chain(head, batches)
    pool = None
    try:
        if workers > 1:
            from .workers import WorkerPool

            # Started on the first batch with work: re-running over unchanged input
            # should not pay for loading the models in every worker.
            pool = WorkerPool.lazy(cfg.replace(workers=workers), graph=graph is not None)
            _run_parallel(passages, graph, batches, report, pool, progress)
        else:
            for n, batch in enumerate(batches, 1):
                work = _classify(passages, graph, batch, report)
                if work.todo:
                    extractor = graph.extractor if graph is not None else None
                    prep = prepare_batch(work.todo, passages.embedder, extractor, cfg)
                    _write_batch(passages, graph, work, prep, report)
                    del prep
                    release_memory()
                progress()
                if n % cfg.checkpoint_batches == 0:
                    passages.save_vectors(fold=False)
        report.stale_parts = _drop_stale_parts(passages, graph, parts)
    except BaseException:
        if pool is not None:
            pool.close()
        after_failure(passages, graph)
        raise
    if pool is not None:
        pool.close()
    passages.save_vectors()  # SQLite and FAISS in agreement on disk
    report.seconds = time.perf_counter() - started
    return report


def after_failure(passages: PassageStore, graph: GraphWriter | None) -> None:
    """What a failed or interrupted ingest leaves in order, before its error goes on: the graph
    view rebuilt on next use (a batch may have rolled back) and the vectors of the committed
    batches saved; if that fails too (a full disk), the next open reconciles."""
    if graph is not None:
        graph.reset_view()
    try:
        passages.save_vectors()
    except Exception as exc:  # noqa: BLE001 - the first failure is the one to report
        log.debug("vectors not saved after a failed ingest: %s", exc)


@dataclass
class Work:
    """A batch after classification: what must be chunked, embedded and extracted."""

    todo: list[Document]
    replacing: list[str]


def _classify(passages: PassageStore, graph: GraphWriter | None, batch: list[Document], report: IngestReport) -> Work:
    for doc in batch:
        finalize(doc)
    # Within one batch the last version of an id wins.
    unique: dict[str, Document] = {}
    for doc in batch:
        unique[doc.id] = doc
    known = passages.sql.document_hashes(list(unique))
    todo: list[Document] = []
    replacing: list[str] = []
    unchanged: list[str] = []
    for doc in unique.values():
        whole = doc.meta.get("part_of") or doc.id  # a long document's parts count once
        if doc.text.strip() and (not report.ids or report.ids[-1] != whole):
            report.ids.append(whole)
        if known.get(doc.id) == doc.hash:
            report.unchanged += 1
            unchanged.append(doc.id)
            continue
        if not doc.text.strip():
            report.failed.append((doc.source or doc.id, "no text to index (empty document)"))
            continue
        if doc.id in known:
            replacing.append(doc.id)
        todo.append(doc)
    if graph is not None and unchanged:
        backfill_graph(passages, graph, graph.missing(unchanged))
    return Work(todo, replacing)


def _write_batch(
    passages: PassageStore, graph: GraphWriter | None, work: Work, prep: Prepared, report: IngestReport
) -> None:
    new_ids: list[int] = []
    with passages.sql.transaction():
        if work.replacing:
            if graph is not None:
                graph.forget_documents(work.replacing)
            removed = passages.sql.delete_documents(work.replacing)
        else:
            removed = []
        offset = 0
        for doc, chunks in zip(work.todo, prep.chunks):
            ids = passages.sql.add_document(doc, chunks)
            if graph is not None and prep.facts is not None:
                located = [(cid, ch.start) for cid, ch in zip(ids, chunks)]
                graph.write(doc.id, located, prep.facts[offset : offset + len(ids)])
            offset += len(ids)
            new_ids.extend(ids)
        generation = passages.sql.bump_generation()
    if graph is not None:
        graph.commit_view()
    passages.vectors.remove(removed)
    passages.vectors.add(new_ids, prep.vectors)
    passages.vectors.generation = generation

    report.replaced += len(work.replacing)
    report.added += len(work.todo) - len(work.replacing)
    report.chunks += len(new_ids)
    report.words += sum(len(doc.text.split()) for doc in work.todo)


def _run_parallel(
    passages: PassageStore, graph: GraphWriter | None, batches: Iterable[list[Document]],
    report: IngestReport, pool: Any, progress: Callable[[], None],
) -> None:
    """Workers chunk, embed and extract; this process classifies and writes, in order.

    A few batches are kept in flight so that both cores stay busy while SQLite and FAISS
    take each finished batch. A document id already in flight waits for its first
    version to be written, so the hash check of the second sees it.
    """
    from collections import deque

    in_flight: deque[tuple[Work, Any]] = deque()
    flying_ids: set[str] = set()
    written = 0

    def write_oldest() -> None:
        nonlocal written
        work, handle = in_flight.popleft()
        _write_batch(passages, graph, work, handle.get(), report)
        release_memory()
        flying_ids.difference_update(d.id for d in work.todo)
        written += 1
        progress()
        if written % passages.config.checkpoint_batches == 0:
            passages.save_vectors(fold=False)

    for batch in batches:
        ids = {finalize(d).id for d in batch}
        while in_flight and ids & flying_ids:
            write_oldest()
        work = _classify(passages, graph, batch, report)
        if not work.todo:
            progress()
            continue
        for part in pool.split(work.todo):
            sub = Work(part, [d.id for d in part if d.id in set(work.replacing)])
            in_flight.append((sub, pool.submit(part)))
            flying_ids.update(d.id for d in part)
        while len(in_flight) > 2 * pool.size or (in_flight and in_flight[0][1].ready()):
            write_oldest()
    while in_flight:
        write_oldest()


def backfill_graph(passages: PassageStore, graph: GraphWriter, doc_ids: list[str]) -> None:
    """Extract facts for stored documents that have none (stored with the graph off)."""
    if not doc_ids:
        return
    found = {d: doc for d in doc_ids if (doc := passages.sql.get_document(d)) is not None}
    doc_ids = list(found)  # one deleted meanwhile has nothing to extract
    stored = {d: passages.sql.chunks_of(d) for d in doc_ids}
    voices = {d: found[d].meta.get("voice") for d in doc_ids}
    facts = graph.extract(graph_texts([found[d] for d in doc_ids], [stored[d] for d in doc_ids]),
                          [voices[d] for d in doc_ids for _ in stored[d]],
                          [document_subject(found[d].title, found[d].source, voices[d])
                           for d in doc_ids for _ in stored[d]])
    offset = 0
    with passages.sql.transaction():
        graph.forget_documents(doc_ids)  # a partial extraction (repair) is replaced, never doubled
        for d in doc_ids:
            chunks = stored[d]
            graph.write(d, [(c.id, c.start) for c in chunks], facts[offset : offset + len(chunks)])
            offset += len(chunks)
    graph.commit_view()
