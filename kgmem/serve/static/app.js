// The kgmem web page: ask (the answer streams in), search, read a cited passage, see the graph.
// Plain JavaScript, no build step; the graph is drawn by Cytoscape.js (served from the package).
'use strict';
const $ = id => document.getElementById(id);
let cy = null;

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  children.forEach(c => node.append(c));
  return node;
}

async function api(path, options) {
  const res = await fetch(path, options);
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    const d = body.detail;
    throw new Error(Array.isArray(d) ? d.map(x => x.field + ': ' + x.message).join('; ') : (d || res.statusText));
  }
  return body;
}

function showError(err) {
  $('error').textContent = err ? String(err.message || err) : '';
  $('error').hidden = !err;
}

async function loadStats() {
  try {
    const s = await api('/stats');
    $('stats').textContent = `${s.documents} documents · ${s.chunks} passages · ${s.entities ?? 0} entities · ` +
      `${s.relations ?? 0} relations`;
  } catch (err) { $('stats').textContent = 'stats unavailable: ' + err.message; }
}

// ---------------------------------------------------------------- passages and citations
function renderHits(hits, cited) {
  $('hits').replaceChildren(...hits.map(h => {
    const li = el('li', {className: cited && cited.has(h.chunk_id) ? 'cited' : ''},
      el('div', {className: 'title', textContent: h.title || h.doc_id}),
      el('div', {className: 'muted', textContent: `${h.doc_id} · characters ${h.start}–${h.end}`}),
      el('div', {className: 'text', textContent: h.text}));
    li.addEventListener('click', () => showPassage(h.doc_id, h.start, h.end, h.title));
    return li;
  }));
  $('hits-title').hidden = !hits.length;
}

async function showPassage(docId, start, end, title) {
  try {
    const doc = await api('/documents/' + encodeURIComponent(docId));
    const from = Math.max(0, start - 700), to = Math.min(doc.text.length, end + 700);
    const mark = el('mark', {id: 'cited-span', textContent: doc.text.slice(start, end)});
    $('passage').replaceChildren((from > 0 ? '…' : '') + doc.text.slice(from, start), mark,
                                 doc.text.slice(end, to) + (to < doc.text.length ? '…' : ''));
    $('passage-title').textContent = title || doc.title || doc.id;
    $('passage-meta').textContent = `${doc.id} · characters ${start}–${end}`;
    $('passage-box').hidden = false;
    mark.scrollIntoView({block: 'nearest'});
  } catch (err) { showError(err); }
}

function renderAnswer(ans) {
  const box = $('answer');
  box.classList.remove('waiting');
  const byN = new Map(ans.citations.map(c => [c.n, c]));
  const parts = ans.answer.split(/(\[\d+\])/);
  box.replaceChildren(...parts.filter(p => p).map(p => {
    const m = p.match(/^\[(\d+)\]$/);
    const c = m && byN.get(Number(m[1]));
    if (!c) return p;
    const a = el('a', {className: 'cite', textContent: p, href: '#', title: c.title || c.doc_id});
    a.dataset.n = String(c.n);
    a.addEventListener('click', ev => { ev.preventDefault(); showPassage(c.doc_id, c.start, c.end, c.title); });
    return a;
  }));
  $('support').textContent = ans.found ? (ans.support || '') : 'Memory does not hold the answer.';
  $('entities').replaceChildren(...(ans.entities || []).map(name => {
    const chip = el('span', {className: 'chip', textContent: name, title: 'show in the graph'});
    chip.addEventListener('click', () => { $('entity').value = name; showGraph(name); });
    return chip;
  }));
  renderHits(ans.passages || [], new Set(ans.citations.map(c => c.chunk_id)));
  window.kgmemLastAnswer = ans;
  document.body.dataset.answered = String(Number(document.body.dataset.answered || 0) + 1);
}

// ---------------------------------------------------------------- ask (server-sent events)
async function ask(question) {
  showError(null);
  $('answer-box').hidden = false;
  $('answer').textContent = '';
  $('answer').classList.add('waiting');
  $('support').textContent = '';
  $('entities').replaceChildren();
  const res = await fetch('/ask', {method: 'POST', headers: {'Content-Type': 'application/json',
                                                              'Accept': 'text/event-stream'},
                                   body: JSON.stringify({question})});
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    throw new Error(Array.isArray(body.detail) ? body.detail.map(d => d.message).join('; ') : body.detail);
  }
  const reader = res.body.getReader(), decoder = new TextDecoder();
  let buffer = '', streamed = '';
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, {stream: true});
    let cut;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = 'message', data = '';
      block.split('\n').forEach(line => {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data += line.slice(5).trim();
      });
      if (!data) continue;
      const payload = JSON.parse(data);
      if (event === 'token') {
        streamed += payload.text;
        $('answer').textContent = streamed;
        document.body.dataset.tokens = String(Number(document.body.dataset.tokens || 0) + 1);
      }
      else if (event === 'answer') renderAnswer(payload);
      else if (event === 'error') throw new Error(payload.detail);
    }
  }
  $('answer').classList.remove('waiting');
}

async function search(query) {
  showError(null);
  $('answer-box').hidden = true;
  const res = await api('/search?' + new URLSearchParams({q: query, k: 10}));
  renderHits(res.hits, null);
}

// ---------------------------------------------------------------- graph
async function showGraph(name) {
  const hops = $('hops').value;
  try {
    const res = await api('/graph/neighbors?' + new URLSearchParams({entity: name, hops, limit: 150}));
    $('graph-info').textContent = `${res.entity}${res.label ? ' (' + res.label + ')' : ''}: ${res.facts.length} facts`;
    if (cy) cy.destroy();
    cy = kgmemGraph($('graph'), kgmemFactsGraph(res.entity, res.facts, res.labels),
                    {rings: true, onInfo: t => { $('graph-info').textContent = t || res.entity; }});
  } catch (err) {
    $('graph-info').textContent = err.message;
  }
}

$('ask-form').addEventListener('submit', ev => {
  ev.preventDefault();
  const q = $('q').value.trim();
  if (q) ask(q).catch(err => { $('answer').classList.remove('waiting'); showError(err); });
});
$('search').addEventListener('click', () => {
  const q = $('q').value.trim();
  if (q) search(q).catch(showError);
});
$('graph-form').addEventListener('submit', ev => {
  ev.preventDefault();
  const name = $('entity').value.trim();
  if (name) showGraph(name);
});
loadStats();
