"""The speed, memory, scale and service pages, and their rows of the README's table."""

from __future__ import annotations

from typing import Any

from report_common import Results, num, page, reproduce, table, tried


def speed(r: Results) -> str:
    f = "ingest_batches.json"
    s, w = r(f, "seconds"), r(f, "words_per_second")
    rows = [
        [
            "embedder alone (sentence-transformers over the same chunks; reference)",
            num(s["embed_alone"]),
            num(w["embed_alone"], 0),
        ],
        ["spaCy alone, the pipeline kgmem runs (reference)", num(s["spacy_alone"]), num(w["spacy_alone"], 0)],
        ["`ingest`, graph off", num(s["ingest_graph_off"]), num(w["ingest_graph_off"], 0)],
        ["**`ingest`, graph on (the default)**", num(s["ingest_graph_on"]), num(w["ingest_graph_on"], 0)],
        [
            "`ingest --workers 2`, graph on (start included)",
            num(s["ingest_graph_on_2_workers"]),
            num(w["ingest_graph_on_2_workers"], 0),
        ],
    ]
    on_ratio = r(f, "ratios", "ingest_graph_on / (embed_alone + spacy_alone)")
    ingest = table(
        [
            f"{r(f, 'docs')} MuSiQue passages ({num(r(f, 'words'))} words, {r(f, 'chunks')} chunks)",
            "seconds",
            "words/s",
        ],
        rows,
    )
    p = "ingest_profiles.json"
    ps, pw, up = r(p, "seconds"), r(p, "words_per_second"), r(p, "speed-up over default")
    prof_rows = []
    for key, name in [
        ("default", "default (MiniLM; bfloat16 products where the CPU has AMX)"),
        ("default-fp32", "default, float32 products"),
        ("fast", "`fast` (int8 ONNX Runtime)"),
        ("static", "`static`, one process"),
        ("static, 2 workers (start included)", "**`static`**, two workers (its default)"),
        ("fastest", "`fastest`, one process"),
        ("fastest, 2 workers (start included)", "**`fastest`**, two workers"),
    ]:
        label = key.replace(", 2 workers", ": ingest, 2 workers") if "workers" in key else f"{key}: ingest"
        prof_rows.append([name, num(ps[label]), num(pw[label], 0), f"{num(up[key], 2)}×"])
    refs = ", ".join(
        f"{k} {num(pw[k], 0)} words/s" for k in ("default: embedder alone", "spaCy alone", "static: embedder alone")
    )
    profiles = table(
        [f"all {num(r(p, 'docs'))} shared MuSiQue passages, graph on", "seconds", "words/s", "vs default"], prof_rows
    )
    q = "query_musique.json"
    query = table(
        ["per question, MuSiQue's 200 over its 3,722 passages", "p50 ms", "p95 ms"],
        [
            [
                "dense search alone (reference)",
                num(r(q, "dense_search", "p50_ms")),
                num(r(q, "dense_search", "p95_ms")),
            ],
            ["`auto` retrieval", num(r(q, "auto_retrieve", "p50_ms")), num(r(q, "auto_retrieve", "p95_ms"))],
            [
                "`auto` retrieval and packing",
                num(r(q, "auto_retrieve_pack", "p50_ms")),
                num(r(q, "auto_retrieve_pack", "p95_ms")),
            ],
        ],
    )
    b = "bf16.json"
    c = "cluster.json"
    eng = r(c, "engines")
    cluster_rows = [[name, num(v["seconds"]), num(v["words_per_s"], 0), num(v["chunks_per_s"]),
                     f"{num(v['vs_local'], 2)}×", num(v["peak_rss_mb"], 0)] for name, v in eng.items()]
    engines = table([f"{r(c, 'corpus')}, `kgmem ingest`, start-up included", "seconds", "words/s", "chunks/s",
                     "vs local", "peak RSS of the command (MB)"], cluster_rows)
    writer = table(["the writer alone, into a store of", "chunks/s (commits and the final save)",
                    "chunks/s (commits only)", "one Ray worker's chunks/s, times"],
                   [[f"{num(int(n), 0)} chunks", num(w["chunks_per_s"]), num(w["chunks_per_s_commits_only"]),
                     f"**{num(w['workers_it_absorbs'])}**"] for n, w in r(c, "writer").items()])
    return page(
        "Speed",
        "Ingest and query time on 2 CPU cores, no GPU, each beside its reference from the same run. The CPU "
        "varies between machines (AVX2 on some, AVX-512 and AMX on others); compare only within one table.",
        "## Ingest\n\n" + ingest,
        f"Graph on / (embedder alone + spaCy alone): **{num(on_ratio, 2)}** "
        f"— everything kgmem adds (chunking, graph extraction beyond the parse, SQLite, FTS5, FAISS) costs "
        f"{num((on_ratio - 1) * 100, 0)}% over the two models' own work. "
        "`--workers 2` does not pay with MiniLM on 2 cores: torch already uses both.",
        f"## Profiles\n\nOn {r(p, 'cpu')} (2 cores).\n\n" + profiles + f"\n\nReferences in the same run: {refs}. "
        "What each profile costs in recall: [Retrieval](retrieval.md#by-profile).",
        f"MiniLM in bfloat16 where the CPU has AMX ({r(b, 'cpu')}): {r(b, 'passages')} passages in "
        f"{num(r(b, 'passages_seconds', 'bf16_autocast'), 2)} s against {num(r(b, 'passages_seconds', 'fp32'), 2)} s "
        f"in float32; vectors at cosine ≥ {r(b, 'bf16_autocast_cosine_to_fp32', 'min')} to float32's, so one store "
        "takes either.",
        "## Queries\n\n" + query + "\n\nAt 100k and 1M chunks: [Scale](scale.md).",
        f"## On a Ray cluster\n\n`--engine ray` on this machine ({r(c, 'cpu')}, {r(c, 'cores')} cores): a local Ray "
        "cluster started by the command, its actors one thread each, this process writing; the local engine is the "
        "reference. With Ray the command's own memory is the driver's: results stream through it, the models live "
        "in the actors.\n\n" + engines + "\n\n" + r(c, "writer_note") + " " + same_recall(r)
        + "\n\nThe single writer's ceiling: chunks, vectors and facts computed once (as "
        "the actors return them) and committed again under new ids, into stores already that large "
        "(`scale_store.py`). The last column is how many workers the writer keeps up with: the cluster size up to "
        "which an ingest scales linearly.\n\n" + writer,
        reproduce(
            "python benchmarks/bench_ingest.py",
            "python benchmarks/bench_profiles.py",
            "python benchmarks/bench_query.py",
            "python benchmarks/bench_bf16.py",
            "python benchmarks/bench_cluster.py   # the Ray engine and the writer's ceiling",
            "python benchmarks/eval_cluster.py    # recall of a store built on a simulated 2-node cluster",
        ),
        tried(r, "speed"),
    )


def same_recall(r: Results) -> str:
    """What `eval_cluster.py` found: recall on a store the Ray engine built, beside the local one's."""
    e = "cluster_eval.json"
    modes = r(e, "recall")
    same = "the same recall on every mode" if r(e, "same") else "**different** recall"
    return (f"A store of the {r(e, 'dataset')} corpus built on {r(e, 'cluster')} gives {same} as one the local "
            f"engine built, same run (`kgmem eval`; `auto` R@2 / R@5 / R@10 "
            f"{' / '.join(num(modes['auto']['ray'][k]) for k in ('R@2', 'R@5', 'R@10'))} against "
            f"{' / '.join(num(modes['auto']['local'][k]) for k in ('R@2', 'R@5', 'R@10'))}).")


def memory(r: Results) -> str:
    f = "memory_final.json"
    c = r(f, "cases")
    rows = [
        [
            name,
            c[key]["input"],
            num(c[key]["peak_rss_mb"], 0),
            f"{num(c[key]['vs_baseline'], 2)}×",
            num(c[key]["chunks"], 0),
            "" if c[key]["growth_kb_per_chunk"] is None else num(c[key]["growth_kb_per_chunk"], 2),
        ]
        for key, name in [
            ("baseline", "baseline: the models' own footprint (reference)"),
            ("jsonl-1gb", "**a 1 GB JSONL**"),
            ("jsonl-1gb@reference", "a 1 GB JSONL, the code before the fixes"),
        ]
    ]
    main = table(
        ["case", "input", "peak RSS (MB)", "vs baseline", "chunks in the time", "RSS growth (KB / chunk)"], rows
    )
    into = r("memory_into.json", "300s", "cases")
    big = table(
        ["ingest into a store of 1M chunks", "RSS at open (MB)", "peak RSS (MB)", "vs baseline"],
        [
            [
                "**now**",
                num(into["jsonl-1gb-into"]["rss_open_mb"], 0),
                num(into["jsonl-1gb-into"]["peak_rss_mb"], 0),
                f"{num(into['jsonl-1gb-into']['vs_baseline'], 2)}×",
            ],
            [
                "the code before (reference)",
                num(into["jsonl-1gb-into@reference"]["rss_open_mb"], 0),
                num(into["jsonl-1gb-into@reference"]["peak_rss_mb"], 0),
                f"{num(into['jsonl-1gb-into@reference']['vs_baseline'], 2)}×",
            ],
        ],
    )
    return page(
        "Memory",
        "Peak RSS of a fresh ingest process, graph on, the defaults, ingesting for "
        f"{num(r(f, 'seconds_per_case'), 0)} s "
        "(all of a 1 GB file takes hours on 2 cores: what counts is that memory stays flat batch after batch). "
        "The same-run reference is the baseline: 100 KB ingested whole.",
        "## Large inputs\n\n" + main,
        "## A large store\n\nThe same JSONL ingested into a store that already holds a million chunks "
        "(`scale_store.py`), the writer's memory where a whole-corpus ingest ends:\n\n" + big,
        reproduce(
            "python benchmarks/bench_memory.py --seconds 600",
            "python benchmarks/bench_memory.py --cases jsonl-1gb-into --into STORE --seconds 300",
        ),
        tried(r, "memory"),
    )


def scale(r: Results) -> str:
    f = "scale.json"
    rows = []
    for st in r(f, "stores"):
        rows.append(
            [
                num(st["build"]["chunks"], 0),
                st["vector_layout"],
                num(st["open_s"], 2),
                num(st["dense_search"]["p50_ms"]),
                num(st["auto_retrieve"]["p50_ms"]),
                f"{num(st['auto_retrieve_pack']['p50_ms'])} / {num(st['auto_retrieve_pack']['p95_ms'])}",
                num(st["peak_rss_mb"], 0),
            ]
        )
    main = table(
        [
            "chunks",
            "vector index",
            "open (s)",
            "dense alone p50 ms (reference)",
            "`auto` retrieval p50 ms",
            "retrieval + packing p50 / p95 ms",
            "peak RSS (MB)",
        ],
        rows,
    )
    million = r(f, "stores")[-1]
    curve = table(
        ["nprobe", "recall@10 vs exact", "p50 ms"],
        [[c["nprobe"], num(c["recall@10"], 3), num(c["p50_ms"])] for c in million["ivf"]["curve"]],
    )
    prof_rows = []
    for name, fname in [("default (MiniLM)", "scale_100k_2026-12-06.json"), ("`static`", "scale_static.json")]:
        st = r(fname, "stores")[0]
        prof_rows.append(
            [
                name,
                num(st["dense_search"]["p50_ms"]),
                f"{num(st['auto_retrieve']['p50_ms'])} / {num(st['auto_retrieve']['p95_ms'])}",
                f"{num(st['auto_retrieve_pack']['p50_ms'], 0)} / {num(st['auto_retrieve_pack']['p95_ms'], 0)}",
                num(st["peak_rss_mb"], 0),
            ]
        )
    profiles = table(
        [
            "100k chunks, one day, one machine",
            "dense alone p50 ms",
            "`auto` retrieval p50 / p95 ms",
            "retrieval + hops + packing p50 / p95 ms",
            "peak RSS (MB)",
        ],
        prof_rows,
    )
    return page(
        "Scale",
        f"Synthetic stores of 10k, 100k and 1M chunks built from the shared MuSiQue passages "
        f"({r(f, 'source')}) by `scale_store.py`; {r(f, 'questions')} questions each. Exact vector search "
        "below 50,000 chunks, IVF above.",
        "## Query time\n\n" + main,
        f"Opening the 1M store: {num(million['start']['open_s'], 2)} s; its first question, asked at once, "
        f"{num(million['start']['first_context_at_once_s'], 2)} s to the packed context "
        f"({num(million['start']['first_context_after_warm_s'], 2)} s after `Memory.warm()`).",
        f"## IVF at 1M chunks\n\n{million['ivf']['nlist']:,} lists; the default nprobe is "
        f"{million['ivf']['default_nprobe']}.\n\n" + curve,
        "## By profile\n\nQuestions on a `static` store never load torch (the table embeds them).\n\n" + profiles,
        reproduce(
            "python benchmarks/bench_scale.py --sizes 10000,100000,1000000",
            "python benchmarks/bench_scale.py --sizes 100000 --profile static",
        ),
        tried(r, "scale"),
    )


def service(r: Results) -> str:
    s = "serve.json"
    ov = r(s, "overhead")
    over = table(
        ["one `search`, 200 times", "p50 ms", "p95 ms"],
        [
            ["the library, in process (reference)", num(ov["api"]["p50_ms"]), num(ov["api"]["p95_ms"])],
            ["over HTTP", num(ov["http"]["p50_ms"]), num(ov["http"]["p95_ms"])],
        ],
    )
    ep = r(s, "load", "endpoints")
    load = table(
        ["endpoint", "requests", "p50 ms", "p95 ms"],
        [[k, v["n"], num(v["p50_ms"]), num(v["p95_ms"])] for k, v in sorted(ep.items())],
    )
    k = "soak_kills.json"
    ref = r(k, "reference_without_kills")
    soak = table(
        [
            "10 minutes, 2 writers and 4 readers",
            "writer kills",
            "operations",
            "errors",
            "documents (audited = expected)",
            "chunks = vectors",
        ],
        [
            [
                "writers killed with SIGKILL every 60 s",
                r(k, "writer_kills"),
                num(r(k, "operations_total"), 0),
                r(k, "errors"),
                f"{r(k, 'audit', 'documents')} = {r(k, 'audit', 'expected_documents')}",
                f"{r(k, 'audit', 'chunks')} = {r(k, 'audit', 'vectors')}",
            ],
            [
                "the same, without kills (reference)",
                0,
                num(ref["operations_total"], 0),
                ref["errors"],
                f"{ref['audit']['documents']} = {ref['audit']['expected_documents']}",
                f"{ref['audit']['chunks']} = {ref['audit']['vectors']}",
            ],
        ],
    )
    fz = "fuzz_api.json"
    statuses = ", ".join(f"{code}: {num(n, 0)}" for code, n in sorted(r(fz, "statuses").items()))
    fd = "fault_disk.json"
    points: dict[str, list[dict[str, Any]]] = {}
    for run in r(fd, "runs"):
        points.setdefault(run["point"], []).append(run)
    disk = table(
        ["where the disk filled", "runs", "exit", "`check` as left", "the same command, after freeing space"],
        [
            [
                pt,
                len(runs),
                "/".join(sorted({str(x["exit"]) for x in runs})),
                "ok" if all(x["check_as_left"] == "ok" for x in runs) else "**problems**",
                "ok: every document, vectors = chunks" if all(x["ok"] for x in runs) else "**failed**",
            ]
            for pt, runs in sorted(points.items())
        ],
    )
    return page(
        "Service and faults",
        "`kgmem serve` under load, and what a store survives: the HTTP API fuzzed from its own schema, a full "
        "disk at each write, writers killed mid-write. Each has its test in `make test` and its benchmark here.",
        f"## HTTP overhead\n\n{over}\n\nOverhead of HTTP (p50): {num(ov['overhead_p50_ms'])} ms.",
        f"## Under load\n\n{r(s, 'clients')} clients for {num(r(s, 'load', 'seconds'), 0)} s against one server "
        f"({r(s, 'passages')} passages, the no-LLM reader): {num(r(s, 'load', 'requests'), 0)} requests, "
        f"{r(s, 'load', 'errors')} errors; then every document audited: {r(s, 'audit', 'wrong')} wrong of "
        f"{r(s, 'audit', 'checked')}.\n\n" + load,
        "## Many processes, writers killed\n\n" + soak,
        f"## The API fuzzed\n\nSchemathesis {r(fz, 'schemathesis')} against a real server (all phases, every check but "
        f"{', '.join(r(fz, 'excluded_checks'))}): {num(r(fz, 'requests'), 0)} requests ({statuses}), "
        f"**{len(r(fz, 'failures'))} failures**, {sum(n for c, n in r(fz, 'statuses').items() if c.startswith('5'))} "
        "responses 5xx.",
        f"## A full disk\n\n`kgmem ingest` of {r(fd, 'docs')} passages into a store on a small tmpfs, with free space "
        f"from {num(min(x['free_bytes'] for x in r(fd, 'runs')) / 1024, 0)} KB to "
        f"{num(max(x['free_bytes'] for x in r(fd, 'runs')) / 2**20, 0)} MB, so the disk fills at different writes. "
        "Each failure is one line and exit 1 (507 over HTTP).\n\n" + disk,
        reproduce(
            "python benchmarks/bench_serve.py",
            "python benchmarks/soak.py --minutes 10 --kill-every 60",
            "python benchmarks/fuzz_api.py --max-examples 40 --max-time 300",
            "sudo python benchmarks/fault_disk.py   # mounts a tmpfs",
        ),
        tried(r, "service"),
    )


def headline(r: Results) -> list[list[str]]:
    ratio = r("ingest_batches.json", "ratios", "ingest_graph_on / (embed_alone + spacy_alone)")
    up = r("ingest_profiles.json", "speed-up over default", "static, 2 workers (start included)")
    big = r("memory_final.json", "cases", "jsonl-1gb")
    million = r("scale.json", "stores")[-1]
    ov = r("serve.json", "overhead")
    ray2 = r("cluster.json", "engines", "ray, 2 workers", "vs_local")
    absorbs = r("cluster.json", "writer", "1000000", "workers_it_absorbs")
    return [
        [
            "[Speed](docs/benchmarks/speed.md)",
            "ingest time, graph on",
            f"**{num(ratio, 2)}×**",
            "1× = the embedder and spaCy alone",
        ],
        ["", "`--profile static` ingest", f"**{num(up, 2)}×** the default", "the default profile"],
        ["", "`--engine ray`, 2 workers, one 2-core machine", f"**{num(ray2, 2)}×** the local engine's words/s",
         "the local engine"],
        ["", "the single writer at 1M chunks", f"keeps up with **{num(absorbs)}** Ray workers",
         "one worker's chunks/s"],
        [
            "[Memory](docs/benchmarks/memory.md)",
            "peak RSS ingesting a 1 GB JSONL",
            f"**{num(big['peak_rss_mb'], 0)} MB**",
            f"{num(r('memory_final.json', 'cases', 'baseline', 'peak_rss_mb'), 0)} MB (100 KB ingested)",
        ],
        [
            "[Scale](docs/benchmarks/scale.md)",
            "query p50 at 1M chunks, `auto`",
            f"**{num(million['auto_retrieve']['p50_ms'])} ms**",
            f"{num(million['dense_search']['p50_ms'])} ms (dense alone)",
        ],
        [
            "[Service](docs/benchmarks/service.md)",
            "HTTP `search` p50",
            f"**{num(ov['http']['p50_ms'])} ms**",
            f"{num(ov['api']['p50_ms'])} ms (in process)",
        ],
    ]
