"""Small typed results shared by retrieval and the API."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Hit:
    """One ranked passage (a chunk of a document), as `Memory.search` returns it.

    Attributes:
        doc_id: The document's id.
        chunk_id: The chunk's id in the store.
        score: The ranking's score (higher is better; scales differ between modes).
        text: The chunk's text.
        title: The document's title.
        source: Where the document came from (a path, or "" for text and records).
        start: Offset of the chunk's first character in its document.
        end: Offset just past its last character: `document.text[start:end] == text`.
        ranks: The 1-based rank of this chunk in each retriever that found it,
            e.g. `{"dense": 3, "lexical": 1, "graph": 2}`.
    """

    doc_id: str
    chunk_id: int
    score: float
    text: str
    title: str
    source: str
    start: int
    end: int
    # 1-based rank of this chunk in each retriever that found it, e.g. {"dense": 3, "lexical": 1}
    ranks: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "doc_id": self.doc_id, "chunk_id": self.chunk_id, "score": self.score,
            "title": self.title, "source": self.source, "start": self.start, "end": self.end,
            "text": self.text, "ranks": self.ranks,
        }
