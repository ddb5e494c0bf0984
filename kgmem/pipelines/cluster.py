"""Ingest on a Ray cluster (`engine="ray"`): Ray Data reads, chunks, embeds and extracts on
the workers; this process (the driver) stays the store's one writer.

    sources (paths, records) ─ read: tasks, kgmem's readers ─► documents
      ─ prepare: an actor pool, models loaded once per actor ─► chunks, vectors, facts
      ─ iter_batches, in input order ─► the local engine's write path

What is written, and how, is the local engine's: unchanged documents are skipped before
any compute (the workers hold a snapshot of the store's content hashes) and checked again
against SQLite before the write; the same transactions, generation, report, notices and
progress. A store made here is the store `ingest` makes from the same input. The input's
paths must be readable at the same path on every node (a shared filesystem), as for any
Ray Data read of local files. Ray is an optional extra: `pip install 'kgmem[ray]'`.
"""
from __future__ import annotations

import hashlib
import logging
import os
import pickle
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ClusterError
from ..memory.passages import PassageStore
from ..memory.store import Document
from .ingest import (GraphWriter, IngestReport, Parts, Progress, _classify, _drop_stale_parts, _write_batch,
                     after_failure, note, track_part)
from .parts import split_document
from .prepare import Prepared, bound_allocations, prepare_batch, release_memory
from .readers import (JSONL_SUFFIXES, Failure, Notice, ReaderOptions, Skipped, finalize, iter_documents, read_path,
                      walk)

READ_ROWS = 64  # documents a read task hands on at a time (a large JSONL streams)
# Documents an actor prepares per call: small enough that every actor stays busy to the
# end and the writer gets work early, large enough for the embedder's batches.
PREPARE_DOCS = 64
SPAN_BYTES = 1 << 18  # a JSONL file is cut into spans of at least this many bytes
SPANS_PER_WORKER = 4  # spans a JSONL file is cut into, per worker: each actor has work to the end
OBJECT_STORE_MB = 1024  # a local cluster's object store: results stream, a small box stays small


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ClusterError("the Ray engine needs Ray: pip install 'kgmem[ray]' (make install does)") from None
    return ray


def connect(address: str | None, threads: int) -> bool:
    """Join the cluster at `address` ("auto", "HOST:PORT", "ray://…"), or start a local one
    with `threads` CPUs when None; a process already connected stays so. True when this
    call started or joined it (and the ingest should leave it after)."""
    ray = _ray()
    _quiet(ray)
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address and address != "auto":
        _reachable(address)
    try:
        if address:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        else:
            # No dashboard for a cluster that lives as long as one command: its processes
            # would take CPU from the actors on a small machine (a cluster you start has one).
            ray.init(num_cpus=threads, object_store_memory=OBJECT_STORE_MB << 20, log_to_driver=False,
                     logging_level=logging.WARNING, include_dashboard=False)
    except Exception as exc:  # ConnectionError, TimeoutError, RuntimeError: one line, with the address
        where = f"at {address}" if address else "on this machine"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ClusterError(f"cannot reach a Ray cluster {where}: {reason}") from None
    return True


def _reachable(address: str, timeout: float = 5.0) -> None:
    """A TCP connection to HOST:PORT (of "HOST:PORT" or "ray://HOST:PORT"), or one line at
    once: Ray itself retries an unreachable address for minutes."""
    hostport = address.split("://", 1)[-1].rsplit("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"cannot reach a Ray cluster at {address}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ClusterError(f"cannot reach a Ray cluster at {address}: {exc.strerror or exc}") from None


def _quiet(ray: Any) -> None:
    """kgmem's progress line, not Ray Data's: its bars and per-operator INFO lines off."""
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    if hasattr(ctx, "print_on_execution_start"):
        ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)


def _key(doc_id: str, content_hash: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{doc_id}\0{content_hash}".encode(), digest_size=8).digest(), "little")


def known_keys(passages: PassageStore) -> np.ndarray:
    """The stored documents as sorted 8-byte keys of (id, content hash): what the workers
    skip before any compute (8 bytes a document: 8 MB for a million)."""
    keys = np.fromiter((_key(i, h) for i, h in passages.sql.iter_document_hashes()), dtype=np.uint64)
    keys.sort()
    return keys


def _is_known(keys: np.ndarray, doc: Document) -> bool:
    if not len(keys):
        return False
    k = np.uint64(_key(doc.id, doc.hash))
    i = int(np.searchsorted(keys, k))
    return i < len(keys) and keys[i] == k


def _pickled(objects: list[Any]) -> np.ndarray:
    out = np.empty(len(objects), dtype=object)
    out[:] = [pickle.dumps(o, protocol=pickle.HIGHEST_PROTOCOL) for o in objects]
    return out


# ---------------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class FileSpan:
    """A file for a worker to read: of a JSONL file, the lines that start in
    [span[0], span[1]), span[2] lines into the file (None: the whole file)."""

    path: Path
    span: tuple[int, int, int] | None = None


def plan(items: Iterable[Any], options: ReaderOptions, pieces: int) -> list[Any]:
    """The sources of a read, listed here (directories walked, no file opened but to find
    a JSONL file's line boundaries): each file one source, a JSONL file cut into up to
    `pieces` spans of whole lines. Ray Data gives each read task's output to one actor
    task, so it is the number of sources that lets every actor work."""
    out: list[Any] = []
    for item in items:
        if isinstance(item, Path) and item.absolute().is_dir():
            for found in walk(item.absolute(), options):
                out.extend(_spans(found, pieces) if isinstance(found, Path) else [found])
        elif isinstance(item, Path) and item.absolute().is_file():
            out.extend(_spans(item.absolute(), pieces))
        else:
            out.append(item)  # records, texts, and paths a worker reports as missing
    return out


def _spans(path: Path, pieces: int) -> list[FileSpan]:
    size = path.stat().st_size
    n = min(pieces, size // SPAN_BYTES)
    if path.suffix.lower() not in JSONL_SUFFIXES or n < 2:
        return [FileSpan(path)]
    bounds = [0]
    with open(path, "rb") as fh:
        for i in range(1, n):  # each cut moved to the start of the next line
            fh.seek(i * size // n)
            fh.readline()
            if bounds[-1] < fh.tell() < size:
                bounds.append(fh.tell())
        lines, counted, pos = [], 0, 0
        fh.seek(0)
        for b in bounds:  # lines before each bound: the numbers failures and sources carry
            while pos < b:
                block = fh.read(min(1 << 20, b - pos))
                counted += block.count(b"\n")
                pos += len(block)
            lines.append(counted)
    ends = bounds[1:] + [size]
    return [FileSpan(path, (b, e, n_before)) for b, e, n_before in zip(bounds, ends, lines)]


# ---------------------------------------------------------------------------------- on the workers
def _read(source: Any, options: ReaderOptions) -> Iterator[Any]:
    if isinstance(source, FileSpan):
        notices: list[Notice] = []
        yield from read_path(source.path, options, notices, source.span)
        yield from notices
    elif isinstance(source, (Failure, Skipped)):  # found by the walk
        yield source
    else:
        yield from iter_documents([source], options)


def read_sources(batch: dict[str, np.ndarray], options: ReaderOptions) -> Iterator[dict[str, np.ndarray]]:
    """A read task: each source (a file or a span of one, a record, a text) through kgmem's
    readers, as finalized documents (long ones in parts) with the failures, notices and
    skips between."""
    out: list[Any] = []
    for blob in batch["item"]:
        for found in _read(pickle.loads(blob), options):
            if isinstance(found, Document):
                out.extend(split_document(finalize(found), options.part_chars))
            else:
                out.append(found)
            if len(out) >= READ_ROWS:
                yield {"item": _pickled(out)}
                out = []
    if out:
        yield {"item": _pickled(out)}


def per_document(prep: Prepared) -> list[tuple[Any, Any, Any]]:
    """A batch's Prepared cut back into one (chunks, vectors, facts) per document, in order."""
    out, offset = [], 0
    for chunks in prep.chunks:
        end = offset + len(chunks)
        out.append((chunks, prep.vectors[offset:end], prep.facts[offset:end] if prep.facts is not None else None))
        offset = end
    return out


class Preparer:
    """An actor of the prepare pool: the embedder and spaCy loaded once, one thread each
    (its `num_cpus`); a batch of documents in, each with its chunks, vectors and facts out."""

    def __init__(self, config_json: str, graph: bool, known: np.ndarray):
        from .workers import _STATE, _init

        _init(config_json, graph)  # the local worker processes' set-up: threads 1, models offline
        self.state = _STATE
        self.known = known

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = [pickle.loads(b) for b in batch["item"]]
        todo = [i for i, x in enumerate(items) if isinstance(x, Document) and not _is_known(self.known, x)]
        payloads: list[Any] = [None] * len(items)
        if todo:
            prep = prepare_batch([items[i] for i in todo], self.state["embedder"], self.state["extractor"],
                                 self.state["config"])
            for i, payload in zip(todo, per_document(prep)):
                payloads[i] = payload
            del prep
            release_memory()
        return {"item": batch["item"], "prepared": _pickled(payloads)}


# ---------------------------------------------------------------------------------- the driver
def _sources(items: Iterable[Any]) -> list[dict[str, bytes]]:
    return [{"item": pickle.dumps(x, protocol=pickle.HIGHEST_PROTOCOL)} for x in items]


def _prepared_for(todo: list[Document], payloads: dict[int, Any], passages: PassageStore,
                  graph: GraphWriter | None) -> Prepared:
    """The batch's Prepared, in `todo`'s order, from the workers' payloads; a document they
    skipped as unchanged that SQLite now holds otherwise (changed since the snapshot) is
    prepared here."""
    missing = [d for d in todo if payloads.get(id(d)) is None]
    if missing:
        extractor = graph.extractor if graph is not None else None
        local = prepare_batch(missing, passages.embedder, extractor, passages.config)
        payloads.update(zip(map(id, missing), per_document(local)))
    chunks = [payloads[id(d)][0] for d in todo]
    vectors = np.vstack([payloads[id(d)][1] for d in todo]).astype(np.float32, copy=False)
    facts = None
    if graph is not None:
        facts = [f for d in todo for f in payloads[id(d)][2]]
    return Prepared(chunks, vectors, facts)


def ingest_on_ray(
    passages: PassageStore,
    items: Iterable[Any],
    graph: GraphWriter | None = None,
    options: ReaderOptions | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    *,
    address: str | None = None,
    workers: int | None = None,
) -> IngestReport:
    """`ingest` with the compute on a Ray cluster; see the module's docstring."""
    ray = _ray()
    report = IngestReport()
    started = time.perf_counter()
    cfg = passages.config
    options = options or ReaderOptions()
    bound_allocations(cfg.malloc_mmap_mb)
    joined = connect(address, max(cfg.threads, workers or cfg.workers or 0))  # a local cluster: a CPU an actor
    parts = Parts(track_whole=passages.sql.has_parts())
    written = 0

    def progress() -> None:
        if on_progress:
            on_progress(Progress(documents=report.added + report.replaced + report.unchanged, chunks=report.chunks,
                                 words=report.words, seconds=time.perf_counter() - started, report=report))

    def write(group: list[tuple[Document, Any]]) -> None:
        nonlocal written
        payloads = {id(d): (pickle.loads(p) if p is not None else None) for d, p in group}
        work = _classify(passages, graph, [d for d, _ in group], report)
        if work.todo:
            _write_batch(passages, graph, work, _prepared_for(work.todo, payloads, passages, graph), report)
            release_memory()
        written += 1
        progress()
        if written % cfg.checkpoint_batches == 0:
            passages.save_vectors(fold=False)

    try:
        size = workers or cfg.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        sources = _sources(plan(items, options, SPANS_PER_WORKER * size))
        ray.data.DataContext.get_current().execution_options.preserve_order = True
        ds = ray.data.from_items(sources, override_num_blocks=max(1, min(len(sources), 200)))
        ds = ds.map_batches(read_sources, batch_size=1, batch_format="numpy", fn_kwargs={"options": options},
                            num_cpus=0, compute=ray.data.TaskPoolStrategy(size=max(1, size)))
        ds = ds.map_batches(Preparer, batch_size=min(cfg.docs_per_batch, PREPARE_DOCS), batch_format="numpy",
                            num_cpus=1,
                            compute=ray.data.ActorPoolStrategy(size=size),
                            fn_constructor_kwargs={"config_json": cfg.to_json(), "graph": graph is not None,
                                                   "known": known_keys(passages)})
        group: list[tuple[Document, Any]] = []
        held = 0
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1):
            for blob, prep in zip(batch["item"], batch["prepared"]):
                found = pickle.loads(blob)
                if isinstance(found, Document):
                    track_part(found, parts)
                    group.append((found, prep))
                    held += len(found.text)
                    if len(group) >= cfg.docs_per_batch or held >= cfg.batch_chars:
                        write(group)
                        group, held = [], 0
                else:
                    note(found, report)
            del batch
        if group:
            write(group)
        report.stale_parts = _drop_stale_parts(passages, graph, parts)
    except BaseException as exc:
        after_failure(passages, graph)
        if joined:
            ray.shutdown()
        if isinstance(exc, (KeyboardInterrupt, SystemExit, ClusterError)) or not _is_ray_error(exc):
            raise
        raise ClusterError(f"the Ray cluster failed: {_ray_reason(exc)}") from exc
    if joined:
        ray.shutdown()
    passages.save_vectors()
    report.seconds = time.perf_counter() - started
    return report


def _is_ray_error(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("ray")


def _ray_reason(exc: BaseException) -> str:
    """The first line of the innermost cause (a worker's traceback is long)."""
    cause: BaseException = exc
    while cause.__cause__ is not None:
        cause = cause.__cause__
    text = str(cause).strip().splitlines()
    lines = [line for line in text if line.strip() and not line.startswith((" ", "Traceback"))]
    return (lines[-1] if lines else type(cause).__name__)[:300]
