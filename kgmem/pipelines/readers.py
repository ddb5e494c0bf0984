"""Turn what a user hands to `ingest` into documents: paths, raw strings, or records.

Every reader yields `Document`s or `Failure`s; a failure names the input and the
reason in one line, and the rest of the batch goes on.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..memory.passages import content_hash
from ..memory.store import Document
from ..memory.structure import MARKDOWN, heading_text
from .parts import NotText, part_document, stream_parts

TEXT_SUFFIXES = {".txt", ".text", ".md", ".markdown", ".rst"}
HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
PDF_SUFFIXES = {".pdf"}
JSONL_SUFFIXES = {".jsonl", ".ndjson"}
SUPPORTED = TEXT_SUFFIXES | HTML_SUFFIXES | PDF_SUFFIXES | JSONL_SUFFIXES


@dataclass
class ReaderOptions:
    id_field: str = "id"
    title_field: str = "title"
    text_field: str = "text"
    glob: str | None = None
    # Inputs read whole (HTML, PDF, one JSONL record) larger than this are refused.
    max_file_bytes: int = 64 * 1024 * 1024
    # Text files are streamed, never read whole: they may be this large.
    max_text_bytes: int = 4 * 1024**3
    # A document longer than this many characters is stored as parts of at most this
    # size ("ID#1", "ID#2", … with meta part_of/part): memory stays bounded by the part,
    # not the document, and a changed part is the only one re-embedded.
    part_chars: int = 500_000


@dataclass
class Failure:
    item: str
    reason: str

    def __str__(self) -> str:
        return f"{self.item}: {self.reason}"


@dataclass
class Notice:
    """Something worth telling about an input that was still ingested (e.g. bad UTF-8)."""

    item: str
    message: str


@dataclass
class Skipped:
    """A file in a walked directory that no reader handles."""

    item: str


@dataclass
class ReadResult:
    documents: list[Document] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)


class _ReadError(Exception):
    pass


def _decode(data: bytes, where: str, notices: list[Notice]) -> str:
    if b"\x00" in data[:8192]:
        raise _ReadError("binary file (NUL bytes), not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        notices.append(Notice(where, f"invalid UTF-8 at byte {exc.start}; undecodable bytes replaced"))
        return data.decode("utf-8", errors="replace")


def _read_bytes(path: Path, options: ReaderOptions) -> bytes:
    size = path.stat().st_size
    if size > options.max_file_bytes:
        raise _ReadError(f"file is {size / 2**20:.0f} MiB, over the {options.max_file_bytes / 2**20:.0f} MiB limit")
    return path.read_bytes()


def _markdown_title(text: str) -> str:
    for line in text.splitlines()[:20]:
        if line.startswith("# "):
            return heading_text(line[2:])
    return ""


def read_text_file(path: Path, options: ReaderOptions, notices: list[Notice]) -> Iterator[Document]:
    """One document, or for a file longer than a part, its parts read block by block
    (a 100 MB file never sits in memory whole)."""
    size = path.stat().st_size
    if size > options.max_text_bytes:
        raise _ReadError(f"file is {size / 2**20:.0f} MiB, over the {options.max_text_bytes / 2**20:.0f} MiB "
                         "limit for text files")
    markdown = path.suffix.lower() in {".md", ".markdown"}
    if size <= options.part_chars:
        text = _decode(path.read_bytes(), str(path), notices)
        yield Document(id=str(path), title=(_markdown_title(text) if markdown else "") or path.stem, text=text,
                       source=str(path), meta={"format": MARKDOWN} if markdown else {})
        return
    warn = lambda message: notices.append(Notice(str(path), message))  # noqa: E731
    parts = _not_text_is_a_failure(stream_parts(path, options.part_chars, warn))
    first = next(parts, "")
    whole = Document(id=str(path), title=(_markdown_title(first) if markdown else "") or path.stem, text="",
                     source=str(path), meta={"format": MARKDOWN} if markdown else {})
    second = next(parts, None)
    if second is None:  # many bytes, few characters: one document after all
        whole.text = first
        yield whole
        return
    yield part_document(whole, first, 1)
    yield part_document(whole, second, 2)
    for n, text in enumerate(parts, 3):
        yield part_document(whole, text, n)


def _not_text_is_a_failure(parts: Iterator[str]) -> Iterator[str]:
    try:
        yield from parts
    except NotText as exc:
        raise _ReadError(str(exc)) from exc


def read_html(path: Path, options: ReaderOptions, notices: list[Notice]) -> Document:
    """The page's main content as Markdown (trafilatura): navigation, tables of contents,
    headers and footers left out; headings kept as the sections chunks stay inside; code
    blocks verbatim, with their line breaks. A page with no main content to find (a bare
    fragment, a frameset) is read whole, as text."""
    from bs4 import BeautifulSoup

    text = _decode(_read_bytes(path, options), str(path), notices)
    soup = BeautifulSoup(text, "lxml")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    main = _main_content(text)
    if main:
        return Document(id=str(path), title=_markdown_title(main) or title or path.stem, text=main,
                        source=str(path), meta={"format": MARKDOWN})
    for tag in soup(["script", "style", "noscript", "template", "head"]):
        tag.decompose()
    body = soup.get_text("\n")
    lines = [" ".join(line.split()) for line in body.splitlines()]
    # Keep paragraph breaks (one blank line), drop the rest of the layout whitespace.
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return Document(id=str(path), title=title or path.stem, text="\n".join(out).strip(), source=str(path))


def _main_content(html: str) -> str:
    import logging

    import trafilatura

    logging.getLogger("trafilatura").setLevel(logging.ERROR)  # its own warnings are not the user's
    try:
        main = trafilatura.extract(html, output_format="markdown", include_formatting=True, include_tables=True,
                                   include_comments=False, include_images=False, favor_recall=True)
    except Exception:  # a page trafilatura cannot parse is read the plain way
        return ""
    return unescape_markdown((main or "").replace("\u00b6", "")).strip()


# trafilatura's Markdown escapes the page's own punctuation (`\_\_getitem\_\_`, `\[`, `\>>>`);
# a reader of the page sees none of it. Code (fenced blocks and inline spans) is left as it
# is: its backslashes are the page's own (`"\n"`, `'\u0394'`).
_CODE_SPANS = re.compile(r"(```.*?```|`[^`\n]+`)", re.S)
_ESCAPED = re.compile(r"\\([\\`*_{}\[\]()#+\-.!<>|~])")


def unescape_markdown(text: str) -> str:
    """The text a reader of the page sees: Markdown's backslash escapes removed outside code."""
    parts = _CODE_SPANS.split(text)
    return "".join(p if i % 2 else _ESCAPED.sub(r"\1", p) for i, p in enumerate(parts))


def read_pdf(path: Path, options: ReaderOptions, notices: list[Notice]) -> Document:
    import io

    from pypdf import PdfReader

    data = _read_bytes(path, options)  # the size limit holds for PDFs too
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                ok = reader.decrypt("")
            except Exception as exc:
                raise _ReadError(f"encrypted PDF that cannot be opened: {_one_line(exc)}") from exc
            if not ok:
                raise _ReadError("encrypted PDF (needs a password)")
        pages = [page.extract_text() or "" for page in reader.pages]
        meta_title = (reader.metadata.title if reader.metadata else None) or ""
    except (_ReadError, MemoryError, RecursionError):
        raise
    except Exception as exc:  # pypdf raises many kinds (LimitReachedError, struct/zlib errors, ...)
        raise _ReadError(f"broken PDF: {type(exc).__name__}: {_one_line(exc)}") from exc
    text = "\n\n".join(p.strip() for p in pages if p.strip())
    return Document(id=str(path), title=str(meta_title) or path.stem, text=text, source=str(path))


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_jsonl(path: Path, options: ReaderOptions, notices: list[Notice],
               span: tuple[int, int, int] | None = None) -> Iterator[Document | Failure]:
    """Records of a JSON Lines file; with `span` (start byte, end byte, lines before start),
    only the lines that start in [start, end), numbered as in the whole file."""
    start, end, lineno = span or (0, None, 0)
    with open(path, "rb") as fh:
        fh.seek(start)
        while end is None or fh.tell() < end:
            # Read at most the size limit (+1 byte) of a line: a giant record is
            # reported, not loaded.
            raw = fh.readline(options.max_file_bytes + 1)
            if not raw:
                break
            lineno += 1
            where = f"{path}:{lineno}"
            if len(raw) > options.max_file_bytes:
                while raw and not raw.endswith(b"\n"):
                    raw = fh.readline(options.max_file_bytes + 1)
                yield Failure(where, f"record over the {options.max_file_bytes / 2**20:.0f} MiB limit")
                continue
            if not raw.strip():
                continue
            try:
                record = json.loads(_decode(raw, where, notices))
            except (json.JSONDecodeError, _ReadError) as exc:
                yield Failure(where, f"not a JSON record: {exc}")
                continue
            if not isinstance(record, dict):
                yield Failure(where, "a JSON Lines record must be an object")
                continue
            try:
                yield record_to_document(record, options, source=where)
            except _ReadError as exc:
                yield Failure(where, str(exc))


def record_to_document(record: dict[str, Any], options: ReaderOptions | None = None, source: str = "") -> Document:
    options = options or ReaderOptions()
    text = record.get(options.text_field)
    if not isinstance(text, str):
        raise _ReadError(f"record has no text field {options.text_field!r}")
    title = record.get(options.title_field) or ""
    if not isinstance(title, str):
        title = str(title)
    doc_id = record.get(options.id_field)
    meta = record.get("meta") if isinstance(record.get("meta"), dict) else {}
    return Document(
        id=str(doc_id) if doc_id not in (None, "") else "",
        title=title,
        text=text,
        source=str(record.get("source") or source),
        meta=meta,
    )


_FILE_READERS = {
    **{s: read_html for s in HTML_SUFFIXES},
    **{s: read_pdf for s in PDF_SUFFIXES},
}


def read_path(path: Path, options: ReaderOptions, notices: list[Notice],
              span: tuple[int, int, int] | None = None) -> Iterator[Document | Failure]:
    """One file's documents (a JSONL file's lines in `span` only, when given)."""
    suffix = path.suffix.lower()
    try:
        if suffix in JSONL_SUFFIXES:
            yield from read_jsonl(path, options, notices, span)
            return
        if suffix in TEXT_SUFFIXES:
            yield from read_text_file(path, options, notices)
            return
        reader = _FILE_READERS.get(suffix)
        if reader is None:
            raise _ReadError(f"unsupported file type {suffix or '(none)'}; kgmem reads {', '.join(sorted(SUPPORTED))}")
        yield reader(path, options, notices)
    except _ReadError as exc:
        yield Failure(str(path), str(exc))
    except PermissionError:
        yield Failure(str(path), "permission denied")
    except RecursionError:
        yield Failure(str(path), "too deeply nested to parse")
    except MemoryError:
        yield Failure(str(path), "too large to read into memory")
    except OSError as exc:
        yield Failure(str(path), exc.strerror or str(exc))


def walk(root: Path, options: ReaderOptions) -> Iterator[Path | Failure | Skipped]:
    """Files under a directory, sorted, hidden entries skipped, symlink loops cut."""
    seen: set[str] = set()
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            real = os.path.realpath(directory)
        except OSError as exc:
            yield Failure(str(directory), exc.strerror or str(exc))
            continue
        if real in seen:
            yield Failure(str(directory), "symlink loop (directory already visited)")
            continue
        seen.add(real)
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            yield Failure(str(directory), exc.strerror or "cannot list directory")
            continue
        subdirs = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            try:
                if entry.is_dir():
                    subdirs.append(path)
                    continue
                if not entry.is_file():
                    if entry.is_symlink():
                        yield Failure(str(path), "broken symlink")
                    continue
            except OSError as exc:
                yield Failure(str(path), exc.strerror or str(exc))
                continue
            if options.glob and not path.match(options.glob):
                continue
            if path.suffix.lower() not in SUPPORTED:
                yield Skipped(str(path))
                continue
            yield path
        stack.extend(reversed(subdirs))


def iter_documents(
    items: Iterable[Any], options: ReaderOptions | None = None
) -> Iterator[Document | Failure | Notice | Skipped]:
    """Documents from paths, strings and records, in order; failures and notices in between.

    A `pathlib.Path` is a file or directory to read; a `str` is always text, never a
    path (a server handing client text to `ingest` must not open files). A dict is a
    record {"id", "title", "text"[, "source", "meta"]}.
    """
    options = options or ReaderOptions()
    for item in items:
        notices: list[Notice] = []
        if isinstance(item, Document):
            yield item
        elif isinstance(item, dict):
            try:
                yield record_to_document(item, options)
            except _ReadError as exc:
                yield Failure(_describe(item), str(exc))
        elif isinstance(item, Path):
            yield from read_any_path(item, options)
        elif isinstance(item, str):
            if _looks_like_file_name(item):
                notices.append(Notice(_describe(item), "ingested as text; to read a file, pass a pathlib.Path "
                                      "or use Memory.ingest_paths (kgmem ingest does)"))
            yield Document(id="", title="", text=item, source="")
        else:
            yield Failure(_describe(item), f"cannot ingest a {type(item).__name__}: pass a Path, a string or a dict")
        yield from notices


def read_any_path(item: Path, options: ReaderOptions) -> Iterator[Document | Failure | Notice | Skipped]:
    """A file, or every supported file under a directory."""
    # Absolute paths are the ids of files: the same file read from another
    # working directory is the same document.
    path = Path(item).absolute()
    notices: list[Notice] = []
    if not path.exists() and not path.is_symlink():
        yield Failure(str(path), "no such file or directory")
    elif path.is_dir():
        for found in walk(path, options):
            if isinstance(found, Path):
                yield from read_path(found, options, notices)
                yield from notices
                notices.clear()
            else:
                yield found
    else:
        yield from read_path(path, options, notices)
        yield from notices


def _looks_like_file_name(text: str) -> bool:
    """One word ending in a suffix kgmem reads: probably meant as a path (never opened)."""
    text = text.strip()
    return 0 < len(text) <= 255 and not any(c.isspace() for c in text) and Path(text).suffix.lower() in SUPPORTED


def _describe(item: Any) -> str:
    if isinstance(item, dict) and item.get("id"):
        return f"record {item['id']!r}"
    text = repr(item)
    return text if len(text) <= 60 else text[:57] + "..."


# NUL ends a string for SQLite's text functions (and hid the rest of a passage from its
# checks); a lone surrogate (a JSON "\ud800" escape) cannot be encoded for the tokenizer.
# Each is replaced by one character, so offsets stay true to the text as given.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _storable(text: str) -> str:
    if not _UNSTORABLE.search(text):
        return text
    return _UNSTORABLE.sub(lambda m: " " if m.group() == "\x00" else "\ufffd", text)


def finalize(doc: Document) -> Document:
    """Fill in the content hash and, when no id was given, a content-hash id (after making
    the text storable: NUL as a space, a lone surrogate as U+FFFD, one character each)."""
    doc.text, doc.title = _storable(doc.text), _storable(doc.title)
    doc.hash = content_hash(doc.title, doc.text)
    if not doc.id:
        doc.id = "doc-" + doc.hash[:16]
    return doc
