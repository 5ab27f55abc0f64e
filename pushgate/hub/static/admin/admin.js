// pushgate admin dashboard: live samples over server-sent events (/admin/api/stream),
// charts with the vendored uPlot, user lookup and delivery reports over /admin/api/*.
"use strict";

const $ = (id) => document.getElementById(id);
const fmt = (v) => (v === null || v === undefined ? "–" : String(Math.round(v * 100) / 100));
const el = (tag, text, cls) => {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
};
const row = (cells, cls) => {
  const tr = el("tr", undefined, cls);
  for (const c of cells) tr.appendChild(c instanceof Node ? c : el("td", c));
  return tr;
};
const uptime = (s) => {
  if (s === null || s === undefined) return "–";
  if (s < 120) return s + " s";
  if (s < 7200) return Math.round(s / 60) + " min";
  return Math.round(s / 3600) + " h";
};

// -- charts --------------------------------------------------------------------------------
const MAX_POINTS = 600;
const series = { t: [], sends: [], deliveries: [], acks: [], p50: [], p99: [] };
let ratesChart = null;
let latencyChart = null;

function makeChart(target, title, labels, colors, unit) {
  const width = Math.max(300, target.clientWidth || 480);
  return new uPlot({
    title, width, height: 220,
    scales: { x: { time: true } },
    axes: [{}, { label: unit, size: 60 }],
    series: [{}].concat(labels.map((l, i) => ({ label: l, stroke: colors[i], width: 2, spanGaps: true }))),
  }, [[], ...labels.map(() => [])], target);
}

function initCharts() {
  ratesChart = makeChart($("chart-rates"), "per second", ["sends", "deliveries", "acks"],
    ["#2563eb", "#16a34a", "#d97706"], "/s");
  latencyChart = makeChart($("chart-latency"), "delivery latency", ["p50", "p99"],
    ["#7c3aed", "#dc2626"], "ms");
}

function addPoint(p) {
  series.t.push(p.t); series.sends.push(p.sends); series.deliveries.push(p.deliveries);
  series.acks.push(p.acks); series.p50.push(p.p50_ms); series.p99.push(p.p99_ms);
  if (series.t.length > MAX_POINTS) for (const k in series) series[k].shift();
}

function redraw() {
  ratesChart.setData([series.t, series.sends, series.deliveries, series.acks]);
  latencyChart.setData([series.t, series.p50, series.p99]);
}

// -- panels --------------------------------------------------------------------------------
function showSample(s) {
  const p = s.point;
  $("total-sessions").textContent = p.sessions;
  $("rate-sends").textContent = fmt(p.sends);
  $("rate-deliveries").textContent = fmt(p.deliveries);
  $("rate-acks").textContent = fmt(p.acks);
  $("lat-p50").textContent = fmt(p.p50_ms);
  $("lat-p99").textContent = fmt(p.p99_ms);
  $("push-queue").textContent = p.push_queue;
  $("rate-pushes").textContent = fmt(p.pushes);
  $("rate-push-failures").textContent = fmt(p.push_failures);

  const nodes = $("nodes").tBodies[0];
  nodes.replaceChildren(...s.nodes.map((n) => {
    const tr = row([n.kind, n.id, el("td", n.health, n.health), n.version || "–",
      uptime(n.uptime_s), n.sessions === null ? "" : n.sessions,
      [n.address, n.detail].filter(Boolean).join(" · ")]);
    tr.dataset.node = n.id;
    tr.dataset.kind = n.kind;
    return tr;
  }));
  const failures = $("failures").tBodies[0];
  const reasons = Object.entries(s.failures).sort();
  failures.replaceChildren(...(reasons.length ? reasons.map(([r, n]) => row([r, n]))
    : [row([el("td", "none", "hint"), ""])]));
  addPoint(p);
  redraw();
}

function connect() {
  const source = new EventSource("/admin/api/stream");
  source.addEventListener("open", () => { $("conn").textContent = "live"; $("conn").className = "badge live"; });
  source.addEventListener("error", () => {
    $("conn").textContent = "reconnecting…"; $("conn").className = "badge lost";
    // a 401 (logged out elsewhere, expired) ends the stream for good: back to the login
    fetch("/admin/api/users/-", { credentials: "same-origin" }).then((r) => {
      if (r.status === 401) window.location.assign("/admin");
    });
  });
  source.addEventListener("history", (e) => {
    for (const k in series) series[k].length = 0;
    for (const p of JSON.parse(e.data).points) addPoint(p);
    redraw();
  });
  source.addEventListener("sample", (e) => showSample(JSON.parse(e.data)));
}

// -- user lookup -----------------------------------------------------------------------------
function dl(pairs) {
  const d = el("dl");
  for (const [k, v] of pairs) {
    d.appendChild(el("dt", k));
    const dd = d.appendChild(el("dd", v));
    dd.dataset.field = k;
  }
  return d;
}

async function lookup(ev) {
  ev.preventDefault();
  const user = $("lookup-user").value.trim();
  const out = $("user-result");
  out.replaceChildren(el("p", "looking up…", "hint"));
  const r = await fetch("/admin/api/users/" + encodeURIComponent(user), { credentials: "same-origin" });
  const body = await r.json();
  if (!r.ok) { out.replaceChildren(el("p", body.error.message, "error")); return; }
  const rs = body.read_state;
  const parts = [el("h3", body.user), rs ? dl([["head", rs.head], ["unread", rs.unread], ["stored", rs.live]])
    : el("p", "no inbox: nothing was sent to this user yet", "hint")];
  const sessions = el("table");
  sessions.id = "user-sessions";
  sessions.appendChild(row([el("th", "session"), el("th", "hub"), el("th", "device"), el("th", "app"), el("th", "since")]));
  for (const s of body.sessions) {
    sessions.appendChild(row([s.session.slice(0, 8) + "…", s.hub, s.device || "–", s.application || "–",
      new Date(s.connected_at * 1000).toLocaleTimeString()]));
  }
  parts.push(el("p", body.sessions.length + " live session(s)"), sessions);
  const devices = el("table");
  devices.id = "user-devices";
  devices.appendChild(row([el("th", "platform"), el("th", "app"), el("th", "token")]));
  for (const d of body.devices) devices.appendChild(row([d.platform, d.app, d.token.slice(0, 16) + "…"]));
  parts.push(el("p", body.devices.length + " device(s)"), devices);
  out.replaceChildren(...parts);
}

// -- latest sends and their reports ----------------------------------------------------------
const REPORT_FIELDS = ["addressed", "stored", "duplicates", "delivered", "acked", "pushed", "push_failed", "read"];

async function showReport(id) {
  const box = $("report");
  const r = await fetch("/admin/api/reports/" + encodeURIComponent(id), { credentials: "same-origin" });
  const body = await r.json();
  box.hidden = false;
  if (!r.ok) { box.replaceChildren(el("p", body.error.message, "error")); return; }
  const pairs = REPORT_FIELDS.filter((k) => k in body).map((k) => [k, body[k]]);
  for (const [reason, n] of Object.entries(body.failed_by_reason || {})) pairs.push(["failed: " + reason, n]);
  pairs.push(["created", new Date(body.created_at * 1000).toLocaleString()]);
  box.replaceChildren(el("h3", "report " + id), dl(pairs));
}

async function loadSends() {
  const r = await fetch("/admin/api/reports?limit=20", { credentials: "same-origin" });
  if (r.status === 404) return false;  // this server has no delivery reports
  if (!r.ok) return true;
  const body = await r.json();
  $("sends-none").hidden = true;
  $("sends").hidden = false;
  $("sends").tBodies[0].replaceChildren(...body.reports.map((rep) => {
    const tr = row([rep.report, new Date(rep.created_at * 1000).toLocaleTimeString(),
      rep.addressed, rep.stored, rep.delivered, rep.acked, rep.read], "clickable");
    tr.dataset.report = rep.report;
    tr.addEventListener("click", () => showReport(rep.report));
    return tr;
  }));
  return true;
}

async function pollSends() {
  if (await loadSends().catch(() => true)) setTimeout(pollSends, 2000);
}

initCharts();
connect();
$("lookup").addEventListener("submit", lookup);
pollSends();
window.addEventListener("resize", () => {
  for (const [c, t] of [[ratesChart, "chart-rates"], [latencyChart, "chart-latency"]]) {
    c.setSize({ width: Math.max(300, $(t).clientWidth), height: 220 });
  }
});
