"""Chunk vectors in FAISS, keyed by chunk id, saved atomically next to the SQLite file.

The file records the store *generation* it matches (a counter bumped by every write
that changes the chunk set). On open, a differing generation means a crash came
between the SQLite commit and the vector save; the caller then reconciles the two
by id (drop vectors of gone chunks, embed chunks that have none).
"""
from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from ..errors import CorruptStoreError

INDEX_NAME = "vectors.faiss"
STATE_NAME = "vectors.json"
LOAD_TRIES = 5  # reads of a state and index pair that a writer keeps replacing


def _file_stamp(path: Path) -> tuple[int, int, int] | None:
    """Which file is at `path` now: each save writes a new file (a new inode) and renames it."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


# Batched exact search only uses BLAS above this many queries; the default (20) is
# fine, but make sure a library default change cannot silently slow batched search.
faiss.cvar.distance_compute_blas_threshold = 20


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Have `write` fill a temp file, fsync it, rename it over the target: a crash never
    leaves a torn file."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


@dataclass
class IndexSettings:
    # Exact search below this many vectors; an IVF index (inverted lists over k-means
    # cells) above it. Exact search costs ~15 ms at 100k vectors here and ~130 ms at 1M;
    # IVF ~3 ms at 1M with recall@10 0.998 at nprobe 64 (README "Speed").
    ann_threshold: int = 50_000
    # Cells searched per query: the recall/latency dial (README "Speed" has the curve).
    nprobe: int = 64
    # Retrain the cells when the index has grown this much since they were trained.
    retrain_growth: float = 4.0


def ivf_cells(n: int) -> int:
    """Number of IVF cells for n vectors: ~4 sqrt(n), a power of two (FAISS's usual rule)."""
    return int(2 ** round(np.log2(max(4 * np.sqrt(max(n, 1)), 64))))


class VectorIndex:
    """Inner-product search over L2-normalised vectors (cosine), ids = chunk ids.

    Two layouts: exact (IndexIDMap2 over IndexFlatIP) while small, IVF-Flat (with a
    hash-table id map, so deletes and reconstruct work) once the store passes
    `ann_threshold` vectors. The layout is picked when the index is saved.
    """

    def __init__(self, directory: Path, dim: int, settings: IndexSettings | None = None):
        self.directory = Path(directory)
        self.dim = dim
        self.settings = settings or IndexSettings()
        self.path = self.directory / INDEX_NAME
        self.state_path = self.directory / STATE_NAME
        self._lock = threading.RLock()
        self.generation = -1
        self.dirty = False
        self.trained_on = 0  # vectors in the store when the IVF cells were trained
        self._loaded_state: tuple[int, int, int] | None = None
        # Set when the vector file cannot be read: searches and writes then raise a
        # CorruptStoreError naming the file; `reset` + a re-embed (kgmem check --repair) mend it.
        self.damaged: str | None = None
        self.index = self._empty()
        self.generation = 0
        if self.path.exists() or self.state_path.exists():
            self._load_or_mark()

    @property
    def kind(self) -> str:
        return "ivf" if isinstance(self.index, faiss.IndexIVF) else "flat"

    def _state_stamp(self) -> tuple[int, int, int] | None:
        return _file_stamp(self.state_path)

    def _load(self) -> None:
        """Read the state, then the index it describes. A writer may replace both between
        the two reads: the state names the index file it was written with (size,
        mtime, inode), and a pair that does not match is read again; if a busy writer keeps
        them apart, the index is taken with generation -1 (not known to match any)."""
        for attempt in range(LOAD_TRIES):
            stamp = self._state_stamp()
            generation, trained_on, names = -1, 0, None
            if self.state_path.exists():
                try:
                    state = json.loads(self.state_path.read_text())
                    generation, trained_on = int(state.get("generation", -1)), int(state.get("trained_on", 0))
                    names = state.get("index")
                except (ValueError, TypeError, AttributeError, UnicodeDecodeError) as exc:
                    raise CorruptStoreError(self._damage(self.state_path, "not the JSON kgmem writes")) from exc
            before = _file_stamp(self.path)
            try:
                index = faiss.read_index(str(self.path))
            except RuntimeError as exc:  # FAISS reports a torn or foreign file this way
                raise CorruptStoreError(self._damage(self.path, "not a readable FAISS index")) from exc
            same = before == _file_stamp(self.path) and stamp == self._state_stamp()
            if same and (names is None or list(names) == list(before or ())):  # None: saved before states named it
                break
            if attempt == LOAD_TRIES - 1:
                generation, stamp = -1, None  # read again at the next reload
            else:
                time.sleep(0.02 * (attempt + 1))
        if index.d != self.dim:
            raise CorruptStoreError(self._damage(self.path, f"vectors of dimension {index.d}, not {self.dim}"))
        if isinstance(index, faiss.IndexIVF):
            index.nprobe = self.settings.nprobe
        self.index, self.generation, self.trained_on = index, generation, trained_on
        self._loaded_state = stamp

    @staticmethod
    def _damage(path: Path, what: str) -> str:
        return f"{path} is damaged ({what}); run `kgmem check --repair` to rebuild it from the stored text"

    def _load_or_mark(self) -> None:
        if not self.path.exists():
            self.damaged = self._damage(self.path, "missing beside its state file")
            self.generation = -1
            return
        try:
            self._load()
            self.damaged = None
        except CorruptStoreError as exc:
            self.damaged = str(exc)
            self.index, self.generation = self._empty(), -1
            self._loaded_state = self._state_stamp()

    def require(self) -> None:
        """Raise the one-line damage report, if the file could not be read."""
        if self.damaged:
            raise CorruptStoreError(self.damaged)

    def reset(self) -> None:
        """Start again from an empty index (a repair then embeds every chunk)."""
        with self._lock:
            self.index, self.damaged, self.trained_on, self.generation = self._empty(), None, 0, -1
            self.dirty = True

    def maybe_reload(self) -> bool:
        """Pick up a vector file another process saved since we read ours (readers only)."""
        if self.dirty:
            return False
        stamp = self._state_stamp()
        if stamp is None or stamp == self._loaded_state:
            return False
        with self._lock:
            self._load_or_mark()
        return True

    def _empty(self) -> faiss.Index:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def ids(self) -> np.ndarray:
        if self.kind == "flat":
            return faiss.vector_to_array(self.index.id_map).astype(np.int64)
        lists = self.index.invlists
        parts = [
            faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
            for i in range(lists.nlist) if lists.list_size(i)
        ]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        if not len(ids):
            return np.zeros((0, self.dim), np.float32)
        return self.index.reconstruct_batch(np.asarray(ids, dtype=np.int64))

    def add(self, ids: np.ndarray | list[int], vectors: np.ndarray) -> None:
        self.require()
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        with self._lock:
            self.index.add_with_ids(vectors, np.asarray(ids, dtype=np.int64))
            self.dirty = True

    def remove(self, ids: list[int] | np.ndarray) -> int:
        self.require()
        if len(ids) == 0:
            return 0
        with self._lock:
            removed = int(self.index.remove_ids(np.asarray(ids, dtype=np.int64)))
            self.dirty = True
        return removed

    def search(self, queries: np.ndarray, k: int, nprobe: int | None = None,
               within: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Returns (scores, ids), each (n_queries, k); missing slots have id -1. `within`:
        only these ids are searched (exactly, with a FAISS id selector)."""
        self.require()
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim == 1:
            queries = queries[None, :]
        k = max(1, min(k, len(self))) if len(self) else 1
        with self._lock:
            if len(self) == 0:
                n = queries.shape[0]
                return np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64)
            # One query gains nothing from FAISS's OpenMP threads, and their spin-waiting
            # after each call stole ~12 ms per query from torch's threads on 2 cores.
            threads = faiss.omp_get_max_threads()
            if queries.shape[0] == 1:
                faiss.omp_set_num_threads(1)
            try:
                sel = None if within is None else faiss.IDSelectorBatch(np.asarray(within, dtype=np.int64))
                if self.kind == "ivf":
                    params = faiss.SearchParametersIVF(nprobe=nprobe or self.settings.nprobe, sel=sel)
                    return self.index.search(queries, k, params=params)
                if sel is not None:
                    return self.index.search(queries, k, params=faiss.SearchParameters(sel=sel))
                return self.index.search(queries, k)
            finally:
                faiss.omp_set_num_threads(threads)

    def reconstruct(self, chunk_id: int) -> np.ndarray:
        return self.index.reconstruct(int(chunk_id))

    # ------------------------------------------------------------------ layout
    def wanted_layout(self) -> str | None:
        """The layout this index should move to now, or None to keep it."""
        n, s = len(self), self.settings
        if self.kind == "flat":
            return "ivf" if n >= s.ann_threshold else None
        if n < s.ann_threshold // 2:
            return "flat"  # shrank well below the threshold: exact is cheap again
        if self.trained_on and n >= s.retrain_growth * self.trained_on:
            return "ivf"  # cells trained on a quarter of today's data: retrain
        return None

    def relayout(self, kind: str, seed: int = 0) -> None:
        """Rebuild as `kind` ("flat" or "ivf") from the vectors held now."""
        with self._lock:
            ids = self.ids()
            data = self.vectors(ids)
            if kind == "flat":
                index = self._empty()
            else:
                nlist = ivf_cells(len(ids))
                index = faiss.IndexIVFFlat(faiss.IndexFlatIP(self.dim), self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
                index.set_direct_map_type(faiss.DirectMap.Hashtable)
                # 40 points a cell and 10 k-means rounds: ~1 min for 1M vectors on 2 cores;
                # more buys little recall (README "Speed" has the measured curve).
                index.cp.min_points_per_centroid = 1  # small stores: no warning spam
                index.cp.niter = 10
                rng = np.random.default_rng(seed)
                sample = rng.choice(len(ids), size=min(len(ids), 40 * nlist), replace=False)
                index.train(data[np.sort(sample)])
                index.nprobe = self.settings.nprobe
                self.trained_on = len(ids)
            index.add_with_ids(data, ids)
            self.index = index
            self.dirty = True

    def save(self) -> None:
        """Write the index, then the store generation its content reflects; both atomically.

        Writers set `generation` only after the vectors of that generation are in, so a
        process stopped between its SQLite commit and its FAISS update saves the older
        number, and the next open reconciles.
        """
        with self._lock:
            layout = self.wanted_layout()
            if layout is not None:
                self.relayout(layout)
            # write_index streams to the file: no second in-memory copy of a 1.5 GB index.
            atomic_write(self.path, lambda tmp: faiss.write_index(self.index, str(tmp)))
            state = {"generation": self.generation, "count": len(self), "kind": self.kind,
                     "trained_on": self.trained_on, "index": list(_file_stamp(self.path) or ())}
            atomic_write(self.state_path, lambda tmp: tmp.write_text(json.dumps(state)))
            self._loaded_state = self._state_stamp()
            self.dirty = False
