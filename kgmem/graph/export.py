"""Write the graph as GraphML, GEXF, or a self-contained interactive HTML page."""
from __future__ import annotations

import html
import json
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


def render_html(g: nx.MultiDiGraph, max_nodes: int = 400) -> str:
    """A page with no outside dependency: the data inline, a small force layout in plain JS."""
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
    data = json.dumps({"nodes": nodes, "edges": edges}).replace("</", "<\\/")
    title = html.escape(f"kgmem graph — {g.number_of_nodes()} entities, {g.number_of_edges()} edges "
                        f"(showing the {len(nodes)} best connected)")
    return _PAGE.replace("__TITLE__", title).replace("__DATA__", data)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>kgmem graph</title>
<style>
body{margin:0;font:13px system-ui,sans-serif;background:#fafafa;color:#222}
header{padding:8px 12px;background:#fff;border-bottom:1px solid #ddd;display:flex;gap:12px;align-items:center}
#info{padding:6px 12px;min-height:1.5em;color:#444}
svg{display:block;width:100vw;height:calc(100vh - 80px)}
line{stroke:#bbb}
circle{stroke:#fff;stroke-width:1px;cursor:pointer}
text{pointer-events:none;fill:#333;font-size:11px}
.hl line{stroke-opacity:.15} .hl circle{opacity:.25} .hl text{opacity:.2}
.hl .on{stroke-opacity:1;opacity:1}
</style></head><body>
<header><strong>__TITLE__</strong><input id="q" placeholder="find an entity…"></header>
<div id="info">Click a node to see its relations; drag to move; wheel to zoom.</div>
<svg id="svg"><g id="vp"></g></svg>
<script id="graph-data" type="application/json">__DATA__</script>
<script>
const G = JSON.parse(document.getElementById('graph-data').textContent);
const svg = document.getElementById('svg'), vp = document.getElementById('vp'), NS = 'http://www.w3.org/2000/svg';
const W = svg.clientWidth || 1200, H = svg.clientHeight || 800;
const colors = {PERSON:'#e6550d',ORG:'#3182bd',GPE:'#31a354',LOC:'#31a354',NP:'#969696',DATE:'#756bb1',WORK_OF_ART:'#d6616b',EVENT:'#e7ba52',NORP:'#8c6d31'};
G.nodes.forEach((n,i)=>{const a=2*Math.PI*i/G.nodes.length, r=Math.min(W,H)*0.4*Math.sqrt((i+1)/G.nodes.length);n.x=W/2+r*Math.cos(a);n.y=H/2+r*Math.sin(a);n.vx=0;n.vy=0;});
const lines = G.edges.map(e=>{const l=document.createElementNS(NS,'line');l.setAttribute('stroke-width',Math.min(1+Math.log(e.n),4));vp.appendChild(l);return l;});
const circles = G.nodes.map(n=>{const c=document.createElementNS(NS,'circle');c.setAttribute('r',3+Math.sqrt(n.deg));c.setAttribute('fill',colors[n.label]||'#636363');c.dataset.id=n.id;vp.appendChild(c);return c;});
const labels = G.nodes.map(n=>{const t=document.createElementNS(NS,'text');t.textContent=n.deg>2||G.nodes.length<60?n.name:'';vp.appendChild(t);return t;});
function tick(alpha){
  for(let i=0;i<G.nodes.length;i++)for(let j=i+1;j<G.nodes.length;j++){const a=G.nodes[i],b=G.nodes[j];let dx=a.x-b.x,dy=a.y-b.y,d2=dx*dx+dy*dy+0.01;if(d2>90000)continue;const f=alpha*300/d2;a.vx+=dx*f;a.vy+=dy*f;b.vx-=dx*f;b.vy-=dy*f;}
  G.edges.forEach(e=>{const a=G.nodes[e.s],b=G.nodes[e.t];const dx=b.x-a.x,dy=b.y-a.y,d=Math.sqrt(dx*dx+dy*dy)+0.01,f=alpha*(d-60)/d*0.05;a.vx+=dx*f;a.vy+=dy*f;b.vx-=dx*f;b.vy-=dy*f;});
  G.nodes.forEach(n=>{if(n.fixed)return;n.vx+=(W/2-n.x)*0.002*alpha;n.vy+=(H/2-n.y)*0.002*alpha;n.x+=n.vx;n.y+=n.vy;n.vx*=0.6;n.vy*=0.6;});
}
function draw(){
  G.edges.forEach((e,i)=>{const a=G.nodes[e.s],b=G.nodes[e.t];const l=lines[i];l.setAttribute('x1',a.x);l.setAttribute('y1',a.y);l.setAttribute('x2',b.x);l.setAttribute('y2',b.y);});
  G.nodes.forEach((n,i)=>{circles[i].setAttribute('cx',n.x);circles[i].setAttribute('cy',n.y);labels[i].setAttribute('x',n.x+6);labels[i].setAttribute('y',n.y+3);});
}
let alpha=1;(function run(){if(alpha>0.02){tick(alpha);alpha*=0.985;draw();setTimeout(run,16);}else{draw();document.body.dataset.ready='1';}})();
function focus(id){
  vp.classList.add('hl');[...vp.querySelectorAll('.on')].forEach(x=>x.classList.remove('on'));
  circles[id].classList.add('on');labels[id].classList.add('on');labels[id].textContent=G.nodes[id].name;
  const rel=[];G.edges.forEach((e,i)=>{if(e.s===id||e.t===id){lines[i].classList.add('on');const o=e.s===id?e.t:e.s;circles[o].classList.add('on');labels[o].classList.add('on');labels[o].textContent=G.nodes[o].name;rel.push((e.s===id?G.nodes[id].name+' —'+e.p+'→ '+G.nodes[o].name:G.nodes[o].name+' —'+e.p+'→ '+G.nodes[id].name));}});
  document.getElementById('info').textContent=G.nodes[id].name+' ('+G.nodes[id].label+'): '+(rel.slice(0,12).join('; ')||'no relation shown');
}
let drag=null,scale=1,tx=0,ty=0;
svg.addEventListener('mousedown',ev=>{if(ev.target.tagName==='circle'){drag=G.nodes[+ev.target.dataset.id];drag.fixed=true;focus(drag.id);}});
svg.addEventListener('mousemove',ev=>{if(drag){const r=svg.getBoundingClientRect();drag.x=(ev.clientX-r.left-tx)/scale;drag.y=(ev.clientY-r.top-ty)/scale;draw();}});
svg.addEventListener('mouseup',()=>{drag=null;});
svg.addEventListener('wheel',ev=>{ev.preventDefault();scale*=ev.deltaY<0?1.1:0.9;vp.setAttribute('transform','translate('+tx+','+ty+') scale('+scale+')');},{passive:false});
svg.addEventListener('click',ev=>{if(ev.target===svg){vp.classList.remove('hl');}});
document.getElementById('q').addEventListener('change',ev=>{const q=ev.target.value.toLowerCase();const n=G.nodes.find(n=>n.name.toLowerCase().includes(q));if(n)focus(n.id);});
</script></body></html>
"""
