// The babelmr dashboard: a runs list at /, a run page at /runs/<id>. Read-only; polls while runs are running.
"use strict";
const main = document.getElementById("main");
const state = { logs: {}, timer: null, timelineStamp: null };

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined) e.setAttribute(k, v);
  }
  for (const c of children.flat(Infinity)) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}
const fmtTime = (t) => t ? new Date(t * 1000).toLocaleString() : "";
const fmtSec = (s) => (s === null || s === undefined) ? "" : `${Number(s).toFixed(2)} s`;
function fmtBytes(b) {
  if (b === null || b === undefined) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0; let v = Number(b);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return i ? `${v.toFixed(1)} ${units[i]}` : `${v} B`;
}
const fmtNum = (n) => (n === null || n === undefined) ? "" : Number(n).toLocaleString();
const fmtUsd = (d) => `$${Number(d).toFixed(6)}`;
const status = (s) => el("span", { class: `st st-${s}` }, s);

async function getJSON(url) {
  const r = await fetch(url, { cache: "no-store" });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function poll(fn, ms) { clearTimeout(state.timer); state.timer = setTimeout(fn, ms); }

let lastRuns = null;
async function showRuns() {
  const data = await getJSON("/api/runs");
  const live = data.runs.some((r) => r.status === "running");
  const text = JSON.stringify(data);
  if (text === lastRuns) { poll(showRuns, live ? 1500 : 5000); return; }  // unchanged: keep the page as it is
  lastRuns = text;
  document.getElementById("store").textContent = data.store;
  const rows = data.runs.map((r) => el("tr", { "data-run": r.run_id, "data-status": r.status },
    el("td", {}, el("a", { href: `/runs/${encodeURIComponent(r.run_id)}` }, r.run_id)),
    el("td", {}, r.job), el("td", { class: "status" }, status(r.status)), el("td", {}, fmtTime(r.started_at)),
    el("td", { class: "num" }, fmtSec(r.seconds)), el("td", {}, r.backend), el("td", { class: "num" }, r.stages),
    el("td", { class: "num" }, r.cost ? `${fmtUsd(r.cost.dollars)}${r.cost.estimate ? " (est.)" : ""}` : "")));
  main.replaceChildren(el("h1", {}, `Runs (${data.runs.length})`),
    data.runs.length ? el("table", { id: "runs" },
      el("tr", {}, ["run", "job", "status", "started", "duration", "backend", "stages", "cost"].map((h) => el("th", {}, h))),
      rows) : el("p", { class: "muted" }, "No runs in this store yet."));
  document.getElementById("live").textContent = live ? "· live" : "";
  poll(showRuns, live ? 1500 : 5000);
}

function dag(stages) {
  // Columns by depth (longest path from a stage without upstream stages), boxes with a progress bar.
  const byName = Object.fromEntries(stages.map((s) => [s.name, s]));
  const depth = {};
  const d = (n, seen = new Set()) => {
    if (depth[n] !== undefined) return depth[n];
    if (seen.has(n)) return 0; seen.add(n);
    const ups = (byName[n]?.upstream || []).filter((u) => byName[u]);
    return (depth[n] = ups.length ? 1 + Math.max(...ups.map((u) => d(u, seen))) : 0);
  };
  stages.forEach((s) => d(s.name));
  const cols = {}; const pos = {};
  for (const s of stages) { const c = depth[s.name]; cols[c] = (cols[c] || 0) + 1; pos[s.name] = [c, cols[c] - 1]; }
  const W = 190, H = 64, GX = 60, GY = 22;
  const width = (Math.max(...Object.values(depth)) + 1) * (W + GX);
  const height = Math.max(...Object.values(cols)) * (H + GY) + GY;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", width); svg.setAttribute("height", height);
  const mk = (tag, attrs, text) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const xy = (n) => [10 + pos[n][0] * (W + GX), GY + pos[n][1] * (H + GY)];
  for (const s of stages) for (const u of s.upstream || []) if (pos[u]) {
    const [x1, y1] = xy(u); const [x2, y2] = xy(s.name);
    svg.append(mk("line", { x1: x1 + W, y1: y1 + H / 2, x2, y2: y2 + H / 2, stroke: "#607d8b", "stroke-width": 2 }));
    svg.append(mk("polygon", { points: `${x2},${y2 + H / 2} ${x2 - 8},${y2 + H / 2 - 5} ${x2 - 8},${y2 + H / 2 + 5}`,
                               fill: "#607d8b" }));
  }
  const colors = { succeeded: "#2e7d32", failed: "#c62828", running: "#1565c0" };
  for (const s of stages) {
    const [x, y] = xy(s.name);
    const g = mk("g", { class: "stage", "data-stage": s.name, "data-done": s.done, "data-tasks": s.tasks });
    const c = colors[s.status] || "#90a4ae";
    g.append(mk("rect", { x, y, width: W, height: H, rx: 6, fill: "#fff", stroke: c, "stroke-width": 2 }));
    g.append(mk("text", { x: x + 8, y: y + 18, "font-weight": "bold", "font-size": 13 }, s.name));
    g.append(mk("text", { x: x + W - 8, y: y + 18, "text-anchor": "end", fill: c, "font-size": 12 }, s.status));
    const frac = s.tasks ? s.done / s.tasks : 0;
    g.append(mk("rect", { x: x + 8, y: y + 28, width: W - 16, height: 10, fill: "#eceff1" }));
    g.append(mk("rect", { x: x + 8, y: y + 28, width: (W - 16) * frac, height: 10, fill: c }));
    const extra = (s.failed ? `, ${s.failed} failed` : "") + (s.retries ? `, ${s.retries} retries` : "");
    g.append(mk("text", { x: x + 8, y: y + 55, "font-size": 12, class: "progress" },
                `${s.done}/${s.tasks} tasks${extra}`));
    svg.append(g);
  }
  return el("div", { class: "dag", id: "dag" }, svg);
}

function costView(cost) {
  if (!cost || cost.error) return el("p", { class: "muted" }, cost ? cost.error : "no cost data");
  const arch = cost.prices.architecture;
  const row = (name, u) => el("tr", { "data-cost": name },
    el("td", {}, name), el("td", { class: "num" }, Number(u.task_seconds).toFixed(3)),
    el("td", { class: "num" }, Number(u.gb_seconds).toFixed(3)), el("td", { class: "num" }, u.invocations),
    el("td", {}, Object.entries(u.requests).filter(([, n]) => n).map(([k, n]) => `${k} ${n}`).join(" ") || "-"),
    el("td", { class: "num" }, fmtBytes(u.bytes_read)), el("td", { class: "num" }, fmtBytes(u.bytes_written)),
    el("td", { class: "num" }, fmtUsd(u.dollars[arch].total)));
  const coord = Object.keys(cost.coordinator_requests || {}).length;
  return el("div", { id: "cost" },
    el("p", { class: "cost-summary" }, cost.summary),
    el("table", {}, el("tr", {}, ["stage", "task s", "GB-s", "invocations", "S3 requests", "read", "written",
                                  `dollars (${arch})`].map((h) => el("th", {}, h))),
      Object.entries(cost.stages).map(([n, u]) => row(n, u)),
      coord && cost.coordinator ? row("(coordinator)", cost.coordinator) : null,
      row("total", cost.total)),
    el("p", { class: "muted" }, `Prices: ${cost.prices.region}, as of ${cost.prices.date} (${cost.prices.source}).`
       + (coord ? " The coordinator row: the requests of the process that ran the job (plans, records)." : "")));
}

function logBlock(runId, stage, task, a) {
  return a.logs.map((stream) => {
    const key = `${stage}/${task}/${a.attempt}/${stream}`;
    return el("a", { class: "log", "data-stream": stream, "data-attempt": a.attempt, onclick: async () => {
      if (state.logs[key] !== undefined) { delete state.logs[key]; render(); return; }
      const r = await fetch(`/api/runs/${encodeURIComponent(runId)}/logs/${key}`, { cache: "no-store" });
      state.logs[key] = await r.text(); render();
    } }, `a${a.attempt} ${stream}`);
  });
}

function taskTable(runId, stage) {
  const rows = [];
  for (const t of stage.task_rows) {
    const secs = ["import", "program", "export"].map((k) => t.seconds[k] == null ? "-" : Number(t.seconds[k]).toFixed(2));
    rows.push(el("tr", { "data-task": t.task, "data-status": t.status },
      el("td", { class: "num" }, t.task), el("td", {}, status(t.status)), el("td", { class: "num" }, t.attempts),
      el("td", {}, fmtTime(t.started_at)), el("td", { class: "num" }, secs.join(" / ")),
      el("td", { class: "num" }, `${fmtNum(t.rows_in)} → ${fmtNum(t.rows_out)}`),
      el("td", { class: "num" }, `${fmtBytes(t.bytes_in)} → ${fmtBytes(t.bytes_out)}`),
      el("td", { class: "num" }, fmtBytes(t.peak_rss_bytes)),
      el("td", { class: "counters" }, Object.entries(t.counters).map(([k, v]) => `${k}=${v}`).join(" ")),
      el("td", { class: "statusline" }, t.status_line || ""),
      el("td", {}, t.attempt_list.map((a) => logBlock(runId, stage.name, t.task, a)))));
    const extra = [];
    if (t.error) extra.push(el("pre", { class: "error" }, t.error));
    for (const a of t.attempt_list) for (const s of a.logs) {
      const key = `${stage.name}/${t.task}/${a.attempt}/${s}`;
      if (state.logs[key] !== undefined) extra.push(el("div", {}, el("b", {}, `attempt ${a.attempt} ${s}`),
                                                       el("pre", { class: "log", "data-log": key }, state.logs[key])));
    }
    if (extra.length) rows.push(el("tr", { class: "detail" }, el("td", { colspan: 11 }, extra)));
  }
  return el("table", { class: "tasks", "data-stage": stage.name },
    el("tr", {}, ["task", "status", "attempts", "started", "import / program / export s", "rows in → out",
                  "bytes in → out", "peak memory", "counters", "status line", "logs"].map((h) => el("th", {}, h))),
    rows);
}

let current = null;
function render() {
  const r = current; if (!r) return;
  document.getElementById("store").textContent = r.store;
  const parts = [
    el("p", {}, el("a", { href: "/" }, "← all runs")),
    el("h1", {}, `${r.run_id} `, status(r.status)),
    el("p", { class: "muted" }, `job ${r.job} · backend ${r.backend} · started ${fmtTime(r.started_at)}`
       + (r.seconds != null ? ` · ${fmtSec(r.seconds)}` : "")),
  ];
  if (r.error) parts.push(el("pre", { class: "error", id: "run-error" }, r.error));
  parts.push(el("h2", {}, "Stages"), dag(r.stages));
  parts.push(el("h2", {}, "Cost"), costView(r.cost));
  parts.push(el("h2", {}, "Timeline"));
  if (r.has_timeline) {
    const stamp = r.updated_at;
    if (state.timelineStamp === null || r.status !== "running") state.timelineStamp = stamp;
    parts.push(el("div", { id: "timeline" },
      el("img", { src: `/api/runs/${encodeURIComponent(r.run_id)}/timeline.png?v=${state.timelineStamp}`,
                  alt: "timeline of the run's task attempts" }),
      el("p", {}, el("a", { href: `/api/runs/${encodeURIComponent(r.run_id)}/timeline.svg` }, "SVG"))));
  } else parts.push(el("p", { class: "muted", id: "timeline" }, "No task attempt has finished yet."));
  for (const s of r.stages) if (s.task_rows.length) parts.push(el("h2", {}, `Tasks of ${s.name}`), taskTable(r.run_id, s));
  if (r.output) parts.push(el("h2", {}, "Output"), el("pre", {}, r.output.files.join("\n")));
  main.replaceChildren(...parts);
}

let lastRun = null;
async function showRun(runId) {
  let data;
  try { data = await getJSON(`/api/runs/${encodeURIComponent(runId)}`); }
  catch (e) { main.replaceChildren(el("p", {}, el("a", { href: "/" }, "← all runs")), el("pre", { class: "error" }, e.message)); return; }
  const live = data.status === "running";
  const text = JSON.stringify(data);
  if (text !== lastRun) {  // re-render only when something changed
    lastRun = text;
    current = data;
    if (live) state.timelineStamp = current.updated_at;  // a running run's timeline grows: reload it
    render();
  }
  document.getElementById("live").textContent = live ? "· live" : "";
  if (live) poll(() => showRun(runId), 1500);
}

const m = location.pathname.match(/^\/runs\/(.+)$/);
(m ? showRun(decodeURIComponent(m[1])) : showRuns()).catch((e) => main.replaceChildren(el("pre", { class: "error" }, e.message)));
