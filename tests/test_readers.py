"""Readers: each format for real, and bad input as one-line failures while the rest goes on."""
from __future__ import annotations

import json
import os

from kgmem.memory.store import Document
from kgmem.pipelines.readers import Failure, Notice, ReaderOptions, Skipped, iter_documents

from .pdfgen import write_pdf


def split(results):
    docs = [r for r in results if isinstance(r, Document)]
    fails = [r for r in results if isinstance(r, Failure)]
    notes = [r for r in results if isinstance(r, Notice)]
    skipped = [r for r in results if isinstance(r, Skipped)]
    return docs, fails, notes, skipped


def test_each_format(tmp_path):
    (tmp_path / "a.txt").write_text("Plain text about Barcelona.")
    (tmp_path / "b.md").write_text("# The Title\n\nSome *markdown* body.")
    (tmp_path / "c.html").write_text(
        "<html><head><title>Page T</title><script>var x=1;</script><style>p{}</style></head>"
        "<body><div><p>Hello <b>world</b>.</p><p>Second para.</p></div></body></html>"
    )
    write_pdf(tmp_path / "d.pdf", ["Gaudi designed the Sagrada Familia.", "It is in Barcelona."])
    (tmp_path / "e.jsonl").write_text(
        json.dumps({"id": "r1", "title": "T1", "text": "one"}) + "\n\n"
        + json.dumps({"id": "r2", "title": "T2", "text": "two"}) + "\n"
    )
    docs, fails, _, _ = split(list(iter_documents([tmp_path])))
    assert not fails
    by_title = {d.title: d for d in docs}
    assert by_title["a"].text == "Plain text about Barcelona."
    assert by_title["The Title"].text.startswith("# The Title")
    html = by_title["Page T"]
    assert "Hello" in html.text and "world" in html.text and "var x" not in html.text and "p{}" not in html.text
    pdf = by_title["d"]
    assert "Sagrada Familia" in pdf.text and "Barcelona" in pdf.text
    assert {d.id for d in docs if d.title in ("T1", "T2")} == {"r1", "r2"}
    # files are identified by their absolute path
    assert by_title["a"].id == str((tmp_path / "a.txt").absolute())


def test_bad_inputs_are_reported_and_the_rest_goes_on(tmp_path):
    (tmp_path / "good.txt").write_text("good text")
    (tmp_path / "bin.txt").write_bytes(b"\x00\x01\x02binary")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 not really a pdf")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    (tmp_path / "bad.jsonl").write_text('{"id": "ok", "text": "fine"}\n{not json\n["a list"]\n{"id": "x"}\n')
    os.symlink(tmp_path, tmp_path / "loop")
    docs, fails, notes, skipped = split(list(iter_documents([tmp_path, tmp_path / "missing.txt", 42])))
    reasons = {os.path.basename(f.item.split(":")[0]) if ":" in f.item else f.item: f.reason for f in fails}
    texts = {d.text for d in docs}
    assert "good text" in texts and "fine" in texts
    assert any("caf\ufffd au lait" == t for t in texts)
    assert any("invalid UTF-8" in n.message for n in notes)
    assert "binary" in reasons[str(tmp_path / "bin.txt")] if str(tmp_path / "bin.txt") in reasons else any(
        "binary" in f.reason for f in fails
    )
    assert any("broken PDF" in f.reason and f.item.endswith("broken.pdf") for f in fails)
    assert any(f.item.endswith("bad.jsonl:2") and "not a JSON record" in f.reason for f in fails)
    assert any(f.item.endswith("bad.jsonl:3") and "object" in f.reason for f in fails)
    assert any(f.item.endswith("bad.jsonl:4") and "no text field" in f.reason for f in fails)
    assert any("symlink loop" in f.reason for f in fails)
    assert any(f.item.endswith("missing.txt") and "no such file" in f.reason for f in fails)
    assert any("cannot ingest a int" in f.reason for f in fails)
    assert [os.path.basename(s.item) for s in skipped] == ["image.png"]
    # every failure is one line naming the input
    assert all("\n" not in str(f) for f in fails)


def test_unsupported_file_named_directly_is_a_failure(tmp_path):
    p = tmp_path / "x.docx"
    p.write_bytes(b"PK..")
    _, fails, _, _ = split(list(iter_documents([p])))
    assert len(fails) == 1 and "unsupported file type .docx" in fails[0].reason


def test_strings_and_records_and_configurable_fields():
    opts = ReaderOptions(id_field="key", title_field="name", text_field="body")
    docs, fails, _, _ = split(list(iter_documents(["just some text", {"key": 7, "name": "N", "body": "B"}], opts)))
    assert not fails
    assert docs[0].text == "just some text" and docs[0].id == ""
    assert (docs[1].id, docs[1].title, docs[1].text) == ("7", "N", "B")


def test_encrypted_pdf_is_reported(tmp_path):
    from pypdf import PdfReader, PdfWriter

    plain = tmp_path / "plain.pdf"
    write_pdf(plain, ["secret text"])
    writer = PdfWriter(clone_from=PdfReader(plain))
    writer.encrypt(user_password="pw", owner_password="owner")
    locked = tmp_path / "locked.pdf"
    with open(locked, "wb") as fh:
        writer.write(fh)
    _, fails, _, _ = split(list(iter_documents([locked])))
    assert len(fails) == 1 and "encrypted" in fails[0].reason


def test_a_string_is_text_never_a_path(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("the launch code is 0000")
    docs, fails, notes, _ = split(list(iter_documents([str(secret), "notes.txt", "plain words here"])))
    assert not fails
    assert [d.text for d in docs] == [str(secret), "notes.txt", "plain words here"]
    assert all("launch code" not in d.text for d in docs)
    # a lone file name is still text, with a notice saying how to read a file
    assert len(notes) == 2 and all("pathlib.Path" in n.message for n in notes)


def test_memory_reads_files_only_from_paths(memory, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("Wilhelmina Quarterfield keeps the vault key.")
    report = memory.ingest([str(secret), "typo-notes.txt"])
    assert report.added == 2 and not report.failed
    assert not memory.search("Wilhelmina Quarterfield vault", k=3, mode="lexical")
    missing = memory.ingest_paths([tmp_path / "does-not-exist.txt"])
    assert missing.added == 0 and [r for _, r in missing.failed] == ["no such file or directory"]
    read = memory.ingest_paths(str(secret))
    assert read.added == 1
    assert memory.search("Wilhelmina Quarterfield vault", k=1, mode="lexical")[0].doc_id == str(secret)


def test_hostile_and_oversized_pdfs_are_one_line_each(tmp_path):
    write_pdf(tmp_path / "bomb.pdf", ["A decompression bomb."], padding=90_000_000)  # over pypdf's 75 MB limit
    write_pdf(tmp_path / "big.pdf", ["Too large."], padding=0)
    write_pdf(tmp_path / "fine.pdf", ["Gaudi designed the Sagrada Familia."])
    opts = ReaderOptions(max_file_bytes=(tmp_path / "big.pdf").stat().st_size - 1)
    docs, fails, _, _ = split(list(iter_documents([tmp_path / "bomb.pdf", tmp_path / "fine.pdf"])))
    assert [d.title for d in docs] == ["fine"]
    assert len(fails) == 1 and fails[0].item.endswith("bomb.pdf") and "LimitReachedError" in fails[0].reason
    assert "\n" not in str(fails[0])
    # the size limit holds for PDFs as for every reader
    _, fails, _, _ = split(list(iter_documents([tmp_path / "big.pdf"], opts)))
    assert len(fails) == 1 and "limit" in fails[0].reason


def test_nul_and_lone_surrogates_are_stored_one_character_each(tmp_path, memory):
    """A JSONL record with a "\\ud800" escape crashed the tokenizer (TypeError, the whole
    ingest lost); NUL made `check` report a torn chunk (SQLite's substr stops at NUL)."""
    src = tmp_path / "odd.jsonl"
    src.write_text('{"id": "s", "text": "before \\ud800 after, a lone surrogate"}\n'
                   '{"id": "n", "text": "a NUL\\u0000 inside"}\n{"id": "ok", "text": "plain text"}\n')
    report = memory.ingest(src)
    assert report.added == 3 and not report.failed
    assert memory.get("s").text == "before \ufffd after, a lone surrogate"
    assert memory.get("n").text == "a NUL  inside"
    assert memory.check() == []
    assert memory.ingest(src).unchanged == 3  # the same hash on a re-run: nothing doubled
