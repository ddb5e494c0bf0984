"""Summaries on QMSum (../shared/bench/qmsum): kgmem against same-run references.

Protocol (../shared/bench/README.md): each meeting ingested as one document; every
query answered; ROUGE-1/2/L F1 (rouge-score, stemming) against the human answer,
separately for whole-meeting ("general") and part-of-meeting ("specific") queries.
Methods, all at the reference answer's length in words:

- kgmem-extractive: `Memory.summarize(..., llm="extractive")` (no LLM);
- textrank: TextRank (Mihalcea & Tarau 2004: sentence graph, overlap similarity,
  PageRank) over the meeting's sentences, split and cleaned by the same code;
- with --llm: kgmem (the model over graph-selected sentences, map-reduce) and
  truncate: the same model given the meeting's first tokens that fit the same window,
  plain greedy decoding; truncate-dry: the same prompt (read once: llama.cpp's prompt
  cache) with the no-repeat sampler kgmem's summaries use.

For specific queries, also the recall of the relevant turns among the passages kgmem
read. Prints a table, writes JSON (results/summaries.json by default).

    python benchmarks/eval_summaries.py                       # extractive, all queries
    python benchmarks/eval_summaries.py --llm llama --general-stride 5 --specific-stride 12
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import re
import sys
import time
from pathlib import Path

import networkx as nx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kgmem import Memory  # noqa: E402
from kgmem.memory.store import Chunk  # noqa: E402
from kgmem.pipelines.extracts import MIN_WORDS, SPEAKER, split  # noqa: E402
from kgmem.pipelines.summarize import SYSTEM, WHOLE_GUIDE, kind_of, speaker_label, window_of  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "bench" / "qmsum"
_WORDS = re.compile(r"\w+")


def textrank(text: str, words: int) -> str:
    sents = [s for s in split([Chunk(0, "d", 0, 0, len(text), text, 0)]) if s.words >= MIN_WORDS]
    bags = [set(_WORDS.findall(s.text.lower())) for s in sents]
    g = nx.Graph()
    g.add_nodes_from(range(len(sents)))
    index: dict[str, list[int]] = {}
    for i, b in enumerate(bags):
        for w in b:
            index.setdefault(w, []).append(i)
    overlap: dict[tuple[int, int], int] = {}
    for ids in index.values():
        if len(ids) > 200:  # a word in most sentences links them all equally
            continue
        for a in range(len(ids)):
            for b in ids[a + 1 :]:
                overlap[(ids[a], b)] = overlap.get((ids[a], b), 0) + 1
    for (a, b), n in overlap.items():
        denom = math.log(len(bags[a]) + 1) + math.log(len(bags[b]) + 1)
        g.add_edge(a, b, weight=n / denom)
    rank = nx.pagerank(g, weight="weight") if g.number_of_edges() else {i: 0 for i in g}
    chosen, used = [], 0
    for i in sorted(rank, key=lambda i: -rank[i]):
        if used >= words:
            break
        chosen.append(i)
        used += sents[i].words
    return " ".join(sents[i].text for i in sorted(chosen))


def strip(text: str) -> str:
    return re.sub(r"\[\d+\]", "", text)


def unnamed(text: str) -> str:
    """The transcript without its anonymised speakers' labels ("Grad E: "), which kgmem's
    excerpts leave out (`summarize.speaker_label`)."""
    lines = []
    for line in text.split("\n"):
        m = SPEAKER.match(line)
        lines.append(line[m.end():] if m and not speaker_label(m.group(1)) else line)
    return "\n".join(lines)


def truncate(backend, text: str, query: str | None, words: int, no_repeat: bool = False,
             drop_unnamed: bool = False) -> tuple[str, int]:
    """The meeting's first tokens and the instruction kgmem's own call carries: a whole
    text's (query None: a general query, which kgmem answers as a whole-meeting summary)
    or one about the query. `drop_unnamed`: the transcript without its anonymised speakers'
    labels (the kind of text, "meeting", still counted from the labelled text)."""
    out_tokens = int(words * 1.6) + 40
    room = window_of(backend) - out_tokens - backend.count_tokens(SYSTEM) - 120
    head = backend.head(text, room)
    labelled = head
    if drop_unnamed:
        head = backend.head(unnamed(text), room)
    if query is None:
        kind = kind_of(split([Chunk(0, "d", 0, 0, len(labelled), labelled, 0)]))
        task, guide = f"of the whole {kind}", " " + WHOLE_GUIDE.format(kind=kind) if WHOLE_GUIDE else ""
    else:
        task, guide = f"about: {query}", ""
    prompt = f"Text:\n{head}\n\nWrite a summary {task}, in about {words} words.{guide}"
    r = backend.chat([{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}], out_tokens,
                     no_repeat=no_repeat)
    return r.text.strip(), r.prompt_tokens


def paired_difference(diffs: list[float], resamples: int = 10_000, seed: int = 0) -> dict:
    """Mean of per-query differences with a paired bootstrap 95% interval: how sure a
    difference between two methods on the same queries is."""
    rng = random.Random(seed)
    n = len(diffs)
    means = sorted(sum(rng.choice(diffs) for _ in range(n)) / n for _ in range(resamples))
    return {"mean": sum(diffs) / n, "ci95": [means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]],
            "wins": sum(d > 0 for d in diffs), "losses": sum(d < 0 for d in diffs), "n": n}


def turn_recall(doc: dict, spans: list[list[int]], chunks: dict[int, Chunk], read: list[int]) -> float:
    turns = doc["turns"]
    wanted = [i for a, b in spans for i in range(a, min(b, len(turns) - 1) + 1)]
    if not wanted:
        return 0.0
    got = [(chunks[c].start, chunks[c].end) for c in read if c in chunks]
    hit = sum(1 for i in wanted if any(s < turns[i][1] and turns[i][0] < e for s, e in got))
    return hit / len(wanted)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--store", default="/tmp/kgmem-qmsum")
    ap.add_argument("--llm", default=None, help="llama (or another spec): also run kgmem + truncate with it")
    ap.add_argument("--general-stride", type=int, default=1)
    ap.add_argument("--general-offset", type=int, default=0, help="start the general stride here")
    ap.add_argument("--specific-stride", type=int, default=1, help="0: no specific queries")
    ap.add_argument("--same-meetings", action="store_true", help="specific queries only of the sampled meetings")
    ap.add_argument("--methods", help="comma-separated subset of the methods (default: all)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "summaries.json"))
    args = ap.parse_args()
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    docs = {json.loads(line)["id"]: json.loads(line) for line in open(Path(args.data) / "documents.jsonl")}
    queries = [json.loads(line) for line in open(Path(args.data) / "queries.jsonl")]
    mem = Memory(args.store)
    t0 = time.perf_counter()
    mem.ingest([{"id": d["id"], "title": d["title"], "text": d["text"]} for d in docs.values()])
    ingest_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    mem.communities()
    cluster_s = time.perf_counter() - t0
    general = [q for q in queries if q["kind"] == "general"][args.general_offset :: args.general_stride]
    specific = [q for q in queries if q["kind"] == "specific"]
    if args.same_meetings:  # the sampled meetings' own specific queries: truncate's prompt is cached
        sampled = {q["doc_id"] for q in general}
        specific = [q for q in specific if q["doc_id"] in sampled]
    specific = specific[:: args.specific_stride] if args.specific_stride else []
    # truncate-dry-unnamed (asked for by --methods only): truncate-dry over the transcript
    # without its anonymised speakers' labels, as kgmem's excerpts show them.
    methods = ["kgmem-extractive", "textrank"] + (["kgmem", "truncate", "truncate-dry"] if args.llm else [])
    known = methods + (["truncate-dry-unnamed"] if args.llm else [])
    if args.methods:
        unknown = set(args.methods.split(",")) - set(known)
        if unknown:
            ap.error(f"unknown method(s) {', '.join(sorted(unknown))}; with this --llm: {', '.join(known)}")
        methods = [m for m in known if m in args.methods.split(",")]
    backend = mem.backend(args.llm) if args.llm else None
    rows = []
    order = sorted([("general", q) for q in general] + [("specific", q) for q in specific],
                   key=lambda kq: (kq[1]["doc_id"], kq[0] != "general"))  # one meeting at a time
    done = 0
    for _doc_id, group in itertools.groupby(order, key=lambda kq: kq[1]["doc_id"]):
        group = list(group)
        mine = [{"id": q["id"], "kind": kind, "words": len(q["answer"].split()), "scores": {}, "seconds": {},
                 "tokens": {}, "texts": {}} for kind, q in group]
        for m in methods:  # one method at a time over a meeting: the model's prompt cache serves truncate
            for (kind, q), row in zip(group, mine):
                doc, words = docs[q["doc_id"]], row["words"]
                t = time.perf_counter()
                if m == "textrank":
                    text, tokens = textrank(doc["text"], words), 0
                elif m.startswith("truncate"):
                    text, tokens = truncate(backend, doc["text"], None if kind == "general" else q["query"], words,
                                            no_repeat=m.startswith("truncate-dry"),
                                            drop_unnamed=m.endswith("-unnamed"))
                else:
                    s = mem.summarize(q["doc_id"], query=None if kind == "general" else q["query"], words=words,
                                      llm="extractive" if m == "kgmem-extractive" else args.llm)
                    text, tokens = strip(s.text), s.tokens_read
                    if kind == "specific" and m == "kgmem-extractive":
                        row["turn_recall"] = turn_recall(doc, q["turn_spans"], mem.passages.chunks(s.read), s.read)
                row["seconds"][m] = time.perf_counter() - t
                row["tokens"][m] = tokens
                row["scores"][m] = {k: v.fmeasure * 100 for k, v in scorer.score(q["answer"], text).items()}
                row["texts"][m] = text
        for (kind, q), row in zip(group, mine):
            done += 1
            rows.append(row)
            print(f"{kind} {done}/{len(order)} {q['id']}: " + "  ".join(
                f"{m} L={row['scores'][m]['rougeL']:.1f}" for m in methods), file=sys.stderr, flush=True)
    summary: dict = {"ingest_s": ingest_s, "cluster_s": cluster_s, "llm": backend.name if backend else None,
                     "general": len(general), "specific": len(specific), "results": {}}
    print("\n| queries | method | ROUGE-1 | ROUGE-2 | ROUGE-L | s / summary | LLM tokens read |")
    print("|---|---|---|---|---|---|---|")
    for kind in ("general", "specific"):
        sel = [r for r in rows if r["kind"] == kind]
        if not sel:
            continue
        for m in methods:
            agg = {k: sum(r["scores"][m][k] for r in sel) / len(sel) for k in ("rouge1", "rouge2", "rougeL")}
            agg["seconds"] = sum(r["seconds"][m] for r in sel) / len(sel)
            agg["tokens"] = sum(r["tokens"][m] for r in sel) / len(sel)
            summary["results"].setdefault(kind, {})[m] = agg
            print(f"| {kind} ({len(sel)}) | {m} | {agg['rouge1']:.1f} | {agg['rouge2']:.1f} | {agg['rougeL']:.1f} "
                  f"| {agg['seconds']:.1f} | {agg['tokens']:.0f} |")
        if kind == "specific" and "kgmem-extractive" in methods:
            summary["results"][kind]["turn_recall"] = sum(r["turn_recall"] for r in sel) / len(sel) * 100
            recall = summary["results"][kind]["turn_recall"]
            print(f"\nrelevant turns among the passages read (specific): {recall:.1f}%")
    for kind in ("general", "specific"):
        sel = [r for r in rows if r["kind"] == kind]
        for ours, ref in (("kgmem", "truncate"), ("kgmem", "truncate-dry"), ("kgmem", "textrank"),
                          ("kgmem-extractive", "textrank")):
            if sel and ours in methods and ref in methods:
                paired = paired_difference([r["scores"][ours]["rougeL"] - r["scores"][ref]["rougeL"] for r in sel])
                summary["results"][kind][f"{ours} - {ref}"] = paired
                print(f"{kind}: ROUGE-L {ours} - {ref}: {paired['mean']:+.2f} (95% CI {paired['ci95'][0]:+.2f} to "
                      f"{paired['ci95'][1]:+.2f}; {paired['wins']} wins, {paired['losses']} losses)")
    summary["per_query"] = rows
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
