"""What was read: documents, chunks and their vectors (SQLite + FAISS)."""
from .passages import PassageStore, content_hash, embedding_text
from .store import Chunk, Document, NewChunk, SQLiteStore

__all__ = ["PassageStore", "SQLiteStore", "Document", "Chunk", "NewChunk", "content_hash", "embedding_text"]
