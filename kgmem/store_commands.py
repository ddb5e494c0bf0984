"""`kgmem graph`, `export`, `stats`, `docs`, `delete` and `check`: look into a store and keep
it whole. Registered on the `kgmem` group by `cli.py`."""
from __future__ import annotations

import sys

import click

from .cli_options import emit, handle_errors, json_option, open_store, store_option


@click.command()
@click.argument("entity", required=False)
@store_option
@click.option("--hops", default=1, show_default=True, help="How far from ENTITY.")
@click.option("--limit", default=50, show_default=True)
@click.option("--communities", is_flag=True, help="List communities (level 0: in a document; 1: across) instead.")
@click.option("--doc", "doc_id", help="With --communities: only this document's.")
@json_option
@handle_errors
def graph(entity: str | None, store: str, hops: int, limit: int, communities: bool, doc_id: str | None,
          as_json: bool) -> None:
    """Facts around ENTITY in the knowledge graph (or, with --communities, its communities)."""
    from .errors import NotFoundError
    from .render import communities_text, facts_text

    if communities:
        with open_store(store) as memory:
            comms = memory.communities(doc_id=doc_id)
        if as_json:
            emit({"communities": [c.as_dict() for c in comms[:limit]], "total": len(comms)})
        else:
            click.echo(communities_text(comms, limit))
        return
    if not entity:
        raise ValueError("name an ENTITY, or use --communities")
    with open_store(store) as memory:
        found = memory.graph.entity(entity)
        if found is None:
            raise NotFoundError(f"no entity {entity!r} in the graph")
        facts = memory.graph.neighbors(entity, hops=hops, limit=limit)
    if as_json:
        emit({"entity": found.name, "label": found.label, "aliases": found.aliases,
               "mentions": len(found.mentions), "facts": [f.as_dict() for f in facts]})
    else:
        aliases = f" (also: {', '.join(found.aliases[:6])})" if found.aliases else ""
        click.echo(f"{found.name} [{found.label}]{aliases} — {len(found.mentions)} mentions")
        click.echo(facts_text(facts, limit))


@click.command()
@click.argument("out", type=click.Path(dir_okay=False))
@store_option
@click.option("--format", "fmt", type=click.Choice(["html", "graphml", "gexf"]), help="Default: from OUT's suffix.")
@click.option("--max-nodes", default=400, show_default=True, help="Nodes in the HTML view (best connected first).")
@handle_errors
def export(out: str, store: str, fmt: str | None, max_nodes: int) -> None:
    """Write the knowledge graph to OUT (interactive HTML, GraphML or GEXF)."""
    with open_store(store) as memory:
        path = memory.graph.export(out, fmt, max_nodes=max_nodes)
        g = memory.graph.nx
    click.echo(f"wrote {path} ({g.number_of_nodes()} entities, {g.number_of_edges()} edges)")


@click.command()
@store_option
@json_option
@handle_errors
def stats(store: str, as_json: bool) -> None:
    """Counts: documents, chunks, vectors, entities, relations."""
    from .render import stats_text

    with open_store(store) as memory:
        data = memory.stats()
    emit(data) if as_json else click.echo(stats_text(data))


@click.command()
@store_option
@click.option("--prefix", default="", help="Only ids that start with this (e.g. a folder's path).")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True, help="At most this many (0: all).")
@click.option("--offset", type=click.IntRange(min=0), default=0, help="Skip this many first.")
@json_option
@handle_errors
def docs(store: str, prefix: str, limit: int, offset: int, as_json: bool) -> None:
    """List stored documents: id, characters, chunks, title (a long document's parts as ID#N)."""
    with open_store(store) as memory:
        rows = memory.documents(limit=limit or None, offset=offset, prefix=prefix)
    if as_json:
        emit({"documents": rows})
        return
    for row in rows:
        click.echo(f"{row['id']}\t{row['chars']:,} chars\t{row['chunks']} chunks\t{row['title']}")


@click.command()
@click.argument("doc_ids", nargs=-1, required=True)
@store_option
@handle_errors
def delete(doc_ids: tuple[str, ...], store: str) -> None:
    """Delete documents (with their chunks, vectors and graph facts)."""
    with open_store(store) as memory:
        removed = memory.delete(list(doc_ids))
    click.echo(f"deleted {len(doc_ids)} document(s), {removed} chunks")


@click.command()
@store_option
@click.option("--repair", is_flag=True, help="Fix what can be fixed from the stored text, then check again.")
@json_option
@handle_errors
def check(store: str, repair: bool, as_json: bool) -> None:
    """Verify that documents, chunks, full-text index, vectors and graph agree (exit 1 if not)."""
    fixed: dict[str, int] = {}
    with open_store(store) as memory:
        report = memory.check_report()
        if repair and report.problems:
            fixed = memory.repair()
            report = memory.check_report()
    problems = report.problems
    if as_json:
        emit({**report.as_dict(), "repaired": fixed})
    else:
        for name, n in fixed.items():
            if n:
                click.echo(f"repaired: {name.replace('_', ' ')}: {n}")
        if report.note:
            click.echo(f"note: {report.note}", err=True)
        click.echo("ok" if not problems else "\n".join(f"problem: {p}" for p in problems))
    sys.exit(1 if problems else 0)


@click.command()
@click.argument("dest", type=click.Path(file_okay=False))
@store_option
@click.option("--wait", type=click.FloatRange(min=0), default=60.0, show_default=True,
              help="Seconds to wait for a live writer to save the vectors of its last commit.")
@json_option
@handle_errors
def backup(dest: str, store: str, wait: float, as_json: bool) -> None:
    """Copy the store to DEST (a new or empty folder) while it is in use.

    Writers and readers go on; the copy is the store as of one committed write, every
    document whole. Restore by opening DEST (`--store DEST`), or by moving it into place.
    """
    with open_store(store) as memory:
        report = memory.backup(dest, wait=wait)
    if as_json:
        emit(report.as_dict())
        return
    click.echo(f"backed up {report.documents:,} documents ({report.chunks:,} chunks, generation "
               f"{report.generation}) to {report.dest}: {report.bytes / 1e6:.1f} MB in {report.seconds:.1f}s")
