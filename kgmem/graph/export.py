"""Write the graph as GraphML, GEXF, or a self-contained interactive HTML page (drawn
by Cytoscape.js, vendored in graph/assets with its licence)."""
from __future__ import annotations

import html
import json
import re
from importlib import resources
from pathlib import Path

import networkx as nx

FORMATS = ("graphml", "gexf", "html")


def export_graph(g: nx.MultiDiGraph, path: Path, format: str | None = None, max_nodes: int = 400) -> Path:
    fmt = (format or path.suffix.lstrip(".")).lower()
    if fmt == "htm":
        fmt = "html"
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "graphml":
        nx.write_graphml(g, path)
    elif fmt == "gexf":
        nx.write_gexf(g, path)
    else:
        path.write_text(render_html(g, max_nodes), encoding="utf-8")
    return path


def asset(name: str) -> str:
    """A file of the graph view (graphview.js, the vendored cytoscape.min.js)."""
    return (resources.files("kgmem.graph") / "assets" / name).read_text(encoding="utf-8")


def view_data(g: nx.MultiDiGraph, max_nodes: int = 400) -> dict:
    """The `max_nodes` best connected entities and the edges between them, parallel
    relations merged (with their three commonest predicates)."""
    degree = dict(g.degree())
    top = sorted(g.nodes, key=lambda n: (-degree.get(n, 0), n))[:max_nodes]
    index = {n: i for i, n in enumerate(top)}
    nodes = [
        {"id": i, "name": g.nodes[n].get("name", n), "label": g.nodes[n].get("label", ""), "deg": degree.get(n, 0)}
        for n, i in index.items()
    ]
    pairs: dict[tuple[int, int], dict] = {}
    for u, v, d in g.edges(data=True):
        if u in index and v in index and u != v:
            e = pairs.setdefault((index[u], index[v]), {"s": index[u], "t": index[v], "preds": {}, "n": 0})
            e["n"] += 1
            e["preds"][d.get("predicate", "")] = e["preds"].get(d.get("predicate", ""), 0) + 1
    edges = [
        {"s": e["s"], "t": e["t"], "n": e["n"],
         "p": ", ".join(p for p, _ in sorted(e["preds"].items(), key=lambda kv: -kv[1])[:3])}
        for e in pairs.values()
    ]
    return {"nodes": nodes, "edges": edges}


def _inline(script: str) -> str:
    return script.replace("</script", "<\\/script")


def render_html(g: nx.MultiDiGraph, max_nodes: int = 400) -> str:
    """One self-contained page: the data and Cytoscape.js inline, nothing fetched."""
    data = view_data(g, max_nodes)
    title = html.escape(f"kgmem graph — {g.number_of_nodes()} entities, {g.number_of_edges()} edges "
                        f"(showing the {len(data['nodes'])} best connected)")
    parts = {"TITLE": title, "CYTOSCAPE": _inline(asset("cytoscape.min.js")), "VIEW": _inline(asset("graphview.js")),
             "DATA": json.dumps(data).replace("</", "<\\/")}
    # one pass: text put in (entity names, the library) is never searched for another slot
    return re.sub(r"__(TITLE|CYTOSCAPE|VIEW|DATA)__", lambda m: parts[m.group(1)], _PAGE)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>kgmem graph</title>
<style>
body{margin:0;font:13px system-ui,sans-serif;background:#fafafa;color:#222}
header{padding:8px 12px;background:#fff;border-bottom:1px solid #ddd;display:flex;gap:12px;align-items:center}
#info{padding:6px 12px;min-height:1.5em;color:#444}
#graph{width:100vw;height:calc(100vh - 80px)}
</style></head><body>
<header><strong>__TITLE__</strong><input id="q" placeholder="find an entity…"></header>
<div id="info">Click a node to see its relations; drag to move; wheel to zoom.</div>
<div id="graph"></div>
<script id="graph-data" type="application/json">__DATA__</script>
<script>__CYTOSCAPE__</script>
<script>__VIEW__</script>
<script>
const box = document.getElementById('graph');
const cy = kgmemGraph(box, JSON.parse(document.getElementById('graph-data').textContent),
  {onInfo: t => { document.getElementById('info').textContent = t || 'Click a node to see its relations.'; }});
document.getElementById('q').addEventListener('change', ev => cy.kgmemFocus(ev.target.value));
document.body.dataset.ready = '1';
document.body.dataset.nodes = box.dataset.nodes;
</script></body></html>
"""
