"""Sentence embeddings by sentence-transformers on torch, from a model shipped in a PyPI
package (no download at run time)."""
from __future__ import annotations

import contextlib
import os
from typing import Sequence

import numpy as np

from ..offline import offline
from .base import model_path, token_offsets

BF16_MIN_TEXTS = 4


class SentenceTransformerEmbedder:
    """A sentence-transformers model; vectors are L2-normalised so inner product = cosine."""

    runtime = "torch"

    def __init__(self, name: str = "all-MiniLM-L6-v2", batch_size: int = 32, threads: int | None = None,
                 precision: str = "auto"):
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
        self.bf16 = precision == "bf16" or (precision == "auto" and amx_tiles())
        self.precision = "bf16" if self.bf16 else "fp32"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        import torch

        # Autocast keeps the weights in float32 and runs the matrix products in bfloat16
        # (AMX), the rest (softmax, layer norm, pooling) in float32. Its set-up costs more
        # than it saves below a few texts (a question: 11.6 ms against 9.5 in float32; from
        # 4 questions on it gains, 16 of them 1.3x; bench_bf16.py), so a question stays float32.
        bf16 = self.bf16 and len(texts) >= BF16_MIN_TEXTS
        with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
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


def amx_tiles() -> bool:
    """Whether this CPU has AMX tile units (bfloat16 matrix products in hardware), as torch
    sees them. CPUs with AVX-512 BF16 but no AMX keep float32: not measured to gain."""
    import torch

    try:
        return bool(torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):  # a torch without the probe
        return False
