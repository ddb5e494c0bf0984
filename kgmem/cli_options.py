"""What every `kgmem` command shares: the --store and --json options, opening a store,
printing one JSON object, and expected failures as one line. Its own module so that the
commands defined outside cli.py (store_commands, serve.commands) import it without a cycle."""
from __future__ import annotations

import functools
import json
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

DEFAULT_STORE = "kgmem-store"


def store_option(fn: Callable) -> Callable:
    return click.option(
        "--store", "store", envvar="KGMEM_STORE", default=DEFAULT_STORE, show_default=True,
        type=click.Path(file_okay=False), help="Store directory (env KGMEM_STORE).",
    )(fn)


def json_option(fn: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")(fn)


def open_store(store: str, must_exist: bool = True, **kw: Any):
    from .api import Memory
    from .errors import NotFoundError

    if must_exist and not (Path(store) / "kgmem.db").exists():
        raise NotFoundError(f"no kgmem store at {store}: create one with `kgmem ingest PATH --store {store}`")
    return Memory(store, **kw)


def open_with_profile(store: str, profile: str | None) -> tuple[Any, bool]:
    """Open (or create) a store with a named profile: a new store is built with it and keeps
    it; an existing one runs with it (refused when it embeds otherwise). Also says whether
    the store is new."""
    from .config import Config

    new = not (Path(store) / "kgmem.db").exists()
    chosen = Config.profile(profile) if profile else None  # an unknown name: one line, before anything opens
    memory = open_store(store, must_exist=False, **({"config": chosen} if chosen and new else {}))
    if profile and not new:
        try:
            memory.use_profile(profile)
        except Exception:
            memory.close()
            raise
    return memory, new


def emit(obj: Any) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, default=str))


def handle_errors(fn: Callable) -> Callable:
    """Expected failures print one line (no traceback unless --debug) and exit 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from .errors import KgmemError, disk_full, full_disk_line

        debug = click.get_current_context().find_root().params.get("debug", False)
        try:
            return fn(*args, **kwargs)
        except (OSError, sqlite3.Error) as exc:
            if debug:
                raise
            if disk_full(exc, kwargs.get("store")):
                click.echo(f"Error: {full_disk_line(exc, kwargs.get('store'))}", err=True)
            elif isinstance(exc, sqlite3.Error):
                click.echo(f"Error: the store's database failed: {exc} (try `kgmem check --repair`; "
                           "--debug shows the traceback)", err=True)
            elif isinstance(exc, (FileNotFoundError, PermissionError)):
                click.echo(f"Error: {exc}", err=True)
            else:
                raise
            sys.exit(1)
        except KgmemError as exc:
            if debug:
                raise
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1)
        except ValueError as exc:
            if debug:
                raise
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1)

    return wrapper
