"""`make demo`: ingest the shipped corpus (data/) and answer a few questions from it."""
from __future__ import annotations

import json
import sys
import textwrap
import time
from pathlib import Path

from . import Memory
from .render import sources_text

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
            answer = mem.ask(q["question"])  # the extractive backend: no LLM needed
            print(f"A: {answer.text}")
            print(textwrap.indent(sources_text(answer), "   "))
            gold = {c.doc_id for c in answer.citations} & set(q["gold_ids"])
            print(f"   expected: {q['answers'][0]}  (cited {len(gold)} of {len(q['gold_ids'])} supporting passages; "
                  f"{answer.timings['total'] * 1000:.0f} ms)\n")
        fact = mem.graph.neighbors("American Psychological Association")[:3]
        print("graph: " + "; ".join(str(f) for f in fact))
        print("\nTry: .venv/bin/kgmem repl --store .demo-store   (local LLM: add --llm local)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
