"""The passage store's tables, as named migrations applied in order (see migrations.py)."""
from __future__ import annotations

from .migrations import Migration

MEMORY_MIGRATIONS: list[Migration] = [
    Migration(
        "memory",
        "0001_documents_chunks_fts",
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE documents (
            id TEXT PRIMARY KEY,
            title TEXT NOT NULL DEFAULT '',
            source TEXT NOT NULL DEFAULT '',
            hash TEXT NOT NULL,
            meta TEXT NOT NULL DEFAULT '{}',
            text TEXT NOT NULL,
            added_at REAL NOT NULL
        );
        -- AUTOINCREMENT: an id is never reused, so a stale vector can never alias a new chunk.
        CREATE TABLE chunks (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            doc_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            ord INTEGER NOT NULL,
            start INTEGER NOT NULL,
            end INTEGER NOT NULL,
            text TEXT NOT NULL,
            n_tokens INTEGER NOT NULL
        );
        CREATE INDEX chunks_doc ON chunks(doc_id, ord);
        -- The FTS index keeps no copy of the text: its content is read through this view.
        CREATE VIEW chunks_fts_content AS
            SELECT c.id AS id, d.title AS title, c.text AS text
            FROM chunks c JOIN documents d ON d.id = c.doc_id;
        CREATE VIRTUAL TABLE chunks_fts USING fts5(
            title, text, content='chunks_fts_content', content_rowid='id',
            tokenize='porter unicode61 remove_diacritics 2'
        );
        """,
    ),
    Migration(
        "memory",
        "0002_document_parts",
        """
        -- A long document is stored as parts (meta.part_of = its id, meta.part = 1, 2, ...).
        CREATE INDEX documents_part_of ON documents(json_extract(meta, '$.part_of'))
            WHERE json_extract(meta, '$.part_of') IS NOT NULL;
        """,
    ),
]
