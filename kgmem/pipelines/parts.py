"""Long documents as parts: where to cut, the parts' ids, and text files read in parts.

A document longer than `part_chars` is stored as documents `ID#1`, `ID#2`, … (meta
`part_of`, `part`); joined, the parts are its text, character for character. Memory
then follows the part, not the document: a 100 MB text file is read block by block.
"""
from __future__ import annotations

import codecs
from collections.abc import Callable, Iterator
from pathlib import Path

from ..memory.store import Document


class NotText(Exception):
    """The file holds binary data."""


def cut_point(text: str, limit: int) -> int:
    """Where to end a part of at most `limit` characters: after a paragraph, a line, a
    sentence or a word, whichever comes last in the second half; else at the limit."""
    for sep in ("\n\n", "\n", ". ", " "):
        i = text.rfind(sep, limit // 2, limit)
        if i > 0:
            return i + len(sep)
    return limit


def part_document(whole: Document, text: str, n: int) -> Document:
    """Part n (from 1) of a long document: its own id, the whole's title and source."""
    return Document(id=f"{whole.id}#{n}", title=f"{whole.title} (part {n})" if whole.title else "", text=text,
                    source=whole.source, meta={**whole.meta, "part_of": whole.id, "part": n})


def split_document(doc: Document, limit: int) -> list[Document]:
    """A finalized document longer than `limit` characters as its parts; else itself."""
    if len(doc.text) <= limit:
        return [doc]
    parts, text = [], doc.text
    while text:
        cut = cut_point(text, limit) if len(text) > limit else len(text)
        parts.append(part_document(doc, text[:cut], len(parts) + 1))
        text = text[cut:]
    return parts


def stream_parts(path: Path, limit: int, warn: Callable[[str], None], block: int = 1 << 20) -> Iterator[str]:
    """The text of a UTF-8 file in parts of at most `limit` characters, read `block`
    bytes at a time. Invalid UTF-8 is replaced (and `warn`ed once)."""
    strict: codecs.IncrementalDecoder | None = codecs.getincrementaldecoder("utf-8-sig")()
    lenient = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
    buffer, offset = "", 0
    with open(path, "rb") as fh:
        while True:
            data = fh.read(block)
            if offset == 0 and b"\x00" in data[:8192]:
                raise NotText("binary file (NUL bytes), not text")
            if strict is not None:
                try:
                    strict.decode(data, final=not data)
                except UnicodeDecodeError as exc:
                    warn(f"invalid UTF-8 at byte {offset + exc.start}; undecodable bytes replaced")
                    strict = None
            buffer += lenient.decode(data, final=not data)
            offset += len(data)
            while len(buffer) > limit:
                cut = cut_point(buffer, limit)
                yield buffer[:cut]
                buffer = buffer[cut:]
            if not data:
                break
    if buffer.strip():
        yield buffer
