"""The two layouts of the vector index, and when to move between them: exact search
(IndexIDMap2 over IndexFlatIP) while small, IVF-Flat (inverted lists over k-means cells,
with a hash-table id map so deletes and reconstruct work) once the store is large."""
from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np


@dataclass
class IndexSettings:
    # Exact search below this many vectors; an IVF index (inverted lists over k-means
    # cells) above it. Exact search costs ~15 ms at 100k vectors here and ~130 ms at 1M;
    # IVF ~3 ms at 1M with recall@10 0.998 at nprobe 64 (README@f5760d8 "Speed").
    ann_threshold: int = 50_000
    # Cells searched per query: the recall/latency dial (README@f5760d8 "Speed" has the curve).
    nprobe: int = 64
    # Retrain the cells when the index has grown this much since they were trained.
    retrain_growth: float = 4.0
    # A write ends by folding the log into the index file while index and log together
    # are at most this many bytes (~170k 384-d vectors at 256 MiB): the fold holds every
    # vector in memory, which a long ingest must not (README@f5760d8 "Memory on large inputs").
    fold_bytes: int = 256 << 20


def ivf_cells(n: int) -> int:
    """Number of IVF cells for n vectors: ~4 sqrt(n), a power of two (FAISS's usual rule)."""
    return int(2 ** round(np.log2(max(4 * np.sqrt(max(n, 1)), 64))))


def empty_index(dim: int) -> faiss.Index:
    """An exact index keyed by chunk id."""
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def wanted_layout(kind: str, n: int, trained_on: int, settings: IndexSettings) -> str | None:
    """The layout an index of `kind` holding `n` vectors should move to now, or None to keep it."""
    if kind == "flat":
        return "ivf" if n >= settings.ann_threshold else None
    if n < settings.ann_threshold // 2:
        return "flat"  # shrank well below the threshold: exact is cheap again
    if trained_on and n >= settings.retrain_growth * trained_on:
        return "ivf"  # cells trained on a quarter of today's data: retrain
    return None


def trained_ivf(dim: int, data: np.ndarray, nprobe: int, seed: int = 0) -> faiss.Index:
    """An empty IVF-Flat index with its cells trained on a sample of `data`."""
    nlist = ivf_cells(len(data))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.set_direct_map_type(faiss.DirectMap.Hashtable)
    # 40 points a cell and 10 k-means rounds: ~1 min for 1M vectors on 2 cores;
    # more buys little recall (README@f5760d8 "Speed" has the measured curve).
    index.cp.min_points_per_centroid = 1  # small stores: no warning spam
    index.cp.niter = 10
    rng = np.random.default_rng(seed)
    sample = rng.choice(len(data), size=min(len(data), 40 * nlist), replace=False)
    index.train(data[np.sort(sample)])
    index.nprobe = nprobe
    return index
