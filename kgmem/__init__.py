"""kgmem: a long-term memory for LLMs — passages in SQLite + FAISS, a spaCy-built knowledge graph."""
from .api import Memory
from .config import Config
from .errors import KgmemError
from .pipelines.query import Answer

__all__ = ["Memory", "Config", "KgmemError", "Answer"]
__version__ = "0.1.0"
