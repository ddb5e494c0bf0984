"""Soak: writer and reader processes on one store for minutes, then an exact audit.

Two writer processes ingest, replace and delete documents (each its own id range, in
random order, queueing for the writer lock); four reader processes search, ask (the
no-LLM reader: four 1.5B models would not fit two cores) and check, each holding one
long-lived `Memory`. Every operation's latency and every exception is recorded. At the
end the store must check clean, hold exactly the documents the writers were told were
stored (with the text of their last acknowledged version, each once, with one vector per
chunk), and no process may have seen an exception.

    python benchmarks/soak.py --minutes 10 --out benchmarks/results/soak.json
    python benchmarks/soak.py --minutes 10 --kill-every 60 --out benchmarks/results/soak_kills.json

With --kill-every, a writer is killed with SIGKILL every minute (each in turn) and started
again: it logs each operation before it begins, so the one it was killed in is resolved
from the store when it comes back (stored or not, never torn), and the audit stays exact.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_profiles import cpu_model  # noqa: E402

QUESTIONS = ROOT / "data" / "questions.jsonl"
CORPUS = ROOT / "data" / "wiki-300.jsonl"


def _setup_process() -> None:
    os.environ["KGMEM_THREADS"] = "1"  # six busy processes on two cores: one thread each
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["KGMEM_WRITER_WAIT"] = "600"  # writers queue for the lock instead of failing


def _log_error(log, exc: Exception) -> None:
    log.write(json.dumps({"op": "error", "error": f"{type(exc).__name__}: {exc}",
                          "trace": traceback.format_exc()[-800:]}) + "\n")


def _recover(log_path: Path, mem) -> tuple[dict[str, str], list[str]]:
    """A restarted writer's view: its acknowledged documents from its log, and the outcome of
    the operation it was killed in (begun, never acknowledged), read from the store and
    logged as resolved. Returns (live, problems): a stored text that is neither the last
    acknowledged one nor the one being written is a problem (a torn write)."""
    live: dict[str, str] = {}
    pending = None
    if log_path.exists():
        for line in log_path.open(encoding="utf-8"):
            rec = json.loads(line)
            if rec["op"] == "begin":
                pending = rec
            elif rec["op"] in ("ingest", "replace", "delete", "resolved"):
                pending = None
                if rec["text"] is None:
                    live.pop(rec["id"], None)
                else:
                    live[rec["id"]] = rec["text"]
    problems = []
    if pending is not None:
        doc = mem.get(pending["id"])
        stored = doc.text if doc is not None else None
        if stored not in (live.get(pending["id"]), pending["text"]):
            problems.append(f"{pending['id']}: stored text is neither the acknowledged nor the new one")
        with log_path.open("a", encoding="utf-8") as log:
            log.write(json.dumps({"op": "resolved", "id": pending["id"], "text": stored}) + "\n")
        if stored is None:
            live.pop(pending["id"], None)
        else:
            live[pending["id"]] = stored
    return live, problems


def writer(n: int, store: str, deadline: float, out: str, seed: int, life: int = 0) -> None:
    _setup_process()
    from kgmem import Memory

    rng = random.Random(seed + n + 1000 * life)
    corpus = [json.loads(line) for line in CORPUS.open(encoding="utf-8")]
    mem = Memory(store)
    live, problems = _recover(Path(out), mem)  # a writer restarted after a SIGKILL goes on from its log
    log = open(out, "a", encoding="utf-8")
    for problem in problems:
        log.write(json.dumps({"op": "error", "error": f"AuditError: {problem}", "trace": ""}) + "\n")
    made = 0
    while time.time() < deadline:
        roll = rng.random()
        try:
            if roll < 0.55 or len(live) < 5:
                op, doc_id, src = "ingest", f"w{n}.{life}-{made}", rng.choice(corpus)
                text, title = src["text"], src["title"]
            elif roll < 0.8:
                op, doc_id = "replace", rng.choice(sorted(live))
                text, title = live[doc_id] + f" Revised at step {life}.{made}.", doc_id
            else:
                op, doc_id, text, title = "delete", rng.choice(sorted(live)), None, ""
            made += 1
            log.write(json.dumps({"op": "begin", "kind": op, "id": doc_id, "text": text}) + "\n")
            log.flush()  # before the write: a kill from here on leaves an operation to resolve
            t0 = time.perf_counter()
            if op == "delete":
                mem.delete(doc_id)
                ok = True
            else:
                report = mem.ingest([{"id": doc_id, "title": title, "text": text}])
                ok = report.added == 1 if op == "ingest" else report.replaced == 1
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
            if rec["op"] in ("ingest", "replace", "delete", "resolved"):
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
    ap.add_argument("--kill-every", type=float, default=0.0, metavar="SECONDS",
                    help="SIGKILL a writer (each in turn) every SECONDS and start it again (0: never).")
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
    kills = []
    lives = [0] * args.writers
    while args.kill_every and time.time() + args.kill_every < deadline:
        time.sleep(args.kill_every)
        n = len(kills) % args.writers  # each writer in turn (procs[:writers] are the writers)
        os.kill(procs[n].pid, signal.SIGKILL)
        procs[n].join()
        kills.append({"writer": n, "at_s": round(time.time() - start, 1), "exit": procs[n].exitcode})
        lives[n] += 1
        procs[n] = ctx.Process(target=writer, args=(n, store, deadline, str(logs["writer"][n]), args.seed, lives[n]))
        procs[n].start()
    for p in procs:
        p.join()
    procs_done = procs
    crashed = [p.exitcode for p in procs_done if p.exitcode != 0]
    records = {kind: [json.loads(line) for path in paths for line in path.open(encoding="utf-8")]
               for kind, paths in logs.items()}
    errors = [r for rs in records.values() for r in rs if r["op"] == "error"]
    ops = {}
    for kind, rs in records.items():
        for op in sorted({r["op"] for r in rs} - {"error", "begin", "resolved"}):
            ops[op] = _percentiles([r["s"] for r in rs if r["op"] == op])
    result = {
        "cpu": cpu_model(), "minutes": args.minutes, "writers": args.writers, "readers": args.readers,
        "seed": args.seed, "kill_every_s": args.kill_every,
        "wall_s": round(time.time() - start, 1), "operations": ops,
        "operations_total": sum(v["n"] for v in ops.values()),
        "errors": len(errors), "error_samples": [e["error"] for e in errors[:5]],
        "resolved_after_kill": sum(r["op"] == "resolved" for r in records["writer"]),
        "writer_kills": len(kills), "kills": kills, "crashed_processes": crashed,
        "audit": audit(store, logs["writer"], {d["id"]: d["text"] for d in seed_docs}),
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
