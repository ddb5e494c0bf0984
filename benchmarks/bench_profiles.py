"""Ingest speed of each embedding profile, beside its references, one run on the same text.

    .venv/bin/python benchmarks/bench_profiles.py [--docs N] [--dataset DIR] [--profiles default,fast,static]

On the shared MuSiQue corpus (all 3,722 passages by default), for each profile, fresh stores:
- `Memory.ingest` words/s, graph on (models loaded before the clock starts);
- the profile's embedder alone over the very same chunk texts ("title\\ntext", as ingest embeds them);
- spaCy alone over the same chunks (the pipeline extraction runs): the bound once embedding is cheap;
- the static profile again with two worker processes (each loads its models: start included),
  and spaCy alone with `nlp.pipe(n_process=2)`, the two ways to put spaCy on both cores;
- the CPU's flags that decide which kernels run (AVX-512, AMX).
Writes benchmarks/results/ingest_profiles.json.
"""
from __future__ import annotations

import argparse
import atexit
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_query import peak_rss_mib  # noqa: E402

from kgmem import Config, Memory  # noqa: E402
from kgmem.graph.extract import make_extractor  # noqa: E402
from kgmem.memory.embedders import make_embedder  # noqa: E402
from kgmem.memory.passages import embedding_text  # noqa: E402


def cpu_flags() -> list[str]:
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
    try:
        line = next(x for x in open("/proc/cpuinfo") if x.startswith("flags"))
    except (OSError, StopIteration):
        return []
    return [f for f in wanted if f in line.split()]


def cpu_model() -> str:
    try:
        return next(x.split(":", 1)[1].strip() for x in open("/proc/cpuinfo") if x.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=0, help="first N passages (0: all)")
    ap.add_argument("--dataset", default=str(ROOT.parent / "shared" / "bench" / "musique"))
    ap.add_argument("--profiles", default="default-fp32,default,fast,static,fastest",
                    help="profile names; default-fp32: the default with float32 products (today's path without AMX)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ingest_profiles.json"))
    args = ap.parse_args()

    records = [json.loads(line) for line in open(Path(args.dataset) / "corpus.jsonl", encoding="utf-8")]
    records = records[: args.docs] if args.docs else records
    words = sum(len(r["text"].split()) for r in records)
    extractor = make_extractor(Config().spacy_model, "full")
    extractor.extract(["Warm up the parser."])
    out: dict = {"docs": len(records), "words": words, "threads": Config().threads, "cpu": cpu_model(),
                 "cpu_flags": cpu_flags(), "seconds": {}, "words_per_second": {}}
    seconds, wps = out["seconds"], out["words_per_second"]

    def record(key: str, took: float) -> None:
        seconds[key], wps[key] = round(took, 2), round(words / took)
        print(f"{key:44s} {took:8.1f} s {words / took:8.0f} words/s", flush=True)

    def fresh_store() -> str:
        tmp = tempfile.mkdtemp(prefix="kgmem-bench-")
        atexit.register(shutil.rmtree, tmp, True)
        return tmp

    chunk_texts: list[str] = []
    embed_texts: list[str] = []
    for name in args.profiles.split(","):
        # One process first (workers=1: the static profiles' auto would start workers), then two workers.
        cfg = (Config(embedder_precision="fp32") if name == "default-fp32" else Config.profile(name)).replace(workers=1)
        embedder = make_embedder(cfg.embedder, cfg.embedder_runtime, batch_size=cfg.embed_batch_size,
                                 threads=cfg.threads, precision=cfg.embedder_precision)
        ner = make_extractor(cfg.spacy_model, "ner") if cfg.graph_extraction == "ner" else None
        embedder.embed(["warm up"])
        with Memory(fresh_store(), cfg, embedder=embedder, extractor=ner or extractor) as mem:
            t0 = time.perf_counter()
            report = mem.ingest(records)
            record(f"{name}: ingest", time.perf_counter() - t0)
            assert report.added == len(records), report.failed[:3]
            if not chunk_texts:  # the chunks are the same under every profile (same tokenizer)
                chunks = [c for b in mem.passages.sql.iter_chunks(mem.passages.sql.chunk_ids()) for c in b]
                chunk_texts = [c.text for c in chunks]
                embed_texts = [embedding_text(c.title, c.text) for c in chunks]
                out["chunks"] = len(chunks)
        t0 = time.perf_counter()
        embedder.embed(embed_texts)
        record(f"{name}: embedder alone", time.perf_counter() - t0)
        if name == "default":
            t0 = time.perf_counter()
            list(extractor.nlp.pipe(chunk_texts, batch_size=extractor.batch_size))
            record("spaCy alone", time.perf_counter() - t0)
        if ner is not None:
            t0 = time.perf_counter()
            list(ner.nlp.pipe(chunk_texts, batch_size=ner.batch_size))
            record("spaCy NER only, alone", time.perf_counter() - t0)
        if name in ("static", "fastest"):
            with Memory(fresh_store(), cfg.replace(workers=2)) as mem:  # each worker loads its own models
                t0 = time.perf_counter()
                report = mem.ingest(records)
                record(f"{name}: ingest, 2 workers (start included)", time.perf_counter() - t0)
                assert report.added == len(records), report.failed[:3]
    t0 = time.perf_counter()
    list(extractor.nlp.pipe(chunk_texts, batch_size=extractor.batch_size, n_process=2))
    record("spaCy alone, n_process=2 (start included)", time.perf_counter() - t0)

    base = seconds.get("default: ingest")
    if base:
        out["speed-up over default"] = {k.split(":")[0] + k.split("ingest")[1]: round(base / v, 2)
                                        for k, v in seconds.items() if ": ingest" in k}
    out["peak_rss_mib"] = round(peak_rss_mib())
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(json.dumps(out.get("speed-up over default")), f"\nwrote {path}")


if __name__ == "__main__":
    main()
