"""Keep BM25's cost flat as the store grows: a postings budget per query.

FTS5 scores every chunk that matches any query word, so a question holding a common
word ("born", "city") costs time in proportion to the corpus. Common words also
weigh least in BM25 (low idf). So before searching, words are taken rarest first
while the postings they would read fit a budget; the rest are dropped (at least one
word is always kept). Document frequencies come from FTS5's own vocabulary, read
by the writer after a write that grew the store by a tenth, and kept in the store's
meta table (a reader loads them instead of scanning the vocabulary); words are stemmed by FTS5's
own tokenizer (a one-row temp FTS5 table), so they match the vocabulary exactly.
On a store whose words all fit the budget nothing changes: no question of the shared
set (3.8k chunks) loses a word. At 100k-1M chunks README@f5760d8 "Speed" gives the cost.
"""
from __future__ import annotations

import json
import sqlite3
import threading

META_KEY = "bm25_df"  # {"size": largest chunk id counted, "df": {term: chunks}} in the meta table
TOKENIZE = "porter unicode61 remove_diacritics 2"


def _largest_id(conn: sqlite3.Connection) -> int:
    """The store's size for the frequencies' purposes: chunk ids are never reused."""
    return int(conn.execute("SELECT coalesce(max(id), 0) FROM chunks").fetchone()[0])


class PostingsBudget:
    def __init__(self, budget: int = 20_000, min_df: int = 500, refresh_growth: float = 0.1):
        self.budget = budget
        self.min_df = min_df  # only words at least this common are listed; others count as min_df
        self.refresh_growth = refresh_growth
        self._df: dict[str, int] = {}
        self._size = -1  # the largest chunk id when the frequencies were read
        self._lock = threading.Lock()
        self._ready: set[int] = set()

    def _prepare(self, conn: sqlite3.Connection) -> None:
        if id(conn) in self._ready:
            return
        conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.kgmem_vocab USING fts5vocab(main, 'chunks_fts', 'row')")
        conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.kgmem_q USING fts5(w, tokenize='{TOKENIZE}')")
        conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.kgmem_qv USING fts5vocab(temp, 'kgmem_q', 'instance')")
        self._ready.add(id(conn))

    def _stale(self, size: int, known: int) -> bool:
        return known < 0 or abs(size - known) > self.refresh_growth * max(known, 1)

    def _frequencies(self, conn: sqlite3.Connection) -> dict[str, int]:
        size = _largest_id(conn)
        if size * self.min_df == 0 or size < self.budget // 10:
            return {}  # a small store: every query fits
        if self._stale(size, self._size):
            saved = self._saved(conn)  # what the writer counted after its last write
            if saved is not None and not self._stale(size, saved[0]):
                self._size, self._df = saved
            else:
                self._df, self._size = self._count(conn), size
        return self._df

    def _count(self, conn: sqlite3.Connection) -> dict[str, int]:
        rows = conn.execute("SELECT term, doc FROM temp.kgmem_vocab WHERE doc >= ?", (self.min_df,)).fetchall()
        return {t: int(d) for t, d in rows}

    @staticmethod
    def _saved(conn: sqlite3.Connection) -> tuple[int, dict[str, int]] | None:
        row = conn.execute("SELECT value FROM main.meta WHERE key = ?", (META_KEY,)).fetchone()
        if row is None:
            return None
        try:
            data = json.loads(row[0])
            return int(data["size"]), {str(t): int(d) for t, d in data["df"].items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            return None  # unreadable: counted again

    def save(self, conn: sqlite3.Connection) -> bool:
        """The writer, after a write: count the word frequencies now, once, and keep them in
        the store when they moved by more than `refresh_growth` (readers load them at no cost)."""
        with self._lock:
            self._prepare(conn)
            size = _largest_id(conn)
            if size < self.budget // 10:
                return False
            saved = self._saved(conn)
            if saved is not None and not self._stale(size, saved[0]):
                return False
            self._df, self._size = self._count(conn), size
            conn.execute("INSERT INTO main.meta(key, value) VALUES (?, ?) "
                         "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                         (META_KEY, json.dumps({"size": size, "df": self._df})))
            return True

    def select(self, conn: sqlite3.Connection, words: list[str]) -> list[str]:
        """The words to search for, in their original order."""
        if len(words) <= 1:
            return words
        with self._lock:
            self._prepare(conn)
            df = self._frequencies(conn)
            if not df:
                return words
            conn.execute("DELETE FROM temp.kgmem_q")
            conn.executemany("INSERT INTO temp.kgmem_q(rowid, w) VALUES (?, ?)", list(enumerate(words)))
            stems = dict(conn.execute("SELECT doc, term FROM temp.kgmem_qv").fetchall())
        cost = sorted((df.get(stems.get(i, ""), self.min_df), i) for i in range(len(words)))
        keep, spent = [], 0
        for postings, i in cost:
            if keep and spent + postings > self.budget:
                break
            keep.append(i)
            spent += postings
        return [words[i] for i in sorted(keep)]
