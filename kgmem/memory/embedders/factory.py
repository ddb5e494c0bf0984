"""Embedders by runtime name, and one loaded model per process."""
from __future__ import annotations

import threading
from collections.abc import Callable

from ...errors import KgmemError
from .base import Embedder, model_path
from .numpy_bert import NumpyBertEncoder, supported
from .onnxint8 import OnnxInt8Embedder
from .sentence import SentenceTransformerEmbedder

# The runtimes by the name the config gives (`embedder_runtime`); each takes
# (name, batch_size=, threads=) and gives the same vector space.
RUNTIMES: dict[str, Callable[..., Embedder]] = {
    "torch": SentenceTransformerEmbedder,
    "onnx-int8": OnnxInt8Embedder,
}


def make_embedder(name: str, runtime: str = "torch", batch_size: int = 32, threads: int | None = None) -> Embedder:
    if runtime not in RUNTIMES:
        raise KgmemError(f"unknown embedder_runtime {runtime!r}; use one of {', '.join(RUNTIMES)}")
    return RUNTIMES[runtime](name, batch_size=batch_size, threads=threads)


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


def loaded_embedder(name: str, runtime: str = "torch") -> Embedder | None:
    """An embedder for `name` this process has already loaded (any batch size), or None."""
    with _LOADING:
        return next((e for (n, r, _), e in _LOADED.items() if n == name and r == runtime), None)


_QUERY: dict[str, NumpyBertEncoder | None] = {}


def query_encoder(name: str) -> NumpyBertEncoder | None:
    """The NumPy encoder of `name` (one per process), or None when the model is not one
    it reads exactly (`numpy_bert.supported`)."""
    with _LOADING:
        if name not in _QUERY:
            path = model_path(name)
            _QUERY[name] = NumpyBertEncoder(path) if supported(path) else None
        return _QUERY[name]
