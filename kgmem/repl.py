"""`kgmem repl`: questions and answers over a store, with commands to look inside."""
from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import KgmemError
from .render import (
    ProgressLine,
    Reading,
    answer_text,
    budget_text,
    communities_text,
    facts_text,
    progress_line,
    recalled_text,
    report_text,
    stats_text,
    summary_text,
)

HELP = """\
Type a question and press Enter: the answer streams, then its numbered sources.
End a line with \\ to continue it on the next. Ctrl-C stops an answer; Ctrl-D or :quit leaves.

  :help            this list
  :sources         full text of the last answer's passages
  :why N           why passage N was chosen (retriever ranks, question entities, facts)
  :graph NAME      facts and neighbours of an entity
  :budget          token use of the last context, section by section
  :k N             passages to retrieve (now {k})
  :mode MODE       auto | dense | lexical | hybrid | graph | global (now {mode})
  :llm SPEC        auto | llama[:MODEL|PATH] | openai[:MODEL] | extractive (now {llm})
  :ingest PATH...  add files or directories (progress as it goes)
  :summarize [DOC] summary of a document (none: the whole store), progress as it goes
  :communities     the store's communities (topics) with their top entities
  :recall QUERY    remembered conversation turns that match (kgmem chat, Memory.remember)
  :forget ID...    forget these remembered turns
  :stats           store counts
  :quit            leave"""


class Shell:
    """What the REPL and `kgmem chat` share: a line in, a `:command` or a message; any
    error is one line and the prompt goes on."""

    def __init__(self, write: Callable[[str], None] | None = None):
        self.write = write or (lambda text: (sys.stdout.write(text), sys.stdout.flush()))

    def say(self, text: str = "") -> None:
        self.write(text + "\n")

    def handle(self, line: str) -> bool:
        """Run one input; False means leave."""
        line = line.strip()
        if not line:
            return True
        try:
            if line.startswith(":"):
                return self.command(line)
            self.submit(line)
        except (KgmemError, ValueError, OSError) as exc:
            self.say(f"Error: {exc}")
        except Exception as exc:  # the prompt outlives any failing command
            self.say(f"Error: {type(exc).__name__}: {exc}")
        return True

    def command(self, line: str) -> bool:
        raise NotImplementedError

    def submit(self, line: str) -> None:
        raise NotImplementedError


class Repl(Shell):
    def __init__(self, memory: Any, llm: str | None = None, write: Callable[[str], None] | None = None):
        super().__init__(write)
        self.memory = memory
        self.k = memory.config.search_k
        self.mode = "auto"
        self.llm = llm or memory.config.llm
        self.last = None

    def submit(self, line: str) -> None:
        self.answer(line)

    def answer(self, question: str) -> None:
        reading = Reading(self.say)
        streamed: list[str] = []

        def show(piece: str) -> None:
            streamed.append(piece)
            self.write(piece)

        try:
            ans = self.memory.ask(question, k=self.k, llm=self.llm, mode=self.mode, on_token=show,
                                  on_context=reading)
        except KeyboardInterrupt:
            self.say("\n(answer stopped)")
            return
        self.last = ans
        self.say(answer_text(ans, streamed=bool(streamed), shown=reading.shown))

    def command(self, line: str) -> bool:
        try:
            parts = shlex.split(line[1:])
        except ValueError:
            parts = line[1:].split()
        name, args = (parts[0].lower(), parts[1:]) if parts else ("help", [])
        rest = " ".join(args)
        if name in ("quit", "q", "exit"):
            return False
        if name in ("help", "h", "?"):
            self.say(HELP.format(k=self.k, mode=self.mode, llm=self.llm))
        elif name == "sources":
            self._need_answer()
            if self.last.context is None:  # a global answer: the passages its summaries cite
                for c in self.last.citations:
                    self.say(f"[{c.n}] {c.title or c.doc_id} — {c.doc_id} [{c.start}:{c.end}]\n{c.quote}\n")
            for src in self.last.context.sources if self.last.context else []:
                where = f"{src.doc_id} [{src.start}:{src.end}]"
                self.say(f"[{src.n}] {src.title or src.doc_id} — {where}")
                text = src.text or self.memory.get(src.doc_id).text[src.start : src.end]
                self.say(text + "\n")
        elif name == "why":
            self._need_answer()
            if not args or not args[0].isdigit():
                raise ValueError("usage: :why N")
            info = self.memory.explain(self.last, int(args[0]))
            ranks = ", ".join(f"{r} #{p}" for r, p in info["ranks"].items()) or "not ranked (cited through a fact)"
            self.say(f"[{info['n']}] {info['title'] or info['doc_id']}")
            self.say(f"  retrievers: {ranks}")
            ents = ", ".join(info["question_entities"]) or "none linked"
            self.say(f"  question entities: {ents}")
            if info["mentions"]:
                self.say(f"  the passage mentions: {', '.join(info['mentions'])}")
            for f in info["facts"]:
                self.say(f"  via fact: {f}")
            if not info["mentions"] and not info["facts"]:
                self.say("  no graph link from the question's entities: chosen by text similarity")
        elif name == "graph":
            if not rest:
                raise ValueError("usage: :graph NAME")
            ent = self.memory.graph.entity(rest)
            if ent is None:
                self.say(f"no entity {rest!r} in the graph")
            else:
                aliases = f" (also: {', '.join(ent.aliases[:6])})" if ent.aliases else ""
                self.say(f"{ent.name} [{ent.label}]{aliases} — {len(ent.mentions)} mentions")
                self.say(facts_text(self.memory.graph.neighbors(rest, hops=1), limit=25))
        elif name == "budget":
            self._need_answer()
            self.say(budget_text(self.last.context_report))
        elif name == "k":
            if not args or not args[0].isdigit() or int(args[0]) < 1:
                raise ValueError("usage: :k N (a positive number)")
            self.k = int(args[0])
            self.say(f"k = {self.k}")
        elif name == "mode":
            if not args or args[0] not in ("auto", "dense", "lexical", "hybrid", "graph", "global"):
                raise ValueError("usage: :mode auto|dense|lexical|hybrid|graph|global")
            self.mode = args[0]
            self.say(f"mode = {self.mode}")
        elif name == "llm":
            if not args:
                raise ValueError("usage: :llm auto|llama[:MODEL|PATH]|openai[:MODEL]|extractive")
            self.memory.backend(args[0], load=True)  # load now: a bad spec fails here, not at the next question
            self.llm = args[0]
            self.say(f"llm = {self.llm}")
        elif name == "stats":
            self.say(stats_text(self.memory.stats()))
        elif name == "ingest":
            self.ingest(args)
        elif name in ("summarize", "summarise"):
            summary = self.memory.summarize(args[0] if args else None, llm=self.llm,
                                            on_progress=lambda p: self.say(progress_line(p)))
            self.say(summary_text(summary))
        elif name == "communities":
            self.say(communities_text(self.memory.communities(), limit=25))
        elif name == "recall":
            if not rest:
                raise ValueError("usage: :recall QUERY")
            turns = self.memory.recall(rest, k=self.k)
            self.say("\n".join(recalled_text(t) for t in turns) or "(no remembered turn matches)")
        elif name == "forget":
            if not args:
                raise ValueError("usage: :forget TURN_ID [TURN_ID ...]")
            n = self.memory.forget(turns=args)
            self.say(f"forgot {n} turn{'s' if n != 1 else ''}")
        else:
            self.say(f"unknown command :{name} — :help lists them")
        return True

    def ingest(self, paths: list[str]) -> None:
        if not paths:
            raise ValueError("usage: :ingest PATH [PATH ...] (files or directories)")
        progress = ProgressLine(None, enabled=True)
        try:
            report = self.memory.ingest_paths(paths, on_progress=progress)
        except KeyboardInterrupt:
            self.say("\n(ingest stopped: what was written is kept; :ingest the same paths again to finish)")
            return
        finally:
            progress.close()
        self.say(report_text(report))
        for item, reason in report.failed:
            self.say(f"failed: {item}: {reason}")

    def _need_answer(self) -> None:
        if self.last is None:
            raise ValueError("ask a question first")


def run_repl(memory: Any, llm: str | None = None) -> None:
    repl = Repl(memory, llm)
    stats = memory.stats()
    memory.backend(repl.llm)  # the backend and its tokenizer (a bad spec fails here); then, in the
    memory.warm(llm=repl.llm)  # background, the question encoder, graph matrix, word statistics and model
    if memory.llm_notice:
        repl.say(f"note: {memory.llm_notice}")
    repl.say(f"kgmem — {stats['documents']} documents, {stats.get('entities', 0)} entities in {memory.path}. "
             ":help for commands.")
    if sys.stdin.isatty() and sys.stdout.isatty():
        loop_tty(repl, history_file())
    else:
        loop_plain(repl)


def history_file(name: str = "repl_history") -> Path:
    """REPL (and chat) history lives with the user's data, never inside a store (which may be shared
    or read-only); one history for every store, as in a shell."""
    from .config import data_dir

    path = data_dir() / name
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass
    return path


def loop_tty(repl: Any, history: Path, prompt: str = "kgmem> ") -> None:
    """Read lines with history and editing until Ctrl-D or `repl.handle` says leave."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory

    session: PromptSession = PromptSession(history=FileHistory(str(history)))
    while True:
        try:
            line = session.prompt(prompt)
            while line.endswith("\\"):
                line = line[:-1] + "\n" + session.prompt("." * (len(prompt) - 1) + " ")
        except KeyboardInterrupt:
            continue  # a fresh prompt, as in a shell
        except EOFError:
            break
        if not repl.handle(line):
            break


def loop_plain(repl: Any) -> None:
    """The same over piped input (no prompt, no history)."""
    buffer = ""
    for raw in sys.stdin:
        line = raw.rstrip("\n")
        if line.endswith("\\"):
            buffer += line[:-1] + "\n"
            continue
        if not repl.handle(buffer + line):
            break
        buffer = ""
    repl.say("")
