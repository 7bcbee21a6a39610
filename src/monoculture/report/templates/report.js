/* monoculture report: draws the figures and runs the prompt explorer.
   Data from the store is untrusted: it is read from JSON blocks and only ever put into the
   page with textContent, never innerHTML. Every string from the data sits in its own <bdi>
   (or a block with dir="auto"), so a right-to-left override in a model name cannot reverse
   the text beside it. */
(function () {
  "use strict";

  function readJSON(el) { return JSON.parse(el.textContent); }
  function byId(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }
  function iso(cls, text) { return el("bdi", cls, text); }
  function line(tag, cls, parts) {
    /* parts: strings (the page's own words) and nodes (data, already isolated) */
    var e = el(tag, cls);
    parts.forEach(function (p) { e.appendChild(typeof p === "string" ? document.createTextNode(p) : p); });
    return e;
  }
  function clear(node) { while (node.firstChild) { node.removeChild(node.firstChild); } }
  function fmt(x, d) {
    if (x === null || x === undefined || !isFinite(x)) { return "n/a"; }
    return Number(x).toFixed(d === undefined ? 3 : d);
  }

  /* ---- figures ---- */
  var config = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["sendDataToCloud"] };
  var jobs = [];
  function draw(div, spec, name) {
    var layout = Object.assign({}, spec.layout || {});
    delete layout.width;  /* fill the column; the export keeps its own width */
    layout.autosize = true;
    var cfg = Object.assign({}, config, { toImageButtonOptions: { format: "svg", filename: name || "figure" } });
    var p = Plotly.newPlot(div, spec.data || [], layout, cfg).then(function () {
      div.setAttribute("data-rendered", "true");
    });
    jobs.push(p);
    return p;
  }
  Array.prototype.forEach.call(document.querySelectorAll("[data-figure]"), function (div) {
    try {
      draw(div, readJSON(byId(div.getAttribute("data-figure"))), div.getAttribute("data-name"));
    } catch (e) {
      console.error("figure " + div.id + " failed: " + e);
      div.appendChild(el("p", "warn", "This figure could not be drawn: " + e));
    }
  });
  Array.prototype.forEach.call(document.querySelectorAll("script.perspectives-figure"), function (s) {
    var target = byId(s.getAttribute("data-target"));
    if (!target) { return; }
    try {
      target.classList.add("plot");
      draw(target, readJSON(s), s.getAttribute("data-target"));
    } catch (e) {
      console.error("figure " + s.getAttribute("data-target") + " failed: " + e);
    }
  });
  Promise.all(jobs).then(function () {
    window.monocultureRenderedAt = performance.now();
    document.documentElement.setAttribute("data-rendered", "true");
  }, function (e) { console.error("a figure failed: " + e); });

  /* ---- prompt explorer ---- */
  var dataEl = byId("explorer-data");
  if (!dataEl) { return; }
  var ex = readJSON(dataEl);
  var models = ex.models, prompts = ex.prompts, answers = ex.answers || {};
  var index = {};
  prompts.forEach(function (p, i) { index[p.id] = i; });
  var search = byId("ex-search"), inAnswers = byId("ex-in-answers"), onlyHeld = byId("ex-only-held");
  var sortSel = byId("ex-sort"), list = byId("ex-list"), count = byId("ex-count"), detail = byId("ex-detail");
  var lowerPrompt = prompts.map(function (p) { return (p.id + "\n" + p.text).toLowerCase(); });
  var lowerAnswers = null;
  var current = null;
  var MAX_LISTED = 300;

  function answersText(i) {
    if (!lowerAnswers) {
      lowerAnswers = prompts.map(function (p) {
        var a = answers[p.id];
        return a ? a.map(function (x) { return x[2]; }).join("\n").toLowerCase() : "";
      });
    }
    return lowerAnswers[i];
  }

  function filtered() {
    var q = (search.value || "").trim().toLowerCase();
    var held = onlyHeld ? onlyHeld.checked : false;
    var deep = inAnswers && inAnswers.checked;
    var out = [];
    for (var i = 0; i < prompts.length; i++) {
      if (held && !prompts[i].answers) { continue; }
      if (q && lowerPrompt[i].indexOf(q) < 0 && !(deep && answersText(i).indexOf(q) >= 0)) { continue; }
      out.push(i);
    }
    var mode = sortSel ? sortSel.value : "fewest";
    function v(i) { var x = prompts[i].voices; return (x === null || x === undefined) ? Infinity : x; }
    if (mode === "fewest") { out.sort(function (a, b) { return v(a) - v(b) || a - b; }); }
    else if (mode === "most") { out.sort(function (a, b) { return (v(b) === Infinity ? -1 : v(b)) - (v(a) === Infinity ? -1 : v(a)) || a - b; }); }
    return out;
  }

  function renderList() {
    var items = filtered();
    clear(list);
    count.textContent = items.length + " of " + prompts.length + " prompts" + (items.length > MAX_LISTED ? " (first " + MAX_LISTED + " listed; refine the search)" : "");
    items.slice(0, MAX_LISTED).forEach(function (i) {
      var p = prompts[i];
      var li = el("li");
      var b = el("button");
      b.type = "button";
      b.setAttribute("data-prompt", p.id);
      if (p.id === current) { b.className = "active"; }
      b.appendChild(el("span", "v", "V " + fmt(p.voices, 2)));
      b.appendChild(iso("pid", p.id));
      var t = p.text.length > 140 ? p.text.slice(0, 139) + "…" : p.text;
      b.appendChild(iso(p.answers ? "" : "noans", t));
      b.addEventListener("click", function () { show(p.id, true); });
      li.appendChild(b);
      list.appendChild(li);
    });
  }

  function pairList(title, pairs) {
    var box = el("div");
    box.appendChild(el("strong", null, title));
    var ul = el("ul");
    pairs.forEach(function (x) {
      ul.appendChild(line("li", null, [iso(null, models[x[0]].name), " ↔ ", iso(null, models[x[1]].name), ": " + fmt(x[2])]));
    });
    if (!pairs.length) { ul.appendChild(el("li", null, "n/a")); }
    box.appendChild(ul);
    return box;
  }

  function show(id, push) {
    if (!(id in index)) { return; }
    var p = prompts[index[id]];
    current = id;
    clear(detail);
    detail.setAttribute("data-prompt", id);
    detail.appendChild(line("h3", null, ["Prompt ", iso(null, p.id)]));
    var meta = [];
    if (p.language) { meta.push("language ", iso(null, p.language)); }
    if (p.category) { meta.push((meta.length ? " · " : "") + "category ", iso(null, p.category)); }
    if (meta.length) { detail.appendChild(line("p", "note", meta)); }
    var ptext = el("div", "prompt-text", p.text);
    ptext.dir = "auto";
    detail.appendChild(ptext);
    detail.appendChild(el("p", "ex-stats", "Voices on this prompt V(p) = " + fmt(p.voices, 2) + " among " + p.models +
      " models · homogeneity " + fmt(p.homogeneity)));
    if (p.most.length || p.least.length) {
      var pairs = el("div", "pairs");
      pairs.appendChild(pairList("Most similar pairs", p.most));
      pairs.appendChild(pairList("Least similar pairs", p.least));
      detail.appendChild(pairs);
    }
    var a = answers[id];
    if (!a) {
      detail.appendChild(el("p", "note", "The answers to this prompt are not in this report. " + ex.description));
    } else {
      var grid = el("div", "answers");
      var multi = {};
      a.forEach(function (x) { multi[x[0]] = (multi[x[0]] || 0) + 1; });
      a.forEach(function (x) {
        var card = el("div", "answer");
        var who = line("div", "who", [iso(null, models[x[0]].name), multi[x[0]] > 1 ? " · sample " + x[1] : ""]);
        if (models[x[0]].family) { who.appendChild(iso("fam", models[x[0]].family)); }
        card.appendChild(who);
        var text = el("div", "text", x[2]);
        text.dir = "auto";
        card.appendChild(text);
        if (x[3] > 0) { card.appendChild(el("div", "cut", "… " + x[3] + " more characters not shown")); }
        grid.appendChild(card);
      });
      detail.appendChild(grid);
    }
    Array.prototype.forEach.call(list.querySelectorAll("button.active"), function (b) { b.className = ""; });
    Array.prototype.forEach.call(list.querySelectorAll("button"), function (b) {
      if (b.getAttribute("data-prompt") === id) { b.className = "active"; }
    });
    if (push && window.history && history.replaceState) {
      try { history.replaceState(null, "", "#prompt=" + encodeURIComponent(id)); } catch (e) { /* some file:// contexts refuse; the link is a convenience */ }
    }
  }

  var timer = null;
  function later() { clearTimeout(timer); timer = setTimeout(renderList, 120); }
  search.addEventListener("input", later);
  if (inAnswers) { inAnswers.addEventListener("change", renderList); }
  if (onlyHeld) { onlyHeld.addEventListener("change", renderList); }
  if (sortSel) { sortSel.addEventListener("change", renderList); }
  function fromHash() {
    var m = /^#prompt=(.+)$/.exec(location.hash || "");
    if (m) {
      var id = decodeURIComponent(m[1]);
      if (id in index) { show(id, false); return true; }
    }
    return false;
  }
  window.addEventListener("hashchange", fromHash);
  renderList();
  if (!fromHash()) {
    var first = filtered()[0];
    if (first !== undefined) { show(prompts[first].id, false); }
  }
  window.monocultureExplorer = { show: show, prompts: prompts.length, held: ex.held };
})();
