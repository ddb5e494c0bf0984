"""Embedders: one interface (`base.Embedder`), one module per runtime (`sentence`:
sentence-transformers on torch; `onnxint8`: the same model on ONNX Runtime, int8;
`static`: a model2vec table distilled from a transformer), and `factory` to make them by
name; `numpy_bert` embeds questions without torch. Imports run base <- runtimes <-
factory, no circle."""
from .base import Embedder, model_path, token_offsets
from .factory import RUNTIMES, loaded_embedder, make_embedder, query_encoder, shared_embedder
from .numpy_bert import NumpyBertEncoder
from .onnxint8 import OnnxInt8Embedder
from .sentence import SentenceTransformerEmbedder
from .static import StaticEmbedder

__all__ = ["Embedder", "NumpyBertEncoder", "OnnxInt8Embedder", "RUNTIMES", "SentenceTransformerEmbedder",
           "StaticEmbedder", "loaded_embedder", "make_embedder", "model_path", "query_encoder", "shared_embedder",
           "token_offsets"]
