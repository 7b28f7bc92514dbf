// tierwise spend dashboard. Plain JS, no libraries, no network beyond this server.
// Every piece of text from the ledger goes into the page as textContent: labels, reasons and errors can
// hold whatever users typed, so no data ever passes through innerHTML.
"use strict";

const KEY_STORE = "tierwise.adminKey";
const POLL_MS = 3000;
const SVG_NS = "http://www.w3.org/2000/svg";
const TIER_COLORS = { large: "#4f46e5", mini: "#0d9488", nano: "#d97706" };
const PALETTE = ["#4f46e5", "#0d9488", "#d97706", "#db2777", "#2563eb", "#65a30d", "#7c3aed", "#0891b2", "#dc2626", "#57534e"];

const state = { range: "1h", by: "tier", openRun: null, timer: null, busy: false, again: false, colors: {} };

// ---- small helpers -------------------------------------------------------------------------------

function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "style") Object.assign(node.style, v); // CSSOM: allowed by the page's CSP, unlike style=""
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

// replaceChildren with the absent parts left out (replaceChildren itself would print "null").
function fill(node, ...children) {
  node.replaceChildren(...children.filter((c) => c !== null && c !== undefined && c !== false));
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") node.textContent = v;
    else node.setAttribute(k, String(v));
  }
  for (const c of children) if (c) node.append(c);
  return node;
}

// Money with enough digits for tiny notional costs: 3 significant digits below a dollar.
function money(v) {
  if (v === null || v === undefined) return "—";
  if (v === 0) return "$0";
  const a = Math.abs(v);
  if (a >= 1) return (v < 0 ? "-$" : "$") + a.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  const digits = Math.min(12, Math.max(2, 2 - Math.floor(Math.log10(a))));
  return (v < 0 ? "-$" : "$") + a.toFixed(digits);
}

function pct(v) { return v === null || v === undefined ? "—" : (v * 100).toFixed(v >= 0.995 || v < 0.1 ? 1 : 0) + "%"; }
function count(n) { return Number(n || 0).toLocaleString("en-US"); }

function duration(s) {
  if (s === null || s === undefined) return "—";
  if (s < 1) return Math.round(s * 1000) + " ms";
  if (s < 60) return s.toFixed(1) + " s";
  if (s < 3600) return Math.floor(s / 60) + " m " + Math.round(s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.round((s % 3600) / 60) + " m";
}

function when(iso) {
  const d = new Date(iso);
  const today = new Date();
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  return d.toDateString() === today.toDateString() ? time : d.toLocaleDateString([], { month: "short", day: "numeric" }) + " " + time;
}

function colorFor(key) {
  if (state.by === "tier" && TIER_COLORS[key]) return TIER_COLORS[key];
  const id = state.by + ":" + key;
  if (!(id in state.colors)) state.colors[id] = PALETTE[Object.keys(state.colors).filter((k) => k.startsWith(state.by + ":")).length % PALETTE.length];
  return state.colors[id];
}

function badge(text, cls) { return el("span", { class: "badge " + (cls || text), text }); }
function tierBadge(tier) { return tier ? badge(tier, "tier-" + tier) : el("span", { class: "muted", text: "—" }); }

// ---- auth and fetching ---------------------------------------------------------------------------

class AuthError extends Error {}

async function api(path) {
  const key = sessionStorage.getItem(KEY_STORE) || "";
  const res = await fetch(path, { headers: { Authorization: "Bearer " + key }, cache: "no-store" });
  let body = null;
  try { body = await res.json(); } catch (_) { body = null; }
  const message = body && body.error && body.error.message ? body.error.message : res.status + " " + res.statusText;
  if (res.status === 401 || res.status === 403) throw new AuthError(message);
  if (!res.ok) throw new Error(message);
  return body;
}

function showLogin(message) {
  stopPolling();
  $("board").hidden = true;
  $("controls").hidden = true;
  $("login").hidden = false;
  $("login-msg").textContent = message || "";
  $("key").focus();
}

function showBoard() {
  $("login").hidden = true;
  $("board").hidden = false;
  $("controls").hidden = false;
}

function stopPolling() {
  if (state.timer) clearTimeout(state.timer);
  state.timer = null;
}

function schedule() {
  stopPolling();
  state.timer = setTimeout(refresh, POLL_MS);
}

async function refresh() {
  if (state.busy) { state.again = true; return; } // a click during a poll: run once more after it
  state.busy = true;
  state.again = false;
  try {
    const q = "range=" + encodeURIComponent(state.range) + "&by=" + encodeURIComponent(state.by);
    const data = await api("/dashboard/api/overview?" + q);
    showBoard();
    render(data);
    if (state.openRun) await loadRun(state.openRun, false);
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
    $("updated").classList.remove("error");
    schedule();
  } catch (err) {
    if (err instanceof AuthError) {
      sessionStorage.removeItem(KEY_STORE);
      showLogin(err.message);
    } else {
      $("updated").textContent = "could not refresh: " + err.message;
      $("updated").classList.add("error");
      schedule();
    }
  } finally {
    state.busy = false;
    if (state.again) refresh();
  }
}

// ---- rendering -----------------------------------------------------------------------------------

function render(data) {
  renderTotals(data.totals);
  renderChart(data.spend);
  renderDonut(data.totals);
  renderRuns(data.runs);
  renderHealth(data.health);
}

function renderTotals(t) {
  $("total-spend").textContent = money(t.cost_usd);
  $("notional").hidden = !t.notional;
  $("total-calls-note").textContent = t.notional ? count(t.notional_calls) + " calls at notional prices" : "";
  $("total-counterfactual").textContent = money(t.counterfactual_usd);
  $("large-model").textContent = t.large_model ? "priced at " + t.large_model : "no large model configured";
  $("total-saving").textContent = money(t.saving_usd);
  $("saving-share").textContent = t.saving_share === null ? "" : pct(t.saving_share) + " less than all-large";
  $("total-calls").textContent = count(t.calls);
  $("unknown-note").textContent = t.calls_cost_unknown ? count(t.calls_cost_unknown) + " without a known price" : "";
}

// Round a maximum up to 1, 2 or 5 × 10^n so the axis reads well.
function niceMax(v) {
  if (v <= 0) return 1e-6;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function tickLabel(t, bucket) {
  const d = new Date(t * 1000);
  if (bucket === "day") return d.toLocaleDateString([], { month: "short", day: "numeric" });
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function renderChart(s) {
  const chart = $("chart");
  const W = Math.max(chart.clientWidth || 800, 320), H = 280;
  const m = { l: 68, r: 16, t: 12, b: 28 };
  const iw = W - m.l - m.r, ih = H - m.t - m.b;
  chart.setAttribute("viewBox", "0 0 " + W + " " + H);
  const points = s.points;
  const keys = s.keys;
  const totals = Object.fromEntries(keys.map((k) => [k, 0]));
  for (const p of points) for (const k of keys) totals[k] += p.cost[k] || 0;
  const sum = points.reduce((a, p) => a + p.total, 0);
  chart.dataset.totalUsd = String(sum);
  chart.dataset.by = s.by;

  // legend: each key's spend in the range, and the all-large line
  const legend = $("chart-legend");
  legend.replaceChildren(
    ...keys.map((k) => el("span", { class: "item", "data-key": k },
      el("span", { class: "sw", style: { background: colorFor(k) } }), el("span", { text: k }),
      el("span", { class: "amt", text: money(totals[k]) }))),
    el("span", { class: "item" }, el("span", { class: "sw dash" }), el("span", { text: "all-large" }),
      el("span", { class: "amt", text: money(points.reduce((a, p) => a + (p.counterfactual || 0), 0)) })),
  );

  const n = points.length;
  const x = (i) => m.l + (n <= 1 ? iw / 2 : (i * iw) / (n - 1));
  const ymax = niceMax(Math.max(1e-9, ...points.map((p) => Math.max(p.total, p.counterfactual || 0))));
  const y = (v) => m.t + ih - (v / ymax) * ih;

  const nodes = [];
  // grid and y axis
  const yAxis = svg("g", { class: "axis" });
  const grid = svg("g", { class: "grid" });
  for (let i = 0; i <= 4; i++) {
    const v = (ymax * i) / 4;
    grid.append(svg("line", { x1: m.l, x2: W - m.r, y1: y(v), y2: y(v) }));
    yAxis.append(svg("text", { x: m.l - 8, y: y(v) + 4, "text-anchor": "end", text: money(v) }));
  }
  nodes.push(grid, yAxis);
  // x axis: about six labels
  const xAxis = svg("g", { class: "axis" });
  const step = Math.max(1, Math.ceil(n / 6));
  for (let i = 0; i < n; i += step) {
    xAxis.append(svg("text", { x: x(i), y: H - 8, "text-anchor": "middle", text: tickLabel(points[i].t, s.bucket) }));
  }
  nodes.push(xAxis);

  if (!sum) {
    nodes.push(svg("text", { class: "empty", x: m.l + iw / 2, y: m.t + ih / 2, "text-anchor": "middle", text: "No spend in this range yet" }));
  }
  // stacked areas, the cheapest key on top
  const base = points.map(() => 0);
  const areas = svg("g", { class: "areas" });
  for (const k of keys) {
    const top = points.map((p, i) => base[i] + (p.cost[k] || 0));
    let d = "M" + x(0) + "," + y(top[0]);
    for (let i = 1; i < n; i++) d += "L" + x(i) + "," + y(top[i]);
    for (let i = n - 1; i >= 0; i--) d += "L" + x(i) + "," + y(base[i]);
    d += "Z";
    const c = colorFor(k);
    areas.append(svg("path", { d, fill: c, "fill-opacity": 0.28, stroke: c, "stroke-width": 1.5, "data-key": k }));
    for (let i = 0; i < n; i++) base[i] = top[i];
  }
  nodes.push(areas);
  const dots = svg("g", { class: "dots" });
  points.forEach((p, i) => {
    if (p.total > 0) dots.append(svg("circle", { cx: x(i), cy: y(p.total), r: 3, fill: "#1f2430" }));
  });
  nodes.push(dots);
  if (s.counterfactual_known) {
    let d = "";
    points.forEach((p, i) => { d += (i ? "L" : "M") + x(i) + "," + y(p.counterfactual || 0); });
    nodes.push(svg("path", { class: "cf", d }));
  }
  // hover: one transparent column per bucket, a guide line, and a tooltip with the exact values
  const guide = svg("line", { class: "hover", x1: 0, x2: 0, y1: m.t, y2: m.t + ih, visibility: "hidden" });
  nodes.push(guide);
  const hits = svg("g", {});
  const colW = n <= 1 ? iw : iw / (n - 1);
  points.forEach((p, i) => {
    const r = svg("rect", { class: "hit", x: x(i) - colW / 2, y: m.t, width: colW, height: ih, "data-t": p.t });
    r.addEventListener("mouseenter", () => showTip(p, x(i), s, guide, W));
    hits.append(r);
  });
  hits.addEventListener("mouseleave", () => { $("tooltip").hidden = true; guide.setAttribute("visibility", "hidden"); });
  nodes.push(hits);
  chart.replaceChildren(...nodes);
}

function showTip(p, px, s, guide, W) {
  guide.setAttribute("x1", px);
  guide.setAttribute("x2", px);
  guide.setAttribute("visibility", "visible");
  const tip = $("tooltip");
  const d = new Date(p.t * 1000);
  const head = s.bucket === "day" ? d.toLocaleDateString() : d.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  const row = (label, value, color) => el("div", { class: "row" },
    el("span", {}, color ? el("span", { class: "sw tip-sw", style: { background: color } }) : null, label),
    el("span", { text: value }));
  const rows = s.keys.filter((k) => p.cost[k]).map((k) => row(k, money(p.cost[k]), colorFor(k)));
  fill(
    tip,
    el("div", { class: "head", text: head + " · " + count(p.calls) + " calls" }),
    ...rows,
    el("div", { class: "sep" }),
    row("spend", money(p.total)),
    row("all-large", money(p.counterfactual)),
    p.counterfactual === null ? null : row("saved", money(p.counterfactual - p.total)),
  );
  tip.hidden = false;
  const chart = $("chart");
  const scale = chart.clientWidth / W;
  const left = px * scale;
  tip.style.left = (left > chart.clientWidth * 0.6 ? left - tip.offsetWidth - 12 : left + 12) + "px";
  tip.style.top = "12px";
}

function renderDonut(t) {
  const donut = $("donut");
  const total = t.calls;
  const R = 62, r = 42, cx = 80, cy = 80;
  const nodes = [];
  if (!total) {
    nodes.push(svg("circle", { cx, cy, r: (R + r) / 2, fill: "none", stroke: "#eef0f3", "stroke-width": R - r }));
  }
  let a0 = -Math.PI / 2;
  for (const tier of t.tiers) {
    const frac = tier.calls / total;
    const a1 = a0 + frac * 2 * Math.PI;
    const color = TIER_COLORS[tier.tier] || "#9ca3af";
    const title = svg("title", { text: tier.tier + ": " + count(tier.calls) + " calls (" + pct(tier.share) + "), " + money(tier.cost_usd) });
    if (frac >= 0.9999) {
      nodes.push(svg("circle", { cx, cy, r: (R + r) / 2, fill: "none", stroke: color, "stroke-width": R - r, "data-tier": tier.tier }, title));
    } else {
      const p = (rad, a) => (cx + rad * Math.cos(a)).toFixed(2) + "," + (cy + rad * Math.sin(a)).toFixed(2);
      const large = a1 - a0 > Math.PI ? 1 : 0;
      const d = "M" + p(R, a0) + "A" + R + "," + R + " 0 " + large + " 1 " + p(R, a1) + "L" + p(r, a1) + "A" + r + "," + r + " 0 " + large + " 0 " + p(r, a0) + "Z";
      nodes.push(svg("path", { d, fill: color, "data-tier": tier.tier }, title));
    }
    a0 = a1;
  }
  nodes.push(svg("text", { class: "center", x: cx, y: cy + 4, "text-anchor": "middle", text: count(total) }));
  nodes.push(svg("text", { class: "center-sub", x: cx, y: cy + 20, "text-anchor": "middle", text: "calls" }));
  donut.replaceChildren(...nodes);
  $("donut-legend").replaceChildren(...t.tiers.map((tier) => el("span", { class: "item", "data-tier": tier.tier },
    el("span", { class: "sw", style: { background: TIER_COLORS[tier.tier] || "#9ca3af" } }),
    el("span", { text: tier.tier }),
    el("span", { class: "amt", text: pct(tier.share) + " · " + count(tier.calls) + " · " + money(tier.cost_usd) }))));
}

function renderRuns(runs) {
  const body = $("runs").tBodies[0];
  $("runs-empty").hidden = runs.length > 0;
  body.replaceChildren(...runs.map((r) => {
    const tr = el("tr", { "data-run": r.id, class: r.id === state.openRun ? "selected" : null, tabindex: 0,
      onclick: () => loadRun(r.id, true), onkeydown: (e) => { if (e.key === "Enter") loadRun(r.id, true); } },
      el("td", { text: r.kind }),
      el("td", { class: "label", title: r.label, text: r.label || "—" }),
      el("td", { text: r.key }),
      el("td", {}, badge(r.status)),
      el("td", { class: "num" }, money(r.cost_usd), r.notional ? " " : null, r.notional ? badge("n", "notional") : null),
      el("td", { class: "num", text: count(r.calls) }),
      el("td", { text: when(r.started_at) }),
      el("td", { class: "num", text: duration(r.duration_s) }));
    return tr;
  }));
}

function renderHealth(h) {
  const box = $("health");
  const parts = [];
  if (!h.groups.length) {
    parts.push(el("p", { class: "muted", text: "No shadow checks in this range. Turn them on with [shadow] share in tierwise.toml." }));
  } else {
    parts.push(el("div", { class: "muted", text: "Shadow agreement " + pct(h.agreement_rate) + " over " + count(h.shadowed) + " checks; alarm above " + pct(h.alarm_disagreement) + " disagreement (≥ " + h.alarm_min_checks + " checks)" }));
    for (const g of h.groups) {
      parts.push(el("div", { class: "health-row", "data-group": g.kind + "@" + g.tier },
        el("span", {}, el("b", { text: g.kind }), " → ", tierBadge(g.tier), g.alarm ? " " : null, g.alarm ? badge("alarm") : null),
        el("span", { class: "num", text: pct(g.agreement_rate) + " of " + count(g.shadowed) }),
        el("div", { class: "bar" + (g.alarm ? " alarm" : "") }, el("span", { style: { width: (g.agreement_rate * 100).toFixed(1) + "%" } }))));
    }
  }
  parts.push(el("h3", { text: "Circuit breakers" }));
  if (!h.circuits.length) parts.push(el("p", { class: "muted", text: "All closed." }));
  for (const c of h.circuits) {
    parts.push(el("div", { class: "circuit" }, badge(c.state), el("b", { text: c.model }),
      el("span", { class: "muted", text: count(c.failures) + " failures · " + (c.reason || "") })));
  }
  box.replaceChildren(...parts);
}

// ---- one run's step tree -------------------------------------------------------------------------

async function loadRun(id, scroll) {
  let tree;
  try {
    tree = await api("/dashboard/api/runs/" + encodeURIComponent(id));
  } catch (err) {
    if (err instanceof AuthError) { showLogin(err.message); return; }
    $("run-tree").replaceChildren(el("p", { class: "err", text: err.message }));
    return;
  }
  state.openRun = id;
  for (const tr of $("runs").tBodies[0].rows) tr.classList.toggle("selected", tr.dataset.run === id);
  renderRun(tree);
  $("run-detail").hidden = false;
  if (scroll) $("run-detail").scrollIntoView({ behavior: "smooth", block: "start" });
}

function renderRun(tree) {
  const r = tree.run;
  $("run-title").textContent = r.kind + (r.label ? " · " + r.label : "");
  fill(
    $("run-meta"),
    el("span", {}, "status ", badge(r.status)),
    el("span", {}, "spend ", el("b", { text: money(r.cost_usd) }), r.notional ? " (notional)" : ""),
    el("span", {}, "calls ", el("b", { text: count(r.calls) })),
    el("span", {}, "key ", el("b", { text: r.key })),
    el("span", {}, "started ", el("b", { text: when(r.started_at) })),
    el("span", {}, "duration ", el("b", { text: duration(r.duration_s) })),
    el("span", {}, "id ", el("b", { text: r.id })),
    r.error ? el("div", { class: "err", text: r.error }) : null,
  );
  const byId = new Map(tree.steps.map((s) => [s.step_id, s]));
  const children = new Map();
  const roots = [];
  for (const s of tree.steps) {
    if (s.parent && byId.has(s.parent) && s.parent !== s.step_id) {
      if (!children.has(s.parent)) children.set(s.parent, []);
      children.get(s.parent).push(s);
    } else roots.push(s);
  }
  const seen = new Set();
  const stepNode = (s) => {
    seen.add(s.step_id);
    const kids = (children.get(s.step_id) || []).filter((c) => !seen.has(c.step_id));
    return el("div", { class: "step s-" + s.status, "data-step": s.step_id },
      el("div", { class: "step-head" },
        el("span", { class: "step-id", text: s.step_id }),
        s.kind ? el("span", { class: "muted", text: s.kind }) : null,
        tierBadge(s.tier), badge(s.status),
        el("span", { class: "num", text: money(s.cost_usd) }),
        s.depends_on.length ? el("span", { class: "muted", text: "after " + s.depends_on.join(", ") }) : null),
      s.error ? el("div", { class: "err", text: s.error }) : null,
      s.calls.length ? callsTable(s.calls) : null,
      kids.length ? el("div", { class: "children" }, ...kids.map(stepNode)) : null);
  };
  const parts = roots.map(stepNode);
  if (tree.calls.length) {
    parts.push(el("div", { class: "step", "data-step": "" },
      el("div", { class: "step-head" }, el("span", { class: "step-id", text: "calls outside steps" })),
      callsTable(tree.calls)));
  }
  if (!parts.length) parts.push(el("p", { class: "muted", text: "No calls recorded in this run." }));
  $("run-tree").replaceChildren(...parts);
}

function callsTable(calls) {
  const head = el("tr", {}, ...["Tier", "Model", "Decision reason", "Tokens in / cached / out", "Cost", "Status", "Latency"]
    .map((h, i) => el("th", { class: i >= 3 && i !== 5 ? "num" : null, text: h })));
  const rows = calls.map((c) => el("tr", { "data-call": c.id },
    el("td", {}, tierBadge(c.tier), c.operation !== "chat" ? el("span", { class: "muted", text: " " + c.operation }) : null),
    el("td", { text: c.served_model && c.served_model !== c.model ? c.model + " (" + c.served_model + ")" : c.model }),
    el("td", { class: "reason" }, c.reason, c.error ? el("div", { class: "err", text: c.error }) : null),
    el("td", { class: "num", text: count(c.input_tokens) + " / " + count(c.cached_input_tokens) + " / " + count(c.output_tokens) }),
    el("td", { class: "num" }, money(c.cost_usd), c.notional ? " (n)" : ""),
    el("td", {}, badge(c.status)),
    el("td", { class: "num", text: Math.round(c.latency_ms) + " ms" })));
  return el("table", { class: "calls" }, el("thead", {}, head), el("tbody", {}, ...rows));
}

// ---- wiring --------------------------------------------------------------------------------------

function init() {
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const key = $("key").value.trim();
    if (!key) { $("login-msg").textContent = "Enter the admin key."; return; }
    sessionStorage.setItem(KEY_STORE, key);
    $("key").value = "";
    $("login-msg").textContent = "";
    refresh();
  });
  $("range").addEventListener("change", (e) => { state.range = e.target.value; refresh(); });
  for (const b of $("group-by").querySelectorAll("button")) {
    b.addEventListener("click", () => {
      state.by = b.dataset.by;
      for (const o of $("group-by").querySelectorAll("button")) o.setAttribute("aria-pressed", String(o === b));
      refresh();
    });
  }
  $("refresh").addEventListener("click", () => refresh());
  $("signout").addEventListener("click", () => { sessionStorage.removeItem(KEY_STORE); showLogin(""); });
  $("run-close").addEventListener("click", () => {
    state.openRun = null;
    $("run-detail").hidden = true;
    for (const tr of $("runs").tBodies[0].rows) tr.classList.remove("selected");
  });
  let resized = null;
  window.addEventListener("resize", () => {
    clearTimeout(resized);
    resized = setTimeout(() => { if (!$("board").hidden) refresh(); }, 200);
  });
  if (sessionStorage.getItem(KEY_STORE)) refresh();
  else showLogin("");
}

document.addEventListener("DOMContentLoaded", init);
