/* The circuit explorer (reports/explorer.py gathers its data from results.json / circuit.json).
   Vanilla JS and SVG, no library. Text from the files (tokens, prompts) goes in as text nodes only.
   Every number shown sits in a <span class="cwx-v" data-key=… data-value=…>, the value it shows. */
(function () {
  if (window.cwExplorer) return;
  var SVGNS = "http://www.w3.org/2000/svg";
  var POS = "#2166ac", NEG = "#b2182b", NONE = "#9ca3af";
  var BOX_W = 70, BOX_H = 28, PORT_R = 5, ROW_H = 74, COL_W = 92, PAD = 40;
  var PORTS = {q: -22, k: 0, v: 22};

  function set(e, attrs) {
    for (var k in attrs || {}) if (attrs[k] !== null && attrs[k] !== undefined) e.setAttribute(k, attrs[k]);
  }
  function add(e, kids) {
    if (kids === null || kids === undefined) return e;
    if (!Array.isArray(kids)) kids = [kids];
    kids.forEach(function (c) {
      if (c === null || c === undefined || c === false) return;
      if (Array.isArray(c)) { add(e, c); return; }
      e.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    });
    return e;
  }
  function el(tag, attrs, kids) { var e = document.createElement(tag); set(e, attrs); return add(e, kids); }
  function sv(tag, attrs, kids) { var e = document.createElementNS(SVGNS, tag); set(e, attrs); return add(e, kids); }
  function ok(x) { return x !== null && x !== undefined && isFinite(x); }
  function signed(x, d) { return ok(x) ? (x >= 0 ? "+" : "") + x.toFixed(d === undefined ? 3 : d) : "—"; }
  function fixed(x, d) { return ok(x) ? x.toFixed(d === undefined ? 3 : d) : "—"; }
  function pct(x) { return ok(x) ? (100 * x).toFixed(1) + "%" : "—"; }
  function v(key, x, text) {
    return el("span", {"class": "cwx-v", "data-key": key, "data-value": ok(x) ? String(x) : "null"}, text);
  }
  function missing(text) { return el("p", {"class": "cwx-missing"}, text); }
  function kind(name) {
    if (name === "input" || name === "logits") return name;
    return name.indexOf("MLP") === 0 ? "mlp" : "head";
  }
  function headOf(name) { var p = name.slice(1).split("H"); return [+p[0], +p[1]]; }
  function layerOf(name) {
    var k = kind(name);
    return k === "mlp" ? +name.slice(3) : k === "head" ? headOf(name)[0] : null;
  }

  function stats(xs) {
    var a = xs.filter(ok).slice().sort(function (p, q) { return p - q; });
    if (!a.length) return null;
    var sum = 0; a.forEach(function (x) { sum += x; });
    var m = a.length % 2 ? a[(a.length - 1) / 2] : (a[a.length / 2 - 1] + a[a.length / 2]) / 2;
    return {n: a.length, mean: sum / a.length, median: m, min: a[0], max: a[a.length - 1], sorted: a};
  }

  /* A histogram of per-prompt values (20 bins) with its summary. */
  function distribution(key, xs, unit) {
    var s = stats(xs);
    if (!s) return missing("no finite per-prompt values");
    var bins = 20, lo = s.min, hi = s.max, w = hi > lo ? (hi - lo) / bins : 1, counts = [];
    for (var i = 0; i < bins; i++) counts.push(0);
    s.sorted.forEach(function (x) { counts[Math.min(bins - 1, Math.floor((x - lo) / w))]++; });
    var top = Math.max.apply(null, counts), W = 300, H = 70, svg = sv("svg", {width: W, height: H + 16, "class": "cwx-hist"});
    counts.forEach(function (c, i) {
      var x0 = lo + i * w, h = top ? (H * c) / top : 0;
      svg.appendChild(sv("rect", {x: (i * W) / bins + 1, y: H - h, width: W / bins - 2, height: h,
        fill: x0 + w / 2 >= 0 ? POS : NEG, opacity: 0.8}, sv("title", {}, c + " prompts in [" + fixed(x0, 3) + ", " + fixed(x0 + w, 3) + ")")));
    });
    if (lo < 0 && hi > 0) {
      var zx = ((0 - lo) / (hi - lo)) * W;
      svg.appendChild(sv("line", {x1: zx, x2: zx, y1: 0, y2: H, stroke: "#111827", "stroke-width": 1}));
    }
    svg.appendChild(sv("text", {x: 0, y: H + 12, "font-size": 10}, fixed(lo, 3)));
    svg.appendChild(sv("text", {x: W, y: H + 12, "font-size": 10, "text-anchor": "end"}, fixed(hi, 3)));
    return el("div", {}, [svg, el("div", {"class": "cwx-note"}, [
      v(key + "-n", s.n, String(s.n)), " prompts" + (unit ? " (" + unit + ")" : "") + ": mean ", v(key + "-mean", s.mean, signed(s.mean, 4)),
      ", median ", v(key + "-median", s.median, signed(s.median, 4)), ", min ", v(key + "-min", s.min, signed(s.min, 4)),
      ", max ", v(key + "-max", s.max, signed(s.max, 4))])]);
  }

  window.cwExplorer = function (root, data) {
    var t0 = performance.now();
    var state = {k: data.edges.length, node: null, edge: null, prompt: 0, grid: null};
    var maxAbs = 0;
    data.edges.forEach(function (e) { if (ok(e.score)) maxAbs = Math.max(maxAbs, Math.abs(e.score)); });

    /* ---- controls: the slider and the faithfulness at the size shown ---- */
    var controls = el("div", {"class": "cwx-controls"});
    var slider = el("input", {type: "range", min: data.edges.length ? 1 : 0, max: data.edges.length,
      value: data.edges.length, step: 1, "class": "cwx-slider", "aria-label": "edges shown"});
    var sizeText = el("span", {"class": "cwx-size"});
    var faith = el("span", {"class": "cwx-faith"});
    add(controls, [el("label", {}, ["edges shown (strongest |score| first) ", slider]), sizeText, faith]);
    var legend = buildLegend();
    var main = el("div", {"class": "cwx-main"});
    var graph = el("div", {"class": "cwx-graph"});
    var panel = el("div", {"class": "cwx-panel", "aria-live": "polite"});
    add(main, [graph, panel]);
    var posBox = el("div", {"class": "cwx-pos"});
    add(root, [controls, legend, main, posBox]);
    if (data.edges_note) root.insertBefore(el("p", {"class": "cwx-note"}, "Shown: " + data.edges_note + "."), controls);
    if (!data.edges.length) {
      add(graph, missing("The circuit has no edges."));
    }

    slider.addEventListener("input", function () { state.k = +slider.value; draw(); });

    function faithAt(n) {
      var pts = data.curve, lo = null, hi = null;
      for (var i = 0; i < pts.length; i++) {
        if (pts[i].n === n) return {f: pts[i].f, how: "measured", from: pts[i].from};
        if (pts[i].n < n) lo = pts[i];
        if (pts[i].n > n && hi === null) hi = pts[i];
      }
      if (lo && hi) return {f: lo.f + ((hi.f - lo.f) * (n - lo.n)) / (hi.n - lo.n), how: "interpolated", lo: lo, hi: hi};
      return null;
    }

    function showFaith() {
      var k = state.k, shown = data.edges.slice(0, k);
      var last = shown.length ? shown[shown.length - 1].score : null;
      sizeText.textContent = "";
      add(sizeText, [v("k", k, String(k)), " of " + data.edges.length + " circuit edges" +
        (ok(last) ? " (|score| ≥ " + Math.abs(last).toPrecision(3) + ")" : "")]);
      faith.textContent = "";
      if (!data.curve.length) { add(faith, missing("no faithfulness curve in the files")); return; }
      var r = faithAt(k);
      if (!r) {
        add(faith, ["faithfulness at " + k + " edges: ", v("faith", null, "not measured"),
          " (measured from " + data.curve[0].n + " to " + data.curve[data.curve.length - 1].n + " edges)"]);
        return;
      }
      add(faith, ["faithfulness at " + k + " edges: ", v("faith", r.f, fixed(r.f, 3)), " ",
        el("span", {"class": "cwx-how", "data-how": r.how}, r.how === "measured" ? "(measured: " + r.from + ")" :
          "(interpolated between " + r.lo.n + " edges, " + fixed(r.lo.f, 3) + ", and " + r.hi.n + " edges, " + fixed(r.hi.f, 3) + ")")]);
    }

    /* ---- layout: rows by layer (input at the bottom, logits on top), heads by index, MLPs to the right ---- */
    var all = {};
    data.edges.forEach(function (e) { all[e.s] = 1; all[e.r.split(".")[0]] = 1; });
    var names = Object.keys(all);
    var cols = {}, layers = {};
    names.forEach(function (n) {
      if (kind(n) === "head") { cols[headOf(n)[1]] = 1; layers[headOf(n)[0]] = layers[headOf(n)[0]] || {}; layers[headOf(n)[0]].attn = 1; }
      if (kind(n) === "mlp") { layers[+n.slice(3)] = layers[+n.slice(3)] || {}; layers[+n.slice(3)].mlp = 1; }
    });
    var headCols = Object.keys(cols).map(Number).sort(function (a, b) { return a - b; });
    var anyMlp = names.some(function (n) { return kind(n) === "mlp"; });
    var nCols = Math.max(1, headCols.length + (anyMlp ? 1 : 0));
    var width = PAD * 2 + 60 + nCols * COL_W;
    var rows = ["input"];
    Object.keys(layers).map(Number).sort(function (a, b) { return a - b; }).forEach(function (l) {
      if (layers[l].attn) rows.push("attn" + l);
      if (layers[l].mlp) rows.push("mlp" + l);
    });
    rows.push("logits");
    var height = PAD * 2 + (rows.length - 1) * ROW_H + BOX_H;
    function rowY(r) { return height - PAD - BOX_H / 2 - rows.indexOf(r) * ROW_H; }
    var mid = 60 + PAD + (nCols * COL_W) / 2;
    function pos(n) {
      var k = kind(n);
      if (k === "input") return [mid, rowY("input")];
      if (k === "logits") return [mid, rowY("logits")];
      if (k === "mlp") return [60 + PAD + (headCols.length + 0.5) * COL_W, rowY("mlp" + n.slice(3))];
      var lh = headOf(n);
      return [60 + PAD + (headCols.indexOf(lh[1]) + 0.5) * COL_W, rowY("attn" + lh[0])];
    }

    function buildLegend() {
      function line(color, w, label) {
        return el("span", {}, [sv("svg", {width: 34, height: 12}, sv("line", {x1: 2, y1: 6, x2: 32, y2: 6, stroke: color, "stroke-width": w})), label]);
      }
      var head = sv("svg", {width: 58, height: 30}, [
        sv("rect", {x: 4, y: 2, width: 50, height: 18, rx: 4, fill: "#dbeafe", stroke: "#1d4ed8"}),
        sv("circle", {cx: 13, cy: 20, r: 4, fill: "#fff", stroke: "#1d4ed8"}), sv("circle", {cx: 29, cy: 20, r: 4, fill: "#fff", stroke: "#1d4ed8"}),
        sv("circle", {cx: 45, cy: 20, r: 4, fill: "#fff", stroke: "#1d4ed8"}),
        sv("text", {x: 11, y: 30, "font-size": 8}, "q"), sv("text", {x: 27, y: 30, "font-size": 8}, "k"), sv("text", {x: 43, y: 30, "font-size": 8}, "v")]);
      function box(fill, stroke, label) {
        return el("span", {}, [sv("svg", {width: 22, height: 14}, sv("rect", {x: 1, y: 1, width: 20, height: 12, rx: 3, fill: fill, stroke: stroke})), label]);
      }
      return el("div", {"class": "cwx-legend"}, [
        line(POS, 3, "positive score (the edge's clean value helps the answer)"), line(NEG, 3, "negative score"),
        line(NONE, 1, "thin: small |score|"), line(NONE, 7, "thick: the largest |score| (" + (maxAbs ? maxAbs.toPrecision(3) : "—") + ")"),
        el("span", {}, [sv("svg", {width: 34, height: 12}, [sv("line", {x1: 2, y1: 6, x2: 26, y2: 6, stroke: "#374151", "stroke-width": 2}),
          sv("path", {d: "M24,1 L33,6 L24,11 z", fill: "#374151"})]), "sender → receiver"]),
        el("span", {}, [head, "attention head: an edge into it ends at its query, key or value port"]),
        box("#ffedd5", "#c2410c", "MLP"), box("#e5e7eb", "#374151", "input (embeddings)"), box("#dcfce7", "#15803d", "logits"),
        el("span", {"class": "cwx-note"}, "Click a node or an edge for its numbers.")]);
    }

    function draw() {
      showFaith();
      if (typeof drawPairs === "function") drawPairs();
      graph.textContent = "";
      if (!data.edges.length) { add(graph, missing("The circuit has no edges.")); return; }
      var shown = data.edges.slice(0, state.k), visible = {};
      shown.forEach(function (e) { visible[e.s] = 1; visible[e.r.split(".")[0]] = 1; });
      var svg = sv("svg", {width: width, height: height, viewBox: "0 0 " + width + " " + height, "class": "cwx-svg", role: "img"});
      rows.forEach(function (r) {
        var label = r === "input" ? "input" : r === "logits" ? "logits" : (r.indexOf("attn") === 0 ? "layer " + r.slice(4) + " attn" : "layer " + r.slice(3) + " MLP");
        svg.appendChild(sv("text", {x: 6, y: rowY(r) + 4, "font-size": 11, fill: "#6b7280"}, label));
        svg.appendChild(sv("line", {x1: 60, x2: width - 6, y1: rowY(r), y2: rowY(r), stroke: "#f3f4f6"}));
      });
      var edgeLayer = sv("g"), nodeLayer = sv("g");
      svg.appendChild(edgeLayer); svg.appendChild(nodeLayer);
      shown.slice().reverse().forEach(function (e) {
        var i = data.edges.indexOf(e), a = pos(e.s), parts = e.r.split("."), b = pos(parts[0]);
        var x0 = a[0], y0 = a[1] - BOX_H / 2, x1 = b[0], y1 = b[1] + BOX_H / 2;
        if (parts[1]) { x1 += PORTS[parts[1]]; y1 += PORT_R; }
        var sign = !ok(e.score) ? "none" : e.score < 0 ? "neg" : "pos", color = {pos: POS, neg: NEG, none: NONE}[sign];
        var w = ok(e.score) && maxAbs > 0 ? 1 + (6 * Math.abs(e.score)) / maxAbs : 1;
        // The arrowhead grows with the line (a fixed marker vanishes under a thick one); every edge
        // ends going straight up into its port, so the head points up with its tip on the port.
        var hw = Math.max(4.5, w * 1.1), hl = Math.max(9, w * 1.8), yb = y1 + hl;
        var dy = Math.max(20, y0 - yb), d = "M" + x0 + "," + y0 + " C" + x0 + "," + (y0 - dy * 0.45) + " " + x1 + "," + (yb + dy * 0.45) + " " + x1 + "," + (yb - 1);
        var g = sv("g", {"data-edge": i});
        g.appendChild(sv("path", {d: d, fill: "none", stroke: color, "stroke-width": w, "stroke-opacity": 0.8,
          "class": "cwx-edge" + (state.edge === i ? " cwx-sel" : ""), "data-edge": i, "data-width": w.toFixed(3),
          "data-sign": sign}));
        g.appendChild(sv("path", {d: "M" + x1 + "," + y1 + " L" + (x1 - hw) + "," + yb + " L" + (x1 + hw) + "," + yb + " z",
          fill: color, "class": "cwx-arrow"}));
        g.appendChild(sv("path", {d: d, fill: "none", stroke: "transparent", "stroke-width": Math.max(12, w + 6),
          "class": "cwx-edge-hit", "data-edge": i, "pointer-events": "stroke"},
          sv("title", {}, e.s + " → " + e.r + ": " + signed(e.score, 4))));
        g.addEventListener("click", function () { state.edge = i; state.node = null; edgePanel(i); draw(); });
        edgeLayer.appendChild(g);
      });
      Object.keys(visible).forEach(function (n) {
        var p = pos(n), k = kind(n), sel = state.node === n;
        var colors = {head: ["#dbeafe", "#1d4ed8"], mlp: ["#ffedd5", "#c2410c"], input: ["#e5e7eb", "#374151"], logits: ["#dcfce7", "#15803d"]}[k];
        var g = sv("g", {"class": "cwx-node" + (sel ? " cwx-sel" : ""), "data-node": n, tabindex: 0, role: "button"});
        g.appendChild(sv("rect", {x: p[0] - BOX_W / 2, y: p[1] - BOX_H / 2, width: BOX_W, height: BOX_H, rx: k === "mlp" ? 2 : 6,
          fill: colors[0], stroke: colors[1], "stroke-width": 1.2}));
        g.appendChild(sv("text", {x: p[0], y: p[1] + 4, "text-anchor": "middle"}, n));
        if (k === "head") {
          Object.keys(PORTS).forEach(function (q) {
            var used = data.edges.slice(0, state.k).some(function (e) { return e.r === n + "." + q; });
            g.appendChild(sv("circle", {cx: p[0] + PORTS[q], cy: p[1] + BOX_H / 2, r: PORT_R, fill: used ? colors[1] : "#fff",
              stroke: colors[1], "class": "cwx-port", "data-port": q}));
            g.appendChild(sv("text", {x: p[0] + PORTS[q] + 6, y: p[1] + BOX_H / 2 + 12, "font-size": 9}, q));
          });
        }
        g.appendChild(sv("title", {}, n + " (click for its panel)"));
        g.addEventListener("click", function () { state.node = n; state.edge = null; nodePanel(n); draw(); });
        g.addEventListener("keydown", function (ev) { if (ev.key === "Enter") { state.node = n; state.edge = null; nodePanel(n); draw(); } });
        nodeLayer.appendChild(g);
      });
      graph.appendChild(svg);
    }

    /* ---- the node panel ---- */
    function section(title, body) { return [el("h5", {}, title), body]; }

    function nodePanel(n) {
      var info = data.nodes[n] || {kind: kind(n)}, miss = data.missing;
      panel.textContent = "";
      panel.setAttribute("data-panel", "node"); panel.setAttribute("data-node", n);
      var ins = data.edges.filter(function (e) { return e.r.split(".")[0] === n; }).length;
      var outs = data.edges.filter(function (e) { return e.s === n; }).length;
      add(panel, [el("h4", {}, n + " (" + {head: "attention head", mlp: "MLP", input: "input", logits: "logits"}[info.kind] + ")"),
        el("p", {"class": "cwx-note"}, ins + " edges in, " + outs + " out in the whole circuit")]);
      var d = info.dla;
      add(panel, section("Direct logit attribution", d ? el("div", {}, [
        el("p", {}, ["mean ", v("dla", d.value, signed(d.value, 4)), "; share of the logit difference ",
          v("dla-share", d.share, pct(d.share)), " (of ", v("dla-total", d.total, signed(d.total, 4)), ")"]),
        el("p", {"class": "cwx-note"}, d.what + "."),
        d.per_prompt ? el("div", {}, [el("div", {}, "per prompt:"), distribution("dla-dist", d.per_prompt, "")]) :
          missing("no per-prompt values of this component in the files")]) :
        missing(miss.dla || "the files have no direct logit attribution of this node")));
      var p = info.patching;
      add(panel, section("Activation patching", p ? el("div", {}, [
        el("p", {}, [p.normalized ? "restored fraction " : "effect ", v("patch", p.value, signed(p.value, 4)),
          " (" + p.sweep + " sweep, " + p.direction + (p.position ? ", at " + p.position + ", its largest position" : "") + ")"]),
        p.degenerate ? el("p", {"class": "cwx-missing"}, "the clean–corrupted gap is degenerate: values are not meaningful") : null,
        p.per_prompt ? el("div", {}, [el("div", {}, "per prompt (each prompt's own restored fraction; the value above is the ratio of the means):"),
          distribution("patch-dist", p.per_prompt, "")]) : missing("no per-prompt values in the files")]) :
        missing(miss.patching || (info.kind === "head" || info.kind === "mlp" ?
          "no patching sweep covers this node (--patch heads for heads, mlp_out for MLPs)" : "patching sweeps cover heads and MLPs"))));
      if (info.kind === "head") {
        add(panel, section("Attention from the answer position", attentionView(n)));
        add(panel, section("Mechanism read-out", mechanismView(info.mechanism)));
      }
      if (data.positions && data.positions.grids["heads_by_pos " + n]) { state.grid = "heads_by_pos " + n; drawPositions(); }
    }

    function attentionView(n) {
      var a = data.attention;
      if (!a || !a.heads[n]) return missing(data.missing.attention || "the files have no attention of this head");
      var box = el("div");
      var select = el("select", {"class": "cwx-prompt", "aria-label": "prompt"});
      a.prompts.forEach(function (p, i) {
        select.appendChild(el("option", {value: i}, "#" + a.examples[i] + ": " + (p.length > 60 ? p.slice(0, 57) + "…" : p)));
      });
      select.value = String(state.prompt);
      var bars = el("div");
      function fill() {
        var i = +select.value, row = a.heads[n][i], toks = a.tokens[i];
        state.prompt = i;
        bars.textContent = "";
        bars.setAttribute("data-prompt", a.examples[i]);
        var t = el("table", {}, el("tr", {}, [el("th", {}, "token"), el("th", {}, "attention")]));
        row.forEach(function (x, j) {
          t.appendChild(el("tr", {}, [el("td", {}, el("span", {"class": "cwx-tok"}, toks[j] === undefined ? "#" + j : toks[j])),
            el("td", {}, [sv("svg", {width: 120, height: 9}, sv("rect", {x: 0, y: 0, width: 120 * (ok(x) ? x : 0), height: 9, fill: POS})), " ",
              v("attn-" + j, x, fixed(x, 3))])]));
        });
        add(bars, t);
      }
      select.addEventListener("change", fill);
      fill();
      return add(box, [el("label", {}, ["prompt ", select]),
        el("p", {"class": "cwx-note"}, "the first " + a.examples.length + " of " + a.of + " prompts; each row: how much the answer position attends to that token"), bars]);
    }

    function mechanismView(m) {
      if (!m) return missing(data.missing.mechanism || "no mechanism read-out of this head");
      function write(w, label) {
        return el("tr", {}, [el("td", {}, label), el("td", {}, ["z ", v("mech-z-" + label, w.z, signed(w.z, 2)), ", cosine ", signed(w.cosine, 2),
          w.copies ? " · copies" : w.suppresses ? " · suppresses" : "", el("br"), "raises ", w.raises.map(function (t) { return el("span", {"class": "cwx-tok"}, t); })])]);
      }
      return el("div", {}, [
        el("p", {}, ["reads position ", v("mech-position", null, m.reads_position), m.reads_role ? " (role " + m.reads_role + ")" : "",
          " with mean attention ", v("mech-attention", m.attention, fixed(m.attention, 3)),
          m.token !== null ? [" — most often ", el("span", {"class": "cwx-tok"}, m.token)] : "",
          "; its query prefers position " + m.qk_position + (m.qk_role ? " (role " + m.qk_role + ")" : "") + "."]),
        el("table", {}, [write(m.ov_attended, "attended"), write(m.output, "output")]),
        el("p", {"class": "cwx-note"}, "on " + m.n_prompts + " of " + m.of + " prompts; picked by " + m.picked_by.join(", "))]);
    }

    /* ---- the edge panel ---- */
    function edgePanel(i) {
      var e = data.edges[i], g = data.groups;
      panel.textContent = "";
      panel.setAttribute("data-panel", "edge"); panel.setAttribute("data-edge", e.s + "->" + e.r);
      var port = e.r.split(".")[1];
      add(panel, [el("h4", {}, e.s + " → " + e.r),
        el("p", {}, ["score ", v("edge-score", e.score, signed(e.score, 5)), " (mean over prompts; rank " + (i + 1) + " of " + data.edges.length + ")"]),
        port ? el("p", {"class": "cwx-note"}, "into the " + {q: "query", k: "key", v: "value"}[port] + " input of " + e.r.split(".")[0]) : null,
        el("p", {}, ["chosen again in ", v("edge-freq", e.freq, e.freq === null ? "—" : pct(e.freq)), " of bootstrap resamples"])]);
      if (e.by_pos && data.columns) {
        var pt = el("table", {}, el("tr", {}, [el("th", {}, data.columns.mode === "roles" ? "role" : "position"), el("th", {}, "score"), el("th", {}, "kept")]));
        data.columns.labels.forEach(function (label, j) {
          pt.appendChild(el("tr", {}, [el("td", {}, el("span", {"class": "cwx-tok"}, label)),
            el("td", {}, v("edge-pos-" + j, e.by_pos.scores[j], signed(e.by_pos.scores[j], 5))), el("td", {}, e.by_pos.kept[j] ? "yes" : "")]));
        });
        add(panel, section("Score per position", el("div", {}, [el("p", {"class": "cwx-note"},
          "the edge's score split by the position its receiver reads (summed: the score above); the circuit keeps it where marked"), pt])));
        var fl = e.by_pos.flows;
        if (fl) {  /* a key/value edge of a key × query circuit: how much reaches each query through the head */
          var ft = el("table", {}, el("tr", {}, [el("th", {}, "key ↓ / query →")].concat(
            data.columns.labels.map(function (q) { return el("th", {}, el("span", {"class": "cwx-tok"}, q)); }))));
          data.columns.labels.forEach(function (k, a) {
            ft.appendChild(el("tr", {}, [el("td", {}, el("span", {"class": "cwx-tok"}, k))].concat(
              data.columns.labels.map(function (q, b) {
                var x = fl.scores[a][b];
                return el("td", fl.kept[a][b] ? {"class": "cwx-kept"} : {},
                  [v("edge-flow-" + a + "-" + b, x, x === null ? "" : signed(x, 4)), fl.kept[a][b] ? " ✓" : ""]);
              }))));
          });
          add(panel, section("Score per key → query", el("div", {}, [el("p", {"class": "cwx-note"},
            "the score at each key position split by the query that reads it through the head's attention (each row sums to that key's score above); ✓ marks the flows the circuit keeps"), ft])));
        }
      }
      function scoreRows(xs, label, weight, shown) {
        /* a table of scores with a signed bar each, and their weighted mean over every finite one */
        var rows = el("table", {}, el("tr", {}, [el("th", {}, label(-1)), el("th", {}, "score")]));
        var wsum = 0, n = 0, top = 0;
        xs.forEach(function (x) { if (ok(x)) top = Math.max(top, Math.abs(x)); });
        xs.forEach(function (x, j) {
          if (ok(x)) { wsum += x * weight(j); n += weight(j); }
          if (j >= shown) return;
          rows.appendChild(el("tr", {}, [el("td", {}, label(j)), el("td", {}, [
            sv("svg", {width: 60, height: 9}, sv("rect", {x: ok(x) && x < 0 ? 30 - (30 * -x) / (top || 1) : 30, y: 0,
              width: ok(x) ? (30 * Math.abs(x)) / (top || 1) : 0, height: 9, fill: ok(x) && x < 0 ? NEG : POS})), " ",
            v("edge-prompt-" + j, x, signed(x, 5))])]));
        });
        return {rows: rows, mean: n ? wsum / n : null};
      }
      if (e.prompts) {  /* each prompt's own score, kept by the edge-stability pass */
        var shown = Math.min(e.prompts.length, data.prompt_rows);
        var each = scoreRows(e.prompts, function (j) { return j < 0 ? "prompt" : "#" + j; }, function () { return 1; }, shown);
        add(panel, section("Score per prompt", el("div", {}, [
          el("p", {"class": "cwx-note"}, "each prompt's own score (the gradient terms of that prompt alone); their mean is the score above"),
          distribution("edge-dist", e.prompts, ""),
          el("p", {}, ["mean over prompts ", v("edge-mean", each.mean, signed(each.mean, 5))]),
          shown < e.prompts.length ? el("p", {"class": "cwx-note"}, "the table lists the first " + shown + " of the " + e.prompts.length + " prompts; the histogram counts all of them") : null,
          each.rows])));
        return;
      }
      if (!g || !e.scores) { add(panel, section("Score per prompt", missing(data.missing.edge_scores || "no per-prompt scores in the files"))); return; }
      var starts = [], at = 0;
      g.sizes.forEach(function (size) { starts.push(at); at += size; });
      var blocks = scoreRows(e.scores, function (j) {
        if (j < 0) return g.per_prompt ? "prompt" : "block (prompts)";
        return g.per_prompt ? "#" + starts[j] : "#" + starts[j] + "–" + (starts[j] + g.sizes[j] - 1);
      }, function (j) { return g.sizes[j]; }, e.scores.length);
      add(panel, section(g.per_prompt ? "Score per prompt" : "Score per block of prompts", el("div", {}, [
        el("p", {"class": "cwx-note"}, g.per_prompt ? "each prompt scored on its own (the edge-stability pass)" :
          "the edge-stability pass scores " + g.sizes.length + " blocks of the " + g.n_examples + " prompts, each on its own"),
        el("p", {}, ["their prompt-weighted mean ", v("edge-mean", blocks.mean, signed(blocks.mean, 5))]), blocks.rows])));
    }

    /* ---- a position-aware circuit's kept (edge, position) pairs on a token × layer grid ---- */
    var pairBox = el("div", {"class": "cwx-pairs"});
    root.insertBefore(pairBox, posBox);

    function drawPairs() {
      pairBox.textContent = "";
      if (!data.columns) return;
      var labels = data.columns.labels, shown = data.edges.slice(0, state.k), pairs = [], big = 0;
      shown.forEach(function (e) {
        if (!e.by_pos) return;
        e.by_pos.kept.forEach(function (kept, j) {
          if (kept) { pairs.push({e: e, i: data.edges.indexOf(e), j: j, score: e.by_pos.scores[j]}); }
        });
      });
      pairs.forEach(function (p) { if (ok(p.score)) big = Math.max(big, Math.abs(p.score)); });
      // Each column holds the nodes its pairs join, side by side within a row; empty columns stay narrow.
      var inCol = labels.map(function () { return {}; });
      pairs.forEach(function (p) { inCol[p.j][p.e.s] = 1; inCol[p.j][p.e.r.split(".")[0]] = 1; });
      var BW = 58, BH = 22, x = 70, colX = [], colW = [];
      labels.forEach(function (_, j) {
        var perRow = {};
        Object.keys(inCol[j]).forEach(function (n) { var r = rowOf(n); perRow[r] = (perRow[r] || 0) + 1; });
        var wide = Math.max(0, Math.max.apply(null, [0].concat(Object.keys(perRow).map(function (r) { return perRow[r]; }))));
        colX.push(x); colW.push(wide ? wide * (BW + 8) + 12 : 28); x += colW[j];
      });
      var W = x + 10, H = height + 40;
      var svg = sv("svg", {width: W, height: H, "class": "cwx-pair-svg"});
      rows.forEach(function (r) {
        svg.appendChild(sv("text", {x: 4, y: rowY(r) + 4, "font-size": 10, fill: "#6b7280"}, r === "input" || r === "logits" ? r :
          (r.indexOf("attn") === 0 ? "L" + r.slice(4) + " attn" : "L" + r.slice(3) + " MLP")));
      });
      var at = {};
      labels.forEach(function (label, j) {
        svg.appendChild(sv("rect", {x: colX[j], y: 4, width: colW[j] - 2, height: height - 8, fill: j % 2 ? "#f9fafb" : "#fff"}));
        svg.appendChild(sv("text", {x: colX[j] + colW[j] / 2, y: height + 14, "font-size": 10, "text-anchor": "middle"},
          label.length > 12 ? label.slice(0, 11) + "…" : label));
        var count = {};
        Object.keys(inCol[j]).sort().forEach(function (n) {
          var r = rowOf(n), c = count[r] = (count[r] || 0) + 1;
          at[n + "@" + j] = [colX[j] + 6 + (c - 0.5) * (BW + 8), rowY(r)];
        });
      });
      pairs.slice().reverse().forEach(function (p) {
        var a = at[p.e.s + "@" + p.j], parts = p.e.r.split("."), b = at[parts[0] + "@" + p.j];
        var x0 = a[0], y0 = a[1] - BH / 2, x1 = b[0] + (parts[1] ? PORTS[parts[1]] * 0.6 : 0), y1 = b[1] + BH / 2;
        var sign = !ok(p.score) ? "none" : p.score < 0 ? "neg" : "pos", color = {pos: POS, neg: NEG, none: NONE}[sign];
        var w = ok(p.score) && big ? 1 + (5 * Math.abs(p.score)) / big : 1, hw = Math.max(4, w), hl = Math.max(8, w * 1.6), yb = y1 + hl;
        var dy = Math.max(16, y0 - yb);
        var g = sv("g", {"class": "cwx-pair", "data-edge": p.i, "data-pos": p.j});
        g.appendChild(sv("path", {d: "M" + x0 + "," + y0 + " C" + x0 + "," + (y0 - dy * 0.4) + " " + x1 + "," + (yb + dy * 0.4) + " " + x1 + "," + (yb - 1),
          fill: "none", stroke: color, "stroke-width": w, "stroke-opacity": 0.8}));
        g.appendChild(sv("path", {d: "M" + x1 + "," + y1 + " L" + (x1 - hw) + "," + yb + " L" + (x1 + hw) + "," + yb + " z", fill: color}));
        g.appendChild(sv("title", {}, p.e.s + " → " + p.e.r + " at " + labels[p.j] + ": " + signed(p.score, 4)));
        g.style.cursor = "pointer";
        g.addEventListener("click", function () { state.edge = p.i; state.node = null; edgePanel(p.i); draw(); });
        svg.appendChild(g);
      });
      Object.keys(at).forEach(function (key) {
        var n = key.split("@")[0], q = at[key];
        svg.appendChild(sv("rect", {x: q[0] - BW / 2, y: q[1] - BH / 2, width: BW, height: BH, rx: 4, fill: "#fff", stroke: "#6b7280"}));
        svg.appendChild(sv("text", {x: q[0], y: q[1] + 4, "font-size": 10, "text-anchor": "middle"}, n));
      });
      add(pairBox, [el("h4", {}, "Position-resolved edges (" + (data.columns.mode === "roles" ? "role" : "token") + " × layer)"),
        el("p", {"class": "cwx-note"}, pairs.length + " kept (edge, " + (data.columns.mode === "roles" ? "role" : "position") +
          ") pairs of the edges shown; each arrow is the edge at the position its receiver reads (width by that score, colour by its sign)."),
        el("div", {"style": "overflow:auto"}, svg)]);
      pairBox.setAttribute("data-pairs", String(pairs.length));
    }

    function rowOf(n) {
      var k = kind(n);
      return k === "input" || k === "logits" ? k : k === "mlp" ? "mlp" + n.slice(3) : "attn" + headOf(n)[0];
    }

    /* ---- patching by position on a token × layer grid ---- */
    function drawPositions() {
      posBox.textContent = "";
      var P = data.positions;
      add(posBox, el("h4", {}, "Patching by position (token × layer)"));
      if (!P) { add(posBox, missing(data.missing.positions)); return; }
      var keys = Object.keys(P.grids);
      if (!state.grid || !P.grids[state.grid]) state.grid = keys[0];
      var select = el("select", {"class": "cwx-grid-select", "aria-label": "sweep"});
      keys.forEach(function (k) { select.appendChild(el("option", {value: k}, k)); });
      select.value = state.grid;
      select.addEventListener("change", function () { state.grid = select.value; drawPositions(); });
      var G = P.grids[state.grid], toks = P.tokens, cw = 64, ch = 26, left = 70;
      var big = 0;
      G.values.forEach(function (r) { r.forEach(function (x) { if (ok(x)) big = Math.max(big, Math.abs(x)); }); });
      var W = left + toks.length * cw + 10, H = G.values.length * ch + 70;
      var svg = sv("svg", {width: W, height: H, "class": "cwx-grid"});
      var inCircuit = {};
      Object.keys(data.nodes).forEach(function (n) { var l = layerOf(n); if (l !== null) (inCircuit[l] = inCircuit[l] || []).push(n); });
      G.values.forEach(function (row, ri) {
        var li = G.values.length - 1 - ri, y = 10 + li * ch, layer = G.layers[ri];
        var mark = inCircuit[+layer] ? " •" : "";
        svg.appendChild(sv("text", {x: 4, y: y + 17, "font-size": 11}, (G.head ? G.head : "layer " + layer) + mark,
        ));
        row.forEach(function (x, j) {
          var t = ok(x) && big ? Math.abs(x) / big : 0;
          svg.appendChild(sv("rect", {x: left + j * cw, y: y, width: cw - 2, height: ch - 2, fill: !ok(x) ? "#f3f4f6" : x < 0 ? NEG : POS,
            "fill-opacity": ok(x) ? 0.1 + 0.8 * t : 1, "class": "cwx-cell", "data-layer": layer, "data-pos": j, "data-value": ok(x) ? x : "null"},
            sv("title", {}, (G.head || "layer " + layer) + ", " + toks[j] + ": " + signed(x, 4))));
          svg.appendChild(sv("text", {x: left + j * cw + cw / 2 - 1, y: y + 17, "font-size": 10, "text-anchor": "middle"}, fixed(x, 2)));
        });
      });
      toks.forEach(function (t, j) {
        svg.appendChild(sv("text", {x: left + j * cw + cw / 2, y: G.values.length * ch + 26, "font-size": 10, "text-anchor": "middle"},
          t.length > 10 ? t.slice(0, 9) + "…" : t));
      });
      add(posBox, [el("label", {}, ["sweep ", select]),
        el("p", {"class": "cwx-note"}, (G.normalized ? "restored fraction" : "effect") + " of patching each layer at each token; • marks layers with circuit nodes (" +
          Object.keys(inCircuit).sort().map(function (l) { return "L" + l + ": " + inCircuit[l].join(", "); }).join("; ") +
          "). The circuit's edges are position-agnostic: each stands for its write at every token."),
        el("div", {"style": "overflow:auto"}, svg)]);
    }

    draw();
    panel.setAttribute("data-panel", "none");
    add(panel, el("p", {"class": "cwx-note"}, "Click a node or an edge of the circuit to see its numbers here."));
    drawPositions();
    // When it was drawn (ms since the page started loading) and what drawing it took: the browser test
    // holds a 2,000-prompt run's page to its budget with these.
    root.setAttribute("data-drawn-ms", String(Math.round(performance.now())));
    root.setAttribute("data-init-ms", (performance.now() - t0).toFixed(1));
  };
})();
