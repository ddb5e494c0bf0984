"""`make demo`: ingest the shipped corpus (data/) and answer a few questions from it."""
from __future__ import annotations

import json
import sys
import textwrap
import time
from pathlib import Path

from . import Memory

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
STORE = ROOT / ".demo-store"


def main() -> int:
    corpus = DATA / "wiki-300.jsonl"
    questions = [json.loads(line) for line in (DATA / "questions.jsonl").open(encoding="utf-8")][:3]
    print(f"kgmem demo — store: {STORE}")
    t0 = time.perf_counter()
    with Memory(STORE) as mem:
        report = mem.ingest([corpus])
        print(
            f"ingested {corpus.name}: {report.added} added, {report.unchanged} unchanged, "
            f"{report.chunks} new chunks in {time.perf_counter() - t0:.1f}s"
        )
        stats = mem.stats()
        print(f"store: {stats['documents']} documents, {stats['chunks']} chunks\n")
        for q in questions:
            print(f"Q: {q['question']}")
            for n, hit in enumerate(mem.search(q["question"], k=3), 1):
                snippet = textwrap.shorten(hit.text, 110, placeholder=" …")
                gold = " ✓" if hit.doc_id in q["gold_ids"] else ""
                print(f"  [{n}] {hit.title} ({hit.doc_id}){gold}\n      {snippet}")
            print(f"  expected answer: {q['answers'][0]}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
