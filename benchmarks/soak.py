"""Soak: writer and reader processes on one store for minutes, then an exact audit.

Two writer processes ingest, replace and delete documents (each its own id range, in
random order, queueing for the writer lock); four reader processes search, ask (the
no-LLM reader: four 1.5B models would not fit two cores) and check, each holding one
long-lived `Memory`. Every operation's latency and every exception is recorded. At the
end the store must check clean, hold exactly the documents the writers were told were
stored (with the text of their last acknowledged version, each once, with one vector per
chunk), and no process may have seen an exception.

    python benchmarks/soak.py --minutes 10 --out benchmarks/results/soak.json
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ROOT / "data" / "questions.jsonl"
CORPUS = ROOT / "data" / "wiki-300.jsonl"


def _setup_process() -> None:
    os.environ["KGMEM_THREADS"] = "1"  # six busy processes on two cores: one thread each
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["KGMEM_WRITER_WAIT"] = "600"  # writers queue for the lock instead of failing


def _log_error(log, exc: Exception) -> None:
    log.write(json.dumps({"op": "error", "error": f"{type(exc).__name__}: {exc}",
                          "trace": traceback.format_exc()[-800:]}) + "\n")


def writer(n: int, store: str, deadline: float, out: str, seed: int) -> None:
    _setup_process()
    from kgmem import Memory

    rng = random.Random(seed + n)
    corpus = [json.loads(line) for line in CORPUS.open(encoding="utf-8")]
    mem = Memory(store)
    log = open(out, "w", encoding="utf-8")
    live: dict[str, str] = {}
    made = 0
    while time.time() < deadline:
        roll = rng.random()
        t0 = time.perf_counter()
        try:
            if roll < 0.55 or len(live) < 5:
                doc_id, src = f"w{n}-{made}", rng.choice(corpus)
                made += 1
                text = src["text"]
                report = mem.ingest([{"id": doc_id, "title": src["title"], "text": text}])
                op, ok = "ingest", report.added == 1
            elif roll < 0.8:
                doc_id = rng.choice(sorted(live))
                text = live[doc_id] + f" Revised at step {made}."
                made += 1
                report = mem.ingest([{"id": doc_id, "title": doc_id, "text": text}])
                op, ok = "replace", report.replaced == 1
            else:
                doc_id = rng.choice(sorted(live))
                mem.delete(doc_id)
                op, ok, text = "delete", True, None
            seconds = time.perf_counter() - t0
            if not ok:
                raise AssertionError(f"{op} of {doc_id} was not reported as done")
            if text is None:
                live.pop(doc_id)
            else:
                live[doc_id] = text
            # acknowledged: what the caller was told is now stored
            log.write(json.dumps({"op": op, "id": doc_id, "text": text, "s": seconds}) + "\n")
        except Exception as exc:
            _log_error(log, exc)
        log.flush()
    mem.close()
    log.close()


def reader(n: int, store: str, deadline: float, out: str, seed: int) -> None:
    _setup_process()
    from kgmem import Memory

    rng = random.Random(seed + 100 + n)
    questions = [json.loads(line)["question"] for line in QUESTIONS.open(encoding="utf-8")]
    mem = Memory(store)
    log = open(out, "w", encoding="utf-8")
    while time.time() < deadline:
        roll = rng.random()
        t0 = time.perf_counter()
        try:
            if roll < 0.5:
                op = "search"
                mem.search(rng.choice(questions), k=10)
            elif roll < 0.9:
                op = "ask"
                mem.ask(rng.choice(questions), llm="extractive")
            else:
                op = "check"
                problems = mem.check()
                if problems:
                    raise AssertionError(f"check found: {problems}")
            log.write(json.dumps({"op": op, "s": time.perf_counter() - t0}) + "\n")
        except Exception as exc:
            _log_error(log, exc)
        log.flush()
    mem.close()
    log.close()


def _percentiles(values: list[float]) -> dict[str, float]:
    import numpy as np

    if not values:
        return {"n": 0}
    a = np.array(values) * 1000
    return {"n": len(values), "p50_ms": round(float(np.percentile(a, 50)), 1),
            "p95_ms": round(float(np.percentile(a, 95)), 1), "max_ms": round(float(a.max()), 1)}


def audit(store: str, logs: list[Path], seeded: dict[str, str]) -> dict:
    """The store against what the writers were told: each acknowledged document once,
    with its last acknowledged text; nothing else."""
    from kgmem import Memory

    expected: dict[str, str | None] = dict(seeded)  # id -> the last acknowledged text (None: deleted)
    for path in logs:
        for line in path.open(encoding="utf-8"):
            rec = json.loads(line)
            if rec["op"] in ("ingest", "replace", "delete"):
                expected[rec["id"]] = rec["text"]
    want = {k: v for k, v in expected.items() if v is not None}
    with Memory(store) as mem:
        problems = mem.check()
        conn = mem.passages.sql.conn
        stored = dict(conn.execute("SELECT id, text FROM documents").fetchall())
        duplicates = conn.execute(
            "SELECT count(*) FROM (SELECT doc_id, ord FROM chunks GROUP BY doc_id, ord HAVING count(*) > 1)"
        ).fetchone()[0]
        stats = mem.stats()
    missing = sorted(set(want) - set(stored))
    unexpected = sorted(set(stored) - set(want))
    wrong = sorted(d for d in set(want) & set(stored) if stored[d] != want[d])
    return {
        "check_problems": problems, "documents": len(stored), "expected_documents": len(want),
        "missing": missing[:10], "unexpected": unexpected[:10], "wrong_text": wrong[:10],
        "duplicate_chunks": int(duplicates), "chunks": stats["chunks"], "vectors": stats["vectors"],
        "ok": not problems and not missing and not unexpected and not wrong and not duplicates
        and stats["chunks"] == stats["vectors"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--writers", type=int, default=2)
    ap.add_argument("--readers", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--store", help="Store directory (default: a temporary one, deleted after).")
    ap.add_argument("--out", help="Write the JSON result here.")
    args = ap.parse_args()
    _setup_process()
    work = Path(tempfile.mkdtemp(prefix="kgmem-soak-"))
    store = args.store or str(work / "store")
    from kgmem import Memory

    seed_docs = [json.loads(line) for line in CORPUS.open(encoding="utf-8")][:50]
    with Memory(store) as mem:  # a starting store the readers can ask from the first second
        mem.ingest(seed_docs)
    ctx = mp.get_context("spawn")
    start = time.time()
    deadline = start + args.minutes * 60
    procs, logs = [], {"writer": [], "reader": []}
    for kind, count, target in (("writer", args.writers, writer), ("reader", args.readers, reader)):
        for n in range(count):
            out = work / f"{kind}-{n}.jsonl"
            logs[kind].append(out)
            procs.append(ctx.Process(target=target, args=(n, store, deadline, str(out), args.seed)))
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    crashed = [p.exitcode for p in procs if p.exitcode != 0]
    records = {kind: [json.loads(line) for path in paths for line in path.open(encoding="utf-8")]
               for kind, paths in logs.items()}
    errors = [r for rs in records.values() for r in rs if r["op"] == "error"]
    ops = {}
    for kind, rs in records.items():
        for op in sorted({r["op"] for r in rs} - {"error"}):
            ops[op] = _percentiles([r["s"] for r in rs if r["op"] == op])
    result = {
        "minutes": args.minutes, "writers": args.writers, "readers": args.readers, "seed": args.seed,
        "wall_s": round(time.time() - start, 1), "operations": ops,
        "operations_total": sum(v["n"] for v in ops.values()),
        "errors": len(errors), "error_samples": [e["error"] for e in errors[:5]],
        "crashed_processes": crashed, "audit": audit(store, logs["writer"], {d["id"]: d["text"] for d in seed_docs}),
    }
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    ok = result["audit"]["ok"] and not errors and not crashed
    if errors:
        print(errors[0].get("trace", ""), file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
