"""The `kgmem` command: a thin layer over `kgmem.api` that turns errors into one line."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click

from .cli_options import emit, handle_errors, json_option, open_store, open_with_profile, store_option
from .config import PROFILES, Config
from .render import ProgressLine, fusion_text, report_text

MODES = ["auto", "dense", "lexical", "hybrid", "graph"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(package_name="kgmem")
def main(debug: bool) -> None:
    """kgmem — a long-term memory for LLMs: passages (SQLite + FAISS) and a spaCy knowledge graph."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


# ---------------------------------------------------------------------- ingest
def _count_inputs(paths: tuple[str, ...], glob: str | None) -> int | None:
    """How many documents the inputs hold, when that is cheap to know (files, JSONL lines)."""
    from .pipelines.readers import JSONL_SUFFIXES, ReaderOptions, walk

    total = 0
    for p in map(Path, paths):
        files = [f for f in walk(p, ReaderOptions(glob=glob)) if isinstance(f, Path)] if p.is_dir() else [p]
        for f in files:
            if f.suffix.lower() in JSONL_SUFFIXES:
                try:
                    with open(f, "rb") as fh:
                        total += sum(1 for line in fh if line.strip())
                except OSError:
                    total += 1
            else:
                total += 1
    return total


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@store_option
@click.option("--glob", help="Only files whose path matches this pattern (e.g. '*.md').")
@click.option("--workers", type=int, help="Worker processes that chunk, embed and parse, one thread each "
              "(env KGMEM_WORKERS; default auto: this process with KGMEM_THREADS threads, or with the static "
              "embedder one worker per thread when the input is more than one batch). With --engine ray: "
              "actors (default: the cluster's CPUs).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where the compute runs: this machine, or a Ray cluster (pip install 'kgmem[ray]'); "
                   "this process writes the store either way.")
@click.option("--address", envvar="RAY_ADDRESS", help="With --engine ray: the cluster (auto, HOST:PORT or "
              "ray://HOST:PORT; env RAY_ADDRESS). Default: a cluster started on this machine for the run.")
@click.option("--threads", type=int, help="Threads for the embedder and FAISS (env KGMEM_THREADS).")
@click.option("--no-graph", is_flag=True, help="Store passages only; skip entity/relation extraction.")
@click.option("--profile", metavar="|".join(PROFILES), envvar="KGMEM_PROFILE",
              help="Settings bundle: 'fast' embeds with int8 ONNX Runtime; 'static' embeds with a table "
              "distilled from MiniLM (~2.6x faster ingest, lower recall; its own stores only); 'fastest' is "
              "'static' with a NER-only graph (docs/ingesting.md, \"Profiles\"). A new store keeps it; on an existing "
              "store it applies to this run only (env KGMEM_PROFILE).")
@click.option("--id-field", default="id", show_default=True, help="JSONL field holding the document id.")
@click.option("--title-field", default="title", show_default=True, help="JSONL field holding the title.")
@click.option("--text-field", default="text", show_default=True, help="JSONL field holding the text.")
@click.option("--max-text-mb", type=click.IntRange(min=1), default=4096, show_default=True,
              help="Largest text file to read (streamed in parts of 500,000 characters). HTML, PDF and "
              "single JSONL records are read whole and refused over 64 MiB.")
@click.option("--quiet", "-q", is_flag=True, help="No progress line.")
@json_option
@handle_errors
def ingest(paths: tuple[str, ...], store: str, glob: str | None, workers: int | None, engine: str,
           address: str | None, threads: int | None, no_graph: bool, profile: str | None, id_field: str,
           title_field: str, text_field: str, max_text_mb: int, quiet: bool, as_json: bool) -> None:
    """Add files, directories (recursively) and JSONL records to the store.

    Unchanged documents are skipped, changed ones replaced, so re-running after an
    interruption finishes the job. Exit status: 0 when every input was read, 1 when
    some failed (each is listed with its reason), 130 when interrupted.
    """
    from .pipelines.readers import ReaderOptions

    memory, new = open_with_profile(store, profile)
    if profile and not new:
        click.echo(f"note: {store} exists: --profile {profile} applies to this run only; the store keeps "
                   "the settings it was created with", err=True)
    memory.configure(graph=not no_graph, **({"threads": threads} if threads else {}),
                     **({"workers": workers} if workers and engine == "local" else {}))
    options = ReaderOptions(id_field=id_field, title_field=title_field, text_field=text_field, glob=glob,
                            max_text_bytes=max_text_mb * 2**20)
    progress = ProgressLine(_count_inputs(paths, glob), enabled=not quiet and not as_json)
    try:
        report = memory.ingest_paths(list(paths), options=options, on_progress=progress, engine=engine,
                                     address=address, workers=workers if engine == "ray" else None)
    except KeyboardInterrupt:
        progress.close()
        stats = memory.stats()
        memory.close()
        click.echo(f"interrupted: the store holds {stats['documents']} documents; run the same command again to finish",
                   err=True)
        sys.exit(130)
    progress.close()
    memory.close()
    if as_json:
        emit(report.as_dict())
    else:
        click.echo(report_text(report))
        for item, reason in report.failed:
            click.echo(f"failed: {item}: {reason}", err=True)
        for item, message in report.notices:
            click.echo(f"note: {item}: {message}", err=True)
        if report.skipped:
            click.echo(f"skipped {len(report.skipped)} files of unsupported types", err=True)
    sys.exit(1 if report.failed else 0)


# ---------------------------------------------------------------------- queries
@main.command()
@click.argument("query")
@store_option
@click.option("-k", "--k", "k", default=10, show_default=True, help="How many passages.")
@click.option("--mode", type=click.Choice(MODES), default="auto", show_default=True)
@json_option
@handle_errors
def search(query: str, store: str, k: int, mode: str, as_json: bool) -> None:
    """Rank stored passages for QUERY."""
    from .render import hits_text

    with open_store(store) as memory:
        hits = memory.search(query, k=k, mode=mode)
    if as_json:
        emit({"query": query, "mode": mode, "hits": [h.as_dict() for h in hits]})
    else:
        click.echo(hits_text(hits))


@main.command()
@click.argument("question")
@store_option
@click.option("-k", "--k", "k", type=int, help="Passages to retrieve (default from the store's settings).")
@click.option("--mode", type=click.Choice(MODES + ["global"]), default="auto", show_default=True,
              help="global: answer from community summaries (auto does for questions about the whole memory).")
@click.option("--llm", envvar="KGMEM_LLM", help="auto | llama[:MODEL|PATH.gguf] | openai[:MODEL] | extractive (env KGMEM_LLM). Default auto: the local model when installed, else the no-LLM reader.")
@click.option("--budget", type=int, help="Context window in tokens (default: the model's).")
@click.option("--hops", type=click.IntRange(min=0),
              help="Hops a multi-hop question is followed, one at a time (default 2; 0: one search).")
@click.option("--conversation", help="Answer from this conversation's remembered turns.")
@click.option("--user", help="Answer from this user's remembered turns (every conversation).")
@json_option
@handle_errors
def ask(question: str, store: str, k: int | None, mode: str, llm: str | None, budget: int | None,
        hops: int | None, conversation: str | None, user: str | None, as_json: bool) -> None:
    """Answer QUESTION from the store: a short answer, cited, then its sources. With
    --conversation or --user: from what was said there (remembered turns), not from documents."""
    from .render import Reading, answer_text

    with open_store(store) as memory:
        if hops is not None:
            memory.configure(hops=hops)
        if as_json:
            answer = memory.ask(question, k=k, budget=budget, llm=llm, mode=mode, conversation=conversation,
                                user=user)
            emit(answer.as_dict())
            return
        memory.backend(llm)
        if memory.llm_notice:
            click.echo(f"note: {memory.llm_notice}", err=True)
        reading = Reading(lambda line: click.echo(line, err=True))
        streamed: list[str] = []

        def show(piece: str) -> None:
            streamed.append(piece)
            click.echo(piece, nl=False)

        answer = memory.ask(question, k=k, budget=budget, llm=llm, mode=mode, on_context=reading,
                            on_token=show, conversation=conversation, user=user)
    click.echo(answer_text(answer, streamed=bool(streamed), shown=reading.shown))


@main.command()
@click.argument("doc_id", required=False)
@store_option
@click.option("--query", "-q", help="Summarise what the text says about this (a topic or a question).")
@click.option("--words", default=150, show_default=True, help="Length of the summary.")
@click.option("--llm", envvar="KGMEM_LLM", help="As for ask; extractive: chosen sentences, no model.")
@json_option
@handle_errors
def summarize(doc_id: str | None, store: str, query: str | None, words: int, llm: str | None, as_json: bool) -> None:
    """Summarise DOC_ID (or, without it, the whole store), every sentence cited."""
    from .render import progress_line, summary_text

    with open_store(store) as memory:
        memory.backend(llm)
        if memory.llm_notice and not as_json:
            click.echo(f"note: {memory.llm_notice}", err=True)
        show = None if as_json else (lambda p: click.echo(progress_line(p), err=True))
        summary = memory.summarize(doc_id, query=query, words=words, llm=llm, on_progress=show)
    click.echo(json.dumps(summary.as_dict(), ensure_ascii=False) if as_json else summary_text(summary))


@main.command("eval")
@click.argument("dataset_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--store", "store", type=click.Path(file_okay=False),
              help="Build (or reuse) the benchmark's store here; default: a temporary store, deleted after.")
@click.option("--limit", type=int, help="Only the first N questions.")
@click.option("--modes", help="Comma-separated modes (default: all).")
@click.option("--no-reference", is_flag=True, help="Skip the same-run references (dense retrieval, naive RAG).")
@click.option("--questions", "per_question", is_flag=True, help="With --json: include per-question records.")
@click.option("--llm", help="Also answer every question with this backend and report EM, F1, seconds per "
              "answer, time to first token and prompt tokens, beside naive RAG with the same model. "
              "auto | llama[:MODEL|PATH.gguf] | openai[:MODEL] | extractive.")
@click.option("--budget", type=int, help="Context window in tokens for the answers (default: the model's).")
@click.option("--profile", metavar="|".join(PROFILES), help="Settings of the benchmark's new store (default: default).")
@json_option
@handle_errors
def eval_command(dataset_dir: str, store: str | None, limit: int | None, modes: str | None, no_reference: bool,
                 per_question: bool, llm: str | None, budget: int | None, profile: str | None, as_json: bool) -> None:
    """Retrieval recall@2/5/10 on a bench set (shared/bench protocol), every mode from one
    run; with --llm, answer quality and speed too. Never touches your own store."""
    import tempfile

    from .eval import format_answers, format_table, results_json, run_eval

    with tempfile.TemporaryDirectory(prefix="kgmem-eval-") as tmp:
        with open_with_profile(store or str(Path(tmp) / "store"), profile)[0] as memory:
            progress = ProgressLine(None, enabled=not as_json)
            results, info = run_eval(memory, dataset_dir, modes=modes.split(",") if modes else None, limit=limit,
                                     reference=not no_reference, on_progress=progress, llm=llm, budget=budget)
            info["fusion"] = memory.fusion().as_dict()
            progress.close()
    if as_json:
        if not per_question:
            for part in ("kgmem", "naive"):
                info.get("answers", {}).get(part, {}).pop("questions", None)
        emit(results_json(results, info, per_question=per_question))
    else:
        click.echo(format_table(results))
        click.echo(fusion_text(info["fusion"]))
        if "answers" in info:
            click.echo(format_answers(info["answers"]))


@main.command()
@click.option("--prepare", "prepare_name", metavar="NAME",
              help="Assemble and verify NAME now (default model: qwen2.5-1.5b) instead of at the first question; "
              "or distil the static embedder (all-MiniLM-L6-v2-static) instead of at its first use.")
@json_option
@handle_errors
def models(prepare_name: str | None, as_json: bool) -> None:
    """Local answering models: which are installed, where they come from, their licence."""
    from .pipelines.llm import models as llm_models

    if prepare_name:
        from .memory.embedders.static import StaticEmbedder, is_static
        from .pipelines.llm.llama import LlamaBackend

        t0 = time.perf_counter()
        if is_static(prepare_name):
            embedder = StaticEmbedder(prepare_name, threads=Config().threads)
            click.echo(f"{prepare_name}: {embedder.dim}-d, {embedder.path} ({time.perf_counter() - t0:.1f}s)")
            return
        backend = LlamaBackend(prepare_name, context_window=512, threads=1)
        backend.wait_loaded()
        click.echo(f"{prepare_name}: verified, {backend.path} ({time.perf_counter() - t0:.1f}s)")
        return
    rows = [{"name": m.name, "title": m.title, "installed": llm_models.installed(m.name),
             "default": m.name == llm_models.DEFAULT_MODEL, "size": m.size, "sha256": m.sha256,
             "origin": m.origin, "licence": m.licence, "packages": m.pip_names}
            for m in llm_models.MODELS.values()]
    if as_json:
        emit({"models": rows, "cache": str(llm_models.cache_dir())})
        return
    for r in rows:
        state = "installed" if r["installed"] else f"not installed ({llm_models.INSTALL_HINT})"
        click.echo(f"{r['name']}{' (default)' if r['default'] else ''}: {r['title']}, {r['size'] / 1e6:,.0f} MB — {state}")
        click.echo(f"    {r['origin']}; licence {r['licence']}")
    click.echo("Any other GGUF file: --llm llama:PATH.gguf (or KGMEM_LLM_MODEL=PATH).")


@main.command()
@store_option
@click.option("--llm", envvar="KGMEM_LLM", help="auto | llama[:MODEL|PATH.gguf] | openai[:MODEL] | extractive (env KGMEM_LLM). Default auto: the local model when installed, else the no-LLM reader.")
@handle_errors
def repl(store: str, llm: str | None) -> None:
    """Interactive questions and answers over the store (:help inside)."""
    from .repl import run_repl

    with open_store(store) as memory:
        run_repl(memory, llm=llm)


@main.command()
@store_option
@click.option("--user", required=True, envvar="KGMEM_USER",
              help="Whose memory: every session of this user is recalled (env KGMEM_USER).")
@click.option("--name", help="The user's name as a speaker (default: --user).")
@click.option("--llm", envvar="KGMEM_LLM",
              help="auto | llama[:MODEL|PATH.gguf] | openai[:MODEL] | extractive (env KGMEM_LLM).")
@handle_errors
def chat(store: str, user: str, name: str | None, llm: str | None) -> None:
    """Talk with the local model; each exchange is remembered and later sessions recall it (:help inside)."""
    from .chat import run_chat

    with open_store(store, must_exist=False) as memory:
        run_chat(memory, user, llm=llm, name=name)


def _add_commands() -> None:
    from . import store_commands
    from .serve.commands import mcp, serve  # their heavy imports wait until they run

    for command in (store_commands.graph, store_commands.export, store_commands.stats, store_commands.docs,
                    store_commands.delete, store_commands.check, store_commands.backup, serve, mcp):
        main.add_command(command)


_add_commands()

if __name__ == "__main__":  # pragma: no cover
    main()
