"""Small typed results shared by retrieval and the API."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Hit:
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
