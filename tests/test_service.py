"""The service layer under `kgmem serve` and `kgmem mcp`, in-process with real parts:
uploads never become server paths, long uploads become parts, read-only stores refuse
changes with one line."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kgmem.errors import NotFoundError, ReadOnlyStoreError
from kgmem.pipelines.readers import ReaderOptions
from kgmem.serve.service import BadRequest, Service, safe_name


@given(st.text(max_size=300))
def test_a_client_file_name_becomes_a_plain_base_name(name):
    clean = safe_name(name)
    assert clean and "/" not in clean and "\\" not in clean and not clean.startswith(".")
    assert len(clean) <= 120 and clean not in ("..", ".")


def test_long_upload_becomes_parts_named_after_the_client_file(tmp_path, embedder, extractor):
    paragraph = "The lighthouse keeper of Skerryvore logged every ship that passed the reef. "
    text = "\n\n".join(f"{i}. {paragraph * 3}" for i in range(60)).encode()
    with Service(tmp_path / "s", embedder=embedder, extractor=extractor, llm="extractive",
                 options=ReaderOptions(part_chars=4000)) as svc:
        report = svc.ingest_file("../logs/keeper.txt", text)
        assert report.ids == ["keeper.txt"] and report.failed == []
        parts = [d["id"] for d in svc.documents(limit=1000)["documents"]]
        assert len(parts) > 3 and all(p.startswith("keeper.txt#") for p in parts)
        assert all(str(tmp_path) not in svc.get(p).source for p in parts)
        assert svc.search("Skerryvore lighthouse keeper", k=1)[0].doc_id.startswith("keeper.txt#")
        assert svc.delete("keeper.txt") > 3  # the whole document: every part
        assert svc.documents()["total"] == 0
        with pytest.raises(NotFoundError):
            svc.delete("keeper.txt")
        with pytest.raises(BadRequest, match=r"records\[0\].text"):
            svc.ingest_records([{"id": "x"}])
        with pytest.raises(BadRequest, match="empty"):
            svc.search("   ")


def test_a_read_only_store_refuses_changes_in_one_line(tmp_path, embedder, extractor):
    with Service(tmp_path / "s", embedder=embedder, extractor=extractor) as svc:
        svc.ingest_texts(["Gannets nest on Bass Rock."])
    with Service(tmp_path / "s", embedder=embedder, extractor=extractor, read_only=True) as ro:
        assert ro.search("gannets", k=1)[0].text.startswith("Gannets")
        with pytest.raises(ReadOnlyStoreError, match="read-only"):
            ro.ingest_texts(["more"])
