"""Keep BM25's cost flat as the store grows: a postings budget per query.

FTS5 scores every chunk that matches any query word, so a question holding a common
word ("born", "city") costs time in proportion to the corpus. Common words also
weigh least in BM25 (low idf). So before searching, words are taken rarest first
while the postings they would read fit a budget; the rest are dropped (at least one
word is always kept). Document frequencies come from FTS5's own vocabulary, read
once and refreshed when the store has grown by a tenth; words are stemmed by FTS5's
own tokenizer (a one-row temp FTS5 table), so they match the vocabulary exactly.
On a store whose words all fit the budget nothing changes: no question of the shared
set (3.8k chunks) loses a word. At 100k-1M chunks README "Speed" gives the cost.
"""
from __future__ import annotations

import sqlite3
import threading

TOKENIZE = "porter unicode61 remove_diacritics 2"


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

    def _frequencies(self, conn: sqlite3.Connection) -> dict[str, int]:
        size = int(conn.execute("SELECT coalesce(max(id), 0) FROM chunks").fetchone()[0])
        if size * self.min_df == 0 or size < self.budget // 10:
            return {}  # a small store: every query fits
        if self._size < 0 or abs(size - self._size) > self.refresh_growth * max(self._size, 1):
            rows = conn.execute("SELECT term, doc FROM temp.kgmem_vocab WHERE doc >= ?", (self.min_df,)).fetchall()
            self._df, self._size = {t: int(d) for t, d in rows}, size
        return self._df

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
