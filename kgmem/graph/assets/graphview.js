// kgmem's graph view, drawn by Cytoscape.js (vendored beside this file, MIT licence).
// Used inline by `kgmem export graph.html` and served to the web page of `kgmem serve`.
// data: {nodes: [{id, name, label, deg, focus?}], edges: [{s, t, n, p}]} (s/t: node ids).
(function () {
  const COLORS = {PERSON: '#e6550d', ORG: '#3182bd', GPE: '#31a354', LOC: '#31a354', NP: '#969696', DATE: '#756bb1',
                  WORK_OF_ART: '#d6616b', EVENT: '#e7ba52', NORP: '#8c6d31', FAC: '#17becf', PRODUCT: '#bcbd22'};

  function elements(data) {
    const many = data.nodes.length >= 60;
    const out = data.nodes.map(n => ({data: {
      id: 'n' + n.id, name: n.name, kind: n.label || '', deg: n.deg || 1, focus: n.focus ? 1 : 0,
      shown: (!many || (n.deg || 1) > 2 || n.focus) ? n.name : ''}}));
    data.edges.forEach((e, i) => out.push({data: {
      id: 'e' + i, source: 'n' + e.s, target: 'n' + e.t, p: e.p || '', w: Math.min(1 + Math.log(e.n || 1), 4)}}));
    return out;
  }

  window.kgmemGraph = function (container, data, opts) {
    opts = opts || {};
    const cy = cytoscape({
      container: container,
      elements: elements(data),
      wheelSensitivity: 0.3,
      style: [
        {selector: 'node', style: {
          'background-color': n => COLORS[n.data('kind')] || '#636363',
          'width': n => 8 + 3 * Math.sqrt(n.data('deg')), 'height': n => 8 + 3 * Math.sqrt(n.data('deg')),
          'label': 'data(shown)', 'font-size': 10, 'color': '#333', 'text-valign': 'center',
          'text-halign': 'right', 'text-margin-x': 4}},
        {selector: 'node[focus = 1]', style: {'border-width': 3, 'border-color': '#111', 'font-weight': 'bold',
                                              'text-valign': 'bottom', 'text-halign': 'center', 'text-margin-x': 0,
                                              'text-margin-y': 6, 'text-background-color': '#fff',
                                              'text-background-opacity': 0.85}},
        {selector: 'edge', style: {
          'width': 'data(w)', 'line-color': '#bbb', 'curve-style': 'bezier', 'target-arrow-shape': 'triangle',
          'target-arrow-color': '#bbb', 'arrow-scale': 0.6}},
        {selector: '.faded', style: {'opacity': 0.15}},
        {selector: 'node.on', style: {'label': 'data(name)'}},
        {selector: 'edge.on', style: {'label': 'data(p)', 'font-size': 9, 'line-color': '#555',
                                      'target-arrow-color': '#555', 'text-rotation': 'autorotate'}},
      ],
      // A whole graph: a force layout. One entity's neighbourhood: rings around it.
      layout: opts.rings
        ? {name: 'concentric', animate: false, fit: true, padding: 30, minNodeSpacing: 60,
           concentric: n => n.data('focus') ? 3 : (n.degree() > 1 ? 2 : 1), levelWidth: () => 1}
        : {name: 'cose', animate: false, randomize: true, nodeRepulsion: () => 9000,
           idealEdgeLength: () => 70, numIter: 1000, fit: true, padding: 20},
    });
    const info = opts.onInfo || function () {};
    function focus(node) {
      cy.elements().removeClass('on').addClass('faded');
      const near = node.closedNeighborhood();
      near.removeClass('faded').addClass('on');
      const rel = node.connectedEdges().map(e =>
        e.source().data('name') + ' —' + e.data('p') + '→ ' + e.target().data('name'));
      info(node.data('name') + (node.data('kind') ? ' (' + node.data('kind') + ')' : '') + ': ' +
           (rel.slice(0, 12).join('; ') || 'no relation shown'));
    }
    cy.on('tap', 'node', ev => focus(ev.target));
    cy.on('tap', ev => { if (ev.target === cy) { cy.elements().removeClass('faded on'); info(''); } });
    cy.kgmemFocus = function (name) {
      const q = name.toLowerCase();
      const node = cy.nodes().filter(n => n.data('name').toLowerCase().includes(q))[0];
      if (node) { focus(node); cy.center(node); }
      return !!node;
    };
    container.dataset.ready = '1';
    container.dataset.nodes = String(cy.nodes().length);
    container.dataset.edges = String(cy.edges().length);
    return cy;
  };

  // The neighbourhood an API call returned ({entity, facts: [{subject, predicate, object}], labels}) as view data.
  window.kgmemFactsGraph = function (entity, facts, labels) {
    labels = labels || {};
    const ids = new Map(), deg = new Map(), pairs = new Map();
    const node = name => { if (!ids.has(name)) ids.set(name, ids.size); deg.set(name, (deg.get(name) || 0) + 1); return ids.get(name); };
    node(entity); deg.set(entity, 0);
    facts.forEach(f => {
      const s = node(f.subject), t = node(f.object);
      if (s === t) return;
      const key = s + ' ' + t, e = pairs.get(key) || {s: s, t: t, n: 0, preds: new Set()};
      e.n += 1; e.preds.add(f.kind === 'cooc' ? 'with' : f.predicate); pairs.set(key, e);
    });
    return {
      nodes: [...ids].map(([name, id]) => ({id: id, name: name, label: labels[name] || '', deg: deg.get(name) || 1,
                                            focus: name === entity})),
      edges: [...pairs.values()].map(e => ({s: e.s, t: e.t, n: e.n, p: [...e.preds].slice(0, 3).join(', ')})),
    };
  };
})();
