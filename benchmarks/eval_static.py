"""How to distil the static embedder: each setting's dense recall, beside MiniLM's, same run.

    .venv/bin/python benchmarks/eval_static.py [--vocabulary] [--out PATH]

For each distillation setting (PCA dimensions, SIF weighting), the shared protocol's dense
baseline (exact inner product over "title\\ntext" passages, R@2/5/10) on MuSiQue and
HotpotQA, with the static table in place of MiniLM; also the kept setting without the
title line, and (--vocabulary, ~3 minutes more) a table whose vocabulary is extended with
MuSiQue's frequent words (model2vec's `vocabulary`), scored on both sets. MiniLM (torch)
is the same-run reference. Tables are cached under KGMEM_CACHE like the kept one.
Writes benchmarks/results/static_distill.json.
"""
from __future__ import annotations

import argparse
import collections
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kgmem import Config  # noqa: E402
from kgmem.eval import dense_reference, load_dataset, score_rankings  # noqa: E402
from kgmem.memory.embedders import make_embedder  # noqa: E402
from kgmem.memory.embedders.static import PCA_DIMS, SIF, StaticEmbedder  # noqa: E402

SETTINGS = [(256, SIF), (128, SIF), (64, SIF), (384, SIF), (None, SIF), (256, None)]


def recall(result) -> dict:
    return {str(k): round(v, 1) for k, v in result.recall.items()}


def without_title(dataset, embed) -> dict:
    import faiss

    vectors = embed([d["text"] for d in dataset.corpus])
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    _, found = index.search(embed([q["question"] for q in dataset.questions]), 10)
    ids = [d["id"] for d in dataset.corpus]
    return recall(score_rankings("dense", dataset.questions, [[ids[i] for i in row] for row in found], 0.0))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vocabulary", action="store_true", help="also a table with MuSiQue's words added")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "static_distill.json"))
    args = ap.parse_args()
    bench = ROOT.parent / "shared" / "bench"
    sets = {name: load_dataset(bench / name) for name in ("musique", "hotpotqa")}
    rows = []
    torch_embed = make_embedder(Config().embedder, "torch", threads=Config().threads).embed
    rows.append({"embedder": "MiniLM (torch, reference)",
                 **{n: recall(dense_reference(ds, torch_embed)) for n, ds in sets.items()}})
    for pca, sif in SETTINGS:
        t0 = time.perf_counter()
        static = StaticEmbedder(pca_dims=pca, sif=sif, threads=Config().threads)
        row = {"embedder": "static", "pca_dims": pca, "sif": sif, "dim": static.dim,
               "load_or_distil_s": round(time.perf_counter() - t0, 1),
               **{n: recall(dense_reference(ds, static.embed)) for n, ds in sets.items()}}
        row["kept"] = (pca, sif) == (PCA_DIMS, SIF)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if row["kept"]:
            rows.append({"embedder": "static, passages without the title line", "pca_dims": pca, "sif": sif,
                         **{n: without_title(ds, static.embed) for n, ds in sets.items()}})
            print(json.dumps(rows[-1]), flush=True)
    if args.vocabulary:
        rows.append(vocabulary_row(sets))
    out = Path(args.out)
    out.write_text(json.dumps({"settings": rows}, indent=1))
    print(f"wrote {out}")


def vocabulary_row(sets: dict) -> dict:
    """A table whose vocabulary holds MuSiQue's words seen twice or more (of its 20,000 most frequent)."""
    from model2vec.distill import distill_from_model
    from transformers import AutoModel, AutoTokenizer

    from kgmem.memory.embedders.base import model_path
    from kgmem.memory.offline import offline

    counts = collections.Counter(w.lower() for d in sets["musique"].corpus
                                 for w in re.findall(r"[A-Za-z][A-Za-z'-]+", d.get("title", "") + " " + d["text"]))
    words = [w for w, c in counts.most_common(20_000) if c >= 2]
    source = model_path(Config().embedder)
    t0 = time.perf_counter()
    with offline():
        model = distill_from_model(AutoModel.from_pretrained(source), AutoTokenizer.from_pretrained(source),
                                   vocabulary=words, device="cpu", pca_dims=PCA_DIMS, sif_coefficient=SIF)
    took = time.perf_counter() - t0

    def embed(texts: list[str]) -> np.ndarray:
        return np.asarray(model.encode(texts, show_progress_bar=False, use_multiprocessing=False), dtype=np.float32)

    row = {"embedder": "static, vocabulary + MuSiQue's words", "words": len(words), "pca_dims": PCA_DIMS, "sif": SIF,
           "load_or_distil_s": round(took, 1), **{n: recall(dense_reference(ds, embed)) for n, ds in sets.items()}}
    print(json.dumps(row), flush=True)
    return row


if __name__ == "__main__":
    main()
