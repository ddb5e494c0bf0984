"""One function per benchmark page (docs/benchmarks/), and the README's headline table."""

from __future__ import annotations

import random
from typing import Any, Callable

from report_common import Results, num, page, reproduce, signed, table, tried
from report_answers import hop_facts, runtimes
from report_speed import headline as _speed_headline
from report_speed import memory, scale, service, speed

SETS = {"musique": "MuSiQue", "hotpotqa": "HotpotQA"}


def paired(a: dict[str, float], b: dict[str, float], seed: int = 0, rounds: int = 2000) -> dict[str, Any]:
    """Mean of a − b over the ids both have, a paired bootstrap 95% interval, wins–losses."""
    ids = sorted(set(a) & set(b))
    diffs = [a[i] - b[i] for i in ids]
    rng = random.Random(seed)
    means = sorted(sum(rng.choice(diffs) for _ in diffs) / len(diffs) for _ in range(rounds))
    return {
        "mean": sum(diffs) / len(diffs),
        "lo": means[int(0.025 * rounds)],
        "hi": means[int(0.975 * rounds) - 1],
        "won": sum(d > 0 for d in diffs),
        "lost": sum(d < 0 for d in diffs),
        "n": len(ids),
    }


def interval(p: dict[str, Any]) -> str:
    return f"{signed(p['mean'])} ({signed(p['lo'])} to {signed(p['hi'])}), {p['won']}–{p['lost']}"


# ---------------------------------------------------------------------------------------------- retrieval
FUSION_SETS = {"musique": "MuSiQue", "hotpotqa": "HotpotQA", "pydocs": "Python docs", "qmsum": "QMSum meetings"}
FUSION_SYSTEMS = [("dense", "dense"), ("lexical", "BM25"), ("graph", "walk"), ("fixed", "fixed votes"),
                  ("fixed + guard", "fixed + guard"), ("adaptive", "adaptive"),
                  ("adaptive + guard (auto)", "**adaptive + guard (`auto`)**")]


def fusion_table(r: Results, compact: bool = False) -> str:
    """R@2 / R@5 / R@10 of each ranker and fusion on every set of eval_fusion.py (same run)."""
    f = "fusion.json"
    systems = [s for s in FUSION_SYSTEMS if not compact or s[0] in ("dense", "lexical", "graph", "fixed",
                                                                   "adaptive + guard (auto)")]
    rows = []
    for key, name in FUSION_SETS.items():
        sysres = r(f, "sets", key, "systems")
        best = max(sysres[s]["R@5"] for s in ("dense", "lexical", "graph"))
        cells = [name]
        for s, _ in systems:
            v = sysres[s]
            cell = " / ".join(num(v[f"R@{k}"]) for k in (2, 5, 10))
            cells.append(cell)
        auto = sysres["adaptive + guard (auto)"]["R@5"]
        cells.append(f"{signed(auto - best)}")
        rows.append(cells)
    return table(["set (R@2 / R@5 / R@10)"] + [label for _, label in systems] + ["`auto` R@5 − best single"], rows)


def fusion_section(r: Results) -> str:
    f = "fusion.json"
    votes = []
    for key, name in FUSION_SETS.items():
        s = r(f, "sets", key)
        fu = s["fusion"]
        votes.append([name, num(s["chunks"], 0),
                      " / ".join(f"{fu['strength'][x]:.2f}" for x in ("dense", "lexical", "graph")),
                      " / ".join(f"{fu['weights'][x]:g}" for x in ("dense", "lexical", "graph")),
                      " / ".join(str(fu["k"][x]) for x in ("dense", "lexical", "graph")),
                      f"{num(s['measure_seconds'])} s of {num(s['ingest_seconds'])} s ({100 * s['measure_share']:.1f}%)"])
    return (
        "## Fusion that fits the corpus\n\n"
        "Every ranker alone, fixed votes and the votes each store measured on its own pseudo-questions, with "
        "and without the per-question guard; fresh stores, one run "
        f"({r(f, 'machine', 'cpu')}). MuSiQue and HotpotQA: recall of the gold documents; Python docs: a chunk "
        "of the right page holding the answer's phrase; QMSum: recall of the chunks over the relevant turns "
        "among the meeting's own first k.\n\n" + fusion_table(r) + "\n\n"
        "What each store measured (MRR@10 on its pseudo-questions; dense / BM25 / walk), the votes and RRF "
        "constants it took, and what the measurement added to the ingest:\n\n"
        + table(["set", "chunks", "pseudo-question MRR", "votes", "RRF k", "measurement"], votes) + "\n\n"
        "Pseudo-questions copy their passage's words, so they flatter BM25 everywhere; the bias measured on "
        "the Wikipedia sets is taken out. They cannot tell Python's docs, where BM25 really leads, from "
        "QMSum's meetings, where only the copied words let it lead (real queries there paraphrase): the least "
        "vote (a quarter) bounds what that costs on QMSum, and it is reported, not hidden.\n"
    )


def retrieval(r: Results) -> str:
    modes = [
        ("reference-dense", "reference: exact dense (MiniLM)"),
        ("auto", "**`auto`** (the default)"),
        ("graph", "`graph` (the walk alone)"),
        ("lexical", "`lexical` (BM25)"),
        ("hybrid", "`hybrid` (dense + BM25)"),
        ("dense", "`dense` (kgmem's index)"),
    ]
    rows = []
    for key, name in SETS.items():
        f = f"retrieval_{key}.json"
        ref = r(f, "modes", "reference-dense", "recall", "R@5")
        label = f"{name} ({r(f, 'questions')} q, {num(r(f, 'documents'))} passages)"
        for i, (mode, desc) in enumerate(modes):
            rec = r(f, "modes", mode, "recall")
            gain = "" if mode == "reference-dense" else f" ({signed(rec['R@5'] - ref)})"
            rows.append([label if i == 0 else "", desc, num(rec["R@2"]), num(rec["R@5"]) + gain, num(rec["R@10"])])
    main = table(["set", "mode", "R@2", "R@5 (vs reference)", "R@10"], rows)
    prof = []
    for suffix, name in [
        ("", "default (MiniLM)"),
        ("_fp32", "default, float32 products"),
        ("_fast", "`fast` (int8)"),
        ("_static", "`static`"),
        ("_fastest", "`fastest`"),
    ]:
        cells = [name]
        for key in SETS:
            m = r(f"retrieval_{key}{suffix}.json", "modes")
            cells += [num(m["auto"]["recall"]["R@5"]), num(m["dense"]["recall"]["R@5"])]
        prof.append(cells)
    profiles = table(["profile", "MuSiQue `auto` R@5", "its `dense`", "HotpotQA `auto` R@5", "its `dense`"], prof)
    d = "docs.json"
    docs_rows = []
    for mode in ("dense", "lexical", "graph", "auto"):
        ours, ref = (
            r(d, "readers", "main content", "modes", mode, "hit"),
            r(d, "readers", "all text", "modes", mode, "hit"),
        )
        docs_rows.append(
            [
                f"`{mode}`",
                " / ".join(num(ours[k]) for k in ("@1", "@3", "@5")),
                " / ".join(num(ref[k]) for k in ("@1", "@3", "@5")),
            ]
        )
    docs = table(
        ["mode", "hit@1 / @3 / @5, main content (kgmem's reader)", "all text of the page (reference)"], docs_rows
    )
    return page(
        "Retrieval",
        "Recall@k of the supporting passages on the shared multi-hop sets (the bench protocol: every mode "
        'in one run beside exact dense search over "title\\ntext" with the same embedder), and hit@k on '
        "technical documentation.",
        fusion_section(r),
        "## Multi-hop questions, by mode\n\nFrom `eval_retrieval.py`'s last run (before the adaptive votes and "
        "the guard: `auto` here is the fixed votes).\n\n" + main,
        "`auto` fuses dense, BM25 and the graph walk by reciprocal rank; the walk's constant is 25, the "
        "others' 60, so its first ranks count more.",
        "## By profile\n\nThe same protocol with each profile's store built fresh "
        "(`--profile`); the reference is unchanged.\n\n" + profiles,
        f"## Technical documents\n\n{r(d, 'pages')} HTML pages of Python 3.11's documentation "
        f"(`benchmarks/pydocs/`, PSF licence) and {r(d, 'questions')} questions written for them; a hit is "
        "a chunk of the right page holding the answer's phrase. On this text BM25 alone is the best "
        "ranking (its words are identifiers) and `auto` is below it.\n\n" + docs,
        reproduce(
            "kgmem eval ../shared/bench/musique            # or: python benchmarks/eval_retrieval.py SET",
            "python benchmarks/eval_retrieval.py ../shared/bench/hotpotqa --profile static",
            "python benchmarks/eval_docs.py",
            "python benchmarks/eval_fusion.py              # the fusion table: four sets, fresh stores",
        ),
        tried(r, "retrieval"),
    )


# ---------------------------------------------------------------------------------------------- answers
def docs_answers(r: Results) -> str:
    """Useful answers on Python's docs, the phrase form against the form that follows the question."""
    f = "docs_answers.json"
    rows = []
    for llm, res in r(f, "backends").items():
        for form in ("phrase", "follows the question"):
            s = res[form]
            label = "always a phrase (before)" if form == "phrase" else "**follows the question**"
            rows.append([f"`{llm}`", label, f"{s['useful']} of {s['questions']} ({num(s['useful_pct'])}%)",
                         num(s["median_words"], 0), s["declined"], num(s["seconds_per_answer"])])
    return (
        "## Answers a person can use (Python's docs)\n\n"
        "The 46 questions of `benchmarks/pydocs/` asked of a store of its 21 pages, as a newcomer asks them. "
        "An answer is useful when it says what a right answer must say (`benchmarks/pydocs/answers.json`, "
        "written from the pages before any answer was seen). Each backend answers in one run with the "
        "answer always a phrase, and with the form following the question: "
        f"{r(f, 'backends', next(iter(r(f, 'backends'))), 'explanation questions')} of the 46 ask how, why or "
        "what-does, and get at most 60 words.\n\n"
        + table(["backend", "answer form", "useful", "median words", "declined", "s / answer"], rows)
    )


def answers(r: Results) -> str:
    f = "answers_prefill.json"
    rows = []
    for key, name in SETS.items():
        run, cmp_ = r(f, key, "run"), r(f, key, "compared")
        k = run["kgmem"]
        lo, hi = cmp_["bootstrap95"]
        rows.append(
            [
                f"{name} ({r(f, key, 'run', 'limit')})",
                f"**{num(k['F1'])}** (EM {num(k['EM'])})",
                num(cmp_["naive_f1"]),
                f"{signed(cmp_['minus_naive'])} ({signed(lo)} to {signed(hi)}), {cmp_['won']}–{cmp_['lost']}",
                num(k["seconds_p50"]),
                num(k["first_token_p50"]),
                k["declined"],
            ]
        )
    model = table(
        [
            "set (questions)",
            "kgmem F1",
            "naive RAG F1",
            "difference (paired 95%), won–lost",
            "s / answer (p50)",
            "first token (s, p50)",
            "declined",
        ],
        rows,
    )
    rk = "answers_reader_kinds.json"
    reader_rows = []
    for key, name in SETS.items():
        run = r(rk, f"{key}/extractive@2048")
        reader_rows.append(
            [
                name,
                f"**{num(run['kgmem']['F1'])}** (EM {num(run['kgmem']['EM'])})",
                f"{num(run['naive']['F1'])} (EM {num(run['naive']['EM'])})",
                num(run["kgmem"]["seconds_p50"], 2),
            ]
        )
    reader = table(
        ["set", "kgmem's no-LLM reader F1", "the reader over the dense top 5", "s / answer (p50)"], reader_rows
    )
    data = r(f, "data", "run", "kgmem")
    run = r(f, "musique", "run", "kgmem")
    fresh = run["prompt_tokens_mean"] - run["cached_tokens_mean"]
    mc = "answers_model_choice.json"
    choice = table(
        ["model", "MuSiQue F1 (30)", "HotpotQA F1 (30)", "first token (s)"],
        [
            [
                "Qwen2.5-Coder-0.5B-Instruct",
                num(r(mc, "musique/llama:qwen2.5-coder-0.5b@1024", "kgmem", "F1")),
                num(r(mc, "hotpotqa/llama:qwen2.5-coder-0.5b@1024", "kgmem", "F1")),
                num(r(mc, "musique/llama:qwen2.5-coder-0.5b@1024", "kgmem", "first_token_p50")),
            ],
            [
                "Qwen2.5-Coder-1.5B-Instruct (the default), same 30",
                num(r("answers_musique.json", "llama@1024", "kgmem", "F1")),
                num(r("answers_hotpotqa.json", "llama@1024", "kgmem", "F1")),
                num(r("answers_musique.json", "llama@1024", "kgmem", "first_token_p50")),
            ],
        ],
    )
    return page(
        "Answers",
        "Token F1 and exact match of short answers on the shared sets, with Qwen2.5-Coder-1.5B-Instruct "
        "(Q4_K_M, llama.cpp in-process, 2 threads, a 1,024-token window). Naive RAG is the same model, in the "
        "same run, given the dense top 5 passages and a plain prompt.",
        "## With the local model\n\n" + model,
        f"`make demo`'s 15 questions over `data/` (MuSiQue's 2- to 4-hop questions): F1 {num(data['F1'])} "
        f"(EM {num(data['EM'])}), {num(data['seconds_p50'])} s an answer. The first token is the model reading "
        f"~{num(fresh, 0)} "
        "fresh prompt tokens on two cores.",
        docs_answers(r),
        hop_facts(r),
        runtimes(r),
        "## Without a model\n\n`--llm extractive`: the reader picks a span of the kind the question asks for "
        "(a person, a place, a date …) from the packed passages, with a 2,048-token budget; every question of "
        "each set.\n\n" + reader,
        "## Which model\n\nThe instruct GGUFs of at most 2B parameters on PyPI, on the same 30 questions:\n\n"
        + choice,
        reproduce(
            "python benchmarks/eval_answers.py ../shared/bench/musique --llm llama --budgets 1024",
            "python benchmarks/eval_answers.py ../shared/bench/hotpotqa --limit 100 --llm llama --budgets 1024",
            "python benchmarks/eval_answers.py ../shared/bench/musique --llm extractive --budgets 2048",
            "python benchmarks/eval_docs_answers.py            # useful answers on Python's docs",
            "python benchmarks/eval_hop_facts.py ../shared/bench/musique --limit 40   # bridge facts, yes/no, declines",
            "python benchmarks/eval_hop_facts.py ../shared/bench/hotpotqa --limit 60",
        ),
        tried(r, "answers"),
    )


# ---------------------------------------------------------------------------------------------- conversations
def conversations(r: Results) -> str:
    f = "conversation_locomo.json"
    cats = ["overall", "single-hop", "multi-hop", "temporal", "open-domain"]
    rec = r(f, "recall")
    rows = [
        [f"**{c}**" if c == "overall" else c, rec["kgmem"][c]["n"]]
        + [num(rec[m][c][k]) for m in ("kgmem", "dense", "bm25") for k in ("R@5", "R@10")]
        for c in cats
    ]
    recall = table(
        ["category", "n", "kgmem R@5", "kgmem R@10", "dense R@5", "dense R@10", "BM25 R@5", "BM25 R@10"], rows
    )
    f1 = r(f, "answers", "f1")
    ans_rows = [[c, f1[c]["n"], num(f1[c]["kgmem"]), num(f1[c]["naive"])] for c in cats]
    dec = r(f, "answers", "declined")
    ans_rows.append(["unanswerable declined (%)", dec["n"], f"**{num(dec['kgmem'])}**", num(dec["naive"])])
    ans = table(["category", "n", "kgmem F1", "naive RAG F1"], ans_rows)
    rd = "conversation_locomo_reader_dates.json"
    rf1, rdec = r(rd, "answers", "f1"), r(rd, "answers", "declined")
    return page(
        "Conversations",
        f"The bench protocol on the 2 LoCoMo conversations in `../shared/bench/locomo`: {num(r(f, 'turns'))} turns "
        "in dated sessions, fed in order, then the questions. Recall@k is over gold turn ids; the references "
        "(dense with the same embedder, BM25 over FTS5) index single turns in the same run.",
        "## Recall\n\n" + recall,
        f"Remembering costs {num(r(f, 'seconds_per_turn') * 1000, 0)} ms a turn and **{r(f, 'llm_calls_at_write')} "
        f"LLM calls**; {num(r(f, 'store_mb_per_1000_turns'))} MB per 1,000 turns; a recall takes "
        f"{num(r(f, 'recall_ms_p50'), 0)} ms (p50).",
        f"## Answers\n\nQwen2.5-1.5B on {r(f, 'answers', 'questions')} questions taken at an even stride plus every "
        "unanswerable question; naive RAG is the same model given the dense top 10 turns. F1 over the "
        "answerable ones; declines over the unanswerable ones.\n\n" + ans,
        f"Without a model (`--llm extractive`): F1 {num(rf1['overall']['kgmem'])} (temporal "
        f"{num(rf1['temporal']['kgmem'])}), {num(rdec['kgmem'])}% of the unanswerable declined; the same reader "
        f"over the dense top 10: F1 {num(rf1['overall']['naive'])}.",
        reproduce(
            "python benchmarks/eval_conversation.py ../shared/bench/locomo --llm llama --answer-limit 40 "
            "--unanswerable"
        ),
        tried(r, "conversations"),
    )


# ---------------------------------------------------------------------------------------------- summaries
def _rouge_l(per_query: list[dict[str, Any]], method: str) -> dict[str, float]:
    return {q["id"]: q["scores"][method]["rougeL"] for q in per_query if method in q["scores"]}


def summaries(r: Results) -> str:
    sp, gd, dry = "summaries_speakers.json", "summaries_guide.json", "summaries_dry.json"
    ours_g = r(sp, "general", "results", "general", "kgmem")
    refs_g = r(sp, "references", "results", "general")
    guide_g = r(gd, "results", "general")
    ours_s = r(sp, "specific", "results", "specific", "kgmem")
    refs_s = r(dry, "results", "specific")

    def row(kind: str, name: str, m: dict[str, float]) -> list[str]:
        return [
            kind,
            name,
            num(m["rouge1"]),
            num(m["rouge2"]),
            num(m["rougeL"]),
            num(m["seconds"]),
            num(m["tokens"], 0),
        ]

    rows = [
        row(
            f"general ({r(sp, 'general', 'general')})", "**kgmem** (the model over graph-selected sentences)", ours_g
        ),
        row("", "truncate (the model over the meeting's first tokens)", refs_g["truncate"]),
        row("", "truncate, no-repeat sampler", refs_g["truncate-dry"]),
        row("", "kgmem, no model", guide_g["kgmem-extractive"]),
        row("", "TextRank, no model", guide_g["textrank"]),
        row(f"specific ({r(sp, 'specific', 'specific')})", "**kgmem**", ours_s),
        row("", "truncate", refs_s["truncate"]),
        row("", "truncate, no-repeat sampler", refs_s["truncate-dry"]),
        row("", "kgmem, no model", refs_s["kgmem-extractive"]),
        row("", "TextRank, no model", refs_s["textrank"]),
    ]
    main = table(["queries", "method", "ROUGE-1", "ROUGE-2", "ROUGE-L", "s / summary", "tokens the model read"], rows)
    kg = _rouge_l(r(sp, "general", "per_query"), "kgmem")
    ks = _rouge_l(r(sp, "specific", "per_query"), "kgmem")
    ref_q = r(sp, "references", "per_query")
    dry_q = r(dry, "per_query")
    pairs = table(
        ["queries", "kgmem − truncate", "kgmem − truncate, no-repeat", "kgmem − TextRank"],
        [
            [
                "general",
                interval(paired(kg, _rouge_l(ref_q, "truncate"))),
                interval(paired(kg, _rouge_l(ref_q, "truncate-dry"))),
                interval(paired(kg, _rouge_l(r(gd, "per_query"), "textrank"))),
            ],
            [
                "specific",
                interval(paired(ks, _rouge_l(dry_q, "truncate"))),
                interval(paired(ks, _rouge_l(dry_q, "truncate-dry"))),
                interval(paired(ks, _rouge_l(dry_q, "textrank"))),
            ],
        ],
    )
    ex = r("summaries_extractive_now.json", "results")
    extract = table(
        ["queries", "kgmem, no model ROUGE-L", "TextRank ROUGE-L"],
        [
            [
                f"general ({r('summaries_extractive_now.json', 'general')})",
                num(ex["general"]["kgmem-extractive"]["rougeL"]),
                num(ex["general"]["textrank"]["rougeL"]),
            ],
            [
                f"specific ({r('summaries_extractive_now.json', 'specific')})",
                num(ex["specific"]["kgmem-extractive"]["rougeL"]),
                num(ex["specific"]["textrank"]["rougeL"]),
            ],
        ],
    )
    return page(
        "Summaries",
        "ROUGE F1 (rouge-score, stemming) against QMSum's human-written summaries of 35 meetings (3k–20k words "
        'each): of the whole meeting ("general") and of what it says about a query ("specific"). Every '
        "method is given the human summary's length; the model is Qwen2.5-1.5B on 2 cores. *Truncate* is "
        "the same model given as much of the meeting's start as fits kgmem's 4,096-token calls; TextRank "
        "ranks the same cleaned sentences kgmem chooses from.",
        "## With the model\n\n" + main,
        "Paired differences in ROUGE-L over the same queries (mean, bootstrap 95% interval, queries won–lost), "
        "computed from the per-query scores in the results files:\n\n" + pairs,
        "## Without a model, every query\n\n" + extract,
        reproduce(
            "pip install -e '.[bench]'   # rouge-score",
            "python benchmarks/eval_summaries.py --llm llama --specific-stride 0 --methods kgmem",
            "python benchmarks/eval_summaries.py   # no model: kgmem and TextRank on every query",
        ),
        tried(r, "summaries"),
    )


def headline(r: Results) -> str:
    """The README's results table: one headline figure per area beside its same-run reference."""
    rows = []
    for key, name in FUSION_SETS.items():
        m = r("fusion.json", "sets", key, "systems")
        ref, label = (m["reference dense (protocol)"], "dense, protocol") if key in SETS else (None, "")
        best = max(("dense", "lexical", "graph"), key=lambda s: m[s]["R@5"])
        rows.append(
            [
                f"[Retrieval](docs/benchmarks/retrieval.md), {name}",
                "R@5, `auto`",
                f"**{num(m['adaptive + guard (auto)']['R@5'])}**",
                (f"{num(ref['R@5'])} ({label}); " if ref else "")
                + f"{num(m[best]['R@5'])} (best ranker alone: {dict(FUSION_SYSTEMS)[best]})",
            ]
        )
    for key, name in SETS.items():
        c = r("answers_prefill.json", key, "compared")
        rows.append(
            [
                f"[Answers](docs/benchmarks/answers.md), {name}",
                "F1, local 1.5B model",
                f"**{num(c['f1_after'])}**",
                f"{num(c['naive_f1'])} (naive RAG, same model)",
            ]
        )
    for llm, res in r("docs_answers.json", "backends").items():
        follows, phrase = res["follows the question"], res["phrase"]
        rows.append(
            [
                "[Answers](docs/benchmarks/answers.md), Python docs" if not rows[-1][0].endswith("docs") else "",
                f"useful answers, `{llm}`",
                f"**{follows['useful']} of {follows['questions']}** ({num(follows['median_words'], 0)} words)",
                f"{phrase['useful']} of {phrase['questions']} (the same backend, always a phrase)",
            ]
        )
    rec = r("conversation_locomo.json", "recall")
    rows.append(
        [
            "[Conversations](docs/benchmarks/conversations.md), LoCoMo",
            "R@10",
            f"**{num(rec['kgmem']['overall']['R@10'])}**",
            f"{num(rec['bm25']['overall']['R@10'])} (BM25)",
        ]
    )
    f1 = r("conversation_locomo.json", "answers", "f1", "overall")
    rows.append(["", "answer F1", f"**{num(f1['kgmem'])}**", f"{num(f1['naive'])} (naive RAG)"])
    g, t = (
        r("summaries_speakers.json", "general", "results", "general", "kgmem"),
        r("summaries_speakers.json", "references", "results", "general", "truncate-dry"),
    )
    rows.append(
        [
            "[Summaries](docs/benchmarks/summaries.md), QMSum",
            "ROUGE-L, whole meetings",
            f"**{num(g['rougeL'])}**",
            f"{num(t['rougeL'])} (the model over the meeting's start; within noise)",
        ]
    )
    rows += _speed_headline(r)
    return (table(["area", "measure", "kgmem", "same-run reference"], rows) + "\n\nRetrieval on four corpora "
            "of different shapes, same run, fresh stores (R@2 / R@5 / R@10; `auto` = the store's measured votes "
            "and the guard):\n\n" + fusion_table(r, compact=True))


PAGES_BY_NAME: dict[str, Callable[[Results], str]] = {
    "retrieval": retrieval,
    "answers": answers,
    "conversations": conversations,
    "summaries": summaries,
    "speed": speed,
    "memory": memory,
    "scale": scale,
    "service": service,
}
