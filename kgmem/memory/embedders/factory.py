"""Embedders by runtime name, and one loaded model per process."""
from __future__ import annotations

import threading
from collections.abc import Callable

from ...errors import KgmemError
from .base import Embedder, model_path
from .numpy_bert import NumpyBertEncoder, supported
from .onnxint8 import OnnxInt8Embedder
from .sentence import SentenceTransformerEmbedder
from .static import StaticEmbedder, is_static

# The runtimes by the name the config gives (`embedder_runtime`); each takes
# (name, batch_size=, threads=). torch and onnx-int8 give the same vector space for one
# name; "static" is a table distilled from a transformer, named `<source>-static`.
RUNTIMES: dict[str, Callable[..., Embedder]] = {
    "torch": SentenceTransformerEmbedder,
    "onnx-int8": OnnxInt8Embedder,
    "static": StaticEmbedder,
}


def make_embedder(name: str, runtime: str = "torch", batch_size: int = 32, threads: int | None = None,
                  precision: str = "auto") -> Embedder:
    if runtime not in RUNTIMES:
        raise KgmemError(f"unknown embedder_runtime {runtime!r}; use one of {', '.join(RUNTIMES)}")
    if is_static(name) != (runtime == "static"):
        raise KgmemError(f"embedder {name!r} cannot run on embedder_runtime {runtime!r}: a static embedder "
                         "(a name ending in '-static') runs only on 'static' (--profile static)")
    if runtime == "torch":  # the one runtime with a choice of precision (config.embedder_precision)
        return SentenceTransformerEmbedder(name, batch_size=batch_size, threads=threads, precision=precision)
    return RUNTIMES[runtime](name, batch_size=batch_size, threads=threads)


_LOADED: dict[tuple[str, str, int, str], Embedder] = {}
_LOADING = threading.Lock()


def shared_embedder(name: str, batch_size: int = 32, threads: int | None = None, runtime: str = "torch",
                    precision: str = "auto") -> Embedder:
    """One loaded model per process, name, runtime and precision: opening several stores
    costs one load, and two threads asking at once (a warm-up and a first question) wait for one."""
    key = (name, runtime, batch_size, precision)
    with _LOADING:
        if key not in _LOADED:
            _LOADED[key] = make_embedder(name, runtime, batch_size=batch_size, threads=threads, precision=precision)
            return _LOADED[key]
    if threads and runtime != "static":  # a static table needs no torch: never import it for one
        import torch

        torch.set_num_threads(threads)
    return _LOADED[key]


def loaded_embedder(name: str, runtime: str = "torch") -> Embedder | None:
    """An embedder for `name` this process has already loaded (any batch size), or None."""
    with _LOADING:
        return next((e for (n, r, _, _), e in _LOADED.items() if n == name and r == runtime), None)


_QUERY: dict[str, NumpyBertEncoder | None] = {}


def query_encoder(name: str) -> NumpyBertEncoder | None:
    """The NumPy encoder of `name` (one per process), or None when the model is not one
    it reads exactly (`numpy_bert.supported`)."""
    with _LOADING:
        if name not in _QUERY:
            path = model_path(name)
            _QUERY[name] = NumpyBertEncoder(path) if supported(path) else None
        return _QUERY[name]
