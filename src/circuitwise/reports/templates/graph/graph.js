/* circuitwise's attribution graph view: nodes by layer (y) and token position (x), links by |weight|
   (width) and sign (colour), a node threshold on cumulative influence, and a panel for the clicked
   node. Plain DOM and SVG; every string from the file is set as text, never parsed as HTML. */
(function () {
  if (window.cwGraph) { return; }
  var SVG = "http://www.w3.org/2000/svg";
  var COLOURS = {feature: "#7c3aed", error: "#9ca3af", embedding: "#0f766e", logit: "#c2410c"};
  var POS = "#2563eb", NEG = "#dc2626";

  function el(tag, attrs, text) {
    var e = document.createElementNS(SVG, tag);
    for (var k in attrs) { e.setAttribute(k, attrs[k]); }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }
  function h(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }
  function num(x, d) { return x === null || x === undefined ? "—" : Number(x).toFixed(d === undefined ? 3 : d); }
  function signed(x) { return (x > 0 ? "+" : "") + num(x); }
  function visible(t) { return String(t).replace(/\n/g, "⏎").replace(/\t/g, "⇥"); }
  function quoted(t) { return "‘" + visible(t) + "’"; }
  function short(t, n) { t = visible(t); return t.length > n ? t.slice(0, n - 1) + "…" : t; }

  // circuit-tracer's node threshold: rank feature and error nodes by influence; keep the fewest whose
  // cumulative share of the total reaches the threshold. Embeddings and logits always stay.
  function kept(data, threshold) {
    var ranked = [], total = 0, keep = {};
    data.nodes.forEach(function (n, i) {
      if (n.kind === "embedding" || n.kind === "logit") { keep[i] = true; return; }
      var v = n.influence === null || n.influence === undefined ? 0 : Math.max(n.influence, 0);
      ranked.push([v, i]); total += v;
    });
    ranked.sort(function (a, b) { return b[0] - a[0] || a[1] - b[1]; });
    var running = 0;
    for (var r = 0; r < ranked.length; r++) {
      if (total > 0 && running / total >= threshold) { break; }
      keep[ranked[r][1]] = true; running += ranked[r][0];
    }
    if (total <= 0) { ranked.forEach(function (x) { keep[x[1]] = true; }); }
    return keep;
  }

  function layout(data) {
    var L = data.n_layers, rowH = 46, top = 34, spacing = 15, minCol = 58;
    var row = function (n) { return n.kind === "embedding" ? L + 1 : n.kind === "logit" ? 0 : L - n.layer; };
    var cells = {}, widths = [];
    data.tokens.forEach(function () { widths.push(1); });
    data.nodes.forEach(function (n, i) {
      var key = row(n) + ":" + n.pos;
      (cells[key] = cells[key] || []).push(i);
      widths[n.pos] = Math.max(widths[n.pos], cells[key].length);
    });
    var x0 = [], x = 70;
    widths.forEach(function (w, p) { x0.push(x); widths[p] = Math.max(minCol, w * spacing + 10); x += widths[p]; });
    var xy = [];
    Object.keys(cells).forEach(function (key) {
      var ids = cells[key], p = data.nodes[ids[0]].pos, r = row(data.nodes[ids[0]]);
      ids.sort(function (a, b) { return (data.nodes[b].influence || 0) - (data.nodes[a].influence || 0); });
      ids.forEach(function (i, k) {
        var centre = x0[p] + widths[p] / 2, off = (k - (ids.length - 1) / 2) * spacing;
        xy[i] = [centre + off, top + r * rowH];
      });
    });
    return {xy: xy, x0: x0, widths: widths, width: x + 20, height: top + (L + 2) * rowH + 24, rowH: rowH, top: top};
  }

  function draw(root, data) {
    var svg = root.querySelector("svg.cwg-svg"), panel = root.querySelector(".cwg-panel");
    var slider = root.querySelector("input.cwg-threshold"), shown = root.querySelector(".cwg-threshold-value");
    var counts = root.querySelector(".cwg-counts");
    var lay = layout(data), L = data.n_layers;
    svg.setAttribute("width", lay.width); svg.setAttribute("height", lay.height);
    svg.setAttribute("viewBox", "0 0 " + lay.width + " " + lay.height);
    var maxW = 0;
    data.edges.forEach(function (e) { maxW = Math.max(maxW, Math.abs(e[2])); });
    var incoming = data.nodes.map(function () { return []; }), outgoing = data.nodes.map(function () { return []; });
    data.edges.forEach(function (e, k) { outgoing[e[0]].push(k); incoming[e[1]].push(k); });
    var selected = null, keep = {};

    function label(i) {
      var n = data.nodes[i];
      if (n.kind === "feature") { return "L" + n.layer + " #" + n.feature + " @" + n.pos; }
      if (n.kind === "error") { return "error L" + n.layer + " @" + n.pos; }
      if (n.kind === "embedding") { return "token " + quoted(n.token) + " @" + n.pos; }
      return n.token === "metric" ? (n.label || "metric") : "logit " + quoted(n.token);
    }

    function render() {
      while (svg.firstChild) { svg.removeChild(svg.firstChild); }
      var gGrid = el("g", {"class": "cwg-grid"}), gEdges = el("g", {"class": "cwg-edges"});
      var gNodes = el("g", {"class": "cwg-nodes"});
      svg.appendChild(gGrid); svg.appendChild(gEdges); svg.appendChild(gNodes);
      for (var r = 0; r < L + 2; r++) {
        var y = lay.top + r * lay.rowH;
        gGrid.appendChild(el("line", {x1: 60, x2: lay.width - 10, y1: y, y2: y, stroke: "#eef0f3"}));
        var name = r === 0 ? "logits" : r === L + 1 ? "tokens" : "L" + (L - r);
        gGrid.appendChild(el("text", {x: 8, y: y + 4, "class": "cwg-axis"}, name));
      }
      data.tokens.forEach(function (t, p) {
        gGrid.appendChild(el("text", {x: lay.x0[p] + lay.widths[p] / 2, y: lay.height - 6, "text-anchor": "middle",
                                      "class": "cwg-token"}, short(t, Math.floor(lay.widths[p] / 7))));
      });
      var nEdges = 0;
      data.edges.forEach(function (e, k) {
        if (!keep[e[0]] || !keep[e[1]]) { return; }
        nEdges++;
        var a = lay.xy[e[0]], b = lay.xy[e[1]], w = Math.abs(e[2]) / (maxW || 1);
        var near = selected !== null && (e[0] === selected || e[1] === selected);
        var my = (a[1] + b[1]) / 2;
        var path = el("path", {d: "M" + a[0] + "," + a[1] + " C" + a[0] + "," + my + " " + b[0] + "," + my + " " + b[0] + "," + b[1],
                               fill: "none", stroke: e[2] >= 0 ? POS : NEG, "stroke-width": (0.4 + 4 * w).toFixed(2),
                               "stroke-opacity": selected === null ? 0.15 + 0.6 * w : near ? 0.9 : 0.05,
                               "class": "cwg-edge", "data-source": data.nodes[e[0]].id, "data-target": data.nodes[e[1]].id});
        gEdges.appendChild(path);
      });
      var nNodes = 0;
      data.nodes.forEach(function (n, i) {
        if (!keep[i]) { return; }
        nNodes++;
        var p = lay.xy[i], c = COLOURS[n.kind], node;
        var attrs = {"class": "cwg-node cwg-" + n.kind + (i === selected ? " cwg-selected" : ""), "data-id": n.id,
                     fill: n.target ? "#ea580c" : c, stroke: i === selected ? "#111827" : "#fff", "stroke-width": i === selected ? 2.5 : 1};
        if (n.kind === "feature") { attrs.cx = p[0]; attrs.cy = p[1]; attrs.r = 6; node = el("circle", attrs); }
        else if (n.kind === "error") { attrs.x = p[0] - 5; attrs.y = p[1] - 5; attrs.width = 10; attrs.height = 10; node = el("rect", attrs); }
        else if (n.kind === "embedding") { attrs.x = p[0] - 7; attrs.y = p[1] - 5; attrs.width = 14; attrs.height = 10; attrs.rx = 2; node = el("rect", attrs); }
        else { attrs.points = [p[0], p[1] - 8, p[0] + 8, p[1], p[0], p[1] + 8, p[0] - 8, p[1]].join(" "); node = el("polygon", attrs); }
        node.appendChild(el("title", {}, label(i)));
        if (n.kind === "logit") {
          gNodes.appendChild(el("text", {x: p[0], y: p[1] - 12, "text-anchor": "middle", "class": "cwg-token"},
                                short(n.token === "metric" ? "metric" : n.token, 10)));
        }
        node.addEventListener("click", function () { select(i); });
        gNodes.appendChild(node);
      });
      counts.textContent = nNodes + " nodes, " + nEdges + " links shown of " + data.nodes.length + " and " + data.edges.length;
    }

    function linkList(title, ks, end) {
      var box = h("div", "cwg-links");
      box.appendChild(h("h4", "", title));
      if (!ks.length) { box.appendChild(h("p", "note", "none")); return box; }
      var sorted = ks.slice().sort(function (a, b) { return Math.abs(data.edges[b][2]) - Math.abs(data.edges[a][2]); });
      var table = h("table"), body = h("tbody");
      sorted.slice(0, 8).forEach(function (k) {
        var e = data.edges[k], other = e[end], tr = h("tr");
        var a = h("a", "cwg-jump", label(other));
        a.href = "#"; a.setAttribute("data-id", data.nodes[other].id);
        a.addEventListener("click", function (ev) { ev.preventDefault(); select(other); });
        var td = h("td"); td.appendChild(a); tr.appendChild(td);
        tr.appendChild(h("td", "num " + (e[2] >= 0 ? "pos" : "neg"), signed(e[2])));
        // Where the link's head loadings were computed: the heads that carry it (and the part through none).
        var heads = e[3] ? e[3].heads.slice(0, 3).map(function (x) { return x[0] + " " + signed(x[1]); }) : [];
        if (e[3] && e[3].residual) { heads.push("residual " + signed(e[3].residual)); }
        tr.appendChild(h("td", "cwg-heads note", heads.join(", ")));
        body.appendChild(tr);
      });
      table.appendChild(body); box.appendChild(table);
      if (sorted.length > 8) { box.appendChild(h("p", "note", "and " + (sorted.length - 8) + " more")); }
      return box;
    }

    function contexts(n) {
      var box = h("div", "cwg-contexts");
      box.appendChild(h("h4", "", "Top activating contexts"));
      if (!n.contexts || !n.contexts.length) {
        box.appendChild(h("p", "note", n.kind === "feature" ? "none recorded" : "only features have contexts"));
        return box;
      }
      n.contexts.forEach(function (c) {
        var line = h("div", "cwg-context");
        line.appendChild(h("span", "cwg-source", c.source + (c.index !== null && c.index !== undefined ? " " + c.index : "") + " · " + num(c.activation)));
        var peak = c.activation > 0 ? c.activation : 1;
        // A window around the peak: a dozen tokens before it, a few after.
        var from = Math.max(0, c.pos - 12), to = Math.min(c.tokens.length, c.pos + 5);
        if (from > 0) { line.appendChild(h("span", "note", "… ")); }
        c.tokens.forEach(function (t, p) {
          if (p < from || p >= to) { return; }
          var s = h("span", "tok" + (p === c.pos ? " cwg-peak" : ""), visible(t));
          var a = c.activations ? Math.max(c.activations[p], 0) / peak : (p === c.pos ? 1 : 0);
          if (a > 0) { s.style.background = "rgba(124,58,237," + (0.12 + 0.6 * Math.min(a, 1)).toFixed(2) + ")"; }
          line.appendChild(s);
        });
        box.appendChild(line);
      });
      return box;
    }

    function select(i) {
      selected = i;
      if (!keep[i]) { keep[i] = true; }
      render();
      var n = data.nodes[i];
      while (panel.firstChild) { panel.removeChild(panel.firstChild); }
      panel.appendChild(h("h3", "cwg-title", label(i)));
      var facts = h("table", "cwg-facts"), body = h("tbody");
      [["id", n.id], ["kind", n.kind], ["layer", n.layer === null ? "—" : n.layer], ["position", n.pos + " (" + quoted(data.tokens[n.pos] || "") + ")"],
       [n.kind === "feature" ? "activation" : n.kind === "logit" ? "logit" : "norm", num(n.activation)],
       ["influence", num(n.influence)]].concat(n.kind === "logit" ? [["probability", num(n.prob)]] : [])
        .forEach(function (row) {
          var tr = h("tr"); tr.appendChild(h("th", "", row[0])); tr.appendChild(h("td", "cwg-" + row[0], String(row[1])));
          body.appendChild(tr);
        });
      facts.appendChild(body); panel.appendChild(facts);
      if (n.label && n.kind !== "logit") { panel.appendChild(h("p", "note", n.label)); }
      var ab = (data.ablations || {})[String(i)];
      if (ab) {
        // This feature was ablated on its own in the unfrozen model (the page's checks table has them all).
        panel.appendChild(h("h4", "", "Ablated in the unfrozen model"));
        var at = h("table", "cwg-ablation"), ab_body = h("tbody");
        [["actual move", ab.actual], ["graph predicts", ab.predicted], ["kept graph predicts", ab.predicted_kept],
         ["direct edges", ab.direct]].forEach(function (row) {
          var tr = h("tr"); tr.appendChild(h("th", "", row[0])); tr.appendChild(h("td", "num", signed(row[1])));
          ab_body.appendChild(tr);
        });
        at.appendChild(ab_body); panel.appendChild(at);
        if (data.target) { panel.appendChild(h("p", "note", "of " + data.target)); }
      }
      panel.appendChild(linkList("Top incoming links", incoming[i], 0));
      panel.appendChild(linkList("Top outgoing links", outgoing[i], 1));
      panel.appendChild(contexts(n));
    }

    function apply() {
      var t = parseFloat(slider.value);
      shown.textContent = t.toFixed(2);
      keep = kept(data, t);
      if (selected !== null) { keep[selected] = true; }
      render();
    }
    slider.addEventListener("input", apply);
    // A link to the page may set the threshold and name a node to open with: graph.html#threshold=0.5&node=ID.
    var t = /threshold=([0-9.]+)/.exec(window.location.hash || "");
    if (t) { slider.value = t[1]; }
    apply();
    var m = /node=([^&]+)/.exec(window.location.hash || "");
    if (m) {
      var want = decodeURIComponent(m[1]);
      data.nodes.forEach(function (n, i) { if (n.id === want) { select(i); } });
    }
  }

  window.cwGraph = function (rootId, data) {
    var root = document.getElementById(rootId);
    if (root) { draw(root, data); }
  };
})();
