"""Answers a person can use, on Python's docs: does the answer's form follow the question?

    .venv/bin/python benchmarks/eval_docs_answers.py [--llm extractive,llama] [--limit N]

The 46 questions of benchmarks/pydocs, asked of a fresh store of its 21 pages. An answer is
useful when it says what a right answer must say (benchmarks/pydocs/answers.json: for each
group of terms, one of them). Each backend answers every question twice in one run: with
the answer always a phrase (the instruction before: "the shortest exact phrase … never a
sentence"), and with the form following the question (an explanation of at most 60 words
for how-to, why, what-does and what-is-a questions: pipelines/llm/questions.explains). A
question whose form is a phrase either way is asked once. Reported: useful answers, median
words, declines, seconds per answer. Writes benchmarks/results/docs_answers.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kgmem import Memory  # noqa: E402
from kgmem.pipelines import query  # noqa: E402
from kgmem.pipelines.llm.questions import explains  # noqa: E402

PYDOCS = ROOT / "benchmarks" / "pydocs"
_MARKS = re.compile(r"\s*\[\d+\]")


def useful(answer: str, groups: list[list[str]]) -> bool:
    low = answer.lower()
    return all(any(t.lower() in low for t in group) for group in groups)


def run(mem: Memory, llm: str, questions: list[dict], terms: dict, form: str) -> list[dict]:
    out = []
    patch = mock.patch.object(query, "explains", lambda q: False) if form == "phrase" else mock.patch.object(
        query, "explains", explains)
    with patch:
        for q in questions:
            t0 = time.perf_counter()
            ans = mem.ask(q["question"], llm=llm)
            text = _MARKS.sub("", ans.text).strip()
            out.append({"id": q["id"], "question": q["question"], "explains": explains(q["question"]),
                        "answer": text, "found": ans.found, "useful": useful(text, terms[q["id"]]),
                        "words": len(text.split()), "seconds": round(time.perf_counter() - t0, 2)})
            print(f"  [{form}] {q['id']} {'+' if out[-1]['useful'] else '-'} {text[:100]!r}", flush=True)
    return out


def summary(rows: list[dict]) -> dict:
    return {"questions": len(rows), "useful": sum(r["useful"] for r in rows),
            "useful_pct": round(100 * sum(r["useful"] for r in rows) / len(rows), 1),
            "median_words": statistics.median(r["words"] for r in rows),
            "declined": sum(not r["found"] for r in rows),
            "seconds_per_answer": round(statistics.mean(r["seconds"] for r in rows), 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--llm", default="extractive,llama")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "docs_answers.json"))
    args = ap.parse_args()
    questions = [json.loads(line) for line in open(PYDOCS / "questions.jsonl")][: args.limit]
    terms = json.loads((PYDOCS / "answers.json").read_text())["terms"]
    result: dict = {"what": __doc__.split("\n\n")[1].strip(), "machine": {"python": platform.python_version(),
                    "cpu": platform.processor() or platform.machine()}, "backends": {}}
    with tempfile.TemporaryDirectory(prefix="kgmem-docs-answers-") as store, Memory(store) as mem:
        mem.ingest(sorted((PYDOCS / "pages").glob("*.html")))
        for llm in args.llm.split(","):
            print(llm, flush=True)
            follows = run(mem, llm, questions, terms, "follows the question")
            # the phrase form differs only where the question asks for an explanation
            asked = [q for q in questions if explains(q["question"])]
            phrase_rows = {r["id"]: r for r in run(mem, llm, asked, terms, "phrase")}
            phrase = [phrase_rows.get(r["id"], r) for r in follows]
            result["backends"][llm] = {
                "phrase": summary(phrase), "follows the question": summary(follows),
                "explanation questions": sum(r["explains"] for r in follows),
                "answers": [{"id": a["id"], "question": a["question"], "phrase": b["answer"], "follows": a["answer"],
                             "useful": [b["useful"], a["useful"]]} for a, b in zip(follows, phrase)],
            }
            print(llm, {k: v for k, v in result["backends"][llm].items() if k != "answers"}, flush=True)
            Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
