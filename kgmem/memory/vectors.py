"""Chunk vectors in FAISS, keyed by chunk id, saved next to the SQLite file.

Three files: the FAISS index (written whole, atomically, by a *fold*), an append-only
log of the vectors added and removed since (`vectorlog.py`), and a state file that
names the index file, the committed length of the log, and the store *generation* the
pair matches (a counter bumped by every write that changes the chunk set). On open, a
differing generation means a crash came between the SQLite commit and the vector save;
the caller then reconciles the two by id (drop vectors of gone chunks, embed chunks
that have none).

Adding vectors appends to the log and nothing else: a process that only writes (a
long ingest) holds none of them in memory, and a checkpoint costs one fsync, not a
rewrite of the index. The log is replayed into the in-memory index when this process
reads (search, ids, vectors), and folded into the index file at the end of a write
while the whole fits `fold_bytes` (above it, once asked: `save(fold=True)`).

The index file itself is read at the first search, not at open, when it is the file the
state names: a writer appending to a store of a million chunks never holds its 1.5 GB
of vectors (README@f5760d8, "Memory").
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import faiss
import numpy as np

from ..errors import CorruptStoreError
from .files import atomic_write, file_stamp, native_os_error
from .vectorlayout import IndexSettings, empty_index, trained_ivf, wanted_layout
from .vectorlog import HEADER, LogDamaged, LogMoved, VectorLog

__all__ = ["INDEX_NAME", "STATE_NAME", "IndexSettings", "VectorIndex", "atomic_write"]

INDEX_NAME = "vectors.faiss"
STATE_NAME = "vectors.json"
LOAD_TRIES = 5  # reads of a state and index pair that a writer keeps replacing


def _count_of(state: dict) -> int | None:
    count = state.get("count")
    return int(count) if isinstance(count, int) else None


# Batched exact search only uses BLAS above this many queries; the default (20) is
# fine, but make sure a library default change cannot silently slow batched search.
faiss.cvar.distance_compute_blas_threshold = 20


class VectorIndex:
    """Inner-product search over L2-normalised vectors (cosine), ids = chunk ids.

    Two layouts: exact (IndexIDMap2 over IndexFlatIP) while small, IVF-Flat (with a
    hash-table id map, so deletes and reconstruct work) once the store passes
    `ann_threshold` vectors. The layout is picked when the index is folded.
    """

    def __init__(self, directory: Path, dim: int, settings: IndexSettings | None = None):
        self.directory = Path(directory)
        self.dim = dim
        self.settings = settings or IndexSettings()
        self.path = self.directory / INDEX_NAME
        self.state_path = self.directory / STATE_NAME
        self.log = VectorLog(self.directory, dim)
        self._lock = threading.RLock()
        self.generation = -1
        self.dirty = False
        self.trained_on = 0  # vectors in the store when the IVF cells were trained
        self._loaded_state: tuple[int, int, int] | None = None
        self._relaid = False  # a relayout not yet written
        self._kind_on_disk = "flat"  # the layout of an index file not yet read
        self._count: int | None = 0  # vectors in the index with the committed log applied (None: unknown)
        self._index_stamp: tuple[int, int, int] | None = None  # the index file read
        # The log: its epoch, the bytes the state commits (or this writer appended),
        # and the bytes already replayed into the in-memory index.
        self._epoch, self._target, self._replayed = 0, 0, 0
        # Set when the vector files cannot be read: searches and writes then raise a
        # CorruptStoreError naming the file; `reset` + a re-embed (kgmem check --repair) mend it.
        self.damaged: str | None = None
        self._index: faiss.Index | None = self._empty()  # None: on disk, read at first use (`_ensure`)
        self.generation = 0
        if self.path.exists() or self.state_path.exists():
            self._load_or_mark(lazy=True)

    @property
    def index(self) -> faiss.Index:
        """The FAISS index with every logged change applied."""
        with self._lock:
            self._ensure()
            self._catch_up()
            assert self._index is not None
            self._count = int(self._index.ntotal)  # known now, for the states this process writes
            return self._index

    @property
    def kind(self) -> str:
        if self._index is None:
            return self._kind_on_disk
        return "ivf" if isinstance(self._index, faiss.IndexIVF) else "flat"

    def _state_stamp(self) -> tuple[int, int, int] | None:
        return file_stamp(self.state_path)

    def _read_state(self) -> dict:
        try:
            state = json.loads(self.state_path.read_text())
            if not isinstance(state, dict):
                raise TypeError("not an object")
            int(state.get("generation", -1)), int(state.get("trained_on", 0)), self._log_of(state)  # well-formed?
            return state
        except FileNotFoundError:
            return {}
        except (ValueError, TypeError, AttributeError, UnicodeDecodeError) as exc:
            raise CorruptStoreError(self._damage(self.state_path, "not the JSON kgmem writes")) from exc

    @staticmethod
    def _log_of(state: dict) -> tuple[int, int]:
        """(epoch, committed bytes) of the log a state names; (0, 0) when it names none."""
        logged = state.get("log") or {}
        return int(logged.get("epoch", 0)), int(logged.get("bytes", 0))

    def _load(self) -> None:
        """Read the state, then the index it describes, and check the log it names. A
        writer may replace them between the reads: the state names the index file it
        was written with (size, mtime, inode) and the log's epoch, and a set that does
        not match is read again; if a busy writer keeps them apart, the index is taken
        alone with generation -1 (not known to match any), which a reconcile mends."""
        for attempt in range(LOAD_TRIES):
            stamp = self._state_stamp()
            state = self._read_state()
            generation = int(state.get("generation", -1))
            names, (epoch, committed) = state.get("index"), self._log_of(state)
            before = file_stamp(self.path)
            try:
                index = faiss.read_index(str(self.path))
            except RuntimeError as exc:  # FAISS reports a torn or foreign file this way
                raise CorruptStoreError(self._damage(self.path, "not a readable FAISS index")) from exc
            same = before == file_stamp(self.path) and stamp == self._state_stamp()
            if same and (names is None or list(names) == list(before or ())):  # None: saved before states named it
                if self._log_matches(epoch, committed):
                    break
            if attempt == LOAD_TRIES - 1:
                generation, stamp, committed = -1, None, 0  # read again at the next reload
            else:
                time.sleep(0.02 * (attempt + 1))
        if index.d != self.dim:
            raise CorruptStoreError(self._damage(self.path, f"vectors of dimension {index.d}, not {self.dim}"))
        if isinstance(index, faiss.IndexIVF):
            index.nprobe = self.settings.nprobe
        self._index = index
        self._adopt(state, stamp, before, generation, committed)

    def _adopt(self, state: dict, stamp: tuple[int, int, int] | None, index_stamp: tuple[int, int, int] | None,
               generation: int, committed: int) -> None:
        """Take what a state says: the index file it goes with, the log's epoch and committed
        length (none of it replayed yet), the count and the cells' training size."""
        self.generation, self.trained_on, self._count = generation, int(state.get("trained_on", 0)), _count_of(state)
        self._index_stamp, self._loaded_state = index_stamp, stamp
        self._epoch, self._target, self._replayed = self._log_of(state)[0], committed, 0

    def _log_matches(self, epoch: int, committed: int) -> bool:
        """Whether the log on disk is the one the state names (False: a fold replaced it
        since, read again); a log too short for what the state commits is damaged."""
        if committed <= HEADER.size:
            return True
        try:
            found = self.log.epoch()
        except LogDamaged as exc:
            raise CorruptStoreError(self._damage(self.log.path, str(exc))) from exc
        if found != epoch:
            return False
        if self.log.size() < committed:
            raise CorruptStoreError(self._damage(self.log.path, "shorter than its state says"))
        return True

    def _catch_up(self) -> None:
        """Apply the log's records this index has not seen yet, in order."""
        if self._replayed >= self._target:
            return
        for attempt in range(LOAD_TRIES):
            try:
                for ids, vecs in self.log.read(self._epoch, self._replayed, self._target):
                    self._apply(ids, vecs)
                break
            except LogMoved:  # folded by a writer since we read the state: read it all again
                if attempt == LOAD_TRIES - 1:
                    raise CorruptStoreError(self._damage(self.log.path, "replaced while being read")) from None
                self._load()
            except LogDamaged as exc:
                raise CorruptStoreError(self._damage(self.log.path, str(exc))) from exc
        self._replayed = self._target

    def _apply(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        """Records in order: runs of additions added at once, removals where they come."""
        gone = ids < 0
        cuts = np.flatnonzero(np.diff(gone.astype(np.int8))) + 1
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(ids)]):
            if gone[lo]:
                self._index.remove_ids(-ids[lo:hi] - 1)
            else:
                self._index.add_with_ids(np.ascontiguousarray(vecs[lo:hi]), np.ascontiguousarray(ids[lo:hi]))

    @staticmethod
    def _damage(path: Path, what: str) -> str:
        return f"{path} is damaged ({what}); run `kgmem check --repair` to rebuild it from the stored text"

    def _peek(self) -> bool:
        """Take the state alone and leave the index on disk until it is needed (True), when
        the index file is the one the state names and the log the one it commits; else
        False, and the whole is read now (which also reports a damaged file)."""
        try:
            stamp, state, found = self._state_stamp(), self._read_state(), file_stamp(self.path)
            epoch, committed = self._log_of(state)
            named = state.get("index")
            if (not named or list(named) != list(found or ()) or stamp != self._state_stamp()
                    or not self._log_matches(epoch, committed)):
                return False
        except CorruptStoreError:
            return False
        self._index, self._kind_on_disk, self.damaged = None, str(state.get("kind", "flat")), None
        self._adopt(state, stamp, found, int(state.get("generation", -1)), committed)
        return True

    def _ensure(self) -> None:
        """Read the index file a lazy open left on disk (the first search, ids, or fold)."""
        if self._index is not None:
            return
        # This writer's records past the commit, and its count with them, stay its own.
        target, count = (self._target, self._count) if self.dirty else (0, None)
        self._load_or_mark()
        if not self.damaged:
            self._target = max(self._target, target)
            self._count = count if count is not None else self._count

    def _load_or_mark(self, lazy: bool = False) -> None:
        if not self.path.exists():
            self.damaged = self._damage(self.path, "missing beside its state file")
            self.generation = -1
            if self._index is None:
                self._index = self._empty()
            return
        if lazy and self._peek():
            return
        try:
            self._load()
            self.damaged = None
        except CorruptStoreError as exc:
            self.damaged = str(exc)
            self._index, self.generation, self._count = self._empty(), -1, None
            self._loaded_state = self._state_stamp()
            self._target = self._replayed = 0

    def require(self, read: bool = True) -> None:
        """Raise the one-line damage report, if a file could not be read (`read`: the index
        file too, if a lazy open left it unread; a writer that only appends does not)."""
        if read:
            with self._lock:
                self._ensure()
        if self.damaged:
            raise CorruptStoreError(self.damaged)

    def reset(self) -> None:
        """Start again from an empty index (a repair then embeds every chunk and folds)."""
        with self._lock:
            self.log.close()
            self._index, self.damaged, self.trained_on, self.generation = self._empty(), None, 0, -1
            self._count = 0
            self._epoch, self._target, self._replayed = self._epoch + 1, 0, 0
            self.dirty = True

    def maybe_reload(self) -> bool:
        """Pick up what another process saved since we read the state (readers only): the
        log's new records when the index file is the one we hold, else everything."""
        if self.dirty:
            return False
        stamp = self._state_stamp()
        if stamp is None or stamp == self._loaded_state:
            return False
        with self._lock:
            try:
                state = self._read_state()
            except CorruptStoreError:
                state = {}
            epoch, committed = self._log_of(state)
            same_index = state.get("index") is not None and list(state["index"]) == list(self._index_stamp or ())
            if (not self.damaged and same_index and epoch == self._epoch and committed >= self._target
                    and stamp == self._state_stamp() and file_stamp(self.path) == self._index_stamp):
                self.generation = int(state.get("generation", -1))
                self._target, self._loaded_state, self._count = committed, stamp, _count_of(state)
            else:
                self._load_or_mark(lazy=True)
        return True

    def _empty(self) -> faiss.Index:
        return empty_index(self.dim)

    def __len__(self) -> int:
        if self._index is None and self._count is not None:
            return self._count  # counted by the writers' states: no need to read the file
        return int(self.index.ntotal)

    def ids(self) -> np.ndarray:
        index = self.index
        if self.kind == "flat":
            return faiss.vector_to_array(index.id_map).astype(np.int64)
        lists = index.invlists
        parts = [
            faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
            for i in range(lists.nlist) if lists.list_size(i)
        ]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        if not len(ids):
            return np.zeros((0, self.dim), np.float32)
        return self.index.reconstruct_batch(np.asarray(ids, dtype=np.int64))

    # ------------------------------------------------------------------ writing
    def _appending(self) -> None:
        """Open the log for this writer's records, from what the state commits on."""
        if self.log.appending:
            return
        if not self.dirty:
            self.maybe_reload()  # another writer may have saved since we read the state
            self.require(read=False)
        if self._target <= HEADER.size:
            self.log.start(self._epoch)
            self._target = self._replayed = HEADER.size
        self.log.open_at(self._target)

    def _append(self, ids: np.ndarray, vectors: np.ndarray | None) -> None:
        with self._lock:
            self.require(read=False)
            self._appending()
            self._target = self.log.append(ids, vectors)
            if self._count is not None:
                self._count += len(ids) if vectors is not None else -len(ids)
            self.dirty = True

    def add(self, ids: np.ndarray | list[int], vectors: np.ndarray) -> None:
        """Append vectors to the log (the in-memory index takes them when next read)."""
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        self._append(np.asarray(ids, dtype=np.int64), vectors)

    def remove(self, ids: list[int] | np.ndarray) -> int:
        """Log the removal of these ids; returns how many were asked for."""
        if len(ids) == 0:
            return 0
        self._append(np.asarray(ids, dtype=np.int64), None)
        return len(ids)

    def search(self, queries: np.ndarray, k: int, nprobe: int | None = None,
               within: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Returns (scores, ids), each (n_queries, k); missing slots have id -1. `within`:
        only these ids are searched (exactly, with a FAISS id selector)."""
        self.require()
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim == 1:
            queries = queries[None, :]
        with self._lock:
            index = self.index
            n = int(index.ntotal)
            if n == 0:
                return np.zeros((queries.shape[0], 0), np.float32), np.zeros((queries.shape[0], 0), np.int64)
            k = max(1, min(k, n))
            # One query gains nothing from FAISS's OpenMP threads, and their spin-waiting
            # after each call stole ~12 ms per query from torch's threads on 2 cores.
            threads = faiss.omp_get_max_threads()
            if queries.shape[0] == 1:
                faiss.omp_set_num_threads(1)
            try:
                sel = None if within is None else faiss.IDSelectorBatch(np.asarray(within, dtype=np.int64))
                if self.kind == "ivf":
                    params = faiss.SearchParametersIVF(nprobe=nprobe or self.settings.nprobe, sel=sel)
                    return index.search(queries, k, params=params)
                if sel is not None:
                    return index.search(queries, k, params=faiss.SearchParameters(sel=sel))
                return index.search(queries, k)
            finally:
                faiss.omp_set_num_threads(threads)

    def reconstruct(self, chunk_id: int) -> np.ndarray:
        return self.index.reconstruct(int(chunk_id))

    # ------------------------------------------------------------------ layout
    def wanted_layout(self) -> str | None:
        """The layout this index should move to now, or None to keep it."""
        return wanted_layout(self.kind, len(self), self.trained_on, self.settings)

    def relayout(self, kind: str, seed: int = 0) -> None:
        """Rebuild as `kind` ("flat" or "ivf") from the vectors held now (folded at the next save)."""
        with self._lock:
            ids = self.ids()
            data = self.vectors(ids)
            if kind == "flat":
                index = self._empty()
            else:
                index = trained_ivf(self.dim, data, self.settings.nprobe, seed)
                self.trained_on = len(ids)
            index.add_with_ids(data, ids)
            self._index = index
            self.dirty = self._relaid = True

    def save(self, fold: bool | None = None) -> None:
        """Commit the log (fsync, then the state naming its length), or fold: write the
        index with the log applied (in the layout it should have now), then the state,
        and drop the log. `fold` None: fold while index and log fit `fold_bytes`.

        Writers set `generation` only after the vectors of that generation are in, so a
        process stopped between its SQLite commit and its vector save saves the older
        number, and the next open reconciles.
        """
        with self._lock:
            if fold is None:
                fold = bool(self.settings.fold_bytes) and (
                    self._index_bytes() + self.log.size() <= self.settings.fold_bytes)
            if self._relaid or (not self.path.exists() and self._replayed > HEADER.size):
                fold = True  # a relayout to write, or no index file for what is held
            if fold:
                self._fold()
            else:
                if not self.path.exists():  # a new store: its (empty) index file, the log beside it
                    self._ensure()
                    self._write_index()
                committed = self.log.sync()
                self._write_state({"log": {"epoch": self._epoch, "bytes": committed},
                                   **({"count": self._count} if self._count is not None else {})})
                # Closed at each commit: the next append starts from what the state then
                # commits, which another writer may have extended in between.
                self.log.close()
            self.dirty = False

    def _index_bytes(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def _fold(self) -> None:
        self._ensure()
        self._catch_up()
        layout = self.wanted_layout()
        if layout is not None:
            self.relayout(layout)
        self.log.close()
        self._write_index()
        self._epoch, self._target, self._replayed = self._epoch + 1, 0, 0
        self._count = int(self._index.ntotal)
        self._write_state({"count": self._count, "log": {"epoch": self._epoch, "bytes": 0}})
        self.log.path.unlink(missing_ok=True)  # after the state: it no longer names the old log

    def _write_index(self) -> None:
        # write_index streams to the file: no second in-memory copy of a 1.5 GB index.
        atomic_write(self.path, self._write_faiss)
        self._index_stamp, self._relaid = file_stamp(self.path), False

    def _write_faiss(self, tmp: Path) -> None:
        try:
            faiss.write_index(self._index, str(tmp))
        except RuntimeError as exc:
            raise native_os_error(exc, tmp) from exc

    def _write_state(self, extra: dict) -> None:
        state = {"generation": self.generation, "kind": self.kind, "trained_on": self.trained_on,
                 "index": list(self._index_stamp or ()), **extra}
        atomic_write(self.state_path, lambda tmp: tmp.write_text(json.dumps(state)))
        self._loaded_state = self._state_stamp()
