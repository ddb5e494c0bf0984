"""Technical documentation as a new user has it: HTML pages, read and searched.

    .venv/bin/python benchmarks/eval_docs.py [--pages DIR] [--questions FILE]

The pages are 21 of Python 3.11's HTML documentation pages (the tutorial and four
HOWTOs, `benchmarks/pydocs/`); each of the 46 questions names its page and a phrase of
the passage that answers it. In one run, on fresh stores, two ways of reading HTML:
- "main content" (kgmem's reader): the page's main text as Markdown (trafilatura),
  sections and code blocks kept, chunks inside sections, code out of the graph;
- "all text" (the reference, kgmem's earlier reader): every text node of the page.
For each: ingest words/s, what is stored (chunks, navigation chunks, entities whose name
is code or punctuation), and per search mode the share of questions with the answering
passage in the top 1, 3 and 5 (`hit@k`: a chunk of the right page holding the phrase),
and page recall@k; then each ingest stage alone on the same texts, next to Wikipedia
passages (tokens per word, words/s). Writes benchmarks/results/docs.json.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kgmem import Config, Memory  # noqa: E402
from kgmem.pipelines import readers  # noqa: E402

KS = (1, 3, 5)
# Lines of a Sphinx page's frame, not its content.
NAVIGATION = ("Table of Contents", "Previous topic", "Next topic", "This Page", "Report a Bug", "Show Source",
              "Quick search", "Navigation")
# An entity name that is code or punctuation: brackets, operators, quotes, a dotted
# identifier, a URL, a line break, a pilcrow, surrounding blanks; or, but for a date, no letter.
CODE_NAME = re.compile(r"[()\[\]{}=<>\"`\\|;]|\w\.[A-Za-z_]\w|://|\n|\u00b6|^\s|\s$")
NO_LETTER = re.compile(r"^[^A-Za-z]*$")


def norm(text: str) -> str:
    return " ".join(text.split())


def run_reader(name: str, pages: list[Path], questions: list[dict], store: Path, profile: str = "default") -> dict:
    patch = mock.patch.object(readers, "_main_content", lambda html: "") if name == "all text" else mock.patch.object(
        readers, "_main_content", readers._main_content)
    with patch, Memory(store, Config.profile(profile)) as mem:
        t0 = time.perf_counter()
        report = mem.ingest(pages)
        seconds = time.perf_counter() - t0
        assert report.added == len(pages) and not report.failed, report
        conn = mem.passages.sql.conn
        words = sum(len(t.split()) for (t,) in conn.execute("SELECT text FROM documents"))
        chunks = [t for (t,) in conn.execute("SELECT text FROM chunks")]
        names = conn.execute("SELECT name, label FROM entities").fetchall()
        out = {
            "ingest": {"seconds": round(seconds, 2), "words": words, "words_per_s": round(words / seconds, 1)},
            "stored": {
                "chunks": len(chunks),
                "navigation_chunks": sum(1 for t in chunks if any(n in t for n in NAVIGATION)),
                "entities": len(names),
                # identifiers are entities on purpose (label CODE: graph/extract.py); broken names are not
                "code_or_punctuation_entities": sum(1 for n, label in names if label != "CODE" and (
                    CODE_NAME.search(n) or (label != "DATE" and NO_LETTER.match(n)))),
                "identifier_entities": sum(1 for _, label in names if label == "CODE"),
                "relations": conn.execute("SELECT count(*) FROM relations WHERE kind != 'cooc'").fetchone()[0],
            },
            "modes": {},
        }
        for mode in ("dense", "lexical", "graph", "auto"):
            hit = {k: 0 for k in KS}
            page = {k: 0 for k in KS}
            t0 = time.perf_counter()
            for q in questions:
                hits = mem.search(q["question"], k=max(KS) * 3, mode=mode)
                right = [Path(h.doc_id).name == q["page"] and q["evidence"] in norm(h.text) for h in hits]
                docs = list(dict.fromkeys(Path(h.doc_id).name for h in hits))
                for k in KS:
                    hit[k] += any(right[:k])
                    page[k] += q["page"] in docs[:k]
            n = len(questions)
            out["modes"][mode] = {
                "hit": {f"@{k}": round(100 * hit[k] / n, 1) for k in KS},
                "page_recall": {f"@{k}": round(100 * page[k] / n, 1) for k in KS},
                "ms_per_question": round(1000 * (time.perf_counter() - t0) / n, 1),
            }
    return out


def stages(pages: list[Path], wiki: Path | None) -> dict:
    """Where ingest time goes, stage by stage on the same texts, with MiniLM tokens per
    word: on these pages and (when the shared set is there) 600 Wikipedia passages."""
    from kgmem.config import Config
    from kgmem.graph.extract import shared_extractor
    from kgmem.memory.embedders import shared_embedder
    from kgmem.memory.passages import chunk_document, embedding_text
    from kgmem.memory.store import Document
    from kgmem.pipelines.prepare import graph_texts

    cfg = Config()
    emb, ex = shared_embedder(cfg.embedder, threads=cfg.threads), shared_extractor(cfg.spacy_model)
    emb.embed(["warm up"])
    ex.extract(["Warm up."])

    def measure(docs: list, read_s: float | None) -> dict:
        t0 = time.perf_counter()
        chunks = [chunk_document(d, emb, cfg) for d in docs]
        t_chunk = time.perf_counter() - t0
        texts = [embedding_text(d.title, c.text, c.heading) for d, cs in zip(docs, chunks) for c in cs]
        tokens = sum(len(o) for o in emb.token_offsets(texts))
        t0 = time.perf_counter()
        emb.embed(texts)
        t_embed = time.perf_counter() - t0
        t0 = time.perf_counter()
        ex.extract(graph_texts(docs, chunks))
        t_spacy = time.perf_counter() - t0
        words = sum(len(d.text.split()) for d in docs)
        out = {"words": words, "tokens_per_word": round(tokens / words, 2),
               "seconds": {"read": round(read_s, 2) if read_s is not None else None, "chunk": round(t_chunk, 2),
                           "embed": round(t_embed, 2), "spacy": round(t_spacy, 2)},
               "embed_words_per_s": round(words / t_embed), "embed_tokens_per_s": round(tokens / t_embed),
               "spacy_words_per_s": round(words / t_spacy)}
        return out

    t0 = time.perf_counter()
    docs = [readers.read_html(p, readers.ReaderOptions(), []) for p in pages]
    result = {"pages": measure(docs, time.perf_counter() - t0)}
    if wiki is not None and wiki.exists():
        recs = [json.loads(line) for line in wiki.open(encoding="utf-8")][:600]
        result["wikipedia_600"] = measure([Document(id=r["id"], title=r["title"], text=r["text"]) for r in recs], None)
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", default=str(ROOT / "benchmarks" / "pydocs" / "pages"))
    ap.add_argument("--questions", default=str(ROOT / "benchmarks" / "pydocs" / "questions.jsonl"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "docs.json"))
    ap.add_argument("--wiki", default=str(ROOT.parent / "shared" / "bench" / "musique" / "corpus.jsonl"),
                    help="Wikipedia passages to compare the cost per word with (the first 600)")
    ap.add_argument("--profiles", help="instead: kgmem's reader under each of these profiles (e.g. default,static), "
                    "written to results/docs_profiles.json")
    args = ap.parse_args()
    pages = sorted(Path(args.pages).glob("*.html"))
    questions = [json.loads(line) for line in Path(args.questions).open(encoding="utf-8") if line.strip()]
    if args.profiles:
        by_profile = {}
        with tempfile.TemporaryDirectory(prefix="kgmem-docs-") as tmp:
            for name in args.profiles.split(","):
                by_profile[name] = run_reader("main content", pages, questions, Path(tmp) / name, name)
                modes = by_profile[name]["modes"]
                print(name, {m: r["hit"] for m, r in modes.items()}, flush=True)
        out = Path(args.out).with_name("docs_profiles.json")
        out.write_text(json.dumps({"pages": len(pages), "questions": len(questions), "profiles": by_profile}, indent=1))
        print(f"wrote {out}")
        return
    results = {"pages": len(pages), "questions": len(questions), "readers": {}}
    with tempfile.TemporaryDirectory(prefix="kgmem-docs-") as tmp:
        for i, name in enumerate(("main content", "all text")):
            results["readers"][name] = run_reader(name, pages, questions, Path(tmp) / f"store{i}")
    results["stages"] = stages(pages, Path(args.wiki))
    for name, r in results["readers"].items():
        print(f"{name}: {r['ingest']['words']:,} words at {r['ingest']['words_per_s']:,.0f} words/s; "
              f"{r['stored']['chunks']} chunks ({r['stored']['navigation_chunks']} navigation); "
              f"{r['stored']['entities']:,} entities "
              f"({r['stored']['code_or_punctuation_entities']:,} code or punctuation)")
        for mode, m in r["modes"].items():
            print(f"  {mode:<8} hit@1/3/5 {m['hit']['@1']:5.1f} {m['hit']['@3']:5.1f} {m['hit']['@5']:5.1f}   "
                  f"page R@1/3/5 {m['page_recall']['@1']:5.1f} {m['page_recall']['@3']:5.1f} "
                  f"{m['page_recall']['@5']:5.1f}   {m['ms_per_question']:.0f} ms")
    for name, st in results["stages"].items():
        print(f"{name}: {st['tokens_per_word']} tokens/word; embedder {st['embed_words_per_s']:,} words/s "
              f"({st['embed_tokens_per_s']:,} tokens/s); spaCy {st['spacy_words_per_s']:,} words/s; {st['seconds']}")
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
