"""`kgmem serve` and `kgmem mcp`: start the HTTP API or the MCP server on a store."""
from __future__ import annotations

import importlib.util
import ipaddress
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from ..cli_options import handle_errors, store_option

LLM_HELP = "auto | llama[:MODEL|PATH.gguf] | openai[:MODEL] | extractive (env KGMEM_LLM)."


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _require_token(host: str, token: str | None) -> None:
    if not is_loopback(host) and not token:
        raise click.UsageError(f"--host {host} lets other machines in: give a token with --token or "
                               "KGMEM_API_TOKEN (every request must then carry it)")


def _need_serve_extra() -> None:
    missing = [m for m in ("fastapi", "uvicorn", "mcp", "multipart") if importlib.util.find_spec(m) is None]
    if missing:
        raise click.ClickException(f"this command needs {', '.join(missing)}: pip install 'kgmem[serve]'")


@contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """While models load, anything written to fd 1 (by Python or C) goes to stderr: on
    stdio, stdout belongs to the MCP protocol."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _service(store: str, llm: str | None, threads: int | None):
    from ..config import Config
    from .service import Service

    config = Config(threads=threads) if threads else None
    service = Service(store, config, llm=llm)
    took = service.warm()
    click.echo(f"kgmem: {store}: {service.stats()['documents']} documents; warmed in "
               f"{sum(took.values()):.1f}s{' (read-only)' if service.read_only else ''}", err=True)
    if service.reader.llm_notice:
        click.echo(f"kgmem: {service.reader.llm_notice}", err=True)
    return service


@click.command()
@store_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (anything but loopback "
              "needs --token).")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535))
@click.option("--token", envvar="KGMEM_API_TOKEN", help="Required on every request: Authorization: Bearer TOKEN "
              "(the web page: open /?token=TOKEN once). Env KGMEM_API_TOKEN.")
@click.option("--llm", envvar="KGMEM_LLM", help=LLM_HELP)
@click.option("--max-request-mb", type=click.IntRange(min=1), default=64, show_default=True,
              help="Larger requests are refused (413).")
@click.option("--threads", type=int, help="Threads for the embedder and the model (env KGMEM_THREADS).")
@handle_errors
def serve(store: str, host: str, port: int, token: str | None, llm: str | None, max_request_mb: int,
          threads: int | None) -> None:
    """Serve the store over HTTP: the JSON API (docs at /docs) and a web page at /."""
    _need_serve_extra()
    _require_token(host, token)
    import uvicorn

    from .http import create_app

    service = _service(store, llm, threads)
    app = create_app(service, token=token, max_request_bytes=max_request_mb << 20)
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"kgmem: serving on http://{shown}:{port}/ (API docs: /docs){' — token required' if token else ''}",
               err=True)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)
    finally:
        service.close()


@click.command()
@store_option
@click.option("--http", "over_http", is_flag=True, help="Streamable HTTP at http://HOST:PORT/mcp instead of stdio.")
@click.option("--host", default="127.0.0.1", show_default=True, help="With --http: address to bind (loopback only).")
@click.option("--port", default=8766, show_default=True, type=click.IntRange(0, 65535), help="With --http.")
@click.option("--llm", envvar="KGMEM_LLM", help=LLM_HELP)
@click.option("--threads", type=int, help="Threads for the embedder and the model (env KGMEM_THREADS).")
@handle_errors
def mcp(store: str, over_http: bool, host: str, port: int, llm: str | None, threads: int | None) -> None:
    """Serve the store to agents over the Model Context Protocol (stdio by default)."""
    _need_serve_extra()
    from .mcptools import build_server

    if over_http and not is_loopback(host):
        raise click.UsageError("kgmem mcp --http binds loopback only; put an authenticating proxy in front "
                               "to reach it from elsewhere")
    with _stdout_to_stderr():
        service = _service(store, llm, threads)
        server = build_server(service)
    try:
        if over_http:
            click.echo(f"kgmem: MCP on http://{host}:{port}/mcp", err=True)
            server.run("streamable-http", host=host, port=port)
        else:
            server.run("stdio")
    finally:
        service.close()
