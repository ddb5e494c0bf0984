"""Sentence embeddings by sentence-transformers on torch, from a model shipped in a PyPI
package (no download at run time)."""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from ..offline import offline
from .base import model_path, token_offsets


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
