"""Embedders: one interface (`base.Embedder`), one module per runtime (`sentence`:
sentence-transformers on torch; `onnxint8`: the same model on ONNX Runtime, int8), and
`factory` to make them by name. Imports run base <- runtimes <- factory, no circle."""
from .base import Embedder, model_path, token_offsets
from .factory import RUNTIMES, make_embedder, shared_embedder
from .onnxint8 import OnnxInt8Embedder
from .sentence import SentenceTransformerEmbedder

__all__ = ["Embedder", "OnnxInt8Embedder", "RUNTIMES", "SentenceTransformerEmbedder", "make_embedder", "model_path",
           "shared_embedder", "token_offsets"]
