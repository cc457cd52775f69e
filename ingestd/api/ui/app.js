// ingestd's dashboard: one module, no build step, no dependency. It reads the daemon's JSON
// API (the same one curl uses) and writes the page with DOM calls only: no markup is built
// from data, so a hostile file name is shown as text, never run. docs/dashboard.md has the
// pages, what each polls and how often.

const TOKEN_KEY = "ingestd.token"; // sessionStorage: this tab only, gone when it closes
const JOB_STATES = ["queued", "running", "succeeded", "partial", "failed"];
const PAGE = 50;
const main = document.getElementById("main");
const statusLine = document.getElementById("status");
const forget = document.getElementById("forget");

// -- talking to the daemon ------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = (body && body.error) || "http_" + status;
    this.body = body || {};
  }
}
class NeedToken extends Error {}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

function headers(extra = {}) {
  const t = token();
  return t ? { ...extra, Authorization: `Bearer ${t}` } : extra;
}

async function request(path, options = {}) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 15000);
  try {
    const r = await fetch(path, { ...options, headers: headers(options.headers), signal: controller.signal,
                                  cache: "no-store" });
    if (r.status === 401) throw new NeedToken();
    const type = r.headers.get("Content-Type") || "";
    const body = type.startsWith("application/json") ? await r.json() : await r.text();
    if (!r.ok) throw new ApiError(r.status, typeof body === "object" ? body : null);
    connected(true);
    return { body, type, status: r.status };
  } catch (err) {
    if (err instanceof TypeError || err.name === "AbortError") connected(false);
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

async function get(path) {
  return (await request(path)).body;
}

function connected(ok) {
  statusLine.classList.toggle("bad", !ok);
  statusLine.textContent = ok ? `Updated ${new Date().toLocaleTimeString()}` : "Cannot reach the daemon; retrying";
}

// Which optional endpoints this daemon serves (newer ones add /documents, content, text):
// asked once per tab from its own OpenAPI document, so a page never probes with a 404.
let endpoints = null;
async function serves(path) {
  if (endpoints === null) {
    const doc = await get("openapi.json");
    endpoints = new Set(Object.keys(doc.paths || {}));
  }
  return endpoints.has(path);
}

// -- building the page (text only, never markup) ----------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

function svg(tag, attrs = {}) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, value);
  return el;
}

function link(href, text, attrs = {}) {
  return h("a", { href, ...attrs }, text);
}

function badge(state) {
  return h("span", { class: `badge ${state}`, dataset: { state } }, state);
}

function table(caption, columns, rows, attrs = {}) {
  return h("table", attrs,
    h("caption", { class: caption.startsWith("!") ? "sr-only" : null }, caption.replace(/^!/, "")),
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((cell, i) =>
      h("td", { dataset: { label: columns[i] } }, cell))))));
}

function dl(pairs, attrs = {}) {
  return h("dl", { class: "facts", ...attrs }, pairs.filter(Boolean).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v ?? "—")]));
}

function notice(kind, ...text) {
  return h("p", { class: `notice ${kind}`, role: kind === "error" ? "alert" : null }, ...text);
}

// -- formatting -------------------------------------------------------------------------

const numberFormat = new Intl.NumberFormat();
function num(n) {
  return n === null || n === undefined ? "—" : numberFormat.format(n);
}

function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(n < 10 ? 1 : 0) : n} ${units[i]}`;
}

function seconds(s) {
  if (s === null || s === undefined) return "—";
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

function when(iso) {
  if (!iso) return "—";
  const t = new Date(iso);
  const diff = (t.getTime() - Date.now()) / 1000;
  const abs = Math.abs(diff);
  const rel = abs < 60 ? `${Math.round(abs)} s` : abs < 3600 ? `${Math.round(abs / 60)} min`
    : abs < 86400 ? `${Math.round(abs / 3600)} h` : `${Math.round(abs / 86400)} d`;
  return h("time", { datetime: iso, title: t.toLocaleString() }, diff >= 0 ? `in ${rel}` : `${rel} ago`);
}

function duration(job) {
  const live = job.status === "queued" || job.status === "running";
  if (job.duration_s !== null && job.duration_s !== undefined) return seconds(job.duration_s) + (live ? " so far" : "");
  if (job.started_at) return seconds((Date.now() - new Date(job.started_at).getTime()) / 1000) + " so far";
  return "—";
}

function short(hash) {
  return hash ? h("code", { title: hash }, hash.slice(0, 12) + "…") : "—";
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? "?" + s : "";
}

// -- polling: one page at a time, paused while the tab is hidden ------------------------

let generation = 0; // bumped on every navigation: a late answer for an old page is dropped
let timer = null;

async function poll(run, interval) {
  const mine = generation;
  const first = await run(); // the first answer's failure is the page's: route() shows it
  const tick = async () => {
    if (mine !== generation) return;
    let next = interval;
    if (!document.hidden) {
      try {
        const wanted = await run();
        if (typeof wanted === "number") next = wanted;
      } catch (err) {
        if (mine === generation) failed(err);
        if (err instanceof NeedToken) return;
        next = Math.max(interval, 5000);
      }
    }
    if (mine === generation) timer = setTimeout(tick, next);
  };
  if (mine === generation) timer = setTimeout(tick, typeof first === "number" ? first : interval);
}

// Re-rendering must not take the keyboard focus away: the focused control is found again
// by its key (or its link) in the new content.
function keepFocus(container, render) {
  const active = document.activeElement;
  const key = active && container.contains(active) ? active.dataset.key || active.getAttribute("href") : null;
  render();
  if (!key) return;
  const again = [...container.querySelectorAll("[data-key], a[href]")]
    .find((el) => (el.dataset.key || el.getAttribute("href")) === key);
  if (again) again.focus();
}

document.addEventListener("visibilitychange", () => {
  if (!document.hidden) route();
});

function failed(err) {
  if (err instanceof NeedToken) {
    sessionStorage.removeItem(TOKEN_KEY);
    askToken("The daemon refused the token; enter the current one.");
  } else if (!(err instanceof TypeError) && err.name !== "AbortError") {
    console.warn("ingestd dashboard:", err.message);
  }
}

function ready(page) {
  if (document.body.dataset.ready !== page) {
    document.body.dataset.ready = page; // what the browser tests wait for
    performance.mark(`ready:${page}`); // what the page-time measurement reads
  }
}

// -- the token ----------------------------------------------------------------------------

function askToken(problem) {
  generation++;
  clearTimeout(timer);
  forget.hidden = true;
  const input = h("input", { id: "token", type: "password", autocomplete: "off", spellcheck: "false",
                             required: true, "aria-describedby": "token-help" });
  const error = h("p", { class: "notice error", role: "alert", hidden: !problem }, problem || "");
  const form = h("form", { class: "card token", onsubmit: async (ev) => {
    ev.preventDefault();
    const value = input.value.trim();
    let answer = { authorized: false };
    try {
      answer = await (await fetch("ui/session", { headers: { Authorization: `Bearer ${value}` },
                                                   cache: "no-store" })).json();
    } catch (err) {
      connected(!(err instanceof TypeError && !/header/i.test(err.message)));
    }
    if (answer.authorized) {
      sessionStorage.setItem(TOKEN_KEY, value);
      route();
    } else {
      error.textContent = "That token was refused.";
      error.hidden = false;
      input.select();
    }
  } },
  h("h1", {}, "API token"),
  h("p", { id: "token-help" }, "This daemon asks for its bearer token (the file named by ",
    h("code", {}, "http.token_file"), "). It is kept in this tab only and sent with each request."),
  error,
  h("label", { for: "token" }, "Token"), input,
  h("button", { type: "submit", class: "primary" }, "Use token"));
  main.replaceChildren(form);
  input.focus();
  ready("token");
}

forget.addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  askToken(null);
});

// -- ingest now (the one write) -------------------------------------------------------------

const dialog = document.getElementById("confirm");
function confirmIngest(name) {
  document.getElementById("confirm-text").textContent =
    `Start a job for source “${name}” now? It runs like a scheduled run and cannot be cancelled from here.`;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"),
                                                           { once: true }));
}

async function ingestNow(name, out) {
  const confirmed = await confirmIngest(name);
  const button = document.querySelector(`[data-key="ingest:${CSS.escape(name)}"]`);
  if (button) button.focus(); // the table may have been redrawn while the dialog was open
  if (!confirmed) return;
  try {
    const r = await request("ingest", { method: "POST", headers: { "Content-Type": "application/json" },
                                        body: JSON.stringify({ source: name }) });
    out.replaceChildren(notice("ok", `Job `, link(`#/jobs/${r.body.job_id}`, r.body.job_id), ` queued for ${name}.`));
  } catch (err) {
    if (err instanceof NeedToken) return failed(err);
    const b = err.body || {};
    const parts = [err.message];
    if (b.job_id) parts.push(" ", link(`#/jobs/${b.job_id}`, "Open that job"), ".");
    if (b.remediation) parts.push(" Fix: ", h("code", {}, b.remediation));
    out.replaceChildren(notice("error", ...parts));
  }
}

// -- Overview ---------------------------------------------------------------------------------

function sourceState(s) {
  if (!s.enabled) return "disabled";
  if (!s.available) return "unavailable";
  const status = s.last_job && s.last_job.status;
  return status === "queued" || status === "running" ? status : "idle";
}

function healthView(health) {
  const failing = health.failing || [];
  const lines = [];
  for (const name of failing) {
    const check = health.checks[name] || {};
    let why = "";
    if (name === "watchers" && check.sources) {
      why = Object.entries(check.sources).filter(([, w]) => !w.alive).map(([n]) => n).join(", ");
      why = why && ` (not alive: ${why})`;
    }
    lines.push(h("li", {}, h("strong", {}, name), why));
  }
  const unavailable = Object.entries((health.checks.sources || {}).unavailable || {});
  return h("section", { class: `card health ${health.status}`, "aria-labelledby": "health-title" },
    h("h2", { id: "health-title" }, "Health: ", badge(health.status === "ok" ? "healthy" : "unhealthy")),
    failing.length ? h("ul", {}, lines) : null,
    unavailable.length ? h("p", {}, "Sources that could not start: ",
      unavailable.map(([n, why], i) => [i ? "; " : "", h("strong", {}, n), `: ${why}`])) : null,
    h("p", { class: "muted" }, `Version ${health.version}, up ${seconds(health.uptime_s)}.`));
}

function sourcesView(sources, out) {
  const rows = sources.map((s) => {
    const state = sourceState(s);
    const busy = state === "queued" || state === "running";
    const blocked = state === "disabled" || state === "unavailable";
    const last = s.last_job;
    return [
      h("strong", {}, s.name),
      s.kind,
      h("span", {}, badge(state), s.remediation && blocked ? h("span", { class: "remedy" }, s.remediation) : null),
      s.trigger === "watch" ? "watches its folder" : h("span", {}, s.schedule || "—", s.next_run_at ? [h("br"), "next ", when(s.next_run_at)] : null),
      last ? h("span", {}, link(`#/jobs/${last.job_id}`, last.status, { class: `badge ${last.status}` }), " ",
        last.finished_at ? when(last.finished_at) : "") : "none yet",
      num(s.documents),
      bytes(s.bytes),
      h("button", { type: "button", class: "ingest", disabled: busy || blocked, dataset: { source: s.name, key: `ingest:${s.name}` },
                    "aria-label": `Ingest ${s.name} now`,
                    title: blocked ? `Source is ${state}` : busy ? `A job is already ${state}` : null,
                    onclick: () => ingestNow(s.name, out) }, "Ingest now"),
    ];
  });
  return h("section", { "aria-labelledby": "sources-title" },
    h("h2", { id: "sources-title" }, "Sources"),
    table("!Sources", ["Source", "Kind", "State", "Schedule", "Last job", "Documents", "Bytes", "Action"], rows,
          { id: "sources", class: "stack" }));
}

const CHARTS = [
  { key: "files", title: "Files per second", per: "s", value: (w, v) => v / w.slot_s, fmt: (v) => v.toFixed(v < 10 ? 1 : 0) },
  { key: "bytes", title: "Bytes per second", per: "s", value: (w, v) => v / w.slot_s, fmt: (v) => bytes(v) },
  { key: "errors", title: "Errors per minute", minute: true, value: (w, v) => v, fmt: (v) => num(v) },
  { key: "queue_depth", title: "Queue depth", value: (w, v) => v, fmt: (v) => num(v) },
];

function series(w, chart) {
  const raw = w[chart.key];
  if (!chart.minute) return raw.map((v) => chart.value(w, v));
  const per = Math.max(1, Math.round(60 / w.slot_s)); // sum whole minutes, newest last
  const out = [];
  for (let end = raw.length; end > 0; end -= per) {
    out.unshift(raw.slice(Math.max(0, end - per), end).reduce((a, b) => a + b, 0));
  }
  return out;
}

function chartView(w, chart) {
  const values = series(w, chart);
  const peak = Math.max(...values, 0);
  const latest = values.length ? values[values.length - 1] : 0;
  const width = 300, height = 70;
  const top = peak || 1;
  const step = width / Math.max(1, values.length - 1);
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(height - (v / top) * (height - 4)).toFixed(1)}`);
  const label = `${chart.title} over the last hour: peak ${chart.fmt(peak)}, latest ${chart.fmt(latest)}`;
  const pic = svg("svg", { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none", role: "img",
                           "aria-label": label, class: "chart" });
  const title = svg("title");
  title.textContent = label;
  pic.append(title, svg("path", { d: `M0,${height} L${points.join(" L")} L${width},${height} Z`, class: "area" }),
    svg("polyline", { points: points.join(" "), class: "line" }));
  return h("figure", { class: "card chart-card", dataset: { chart: chart.key } },
    h("figcaption", {}, h("span", {}, chart.title), h("strong", { class: "latest" }, chart.fmt(latest))),
    pic,
    h("div", { class: "axis", "aria-hidden": "true" }, h("span", {}, "−60 min"), h("span", {}, `peak ${chart.fmt(peak)}`), h("span", {}, "now")));
}

function chartsView(w) {
  return h("section", { "aria-labelledby": "throughput-title" },
    h("h2", { id: "throughput-title" }, "Throughput, last hour"),
    h("div", { class: "charts" }, CHARTS.map((c) => chartView(w, c))));
}

async function overview() {
  const health = h("div", { id: "health" });
  const sources = h("div", { id: "sources-box" });
  const result = h("div", { class: "result", "aria-live": "polite" }); // what "ingest now" answered
  const charts = h("div", { id: "charts-box" });
  main.replaceChildren(h("h1", {}, "Overview"), health, sources, result, charts);
  let chartsAt = 0;
  await poll(async () => {
    const wantCharts = Date.now() - chartsAt > 10000;
    const [hz, src, tp] = await Promise.all([get("healthz").catch((e) => e.body && e.body.checks ? e.body : Promise.reject(e)),
      get("sources"), wantCharts ? get("throughput") : null]);
    health.replaceChildren(healthView(hz));
    keepFocus(sources, () => sources.replaceChildren(sourcesView(src.sources, result)));
    if (tp) { charts.replaceChildren(chartsView(tp)); chartsAt = Date.now(); }
    ready("overview");
    return src.sources.some((s) => ["queued", "running"].includes(sourceState(s))) ? 2000 : 5000;
  }, 5000);
}

// -- Jobs ---------------------------------------------------------------------------------------

async function jobs(params) {
  const sourceSelect = h("select", { id: "f-source", name: "source" }, h("option", { value: "" }, "All sources"));
  const statusSelect = h("select", { id: "f-status", name: "status" }, h("option", { value: "" }, "Any status"),
    JOB_STATES.map((s) => h("option", { value: s, selected: params.get("status") === s }, s)));
  const change = () => { location.hash = "#/jobs" + query({ source: sourceSelect.value, status: statusSelect.value }); };
  sourceSelect.addEventListener("change", change);
  statusSelect.addEventListener("change", change);
  const list = h("div", { id: "jobs-box" });
  main.replaceChildren(h("h1", {}, "Jobs"),
    h("form", { class: "filters", role: "search", onsubmit: (e) => e.preventDefault() },
      h("label", { for: "f-source" }, "Source"), sourceSelect, h("label", { for: "f-status" }, "Status"), statusSelect),
    list);
  get("sources").then((r) => sourceSelect.append(...r.sources.map((s) =>
    h("option", { value: s.name, selected: params.get("source") === s.name }, s.name)))).catch(failed);
  const before = params.get("before");
  const path = "jobs" + query({ source: params.get("source"), status: params.get("status"), before, limit: PAGE });
  await poll(async () => {
    const page = await get(path);
    const rows = page.jobs.map((j) => [
      link(`#/jobs/${j.job_id}`, j.job_id, { class: "mono" }), j.source, j.trigger, badge(j.status), when(j.created_at),
      duration(j), num(j.counters.ingested), num(j.counters.unchanged), num(j.counters.failed), bytes(j.counters.bytes)]);
    keepFocus(list, () => list.replaceChildren(
      page.jobs.length ? table("!Jobs, newest first", ["Job", "Source", "Trigger", "Status", "Created", "Duration",
        "Ingested", "Unchanged", "Failed", "Bytes"], rows, { id: "jobs", class: "stack" }) : h("p", { class: "muted" }, "No jobs match."),
      h("nav", { class: "pager", "aria-label": "Job pages" },
        before ? link("#/jobs" + query({ source: params.get("source"), status: params.get("status") }), "Newest") : null,
        page.next_before ? link("#/jobs" + query({ source: params.get("source"), status: params.get("status"),
                                                  before: page.next_before }), "Older jobs") : null)));
    ready("jobs");
    const live = page.jobs.some((j) => j.status === "queued" || j.status === "running");
    return live ? 1500 : before ? 30000 : 5000;
  }, 5000);
}

// A running job's `progress` (docs/progress.md): what it is doing and how far it is, with a
// bar once the connector said how much to expect. Null when the job is not running.
function progressView(p) {
  if (!p) return null;
  const of = (done, total, fmt) => total === null || total === undefined ? fmt(done) : `${fmt(done)} of ${fmt(total)}`;
  const parts = [p.phase, `${of(p.items_done, p.items_total, num)} items`];
  if (p.bytes_done || p.bytes_total) parts.push(of(p.bytes_done, p.bytes_total, bytes));
  const bar = p.items_total ? h("progress", { max: p.items_total, value: Math.min(p.items_done, p.items_total),
    "aria-label": "items done" }) : null;
  return h("span", { id: "job-progress", dataset: { phase: p.phase, done: p.items_done } }, bar, " ", parts.join(" · "));
}

function errorGroups(job) {
  const groups = new Map();
  for (const e of job.errors) {
    const g = groups.get(e.code) || { count: 0, examples: [] };
    g.count++;
    if (g.examples.length < 3) g.examples.push(e);
    groups.set(e.code, g);
  }
  if (!groups.size) return h("p", { class: "muted" }, "No errors.");
  const rows = [...groups].map(([code, g]) => [h("code", {}, code), num(g.count),
    h("ul", { class: "examples" }, g.examples.map((e) => h("li", {}, e.item ? [h("span", { class: "mono" }, e.item), ": "] : null, e.message)))]);
  return h("div", {}, table("!Errors by code", ["Code", "Count", "Examples"], rows, { id: "errors", class: "stack" }),
    job.errors_dropped ? h("p", { class: "muted" }, `${num(job.errors_dropped)} more errors were counted but not kept (a job keeps 100).`) : null);
}

async function job(id, params) {
  const head = h("div"), counters = h("div"), errors = h("div"), items = h("div");
  main.replaceChildren(h("h1", {}, "Job ", h("span", { class: "mono" }, id)), head,
    h("h2", {}, "Counters"), counters, h("h2", {}, "Errors"), errors, h("h2", {}, "Items"), items);
  const after = params.get("after");
  await poll(async () => {
    const [j, page] = await Promise.all([get(`ingest/${id}`),
      get(`ingest/${id}/items` + query({ limit: PAGE, after })).catch((e) => ({ failed: e }))]);
    head.replaceChildren(dl([["Status", badge(j.status)], ["Source", link(`#/jobs?source=${encodeURIComponent(j.source)}`, j.source)],
      ["Kind", j.kind], ["Trigger", j.trigger], ["Created", when(j.created_at)], ["Started", when(j.started_at)],
      ["Finished", when(j.finished_at)], ["Duration", duration(j)],
      j.progress ? ["Progress", progressView(j.progress)] : null], { id: "job-facts" }));
    const c = j.counters;
    counters.replaceChildren(dl(Object.entries(c).map(([k, v]) => [k, k === "bytes" ? bytes(v) : num(v)]),
      { id: "counters", class: "facts counters" }));
    errors.replaceChildren(errorGroups(j));
    keepFocus(items, () => items.replaceChildren(itemsView(id, page, after)));
    ready("job");
    return j.status === "queued" || j.status === "running" ? 1000 : after ? 60000 : 15000;
  }, 15000);
}

function itemsView(id, page, after) {
  if (page.failed) return notice("error", `Items cannot be listed: ${page.failed.message}`);
  const rows = page.items.map((it) => [badge(it.outcome), h("span", { class: "mono wrap" }, it.origin_uri),
    it.doc_id ? link(`#/documents/${it.doc_id}`, it.doc_id.slice(0, 12) + "…", { title: it.doc_id, class: "mono" }) : "—",
    bytes(it.size), it.mime || "—", it.error ? [h("code", {}, it.error.code), " ", it.error.message] : ""]);
  return h("div", {},
    rows.length ? table("!Items", ["Outcome", "Origin", "Document", "Size", "MIME", "Error"], rows, { id: "items", class: "stack" })
      : h("p", { class: "muted" }, after ? "No more items yet." : "No items (unchanged files are counted, not listed)."),
    h("nav", { class: "pager", "aria-label": "Item pages" },
      after ? link(`#/jobs/${id}`, "First page") : null,
      page.next_after && page.items.length ? link(`#/jobs/${id}?after=${page.next_after}`, "Next page") : null));
}

// -- Documents ----------------------------------------------------------------------------------

async function documents(params) {
  const mine = generation;
  const listed = await serves("/documents");
  if (mine !== generation) return;
  main.replaceChildren(h("h1", {}, "Documents"));
  if (!listed) {
    main.append(notice("info", "This daemon does not list documents (GET /documents is newer than it). ",
      "Open a document from a job's items instead."));
    ready("documents");
    return;
  }
  // the API's own paging parameters, passed through as its `links.next` gives them
  const asked = { source: params.get("source"), after: params.get("after"), next_after: params.get("next_after"), limit: PAGE };
  const r = await get("documents" + query(asked));
  if (mine !== generation) return;
  const rows = r.documents.map((d) => [link(`#/documents/${d.doc_id}`, d.doc_id.slice(0, 12) + "…", { title: d.doc_id, class: "mono" }),
    d.source, h("span", { class: "mono wrap" }, d.origin_uri), bytes(d.size), d.mime, when(d.ingested_at)]);
  const next = r.links && r.links.next ? "#/documents?" + r.links.next.split("?")[1] : null;
  main.append(rows.length ? table("!Documents", ["Document", "Source", "Origin", "Size", "MIME", "Ingested"], rows,
                                  { id: "documents", class: "stack" }) : h("p", { class: "muted" }, "No documents."),
    h("nav", { class: "pager", "aria-label": "Document pages" },
      asked.after ? link("#/documents" + query({ source: asked.source }), "First page") : null,
      next ? link(next, "Next page") : null));
  ready("documents");
}

function versionsOf(d) {
  const count = d.versions.length + 1;
  const current = { ...d, version: d.version ?? count, current: true };
  return [current, ...d.versions.map((v, i) => ({ ...v, version: v.version ?? count - 1 - i }))];
}

function download(d, v, canDownload) {
  if (!canDownload) return h("span", { class: "muted" }, "not served");
  const href = `documents/${d.doc_id}/content?version=${v.version}`;
  const name = (v.origin_uri || "").split("/").pop() || d.doc_id;
  return h("a", { href, download: name, class: "download", dataset: { version: v.version },
                  onclick: async (ev) => {
                    if (!token()) return; // a plain link works when no token is configured
                    ev.preventDefault();
                    try {
                      const r = await fetch(href, { headers: headers() });
                      if (!r.ok) throw new Error(`HTTP ${r.status}`);
                      const url = URL.createObjectURL(await r.blob());
                      const a = h("a", { href: url, download: name });
                      document.body.append(a);
                      a.click();
                      a.remove();
                      setTimeout(() => URL.revokeObjectURL(url), 60000);
                    } catch (err) {
                      ev.target.after(notice("error", `Download failed: ${err.message}`));
                    }
                  } }, "Download");
}

async function documentPage(id) {
  const mine = generation;
  const [d, canDownload, hasText] = await Promise.all([get(`documents/${id}`),
    serves("/documents/{doc_id}/content"), serves("/documents/{doc_id}/text")]);
  const text = await textView(id, hasText, d.text);
  if (mine !== generation) return;
  const versions = versionsOf(d);
  const rows = versions.map((v) => [h("span", {}, `v${v.version}`, v.current ? " " : null, v.current ? h("span", { class: "badge current" }, "current") : null),
    v.kind || "content", short(v.sha256), bytes(v.size), v.mime, when(v.ingested_at), link(`#/jobs/${v.job_id}`, v.job_id, { class: "mono" }),
    Object.keys(v.metadata || {}).length ? h("details", {}, h("summary", {}, "metadata"), h("pre", {}, JSON.stringify(v.metadata, null, 2))) : "—",
    download(d, v, canDownload)]);
  main.replaceChildren(...[h("h1", {}, "Document ", h("span", { class: "mono" }, id)),
    d.deleted_at ? notice("info", "Deleted at its source ", when(d.deleted_at), " by job ",
                          link(`#/jobs/${d.deleted_job}`, d.deleted_job || "?"), "; its versions stay readable.") : null,
    h("h2", {}, "Provenance"),
    dl([["Source", d.source], ["Origin", h("span", { class: "mono wrap" }, d.origin_uri)],
        ["Modified at source", when(d.source_modified_at)], ["Ingested", when(d.ingested_at)],
        ["By job", link(`#/jobs/${d.job_id}`, d.job_id, { class: "mono" })], ["SHA-256", h("code", { class: "wrap" }, d.sha256)],
        ["Size", bytes(d.size)], ["MIME", d.mime]], { id: "provenance" }),
    h("h2", {}, "Versions"),
    table("!Versions, newest first", ["Version", "Kind", "SHA-256", "Size", "MIME", "Ingested", "Job", "Metadata", "Content"],
          rows, { id: "versions", class: "stack" }),
    canDownload ? null : notice("info", "Downloads need GET /documents/{id}/content, which this daemon does not serve yet."),
    h("h2", {}, "Text"), text].filter(Boolean));
  ready("document");
}

async function textView(id, hasText, info) {
  if (!hasText) return h("p", { class: "muted", id: "text" }, "Text extraction is not available on this daemon.");
  if (info && info.status !== "extracted") { // the record says why: no request that would only fail
    const error = info.error ? `${info.error.code}: ${info.error.message}` : info.status;
    const what = { not_extracted: `Not extracted${info.reason ? `: ${info.reason}` : "."}`,
                   pending: "Extraction is pending.", failed: `Extraction failed (${error}).` }[info.status];
    return h("p", { class: "muted", id: "text" }, what || `No text (${info.status}).`);
  }
  try {
    const r = await request(`documents/${id}/text`);
    const text = typeof r.body === "string" ? r.body : r.body.text ?? JSON.stringify(r.body, null, 2);
    const shown = text.length > 200000 ? text.slice(0, 200000) : text;
    return h("div", { id: "text" }, h("pre", { class: "text" }, shown),
      shown.length < text.length ? h("p", { class: "muted" }, `Showing the first 200,000 of ${num(text.length)} characters.`) : null);
  } catch (err) {
    if (err instanceof NeedToken) throw err;
    const what = { not_extracted: "Not extracted.", pending: "Extraction is pending." }[err.code] || `No text: ${err.message}`;
    return h("p", { class: "muted", id: "text" }, what);
  }
}

// -- routing ------------------------------------------------------------------------------------

async function route() {
  const hash = location.hash || "#/";
  if (!hash.startsWith("#/")) return; // "#main" (the skip link) is not a page
  generation++;
  clearTimeout(timer);
  delete document.body.dataset.ready;
  const [path, search] = hash.slice(1).split("?");
  const params = new URLSearchParams(search || "");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  for (const a of document.querySelectorAll("[data-nav]")) {
    const current = a.dataset.nav === (parts[0] || "overview");
    if (current) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  try {
    const session = await (await fetch("ui/session", { headers: headers(), cache: "no-store" })).json();
    if (!session.authorized) return askToken(token() ? "The daemon refused the saved token; enter the current one." : null);
    forget.hidden = !token();
    if (parts[0] === "jobs" && parts[1]) await job(parts[1], params);
    else if (parts[0] === "jobs") await jobs(params);
    else if (parts[0] === "documents" && parts[1]) await documentPage(parts[1]);
    else if (parts[0] === "documents") await documents(params);
    else await overview();
  } catch (err) {
    if (err instanceof NeedToken) return failed(err);
    const msg = err instanceof ApiError ? err.message : "The daemon cannot be reached.";
    main.replaceChildren(h("h1", {}, "Not available"), notice("error", msg));
    if (err instanceof TypeError) connected(false);
    ready("error");
  }
}

window.addEventListener("hashchange", () => { route(); main.focus({ preventScroll: true }); });
route();
