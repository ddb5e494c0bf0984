"""Checking and repairing a store: the part of `Memory` that keeps it whole."""
from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

CHECK_TRIES = 3  # snapshots taken when a write lands between one and its vectors' load


@dataclass
class CheckReport:
    """What `Memory.check_report` (and `kgmem check --json`) found.

    Attributes:
        problems: Each disagreement between documents, chunks, FTS, vectors and graph,
            one line each; empty when all agree (`ok`).
        generation: The committed store generation that was checked.
        note: Set when a live (or stopped) writer's unsaved vectors were left out.
    """

    problems: list[str]
    generation: int  # the store generation that was checked
    note: str | None = None  # set when a live writer's unsaved vectors were left out

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "problems": self.problems, "generation": self.generation, "note": self.note}


@dataclass
class BackupReport:
    """What `Memory.backup` (and `kgmem backup --json`) made.

    Attributes:
        dest: The copy's directory: a store, opened as any other.
        generation: The store generation the copy holds (one committed write).
        documents: Documents in the copy.
        chunks: Chunks in the copy.
        vectors: Vectors in the copy (one per chunk).
        bytes: Bytes written.
        seconds: Wall time.
        dropped_vectors: Vectors of chunks a live writer committed after the copy's snapshot.
        re_embedded: Chunks whose vectors a stopped writer never saved, embedded again.
        conversations: True when the remembered turns were copied too.
    """

    dest: str
    generation: int  # the store generation the copy holds (one committed write)
    documents: int
    chunks: int
    vectors: int
    bytes: int
    seconds: float
    dropped_vectors: int = 0  # of chunks a live writer committed after the copy's snapshot
    re_embedded: int = 0  # chunks whose vectors a stopped writer never saved
    conversations: bool = False  # the remembered turns were copied too

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _copy_store(memory: Any, tmp: Path, wait: float) -> dict[str, int]:
    """One store (its database, vectors, matrix cache) into tmp, mended to one vector per chunk."""
    from .memory import backup as bk
    from .memory.passages import PassageStore

    generation = bk.copy_database(memory.passages.sql, tmp)
    bk.copy_vectors(memory.path, tmp, generation, wait)
    bk.copy_matrix(memory.path, tmp)
    copy = PassageStore(tmp, embedder=memory.passages._embedder)
    try:
        fixed = {"stray_removed": 0, "re_embedded": 0}
        if copy.needs_reconcile() or copy.vectors.damaged:
            fixed = copy.reconcile(quiet=True)
        counts = copy.sql.counts()
        return {"generation": copy.sql.generation, "documents": counts["documents"], "chunks": counts["chunks"],
                "vectors": len(copy.vectors), **fixed}
    finally:
        copy.close()


class Upkeep:
    """Mixed into `Memory`: check, check_report, repair, backup."""

    def backup(self, dest: str | Path, wait: float = 60.0) -> BackupReport:
        """Copy this store (and its remembered turns) to `dest`, a new or empty folder,
        while writers and readers go on: the copy is the store as of one committed write,
        every document whole with its chunks, vectors and facts. Open `dest` to restore.
        `wait`: seconds to wait for a live writer to save the vectors of its last commit.
        Raises BackupError (dest exists or lies inside the store), DiskFullError."""
        from .conversations import CHILD
        from .errors import DiskFullError, disk_full, full_disk_line
        from .memory import backup as bk

        dest = Path(dest)
        bk.refuse_inside(self.path, dest)
        started = time.perf_counter()
        tmp = bk.temp_destination(dest)
        try:
            done = _copy_store(self, tmp, wait)
            turns = self.conversations.memory(create=False)
            if turns is not None:
                (tmp / CHILD).mkdir()
                _copy_store(turns, tmp / CHILD, wait)
            size = bk.folder_bytes(tmp)
            bk.finish(tmp, dest)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if disk_full(exc, dest):
                raise DiskFullError(full_disk_line(exc, dest)) from exc
            raise
        return BackupReport(str(dest), done["generation"], done["documents"], done["chunks"], done["vectors"], size,
                            round(time.perf_counter() - started, 3), done["stray_removed"], done["re_embedded"],
                            turns is not None)

    def check(self) -> list[str]:
        """Problems found between documents, chunks, FTS, vectors and graph; [] when all agree."""
        return self.check_report().problems

    def check_report(self) -> CheckReport:
        """`check`, with what was checked: one committed generation of the store (and of
        its remembered turns, problems prefixed "conversations:"). While another process
        writes, vectors it has not saved yet are not counted as missing; the note says so."""
        sql = self.passages.sql
        fts = sql.check_fts()
        for attempt in range(CHECK_TRIES):
            with sql.snapshot():
                generation = sql.generation
                self._reload()
                saved = self.passages.vectors.generation
                in_step = saved == generation
                if saved > generation and attempt < CHECK_TRIES - 1:
                    continue  # a write committed after this snapshot began, vectors saved: look again
                writing = not in_step and (saved > generation or self.lock.busy_elsewhere())
                # A writer stopped (killed) between its commit and its vector save: not damage,
                # the next write, open or repair re-embeds those chunks (see PassageStore.reconcile).
                stopped = saved < generation and not writing and not self.passages.vectors.damaged
                problems = fts + self.passages.check(vectors=in_step or not (writing or stopped)) + self.graph.check()
                break
        note = None
        if writing:
            note = (f"a write is under way in another process; checked generation {generation} "
                    f"without its vectors (saved up to generation {saved})")
        elif stopped:
            note = (f"vectors are saved up to generation {saved} of {generation}: a writer stopped before "
                    "saving the rest; the next write (or `kgmem check --repair`) embeds them")
        turns = self.conversations.memory(create=False)  # remembered turns: a store of their own
        if turns is not None:
            child = turns.check_report()
            problems += [f"conversations: {p}" for p in child.problems]
            if child.note:
                note = "; ".join(filter(None, [note, f"conversations: {child.note}"]))
        return CheckReport(problems, generation, note)

    def repair(self) -> dict[str, int]:
        """Fix what can be fixed from the stored text: rebuild the full-text index, make
        FAISS hold one vector per chunk, drop graph rows that point nowhere, and extract
        facts for documents that have none; the same for the remembered turns."""
        from .pipelines.ingest import backfill_graph

        self.passages.sql.require_writable()
        with self.lock:
            self._reload()
            self.passages.sql.rebuild_fts()
            done = self.passages.reconcile()
            done.update(self.graph.store.repair())
            if self.config.graph:
                missing = self.graph.missing(self.passages.sql.document_ids())
                backfill_graph(self.passages, self.graph, missing)
                done["documents_extracted"] = len(missing)
            self.graph.commit_view()
            self._after_write()
        turns = self.conversations.memory(create=False)
        if turns is not None:
            done.update({f"conversations_{k}": v for k, v in turns.repair().items()})
        return done
