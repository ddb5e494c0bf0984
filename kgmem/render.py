"""Plain-text rendering shared by the CLI and the REPL."""
from __future__ import annotations

import sys
import textwrap
import time
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
    lines = []
    for src in answer.context.sources if answer.context else []:
        if src.n not in cited and not src.packed:
            continue  # behind a fact that the answer did not use
        mark = "*" if src.n in cited else " "
        lines.append(f"{mark}[{src.n}] {src.title or src.doc_id} — {src.doc_id} [{src.start}:{src.end}]")
        if src.n in cited:
            lines.append("      " + shorten(cited[src.n].quote, width))
    return "\n".join(lines) if lines else "(no sources)"


def reading_line(prepared: Any) -> str:
    """What the model is about to read (shown while it reads: seconds ≈ tokens / speed)."""
    ctx = prepared.context
    n = len(ctx.report.included)
    notes = "".join(f"\nnote: {msg}" for msg in prepared.notices)
    return (f"reading {n} passage{'s' if n != 1 else ''} and {ctx.report.facts_included} facts "
            f"({ctx.prompt_tokens} tokens)…{notes}")


def answer_text(answer: Answer, streamed: bool = False) -> str:
    """The cited short answer, the sentence it stands in, and the sources. With `streamed`,
    the short answer itself was already printed: only its markers follow."""
    marks = "".join(f"[{c.n}]" for c in answer.citations)
    head = (f" {marks}" if marks else "") if streamed else answer.text
    lines = [head]
    if answer.support:
        lines.append(f"  — {shorten(answer.support, 300)}")
    lines += ["", "Sources:", sources_text(answer)]
    return "\n".join(lines)


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
    return "\n".join(f"{k:<16} {v}" for k, v in stats.items())


class ProgressLine:
    """One status line on stderr: documents (of total, with ETA), chunks, words/s."""

    def __init__(self, total: int | None, enabled: bool):
        self.total = total
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def __call__(self, p: Any) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not self.tty and now - self.last < 5:
            return
        self.last = now
        rate = p.words / p.seconds if p.seconds else 0
        done = p.documents + len(p.report.failed)
        if self.total:
            frac = min(done / self.total, 1.0)
            eta = (p.seconds / frac - p.seconds) if frac > 0 else 0
            bar = "#" * int(frac * 24)
            head = f"[{bar:<24}] {done}/{self.total} docs  ETA {eta:4.0f}s"
        else:
            head = f"{done} docs"
        line = f"{head}  {p.chunks} chunks  {rate:,.0f} words/s"
        click.echo(("\r" + line) if self.tty else line, err=True, nl=not self.tty)

    def close(self) -> None:
        if self.enabled and self.tty:
            click.echo("", err=True)
