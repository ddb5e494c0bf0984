"""The structure of a Markdown text — what the Markdown and HTML readers keep: sections
under their heading path, and code blocks.

Chunks never straddle a section and are embedded behind their heading path
("Errors and Exceptions › Handling Exceptions"); code blocks stay in the text, verbatim,
but out of the NLP graph (`prose_only`). A document carries `meta["format"] =
"markdown"` when its text is read this way.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

MARKDOWN = "markdown"
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t#]*$")
_INLINE_CODE = re.compile(r"`+")
# Marks of the page, not words: Sphinx's permalink pilcrow, heading hashes, emphasis.
_MARKS = re.compile(r"[\u00b6#*]|(?<![A-Za-z0-9_])_(?![A-Za-z0-9_]*[A-Za-z0-9]__(?!\w))|(?<=[A-Za-z0-9])_(?![A-Za-z0-9_])")
# (an underscore inside a name — `cmp_to_key`, `__init__` — is part of it, not emphasis)
PATH_SEPARATOR = " › "


@dataclass(frozen=True)
class Section:
    start: int  # character offsets in the text; the heading line opens the section
    end: int
    path: tuple[str, ...]  # the headings above it, outermost first (empty before the first)

    def heading(self, title: str = "") -> str:
        """The path as one line, without a first heading that repeats the title."""
        path = self.path[1:] if self.path and title and _plain(self.path[0]) == _plain(title) else self.path
        return PATH_SEPARATOR.join(path)


@dataclass(frozen=True)
class Structure:
    sections: list[Section]
    code: list[tuple[int, int]]  # fenced code blocks, fences included


def _plain(text: str) -> str:
    return " ".join(_MARKS.sub(" ", text).split()).lower()


def heading_text(raw: str) -> str:
    """A heading as read: no pilcrow, no inline-code backticks, single spaces."""
    return " ".join(_INLINE_CODE.sub("", raw.replace("\u00b6", " ")).split())


def markdown_structure(text: str) -> Structure:
    sections: list[Section] = []
    code: list[tuple[int, int]] = []
    path: list[tuple[int, str]] = []  # (level, heading)
    start, pos = 0, 0
    fence: str | None = None
    fence_start = 0
    for line in text.splitlines(keepends=True):
        here, pos = pos, pos + len(line)
        opener = _FENCE.match(line)
        if fence is not None:
            if opener and opener.group(1)[0] == fence[0] and len(opener.group(1)) >= len(fence):
                code.append((fence_start, pos))
                fence = None
            continue
        if opener:
            fence, fence_start = opener.group(1), here
            continue
        m = _HEADING.match(line.rstrip("\r\n"))
        if m is None:
            continue
        if here > start:
            sections.append(Section(start, here, tuple(h for _, h in path)))
        level = len(m.group(1))
        path = [(lv, h) for lv, h in path if lv < level] + [(level, heading_text(m.group(2)))]
        start = here
    if fence is not None:  # an unclosed fence runs to the end
        code.append((fence_start, len(text)))
    if len(text) > start:
        sections.append(Section(start, len(text), tuple(h for _, h in path)))
    return Structure(sections, code)


def prose_only(text: str, structure: Structure | None = None) -> str:
    """The text with its code blocks, heading hashes, pilcrows and backticks blanked to
    spaces: the same length, so every offset still points at the same character, but
    nothing of the code reaches the parser (a code block's lines become blank lines)."""
    structure = structure or markdown_structure(text)
    chars = list(text)
    for s, e in structure.code:
        for i in range(s, e):
            if chars[i] not in "\r\n":
                chars[i] = " "
    out = "".join(chars)
    return _MARKS.sub(" ", _INLINE_CODE.sub(lambda m: " " * len(m.group(0)), out))


def headings_at(text: str, title: str, starts: list[int]) -> list[str]:
    """The heading path of the section holding each offset (for re-embedding chunks)."""
    sections = markdown_structure(text).sections
    out = []
    for pos in starts:
        sec = next((s for s in sections if s.start <= pos < s.end), None)
        out.append(sec.heading(title) if sec else "")
    return out
