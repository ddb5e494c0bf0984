"""`make demo`: ingest the shipped corpus (data/) and answer a few questions from it."""
from __future__ import annotations

import json
import sys
import textwrap
import time
from pathlib import Path

from . import Memory
from .eval import token_f1
from .render import answer_text, reading_line

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
        print(f"store: {stats['documents']} documents, {stats['chunks']} chunks")
        t1 = time.perf_counter()
        backend = mem.backend(load=True)  # the local model when installed, else the no-LLM reader
        print(f"answering with {backend.name} (loaded in {time.perf_counter() - t1:.1f}s)")
        if mem.llm_notice:
            print(f"note: {mem.llm_notice}")
        right = 0
        for q in questions:
            print(f"\nQ: {q['question']}")
            answer = mem.ask(q["question"], on_context=lambda prep: print("   " + reading_line(prep), flush=True))
            print(textwrap.indent("A: " + answer_text(answer), "   ")[3:])
            ok = token_f1(answer.short, q["answers"]) >= 0.5
            right += ok
            print(f"   expected: {q['answers'][0]} — {'right' if ok else 'wrong'} "
                  f"({answer.timings['total']:.1f}s)")
        print(f"\n{right} of {len(questions)} answered right with {backend.name}")
        fact = mem.graph.neighbors("American Psychological Association")[:3]
        print("graph: " + "; ".join(str(f) for f in fact))
        print("\nTry: .venv/bin/kgmem repl --store .demo-store   (no LLM: add --llm extractive)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
