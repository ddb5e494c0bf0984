"""MiniLM in bfloat16 (torch CPU autocast, AMX) against float32, the same model in one run.

    .venv/bin/python benchmarks/bench_bf16.py [--docs 800]

- seconds to embed the first N shared MuSiQue passages ("title\\ntext"), float32 and
  bfloat16 (autocast: weights float32, products bfloat16), and with the weights cast to
  bfloat16 as well; each one's cosine to float32's vectors (min and mean);
- milliseconds a text at batch sizes 1-16 on short texts (the questions), where
  autocast's set-up weighs most: what `BF16_MIN_TEXTS` is chosen from.
On a CPU without AMX, bfloat16 is emulated and slow: the figures say so. Writes
benchmarks/results/bf16.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_profiles import cpu_flags, cpu_model  # noqa: E402

from kgmem.memory.embedders import SentenceTransformerEmbedder, sentence  # noqa: E402


def best_of(fn, runs: int = 2) -> tuple[float, np.ndarray]:
    best, out = float("inf"), None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=800)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bf16.json"))
    args = ap.parse_args()
    bench = ROOT.parent / "shared" / "bench" / "musique"
    records = [json.loads(line) for line in (bench / "corpus.jsonl").open(encoding="utf-8")][: args.docs]
    texts = [f"{r['title']}\n{r['text']}" for r in records]
    questions = [json.loads(line)["question"] for line in (bench / "questions.jsonl").open(encoding="utf-8")][:64]
    fp32 = SentenceTransformerEmbedder(batch_size=8, threads=2, precision="fp32")
    bf16 = SentenceTransformerEmbedder(batch_size=8, threads=2, precision="bf16")
    for e in (fp32, bf16):
        e.embed(texts[:16])
    out: dict = {"cpu": cpu_model(), "cpu_flags": cpu_flags(), "passages": len(texts)}
    t32, v32 = best_of(lambda: fp32.embed(texts))
    t16, v16 = best_of(lambda: bf16.embed(texts))
    cos = (v32 * v16).sum(1)
    out["passages_seconds"] = {"fp32": round(t32, 2), "bf16_autocast": round(t16, 2)}
    out["bf16_autocast_cosine_to_fp32"] = {"min": round(float(cos.min()), 6), "mean": round(float(cos.mean()), 6)}
    import torch

    bf16.model.to(dtype=torch.bfloat16)
    bf16.embed(texts[:16])
    tw, vw = best_of(lambda: bf16.embed(texts))
    vw = vw / np.linalg.norm(vw, axis=1, keepdims=True)
    cos_w = (v32 * vw).sum(1)
    out["passages_seconds"]["bf16_weights"] = round(tw, 2)
    out["bf16_weights_cosine_to_fp32"] = {"min": round(float(cos_w.min()), 6), "mean": round(float(cos_w.mean()), 6)}
    bf16.model.to(dtype=torch.float32)
    per_text: dict = {}
    sentence.BF16_MIN_TEXTS = 1  # measure autocast at every batch size, below the threshold too
    for n in (1, 2, 4, 8, 16):
        row = {}
        for name, e in (("fp32", fp32), ("bf16_autocast", bf16)):
            e.embed(questions[:n])
            seconds, _ = best_of(lambda e=e: [e.embed(questions[i:i + n]) for i in range(0, len(questions), n)])
            row[name] = round(1000 * seconds / len(questions), 2)
        per_text[str(n)] = row
    out["question_ms_per_text_by_batch"] = per_text
    print(json.dumps(out, indent=1))
    Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
