"""The fast profile (int8 ONNX embedder) and bfloat16 MiniLM, on real text and models; the static
profiles are in test_static_profile.py."""
from __future__ import annotations

import numpy as np
import pytest

from kgmem import Config

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory, monkeypatch_module):
    path = tmp_path_factory.mktemp("kgmem-cache")
    monkeypatch_module.setenv("KGMEM_CACHE", str(path))
    return path


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_int8_embedder_stays_in_the_same_vector_space(onnx_cache, embedder, wiki_records):
    from kgmem.memory.embedders import OnnxInt8Embedder

    fast = OnnxInt8Embedder(threads=2)
    assert fast.path.exists() and fast.path.parent.parent == onnx_cache
    texts = [r["title"] + "\n" + r["text"] for r in wiki_records[:64]]
    a, b = fast.embed(texts), embedder.embed(texts)
    assert a.shape == b.shape and np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-4)
    cosine = (a * b).sum(1)
    assert cosine.mean() > 0.98 and cosine.min() > 0.95
    # the nearest passage of each passage is (almost always) the same under both
    agree = (np.argsort(-(a @ b.T), axis=1)[:, 0] == np.arange(len(texts))).mean()
    assert agree > 0.95


def test_unknown_profile_and_runtime_are_clear_errors(tmp_path):
    from kgmem.errors import KgmemError
    from kgmem.memory.embedders import make_embedder

    with pytest.raises(ValueError, match="unknown profile"):
        Config.profile("turbo")
    with pytest.raises(KgmemError, match="unknown embedder_runtime"):
        make_embedder("all-MiniLM-L6-v2", "tensorrt")


def test_bf16_autocast_keeps_the_vector_space(embedder, wiki_records):
    """bfloat16 matrix products (auto where the CPU has AMX) give the float32 model's vectors
    to cosine 0.999+: one store, whichever precision embedded it."""
    from kgmem.memory.embedders import SentenceTransformerEmbedder
    from kgmem.memory.embedders.sentence import amx_tiles

    assert embedder.precision == ("bf16" if amx_tiles() else "fp32")  # the session's: precision "auto"
    fp32 = SentenceTransformerEmbedder(threads=2, precision="fp32")
    bf16 = SentenceTransformerEmbedder(threads=2, precision="bf16")
    texts = [r["title"] + "\n" + r["text"] for r in wiki_records[:64]]
    a, b = fp32.embed(texts), bf16.embed(texts)
    assert a.dtype == b.dtype == np.float32 and np.allclose(np.linalg.norm(b, axis=1), 1, atol=1e-4)
    assert (a * b).sum(1).min() > 0.999
    assert (np.argsort(-(a @ b.T), axis=1)[:, 0] == np.arange(len(texts))).all()
    with pytest.raises(ValueError, match="embedder_precision"):
        Config(embedder_precision="fp8")
