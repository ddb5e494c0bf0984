"""Plain-text rendering shared by the CLI and the REPL."""
from __future__ import annotations

import textwrap
import time
from collections.abc import Sequence
from typing import Any

import click

from .graph.knowledge import Fact
from .pipelines.query import Answer
from .retrieval.types import Hit


def shorten(text: str, width: int = 160) -> str:
    return textwrap.shorten(" ".join(text.split()), width, placeholder=" …")


def hits_text(hits: list[Hit], width: int = 160) -> str:
    if not hits:
        return "no results"
    lines = []
    for n, h in enumerate(hits, 1):
        lines.append(f"[{n}] {h.title or h.doc_id}  ({h.doc_id}, chars {h.start}-{h.end}, score {h.score:.3f})")
        lines.append("    " + shorten(h.text, width))
    return "\n".join(lines)


def sources_text(answer: Answer, width: int = 120) -> str:
    """The numbered sources under an answer: cited ones (*) with the supporting words,
    then the other passages that were in the context. (:sources shows everything.)"""
    cited = {c.n: c for c in answer.citations}
    if answer.context is None:  # a global answer: its citations are its sources
        return citations_text(answer.citations, width)
    lines = []
    for src in answer.context.sources:
        if src.n not in cited and not src.packed:
            continue  # behind a fact that the answer did not use
        mark = "*" if src.n in cited else " "
        lines.append(f"{mark}[{src.n}] {src.title or src.doc_id} — {src.doc_id} [{src.start}:{src.end}]")
        if src.n in cited:
            lines.append("      " + shorten(cited[src.n].quote, width))
    return "\n".join(lines) if lines else "(no sources)"


def citations_text(citations: Sequence[Any], width: int = 120) -> str:
    lines = []
    for c in citations:
        lines.append(f"[{c.n}] {c.title or c.doc_id} — {c.doc_id} [{c.start}:{c.end}]")
        lines.append("      " + shorten(c.quote, width))
    return "\n".join(lines) if lines else "(no sources)"


def summary_text(summary: Any) -> str:
    """A summary, wrapped, then what it cost and its sources."""
    body = textwrap.fill(summary.text, 100)
    cost = (f"{summary.words} words from {summary.passages_read} passages, {summary.backend}"
            + (f", {summary.tokens_read} tokens read by the model in {max(summary.groups, 1)} "
               f"part{'s' if summary.groups > 1 else ''}" if summary.tokens_read else "")
            + f", {summary.timings.get('total', 0):.1f}s")
    notes = [f"note: {n}" for n in summary.notices]
    return "\n".join([body, *notes, "", f"({cost})", "", "Sources:", citations_text(summary.citations)])


def progress_line(p: Any) -> str:
    """One line of a summary's progress (SummaryProgress)."""
    if p.stage == "select":
        return f"read {p.passages} passages, chose the sentences…"
    if p.stage == "group":
        eta = f", about {p.eta:.0f}s left" if p.eta is not None else ""
        return f"summarised part {p.groups_done}/{p.groups} ({p.elapsed:.0f}s{eta})…"
    if p.stage == "combine":
        return f"combined {p.groups} parts ({p.elapsed:.0f}s)"
    return f"done in {p.elapsed:.1f}s"


def communities_text(comms: Sequence[Any], limit: int = 30) -> str:
    if not comms:
        return "no communities (the store is empty, or its graph is off)"
    lines = []
    for c in comms[:limit]:
        where = c.doc_id or f"{len(c.children)} communities"
        lines.append(f"#{c.id} level {c.level}  {c.size} passages  ({where})  {', '.join(c.top[:6])}")
    if len(comms) > limit:
        lines.append(f"… {len(comms) - limit} more")
    return "\n".join(lines)


def hops_line(hops: Sequence[Any]) -> str:
    """The hops a question was followed by: "followed: the composer of Aschenbrodel →
    Johann Strauss II; …" ("" for none)."""
    return "followed: " + "; ".join(f"{h.phrase} → {h.bridge}" for h in hops) if hops else ""


def reading_line(prepared: Any) -> str:
    """What the model is about to read (shown while it reads: seconds ≈ tokens / speed)."""
    ctx = prepared.context
    n = len(ctx.report.included)
    notes = "".join(f"\n{line}" for line in [hops_line(prepared.hops)] if line)
    notes += "".join(f"\nnote: {msg}" for msg in prepared.notices)
    return (f"reading {n} passage{'s' if n != 1 else ''} and {ctx.report.facts_included} facts "
            f"({ctx.prompt_tokens} tokens)…{notes}")


class Reading:
    """`on_context` for an answer shown as it streams: prints the reading line through
    `echo` and keeps the notices it showed, so the answer's own notes do not repeat them."""

    def __init__(self, echo: Any):
        self.echo = echo
        self.shown: list[str] = []

    def __call__(self, prepared: Any) -> None:
        self.shown.extend(prepared.notices)
        self.echo(reading_line(prepared))


def answer_text(answer: Answer, streamed: bool = False, shown: Sequence[str] = ()) -> str:
    """The cited short answer, the sentence it stands in, its notices (but those `shown`
    already, with the reading line) and the sources. With `streamed`, the short answer
    itself was already printed: only its markers follow."""
    marks = "".join(f"[{c.n}]" for c in answer.citations)
    head = (f" {marks}" if marks else "") if streamed else answer.text
    lines = [head]
    if answer.support:
        lines.append(f"  — {shorten(answer.support, 300)}")
    if answer.hops and not streamed:  # (streamed: the reading line said it)
        lines.append(hops_line(answer.hops))
    lines += [f"note: {notice}" for notice in answer.notices if notice not in shown]
    lines += ["", "Sources:", sources_text(answer)]
    return "\n".join(lines)


def recalled_text(turn: Any, mark: str = "") -> str:
    """A remembered turn: its id and when, then who said what."""
    return f"{mark}{turn.id}  ({turn.when or 'undated'})\n    {turn.speaker}: {turn.text}"


def facts_text(facts: list[Fact], limit: int = 30) -> str:
    if not facts:
        return "no facts"
    lines = []
    for f in facts[:limit]:
        docs = sorted({c.doc_id for c in f.citations})
        where = ", ".join(docs[:3]) + (f" +{len(docs) - 3}" if len(docs) > 3 else "")
        lines.append(f"{f.subject} —{f.predicate}→ {f.object}   ({where})")
    if len(facts) > limit:
        lines.append(f"… {len(facts) - limit} more")
    return "\n".join(lines)


def budget_text(report: Any) -> str:
    lines = [f"window {report.window} tokens, {report.used} used"]
    for name, tokens in report.sections.items():
        lines.append(f"  {name:<24} {tokens:>6}")
    lines.append(f"  passages packed: {len(report.included)}, dropped: {len(report.dropped)}; "
                 f"facts packed: {report.facts_included}, dropped: {report.facts_dropped}")
    for chunk_id, why in report.dropped[:10]:
        lines.append(f"    chunk {chunk_id}: {why}")
    return "\n".join(lines)


def stats_text(stats: dict[str, Any]) -> str:
    lines = []
    for k, v in stats.items():
        if k == "fusion" and isinstance(v, dict):
            v = fusion_text(v).removeprefix("fusion: ")
            if stats["fusion"].get("strength"):
                v += " (MRR@10 on pseudo-questions: " + ", ".join(
                    f"{r} {m:.2f}" for r, m in stats["fusion"]["strength"].items()) + ")"
        lines.append(f"{k:<16} {v}")
    return "\n".join(lines)


def report_text(report: Any) -> str:
    """An ingest report in one line."""
    rate = report.words / report.seconds if report.seconds else 0
    line = (f"added {report.added}, unchanged {report.unchanged}, replaced {report.replaced}, "
            f"failed {len(report.failed)} — {report.chunks} chunks, {report.words:,} words "
            f"in {report.seconds:.1f}s ({rate:,.0f} words/s)")
    fusion = getattr(report, "fusion", None)
    if fusion and fusion.get("source") == "measured":
        line += f"\n{fusion_text(fusion)} ({fusion['questions']} pseudo-questions, {fusion['seconds']:.1f}s)"
    return line


def fusion_text(fusion: dict[str, Any]) -> str:
    """How `auto` fuses, one line: `fusion: dense 0.2 · lexical 1 (k 9) · graph 0.58, measured`."""
    from .retrieval.tuning import FIXED_K

    parts = []
    for name, vote in fusion["weights"].items():
        k = fusion["k"].get(name)
        parts.append(f"{name} {vote:g}" + (f" (k {k})" if k != FIXED_K.get(name) else ""))
    return "fusion: " + " · ".join(parts) + f", {fusion['source']}"


class ProgressLine:
    """Ingest progress on stderr, drawn by rich on a terminal: a bar with documents done
    of the total (when known), chunks, words per second, elapsed time and ETA. Not on a
    terminal (a log, CI), one plain line every 5 seconds instead."""

    def __init__(self, total: int | None, enabled: bool, console: Any = None):
        from rich.console import Console

        self.total = total
        self.enabled = enabled
        self.console = console or Console(stderr=True)
        self.tty = self.console.is_terminal
        self.last = 0.0
        self._bar: Any = None
        self._task: Any = None
        if self.enabled and self.tty:
            self._start()  # from now: the models' loading is part of the elapsed time

    def _start(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(
            TextColumn("[bold]ingest"), BarColumn(), MofNCompleteColumn(), TextColumn("docs"),
            TextColumn("{task.fields[chunks]:,} chunks  {task.fields[rate]:,.0f} words/s"),
            TimeElapsedColumn(), TextColumn("[cyan]ETA {task.fields[eta]}"),
            console=self.console, transient=False,
        )
        self._task = self._bar.add_task("ingest", total=self.total, chunks=0, rate=0.0, eta="?")
        self._bar.start()

    def __call__(self, p: Any) -> None:
        if not self.enabled:
            return
        done = p.documents + len(p.report.failed)
        rate = p.words / p.seconds if p.seconds else 0.0
        if self.tty:
            if self._bar is None:
                self._start()
            total = max(self.total, done) if self.total else None
            self._bar.update(self._task, completed=done, total=total, chunks=p.chunks, rate=rate,
                             eta=self._eta(p.seconds, done))
            return
        now = time.monotonic()
        if now - self.last < 5:
            return
        self.last = now
        head = f"{done}/{self.total} docs" if self.total else f"{done} docs"
        eta = f"  ETA {self._eta(p.seconds, done)}" if self.total else ""
        click.echo(f"{head}  {p.chunks} chunks  {rate:,.0f} words/s{eta}", err=True)

    def _eta(self, seconds: float, done: int) -> str:
        """Time left at the rate so far (documents, not bytes: a rough guide)."""
        if not self.total or not done:
            return "?"
        left = max(seconds * (self.total / min(done, self.total) - 1), 0.0)
        return f"{int(left // 60)}:{int(left % 60):02d}"

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
