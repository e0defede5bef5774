// pbrsim explorer: plain JavaScript, no libraries; charts are SVG drawn here. Every figure comes from the server,
// which computes it as `pbrsim run` does; this file only lays it out.
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { design: null, levers: [], initial: {}, compare: [], updateTimer: null, updateSeq: 0, lastRun: null };

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") e.textContent = v; else if (k === "class") e.className = v; else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

async function api(path, body) {
  const opts = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const r = await fetch(path, opts);
  const data = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  if (!r.ok) { const e = new Error(data.error || `HTTP ${r.status}`); e.data = data; throw e; }
  return data;
}

function problemText(err) {
  const d = err.data || {};
  if (d.problems) return d.problems.map((p) => `${d.source}: ${p.path ? p.path + ": " : ""}${p.rule}`).join("\n");
  return err.message;
}

function setStatus(id, text, isError = false) { const s = $(id); s.textContent = text; s.classList.toggle("error", isError); }

// ---------------------------------------------------------------- opening

async function init() {
  const data = await api("/api/scenarios");
  $("#folder").textContent = data.folder;
  const list = $("#scenario-list");
  for (const f of data.files) list.append(el("option", { value: f, text: f }));
  const fs = $("#stress-choices");
  for (const name of data.stresses) {
    const id = `stress-${name}`;
    const checked = data.default_stresses.includes(name);
    fs.append(el("label", { for: id }, el("input", { type: "checkbox", id, value: name, checked }), ` ${name}`));
  }
  $("#open-button").addEventListener("click", () => openDesign(api("/api/open", { file: list.value })));
  $("#upload").addEventListener("change", async (ev) => {
    const file = ev.target.files[0];
    if (!file) return;
    openDesign(fetch("/api/upload", { method: "POST", headers: { "X-Filename": file.name }, body: file })
      .then(async (r) => { const d = await r.json(); if (!r.ok) { const e = new Error(d.error); e.data = d; throw e; } return d; }));
    ev.target.value = "";
  });
  $("#reset").addEventListener("click", () => { renderLevers(); scheduleUpdate(0); });
  $("#download-yaml").addEventListener("click", downloadYaml);
  $("#run").addEventListener("click", runMonteCarlo);
  $("#add-compare").addEventListener("click", addToCompare);
  $("#clear-compare").addEventListener("click", () => { state.compare = []; renderCompareList(); });
  $("#run-compare").addEventListener("click", runCompare);
  $("#run-stress").addEventListener("click", runStress);
  $("#run-goalseek").addEventListener("click", runGoalSeek);
}

async function openDesign(promise) {
  setStatus("#open-status", "opening…");
  try {
    const d = await promise;
    state.design = d.design; state.levers = d.levers; state.source = d.source; state.name = d.name;
    state.organisations = d.organisations;
    $("#design-name").textContent = `${d.name} (${d.source})`;
    $("#design-description").textContent = d.description;
    renderLevers();
    $("#workspace").hidden = false;
    for (const id of ["#mc-headline", "#mc-tables", "#mc-charts", "#stress-result", "#gs-result"]) $(id).replaceChildren();
    $("#run-downloads").hidden = true;
    setStatus("#run-status", "");
    const holder = (d.organisations || [])[0] || "provider";
    $("#gs-target").value = `failure(${holder}) <= 0.05`;
    setStatus("#open-status", `opened ${d.source}: ${d.segments.length} segments, ${d.months} months, ${d.levers.length} levers`);
    scheduleUpdate(0);
  } catch (err) {
    setStatus("#open-status", problemText(err), true);
  }
}

function leverValue(v) { return v === null || v === undefined ? "" : String(v); }

function renderLevers() {
  const form = $("#levers");
  form.replaceChildren();
  state.initial = {};
  const groups = new Map();
  const gs = $("#gs-lever");
  gs.replaceChildren();
  state.levers.forEach((lv, i) => {
    if (!groups.has(lv.group)) { const fs = el("fieldset", {}, el("legend", { text: lv.group })); groups.set(lv.group, fs); form.append(fs); }
    const id = `lever-${i}`;
    let input;
    if (lv.kind === "policy") {
      input = el("select", { id, "data-path": lv.path });
      for (const p of lv.choices) input.append(el("option", { value: p, text: p.replace("_", " "), selected: p === lv.value }));
    } else {
      const step = lv.kind === "share" ? "0.01" : lv.kind === "money" ? "any" : lv.kind === "rate" ? "any" : "1";
      input = el("input", { id, type: "number", step, min: "0", max: lv.kind === "share" ? "1" : null, "data-path": lv.path,
                            value: leverValue(lv.value), placeholder: lv.nullable ? "none" : null });
    }
    state.initial[lv.path] = leverValue(lv.value);
    input.addEventListener("input", () => scheduleUpdate(250));
    input.addEventListener("change", () => scheduleUpdate(0));
    groups.get(lv.group).append(el("div", { class: "lever", "data-path": lv.path }, el("label", { for: id, text: lv.label }), input));
    if (lv.kind !== "policy") gs.append(el("option", { value: lv.path, text: `${lv.group}: ${lv.label}` }));
  });
}

function changes() {
  const out = {};
  for (const input of document.querySelectorAll("#levers [data-path]:is(input, select)")) {
    const path = input.dataset.path;
    const v = input.value;
    input.closest(".lever").classList.toggle("changed", v !== state.initial[path]);
    if (v !== state.initial[path]) out[path] = v;
  }
  return out;
}

function scheduleUpdate(delay) {
  clearTimeout(state.updateTimer);
  state.updateTimer = setTimeout(update, delay);
}

function showProblems(err) {
  const box = $("#problems");
  for (const l of document.querySelectorAll(".lever.invalid")) l.classList.remove("invalid");
  if (!err) { box.hidden = true; box.replaceChildren(); return; }
  const d = err.data || {};
  box.replaceChildren(el("strong", { text: "This design is not valid (nothing was run):" }));
  const ul = el("ul");
  for (const p of d.problems || [{ path: "", rule: err.message }]) {
    ul.append(el("li", { text: `${p.path ? p.path + ": " : ""}${p.rule}` }));
    const lever = document.querySelector(`.lever[data-path="${CSS.escape(p.path)}"]`);
    if (lever) lever.classList.add("invalid");
  }
  box.append(ul);
  box.hidden = false;
}

async function update() {
  const seq = ++state.updateSeq;
  const t0 = performance.now();
  try {
    const d = await api("/api/update", { design: state.design, changes: changes() });
    if (seq !== state.updateSeq) return;
    showProblems(null);
    renderExact(d.exact, performance.now() - t0);
  } catch (err) {
    if (seq !== state.updateSeq) return;
    showProblems(err);
  }
}

// ---------------------------------------------------------------- figures, tables, charts

function headline(container, figures) {
  container.replaceChildren();
  for (const f of figures) {
    container.append(el("div", { class: "figure", "data-figure": f.id, "data-value": f.value === null ? "" : f.value },
      el("div", { class: "label", text: f.label }), el("div", { class: "text", text: f.text })));
  }
}

function table(t, caption, id) {
  const tb = el("table", { id });
  if (caption) tb.append(el("caption", { text: caption }));
  const head = el("tr");
  t.columns.forEach((c) => head.append(el("th", { scope: "col", text: c })));
  tb.append(el("thead", {}, head));
  const body = el("tbody");
  for (const row of t.rows) {
    const tr = el("tr");
    row.forEach((c, i) => tr.append(i === 0 ? el("th", { scope: "row", text: c }) : el("td", { text: c })));
    body.append(tr);
  }
  tb.append(body);
  return tb;
}

function listed(items) { return items.length < 2 ? items.join("") : `${items.slice(0, -1).join(", ")} and ${items[items.length - 1]}`; }

function renderExact(ex, ms) {
  const note = $("#exact-note");
  if (!ex.applies) {
    note.textContent = "Exact mode does not apply to this design: " + ex.reasons.join("; ") + ". Run Monte Carlo below.";
    $("#exact-headline").replaceChildren(); $("#exact-charts").replaceChildren();
    return;
  }
  note.textContent = (ex.set_aside.length
    ? `Expected values by Markov-chain algebra with ${listed(ex.set_aside)} set aside (nothing binds, nobody fails): a guide at once; the Monte Carlo run gives the figures with them.`
    : "Exact expected values (Markov-chain algebra: pbrsim run --method exact).") + ` Updated in ${Math.round(ms)} ms.`;
  headline($("#exact-headline"), ex.headline);
  charts($("#exact-charts"), ex.charts);
}

// axis labels: percentages with a decimal only where the tick step needs one
const fmtUnit = (unit, step = 0.1) => unit === "fraction"
  ? ((x) => `${(100 * x).toFixed(Number.isInteger(Math.round(step * 1e6) / 1e4) ? 0 : 1)}%`)
  : unit === "money" ? ((x) => (x < 0 ? "−£" : "£") + compact(Math.abs(x))) : ((x) => compact(x));
function compact(x) {
  const a = Math.abs(x);
  const sign = x < 0 ? "−" : "";
  if (a >= 1e6) return sign + (a / 1e6).toFixed(a >= 1e7 ? 0 : 1) + "m";
  if (a >= 1e3) return sign + (a / 1e3).toFixed(a >= 1e4 ? 0 : 1) + "k";
  return sign + (Math.round(a * 10) / 10).toString();
}

function niceTicks(lo, hi, n = 5) {
  if (!(hi > lo)) { hi = lo + 1; }
  const raw = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((k) => k * mag).find((s) => s >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9 * step; v += step) out.push(Math.abs(v) < 1e-12 ? 0 : v);
  return out;
}

const SVGNS = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}, text) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function tip(node, text) {
  const t = $("#tooltip");
  node.addEventListener("mousemove", (ev) => { t.textContent = text; t.hidden = false; t.style.left = `${ev.clientX + 12}px`; t.style.top = `${ev.clientY + 12}px`; });
  node.addEventListener("mouseleave", () => { t.hidden = true; });
  node.append(svg("title", {}, text));
}

function barChart(c) {
  const W = 560, rowH = 24, left = 180, right = 16, top = 8;
  const H = top + rowH * c.bars.length + 26;
  const vals = c.bars.flatMap((b) => [b.mean, b.lo, b.hi]).filter((v) => v !== null && v !== undefined);
  let lo = Math.min(0, ...vals), hi = Math.max(0, ...vals);
  if (c.unit === "fraction") { lo = Math.min(lo, 0); hi = Math.max(hi, Math.min(1, hi * 1.1 || 0.1)); }
  const ticks = niceTicks(lo, hi);
  lo = Math.min(lo, ticks[0]); hi = Math.max(hi, ticks[ticks.length - 1]);
  const x = (v) => left + (W - left - right) * (v - lo) / (hi - lo);
  const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img", "aria-label": c.title });
  const f = fmtUnit(c.unit, ticks.length > 1 ? ticks[1] - ticks[0] : 0.1);
  for (const t of ticks) {
    s.append(svg("line", { class: "grid", x1: x(t), x2: x(t), y1: top, y2: H - 22 }));
    s.append(svg("text", { x: x(t), y: H - 8, "text-anchor": "middle" }, f(t)));
  }
  c.bars.forEach((b, i) => {
    const y = top + i * rowH;
    s.append(svg("text", { x: left - 6, y: y + rowH / 2 + 4, "text-anchor": "end" }, b.label.length > 27 ? b.label.slice(0, 26) + "…" : b.label));
    if (b.mean === null || b.mean === undefined) return;
    const x0 = x(Math.min(0, b.mean)), x1 = x(Math.max(0, b.mean));
    const r = svg("rect", { class: "bar", x: x0, y: y + 5, width: Math.max(1, x1 - x0), height: rowH - 10 });
    tip(r, `${b.label}: ${c.table.rows[i][1]}`);
    s.append(r);
    if (b.lo !== null && b.hi !== null && b.lo !== undefined) {
      const cy = y + rowH / 2;
      s.append(svg("line", { class: "err", x1: x(b.lo), x2: x(b.hi), y1: cy, y2: cy }));
      s.append(svg("line", { class: "err", x1: x(b.lo), x2: x(b.lo), y1: cy - 4, y2: cy + 4 }));
      s.append(svg("line", { class: "err", x1: x(b.hi), x2: x(b.hi), y1: cy - 4, y2: cy + 4 }));
    }
  });
  s.append(svg("line", { class: "axis", x1: x(0), x2: x(0), y1: top, y2: H - 22 }));
  return s;
}

function fanChart(c) {
  const W = 600, H = 280, left = 56, right = 10, top = 8, bottom = 26;
  const q = c.quantiles, m = c.months;
  let lo = Math.min(0, ...q.p5), hi = Math.max(0, ...q.p95);
  const ticks = niceTicks(lo, hi);
  lo = Math.min(lo, ticks[0]); hi = Math.max(hi, ticks[ticks.length - 1]);
  const x = (t) => left + (W - left - right) * (t - m[0]) / Math.max(1, m[m.length - 1] - m[0]);
  const y = (v) => top + (H - top - bottom) * (hi - v) / (hi - lo);
  const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img", "aria-label": c.title });
  const f = fmtUnit("money");
  for (const t of ticks) {
    s.append(svg("line", { class: "grid", x1: left, x2: W - right, y1: y(t), y2: y(t) }));
    s.append(svg("text", { x: left - 4, y: y(t) + 4, "text-anchor": "end" }, f(t)));
  }
  for (const t of niceTicks(m[0], m[m.length - 1], 6)) s.append(svg("text", { x: x(t), y: H - 8, "text-anchor": "middle" }, `${t}`));
  const band = (a, b, cls) => {
    const pts = m.map((t, i) => `${x(t)},${y(a[i])}`).concat(m.map((t, i) => `${x(t)},${y(b[i])}`).reverse());
    s.append(svg("polygon", { class: cls, points: pts.join(" ") }));
  };
  band(q.p5, q.p95, "band1");
  band(q.p25, q.p75, "band2");
  s.append(svg("polyline", { class: "median", points: m.map((t, i) => `${x(t)},${y(q.p50[i])}`).join(" ") }));
  s.append(svg("line", { class: "zero", x1: left, x2: W - right, y1: y(0), y2: y(0) }));
  const w = (W - left - right) / Math.max(1, m.length);
  m.forEach((t, i) => {
    const r = svg("rect", { class: "hit", x: x(t) - w / 2, y: top, width: w, height: H - top - bottom, fill: "transparent" });
    const row = c.table.rows[i];
    tip(r, `month ${t}: median ${row[3]}; 5th–95th percentile ${row[1]} to ${row[5]}`);
    s.append(r);
  });
  return s;
}

function charts(container, list) {
  container.replaceChildren();
  for (const c of list) {
    const box = el("figure", { class: "chart", id: `chart-${c.id}`, "data-chart": c.id }, el("h3", { text: c.title }));
    box.append(el("div", {}, c.type === "fan" ? fanChart(c) : barChart(c)));
    box.append(el("div", { class: "scroll" }, table(c.table, null, `table-${c.id}`)));
    if (c.note) box.append(el("p", { class: "note", text: c.note }));
    if (c.type === "fan") box.append(el("p", { class: "note", text: "Bands: 5th–95th and 25th–75th percentiles over replications; line: median; dashed: zero." }));
    container.append(box);
  }
}

// ---------------------------------------------------------------- jobs

async function poll(job, progressId, statusId, label) {
  const bar = $(progressId);
  bar.hidden = false;
  if (job.total) { bar.max = job.total; bar.value = 0; }
  for (;;) {
    job = await api(`/api/jobs/${job.id}`);
    if (job.total && bar.max) bar.value = job.done;
    setStatus(statusId, `${label}: ${job.state}${job.total > 1 ? ` ${job.done} of ${job.total}` : ""}${job.stage ? " — " + job.stage : ""} (${job.seconds} s)`);
    if (job.state === "done" || job.state === "failed") break;
    await new Promise((r) => setTimeout(r, 150));
  }
  bar.hidden = true;
  if (job.state === "failed") { setStatus(statusId, `${label} failed: ${job.error}`, true); return null; }
  setStatus(statusId, `${label}: done in ${job.seconds} s`);
  return job;
}

function runSettings() { return { seed: $("#seed").value, replications: $("#replications").value }; }

async function startJob(path, body, buttonId, progressId, statusId, label) {
  const button = $(buttonId);
  button.disabled = true;
  try {
    const job = await api(path, body);
    return await poll(job, progressId, statusId, label);
  } catch (err) {
    setStatus(statusId, problemText(err), true);
    if (err.data && err.data.problems) showProblems(err);
    return null;
  } finally { button.disabled = false; }
}

async function runMonteCarlo() {
  const s = runSettings();
  $("#run-downloads").hidden = true;
  const job = await startJob("/api/run", { design: state.design, changes: changes(), ...s }, "#run", "#run-progress", "#run-status",
    `${s.replications} replications, seed ${s.seed}`);
  if (!job) return;
  const r = job.result;
  state.lastRun = job.id;
  const box = $("#mc-headline");
  headline(box, r.headline);
  box.dataset.seed = r.seed; box.dataset.replications = r.replications;
  const tables = $("#mc-tables");
  tables.replaceChildren(el("p", { class: "muted", text: r.note }));
  for (const w of r.warnings) tables.append(el("p", { class: "status error", text: `warning: ${w}` }));
  for (const t of r.tables) tables.append(table(t, t.title, `table-${t.id}`));
  charts($("#mc-charts"), r.charts);
  $("#download-report").href = `/api/jobs/${job.id}/report.html`;
  $("#download-xlsx").href = `/api/jobs/${job.id}/pbrsim.xlsx`;
  $("#run-downloads").hidden = false;
}

async function downloadYaml() {
  try {
    const r = await fetch("/api/yaml", { method: "POST", headers: { "Content-Type": "application/json" },
                                         body: JSON.stringify({ design: state.design, changes: changes() }) });
    if (!r.ok) { const d = await r.json(); const e = new Error(d.error); e.data = d; throw e; }
    const name = (r.headers.get("Content-Disposition").match(/filename="([^"]+)"/) || [])[1] || "design.yaml";
    const url = URL.createObjectURL(await r.blob());
    const a = el("a", { href: url, download: name });
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 5000);
  } catch (err) { showProblems(err); }
}

// ---------------------------------------------------------------- compare, stress, goal seek

function addToCompare() {
  if (state.compare.length >= 4) { setStatus("#cmp-status", "at most four designs: clear the list first", true); return; }
  const ch = changes();
  const what = Object.entries(ch).map(([k, v]) => `${k.split(".").slice(-2).join(".")}=${v}`).join(", ");
  state.compare.push({ design: state.design, changes: ch, label: `${state.name}${what ? " (" + what + ")" : ""}`.slice(0, 60) });
  renderCompareList();
}

function renderCompareList() {
  const ol = $("#compare-list");
  ol.replaceChildren(...state.compare.map((d, i) => el("li", { text: `${d.label}${i === 0 ? " — baseline" : ""}` })));
  setStatus("#cmp-status", state.compare.length ? "" : "Add designs with “Add to the comparison” above.");
}

async function runCompare() {
  if (!state.compare.length) { setStatus("#cmp-status", "add a design first", true); return; }
  const s = runSettings();
  const job = await startJob("/api/compare", { designs: state.compare, ...s }, "#run-compare", "#cmp-progress", "#cmp-status", "comparison");
  if (!job) return;
  const r = job.result;
  const box = $("#cmp-result");
  box.replaceChildren(el("p", { class: "muted", text: r.note }), table(r.table, `${r.replications} replications, seed ${r.seed}`, "table-compare"));
  const c = el("div", { class: "charts" });
  charts(c, r.charts);
  box.append(c);
}

async function runStress() {
  const only = [...document.querySelectorAll("#stress-choices input:checked")].map((i) => i.value);
  const job = await startJob("/api/stress", { design: state.design, changes: changes(), only, ...runSettings() }, "#run-stress",
    "#stress-progress", "#stress-status", "stress test");
  if (!job) return;
  const r = job.result;
  const box = $("#stress-result");
  box.replaceChildren(table(r.table, `${r.replications} replications, seed ${r.seed}`, "table-stress"));
  const ul = el("ul");
  for (const s of r.sentences) ul.append(el("li", { text: s }));
  box.append(ul);
  const c = el("div", { class: "charts" });
  charts(c, r.charts);
  box.append(c);
}

async function runGoalSeek() {
  const body = { design: state.design, changes: changes(), lever: $("#gs-lever").value, target: $("#gs-target").value,
                 low: $("#gs-low").value, high: $("#gs-high").value, step: $("#gs-step").value, ...runSettings() };
  const job = await startJob("/api/goalseek", body, "#run-goalseek", "#gs-progress", "#gs-status", "goal seek");
  if (!job) return;
  const r = job.result;
  $("#gs-result").replaceChildren(el("p", { class: "figure", "data-figure": "goal_seek", "data-value": r.answer ?? "", text: r.sentence }),
    table(r.table, "values tried", "table-goalseek"));
}

init().catch((err) => setStatus("#open-status", `could not reach the pbrsim server: ${err.message}`, true));
