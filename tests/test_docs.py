"""Technical documents: HTML read for its main content, sections and code kept, chunks
inside sections behind their heading path, code out of the graph (real trafilatura,
spaCy, embedder and store, on real pages of Python's documentation)."""
from __future__ import annotations

import re
from pathlib import Path

from kgmem.memory.structure import markdown_structure, prose_only
from kgmem.pipelines.readers import ReaderOptions, read_html

PAGES = Path(__file__).resolve().parent.parent / "benchmarks" / "pydocs" / "pages"


def test_markdown_structure_sections_code_and_prose():
    text = ("# Intro\u00b6\n\nSome `code` here.\n\n## 4.1. `if` Statements\n\n```\n>>> x = 1\n# not a heading\n```\n"
            "More.\n### Nested\nLast.\n")
    st = markdown_structure(text)
    assert [s.heading("Intro") for s in st.sections] == ["", "4.1. if Statements", "4.1. if Statements › Nested"]
    assert st.sections[0].start == 0 and st.sections[-1].end == len(text)
    assert all(a.end == b.start for a, b in zip(st.sections, st.sections[1:]))  # they tile the text
    (code,) = st.code
    assert text[code[0]:code[1]].startswith("```") and "# not a heading" in text[code[0]:code[1]]
    prose = prose_only(text, st)
    assert len(prose) == len(text) and ">>>" not in prose and "`" not in prose and "\u00b6" not in prose
    assert prose.count("\n") == text.count("\n")  # offsets and lines kept


def test_html_is_read_for_its_main_content_with_code_verbatim():
    doc = read_html(PAGES / "tutorial-venv.html", ReaderOptions(), [])
    assert doc.title == "12. Virtual Environments and Packages" and doc.meta["format"] == "markdown"
    for frame in ("Previous topic", "Next topic", "Table of Contents", "Show Source", "\u00b6"):
        assert frame not in doc.text
    assert "\npython3 -m venv tutorial-env\n" in doc.text  # a code line, verbatim, on its own line
    assert "## 12.2. Creating Virtual Environments" in doc.text


def test_chunks_stay_in_sections_behind_their_heading_and_code_stays_out_of_the_graph(memory):
    report = memory.ingest([PAGES / "tutorial-errors.html"])
    assert report.added == 1 and not report.failed
    ((doc_id,),) = memory.passages.sql.conn.execute("SELECT id FROM documents").fetchall()
    doc = memory.passages.sql.get_document(doc_id)
    sections = markdown_structure(doc.text).sections
    code = markdown_structure(doc.text).code
    chunks = memory.passages.sql.chunks_of(doc_id)
    assert len(chunks) > len(sections) // 2
    for c in chunks:  # never across a section boundary
        assert any(s.start <= c.start and c.end <= s.end for s in sections), c.text[:80]
    conn = memory.passages.sql.conn
    spans = conn.execute("SELECT m.start, m.end, e.name FROM mentions m "
                         "JOIN entities e ON e.id = m.entity_id").fetchall()
    assert spans
    for start, end, name in spans:
        if start < end:  # (zero-width: the page's subject, tied to each chunk at its start)
            assert not any(s <= start < e for s, e in code), name  # nothing from code blocks
        assert "\n" not in name and "\u00b6" not in name and re.search(r"\w", name)
    # Each chunk is embedded behind the page title and its heading path, also when
    # re-embedded by a repair.
    import numpy as np

    from kgmem.memory.passages import embedding_text
    from kgmem.memory.structure import headings_at

    inner = next(c for c in chunks if headings_at(doc.text, doc.title, [c.start])[0] and not c.text.startswith("#"))
    heading = headings_at(doc.text, doc.title, [inner.start])[0]
    with_heading, without = memory.passages.embedder.embed(
        [embedding_text(doc.title, inner.text, heading), embedding_text(doc.title, inner.text)])
    stored = memory.passages.vectors.vectors(np.array([inner.id]))[0]
    assert float(stored @ with_heading) > 0.999 and float(stored @ without) < 0.999
    memory.passages.vectors.remove([inner.id])
    assert memory.passages.reconcile()["re_embedded"] == 1
    assert float(memory.passages.vectors.vectors(np.array([inner.id]))[0] @ with_heading) > 0.999


def test_text_read_from_html_holds_no_markdown_escapes_and_code_keeps_its_backslashes(memory):
    """What a reader of the page sees: `newgrades.__getitem__`, `['jane', ...]`, `>>>`; the
    page's own backslashes in code (`'\\u0394'`, `"\\n"`) stay."""
    report = memory.ingest([PAGES / "howto-sorting.html", PAGES / "howto-unicode.html"])
    assert report.added == 2 and not report.failed
    texts = {Path(d.source).name: d.text for d in map(memory.get, report.ids)}
    sorting, unicode = texts["howto-sorting.html"], texts["howto-unicode.html"]
    assert "key=newgrades.__getitem__)" in sorting and "['jane', 'dave', 'john']" in sorting
    for text in texts.values():
        prose = re.sub(r"```.*?```|`[^`\n]+`", "", text, flags=re.S)
        assert not re.search(r"\\[_*\[\]<>`#|~]", prose), re.search(r".{30}\\[_*\[\]<>`#|~].{30}", prose)
    assert "'\\u0394'" in unicode  # code's own escapes are the page's
    # Chunks, search hits and their offsets are of the same text.
    hit = memory.search("sort a separate list of student names by grade", k=5, mode="lexical")
    assert any("__getitem__" in h.text for h in hit)
    for h in hit:
        assert memory.get(h.doc_id).text[h.start:h.end] == h.text


def test_the_no_llm_reader_explains_a_how_to_question_and_names_a_factoid(memory):
    memory.ingest([PAGES / "tutorial-controlflow.html", PAGES / "tutorial-classes.html"])
    ans = memory.ask("What does the nonlocal statement do?", llm="extractive")
    assert ans.found and ans.context.form == "explain"
    said = re.sub(r"\s*\[\d+\]$", "", ans.text)
    assert "nonlocal" in said and 8 <= len(said.split()) <= 61 and said.rstrip(" …").endswith((".", ":"))
    assert ans.citations and ans.citations[0].quote.strip() in memory.get(ans.citations[0].doc_id).text
    short = memory.ask("Which keyword defines a function?", llm="extractive")
    assert short.context.form == "phrase" and len(re.sub(r"\s*\[\d+\]", "", short.text).split()) <= 6
