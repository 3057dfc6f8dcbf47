(function () {
  var errors = [];
  window.addEventListener("error", function (e) { errors.push(String(e.message)); });
  var origError = console.error;
  console.error = function () { errors.push(Array.prototype.join.call(arguments, " ")); origError.apply(console, arguments); };
  function values(box) {
    var out = {};
    box.querySelectorAll(".cwx-v").forEach(function (s) { out[s.getAttribute("data-key")] = s.getAttribute("data-value"); });
    return out;
  }
  function click(e) { e.dispatchEvent(new MouseEvent("click", {bubbles: true})); }
  window.addEventListener("load", function () {
    var nav = performance.getEntriesByType("navigation")[0];
    var res = {errors: errors, ready: performance.now(), explorers: [],
               dom_content_loaded: nav ? nav.domContentLoadedEventEnd : null, load: nav ? nav.loadEventStart : null,
               drawn: Array.prototype.map.call(document.querySelectorAll(".cwx"), function (r) {
                 return [+r.getAttribute("data-drawn-ms"), +r.getAttribute("data-init-ms")]; })};
    try {
      document.querySelectorAll(".cwx").forEach(function (root) {
        var r = {id: root.id, slider: {}, nodes: {}, edges: {}, prompts: {}};
        var slider = root.querySelector(".cwx-slider"), controls = root.querySelector(".cwx-controls");
        r.max = +slider.max;
        for (var k = +slider.min; k <= +slider.max; k++) {
          slider.value = String(k);
          slider.dispatchEvent(new Event("input", {bubbles: true}));
          var how = controls.querySelector(".cwx-how");
          r.slider[k] = {values: values(controls), how: how ? how.getAttribute("data-how") : null,
                         edges: root.querySelectorAll(".cwx-edge").length, nodes: root.querySelectorAll(".cwx-node").length,
                         ports: root.querySelectorAll(".cwx-port").length, arrows: root.querySelectorAll(".cwx-arrow").length};
        }
        var names = Array.prototype.map.call(root.querySelectorAll(".cwx-node"), function (g) { return g.getAttribute("data-node"); });
        var panel = root.querySelector(".cwx-panel");
        names.forEach(function (n) {
          click(root.querySelector('.cwx-node[data-node="' + n + '"]'));
          r.nodes[n] = {panel: panel.getAttribute("data-panel"), node: panel.getAttribute("data-node"), values: values(panel),
                        missing: Array.prototype.map.call(panel.querySelectorAll(".cwx-missing"), function (m) { return m.textContent; })};
          var sel = panel.querySelector(".cwx-prompt");
          if (sel) {
            r.prompts[n] = {};
            for (var i = 0; i < sel.options.length; i++) {
              sel.value = String(i);
              sel.dispatchEvent(new Event("change", {bubbles: true}));
              r.prompts[n][i] = {prompt: panel.querySelector("[data-prompt]").getAttribute("data-prompt"), values: values(panel)};
            }
          }
        });
        var edges = Array.prototype.map.call(root.querySelectorAll(".cwx-edge-hit"), function (p) { return p.getAttribute("data-edge"); });
        edges.forEach(function (i) {
          click(root.querySelector('.cwx-edge-hit[data-edge="' + i + '"]'));
          r.edges[panel.getAttribute("data-edge")] = {values: values(panel),
            missing: Array.prototype.map.call(panel.querySelectorAll(".cwx-missing"), function (m) { return m.textContent; })};
        });
        // A position-aware circuit's (edge, position) pairs: each click shows its edge's panel.
        var pairs = Array.prototype.map.call(root.querySelectorAll(".cwx-pair"), function (g) {
          return [g.getAttribute("data-edge"), g.getAttribute("data-pos")]; });
        r.pairs = {};
        pairs.forEach(function (ep) {
          click(root.querySelector('.cwx-pair[data-edge="' + ep[0] + '"][data-pos="' + ep[1] + '"]'));
          r.pairs[panel.getAttribute("data-edge") + "@" + ep[1]] = values(panel);
        });
        var grid = root.querySelector(".cwx-grid-select");
        r.grids = {};
        if (grid) {
          for (var g = 0; g < grid.options.length; g++) {
            var gs = root.querySelector(".cwx-grid-select");
            gs.value = gs.options[g].value;
            gs.dispatchEvent(new Event("change", {bubbles: true}));
            r.grids[gs.value] = Array.prototype.map.call(root.querySelectorAll(".cwx-cell"), function (c) {
              return [c.getAttribute("data-layer"), +c.getAttribute("data-pos"), c.getAttribute("data-value")]; });
          }
        }
        res.explorers.push(r);
      });
    } catch (e) { errors.push("selftest: " + e + " " + e.stack); }
    res.done = performance.now();
    var pre = document.createElement("pre");
    pre.id = "cwx-selftest";
    pre.textContent = JSON.stringify(res);
    document.body.appendChild(pre);
  });
})();
