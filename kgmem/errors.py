"""Specific exceptions: the library raises these; the CLI turns them into one-line messages."""
from __future__ import annotations


class KgmemError(Exception):
    """Base class of every error kgmem raises on purpose."""


class StoreMismatchError(KgmemError):
    """The store was built with settings (embedder, chunking) that differ from the ones asked for."""


class SchemaVersionError(KgmemError):
    """The store's schema is newer than this kgmem understands."""


class ReadError(KgmemError):
    """An input could not be read; the message names the input and the reason."""


class StoreLockedError(KgmemError):
    """Another process is writing to the store."""


class NotFoundError(KgmemError):
    """A document or entity that was asked for does not exist."""


class CorruptStoreError(KgmemError):
    """A store file cannot be read; the message names it and how to rebuild it."""


class ReadOnlyStoreError(KgmemError):
    """A change was asked of a store opened read-only (or on read-only media)."""


class Cancelled(KgmemError):
    """The caller stopped waiting (a client that disconnected mid-answer); raised from a
    streaming callback, it stops the model at its next token."""
