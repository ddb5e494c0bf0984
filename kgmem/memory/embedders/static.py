"""A static embedder distilled from the packaged sentence transformer (the `static` profile).

model2vec runs the transformer once over every token of its vocabulary, reduces the
token vectors with PCA and weights them by token frequency (SIF); a text's vector is
then the mean of its tokens' rows, normalised: a table lookup, no transformer at
embedding time. The table is distilled here, offline, from the model the package ships
(no download), once per source model and settings, and cached under KGMEM_CACHE
(default ~/.cache/kgmem) beside the ONNX file. Its vectors are another space than the
transformer's, so it is another embedder by name (`<source>-static`): a store records
which one made it and refuses the other (config.STRUCTURAL).
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np

from ...config import cache_dir
from ...errors import KgmemError
from ..offline import offline
from .base import counting_tokenizer, max_seq_length, model_path, token_offsets

log = logging.getLogger("kgmem")

SUFFIX = "-static"
# Chosen by measurement (README@f5760d8 "Profiles", benchmarks/eval_static.py): PCA to 256 dimensions and
# model2vec's default SIF weighting; the model's own vocabulary.
PCA_DIMS = 256
SIF = 1e-4
INSTALL_HINT = "pip install 'kgmem[static]'"


def is_static(name: str) -> bool:
    return name.endswith(SUFFIX)


def source_of(name: str) -> str:
    """The transformer a static embedder is distilled from: its name less `-static`."""
    if not is_static(name):
        raise KgmemError(f"embedder {name!r} is not a static one; its name must end in {SUFFIX!r}")
    return name[: -len(SUFFIX)]


def table_path(name: str, pca_dims: int | None = PCA_DIMS, sif: float | None = SIF) -> Path:
    """Where the distilled table of `name` with these settings is cached."""
    import model2vec

    source = model_path(source_of(name))
    key = f"{source}|{pca_dims}|{sif}|{model2vec.__version__}"
    label = Path(source_of(name)).name  # a model's name, or a local model folder's
    return cache_dir() / "static" / f"{label}-{pca_dims}d-{hashlib.sha1(key.encode()).hexdigest()[:12]}"


def distill(name: str, target: Path, pca_dims: int | None = PCA_DIMS, sif: float | None = SIF,
            threads: int | None = None) -> Path:
    """Distil `name`'s table into `target` (a folder model2vec reads), atomically: two
    processes distilling at once both finish, and one folder wins."""
    try:
        import torch
        from model2vec.distill import distill_from_model
    except ImportError as exc:
        raise KgmemError(f"the static embedder is distilled with model2vec: {INSTALL_HINT}") from exc
    if threads:
        torch.set_num_threads(threads)
    source = model_path(source_of(name))
    log.warning("distilling the static embedder from %s (once: 15 s on 2 cores here) into %s", source_of(name), target)
    with offline():
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        model = AutoModel.from_pretrained(source)
        tokenizer = AutoTokenizer.from_pretrained(source)
        static = distill_from_model(model=model, tokenizer=tokenizer, device="cpu", pca_dims=pca_dims,
                                    sif_coefficient=sif)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    static.save_pretrained(str(tmp))
    try:
        os.rename(tmp, target)
    except OSError:  # another process put it there first: theirs is the same table
        shutil.rmtree(tmp, ignore_errors=True)
    return target


class StaticEmbedder:
    """Same interface as the transformer embedders; chunks are sized by the source
    model's own tokenizer, so a static store's chunks are the default store's chunks."""

    runtime = "static"

    def __init__(self, name: str = "all-MiniLM-L6-v2" + SUFFIX, batch_size: int = 32, threads: int | None = None,
                 pca_dims: int | None = PCA_DIMS, sif: float | None = SIF):
        try:
            from model2vec import StaticModel
        except ImportError as exc:
            raise KgmemError(f"the static embedder needs model2vec: {INSTALL_HINT}") from exc
        self.name = name
        self.batch_size = batch_size
        path = table_path(name, pca_dims, sif)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            distill(name, path, pca_dims, sif, threads=threads)
        self.path = path
        with offline():  # a local folder; never the hub
            self.model = StaticModel.from_pretrained(str(path))
        self.dim = int(self.model.dim)
        source = model_path(source_of(name))
        self._counter = counting_tokenizer(source)
        # The source model's room for text less [CLS] and [SEP], so that chunks are cut
        # where its store cuts them.
        self.max_tokens = max_seq_length(source, 256) - 2

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = np.asarray(self.model.encode(list(texts), batch_size=max(self.batch_size, 1024),
                                               show_progress_bar=False, use_multiprocessing=False), dtype=np.float32)
        # The table is float16: normalise again in float32, so that inner product is cosine.
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)

    def token_offsets(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        return token_offsets(self._counter, texts)

