"""Questions embedded without torch: the same BERT sentence model, run in NumPy.

A process that only asks (the REPL, the HTTP and MCP servers, `kgmem ask`) embeds one
short question at a time. Importing torch and sentence-transformers and loading the
model took 3.4 s of the 7.6 s to the first answer on the 1M-chunk store; this encoder
reads the same `model.safetensors` and `tokenizer.json` with NumPy and the Rust
tokenizer in ~0.13 s, and embeds a question in ~8 ms, as torch does. The arithmetic is
the model's: BERT (absolute positions, erf GELU), mean pooling, L2 normalisation,
float32; its vectors are within ~1e-7 of sentence-transformers' (a test checks 1e-5).
Documents are still embedded by the configured runtime.

Only models that are exactly that are read this way (`supported`); others use torch.
"""
from __future__ import annotations

import json
import math
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from .base import counting_tokenizer, max_seq_length, token_offsets

MODULES = ["sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling",
           "sentence_transformers.models.Normalize"]


def supported(path: str | Path) -> bool:
    """Whether the model at `path` is a BERT encoder with mean pooling and normalisation,
    shipped with safetensors weights and a fast tokenizer."""
    p = Path(path)
    try:
        modules = [m["type"] for m in json.loads((p / "modules.json").read_text())]
        config = json.loads((p / "config.json").read_text())
        pooling = json.loads((p / "1_Pooling" / "config.json").read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return False
    modes = [k for k, v in pooling.items() if k.startswith("pooling_mode") and v]
    return (modules == MODULES and config.get("model_type") == "bert" and config.get("hidden_act") == "gelu"
            and config.get("position_embedding_type", "absolute") == "absolute"
            and modes == ["pooling_mode_mean_tokens"]
            and (p / "model.safetensors").is_file() and (p / "tokenizer.json").is_file())


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


class NumpyBertEncoder:
    """Embeds texts (one at a time is what it is for) like sentence-transformers would."""

    runtime = "numpy"

    def __init__(self, path: str | Path, max_tokens: int | None = None):
        from safetensors.numpy import load_file
        from scipy.special import erf  # scipy is loaded anyway by the graph walk
        from tokenizers import Tokenizer

        p = Path(path)
        config = json.loads((p / "config.json").read_text())
        self.max_len = int(max_tokens or max_seq_length(p, 512))
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        weights = load_file(str(p / "model.safetensors"))
        # Some exports prefix every name with "bert."; both are the same tensors.
        self.w = {k.removeprefix("bert."): v.astype(np.float32) for k, v in weights.items()}
        self.dim = int(self.w["embeddings.word_embeddings.weight"].shape[1])
        self.name = p.name
        self.max_tokens = self.max_len - 2  # room for [CLS] and [SEP]
        self.tokenizer = Tokenizer.from_file(str(p / "tokenizer.json"))
        self.tokenizer.no_padding()
        self._counter = counting_tokenizer(p)  # whole texts, for counting
        self.tokenizer.enable_truncation(self.max_len)
        self._erf = erf
        self._lock = threading.Lock()  # numpy releases the GIL; the tokenizer's state is shared

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            with self._lock:
                enc = self.tokenizer.encode(text)
            out[i] = self._one(np.asarray(enc.ids), np.asarray(enc.type_ids))
        return out

    def token_offsets(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        with self._lock:
            return token_offsets(self._counter, texts)

    def _one(self, ids: np.ndarray, types: np.ndarray) -> np.ndarray:
        w, n = self.w, len(ids)
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n]
             + w["embeddings.token_type_embeddings.weight"][types])
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        h = self.heads
        d = self.dim // h
        for layer in range(self.layers):
            pre = f"encoder.layer.{layer}."

            def dense(v: np.ndarray, name: str) -> np.ndarray:
                return v @ w[pre + name + ".weight"].T + w[pre + name + ".bias"]

            q = dense(x, "attention.self.query").reshape(n, h, d).transpose(1, 0, 2)
            k = dense(x, "attention.self.key").reshape(n, h, d).transpose(1, 0, 2)
            v = dense(x, "attention.self.value").reshape(n, h, d).transpose(1, 0, 2)
            scores = q @ k.transpose(0, 2, 1) / np.float32(math.sqrt(d))
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            ctx = (scores / scores.sum(-1, keepdims=True)) @ v
            ctx = ctx.transpose(1, 0, 2).reshape(n, self.dim)
            x = _layer_norm(dense(ctx, "attention.output.dense") + x, w[pre + "attention.output.LayerNorm.weight"],
                            w[pre + "attention.output.LayerNorm.bias"], self.eps)
            mid = dense(x, "intermediate.dense")
            mid = mid * 0.5 * (1.0 + self._erf(mid / np.float32(math.sqrt(2.0))))
            x = _layer_norm(dense(mid, "output.dense") + x, w[pre + "output.LayerNorm.weight"],
                            w[pre + "output.LayerNorm.bias"], self.eps)
        pooled = x.mean(0)  # one text, no padding: every token counts
        return (pooled / max(float(np.linalg.norm(pooled)), 1e-12)).astype(np.float32)
