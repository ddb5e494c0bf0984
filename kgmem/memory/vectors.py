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
from pathlib import Path

import faiss
import numpy as np

INDEX_NAME = "vectors.faiss"
STATE_NAME = "vectors.json"

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


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a temp file, fsync it, rename it over the target: a crash never leaves a torn file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class VectorIndex:
    """Exact inner-product search over L2-normalised vectors (cosine), ids = chunk ids."""

    def __init__(self, directory: Path, dim: int):
        self.directory = Path(directory)
        self.dim = dim
        self.path = self.directory / INDEX_NAME
        self.state_path = self.directory / STATE_NAME
        self._lock = threading.RLock()
        self.generation = -1
        self.dirty = False
        self._loaded_state: tuple[int, int] | None = None
        if self.path.exists():
            self._load()
        else:
            self.index = self._empty()
            self.generation = 0

    def _state_stamp(self) -> tuple[int, int] | None:
        try:
            st = self.state_path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def _load(self) -> None:
        stamp = self._state_stamp()
        index = faiss.read_index(str(self.path))
        if index.d != self.dim:
            raise ValueError(f"{self.path}: vectors have dimension {index.d}, expected {self.dim}")
        self.index = index
        self.generation = -1
        if self.state_path.exists():
            self.generation = int(json.loads(self.state_path.read_text()).get("generation", -1))
        self._loaded_state = stamp

    def maybe_reload(self) -> bool:
        """Pick up a vector file another process saved since we read ours (readers only)."""
        if self.dirty:
            return False
        stamp = self._state_stamp()
        if stamp is None or stamp == self._loaded_state or not self.path.exists():
            return False
        with self._lock:
            self._load()
        return True

    def _empty(self) -> faiss.Index:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def ids(self) -> np.ndarray:
        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def add(self, ids: np.ndarray | list[int], vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        with self._lock:
            self.index.add_with_ids(vectors, np.asarray(ids, dtype=np.int64))
            self.dirty = True

    def remove(self, ids: list[int] | np.ndarray) -> int:
        if len(ids) == 0:
            return 0
        with self._lock:
            removed = int(self.index.remove_ids(np.asarray(ids, dtype=np.int64)))
            self.dirty = True
        return removed

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Returns (scores, ids), each (n_queries, k); missing slots have id -1."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim == 1:
            queries = queries[None, :]
        k = max(1, min(k, len(self))) if len(self) else 1
        with self._lock:
            if len(self) == 0:
                n = queries.shape[0]
                return np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64)
            return self.index.search(queries, k)

    def reconstruct(self, chunk_id: int) -> np.ndarray:
        return self.index.reconstruct(int(chunk_id))

    def save(self) -> None:
        """Write the index, then the store generation its content reflects; both atomically.

        Writers set `generation` only after the vectors of that generation are in, so a
        process stopped between its SQLite commit and its FAISS update saves the older
        number, and the next open reconciles.
        """
        with self._lock:
            data = faiss.serialize_index(self.index).tobytes()
            atomic_write_bytes(self.path, data)
            state = {"generation": self.generation, "count": len(self)}
            atomic_write_bytes(self.state_path, json.dumps(state).encode())
            self._loaded_state = self._state_stamp()
            self.dirty = False
