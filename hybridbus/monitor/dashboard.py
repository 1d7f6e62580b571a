"""The live dashboard served at the monitoring root: one self-contained HTML page.

The page has no external resources (the machines it runs on may have no
internet). Every second it polls ``/varz``, ``/connz``, ``/subsz?subs=1`` and
``/overviewz`` of the same server, and shows the connections, a message-rate chart
drawn on a ``<canvas>``, the busiest clients and subjects (rates are deltas between
two polls, computed in the browser, as nats-top does), and what an MQTT operator
looks at first: sessions online and offline, retained messages, QoS 1/2 messages in
flight and queued, the store's size and its fsync latency (the mean over the last
poll interval, from the histogram's count and sum), streams and consumers, and a
JetStream panel (from ``/overviewz``'s ``jetstream``): the API's requests and errors
and the streams with their subjects, messages, bytes and consumers. The
header shows the server's name and hybridbus's own version (the NATS protocol level
it speaks is in its tooltip). Text from clients (names, client ids, subjects) is
inserted with ``textContent`` only, never as HTML.

Element ids that tests and users can rely on: ``server-id``, ``server-name``,
``version``, ``conn-total``, ``conn-nats``, ``conn-mqtt``, ``subs-total``,
``in-rate``, ``out-rate``, ``in-msgs``, ``out-msgs``, ``mqtt-online``,
``mqtt-offline``, ``retained``, ``inflight``, ``queued``, ``store-size``,
``store-msgs``, ``fsync-latency``, ``fsync-count``, ``streams``, ``consumers``,
``poll-count``, ``status``, ``chart``, ``client-rows``, ``subject-rows``,
``js-state``, ``js-api-total``, ``js-api-errors``, ``js-streams``, ``stream-rows``
(one ``tr`` per stream with ``data-stream`` set to its name), and the leaf-node link
line (from ``/varz`` and ``/leafz``): ``leaf-links`` (connected links),
``leaf-remotes`` (configured remotes), ``leaf-hubs`` (the hub servers' names),
``leaf-rtt``, ``leaf-in``, ``leaf-out`` (messages over the links), ``leaf-state``
(``up``, ``down``, ``partial`` or ``not configured``).
"""

from __future__ import annotations

import json

__all__ = ["render_dashboard"]

_PAGE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hybridbus monitor</title>
<style>
  :root {
    --bg: #10141a; --panel: #19202a; --line: #2a3441; --text: #e3e8ef; --dim: #8a97a8;
    --in: #4aa3ff; --out: #5fd38d; --warn: #f0b44c; --bad: #ff6b6b;
  }
  * { box-sizing: border-box; }
  body { margin: 0; background: var(--bg); color: var(--text);
         font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
  header { display: flex; align-items: baseline; gap: 12px; padding: 14px 20px;
           border-bottom: 1px solid var(--line); flex-wrap: wrap; }
  header h1 { font-size: 18px; margin: 0; letter-spacing: .5px; }
  header code { font-size: 11px; }
  header .meta { color: var(--dim); font-size: 12px; }
  header code { color: var(--text); }
  #status { margin-left: auto; font-size: 12px; padding: 2px 10px; border-radius: 10px;
            background: #333; }
  #status.ok { background: #1d4d33; color: #b8f5cf; }
  #status.bad { background: #5a1f25; color: #ffd0d0; }
  main { padding: 16px 20px; display: grid; gap: 16px; }
  .cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(135px, 1fr)); gap: 12px; }
  .card { background: var(--panel); border: 1px solid var(--line); border-radius: 8px;
          padding: 10px 12px; }
  .card .label { color: var(--dim); font-size: 11px; text-transform: uppercase; letter-spacing: .6px; }
  .card .value { font-size: 22px; font-variant-numeric: tabular-nums; margin-top: 2px; }
  .card .sub { color: var(--dim); font-size: 12px; }
  .panel { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 12px; }
  .panel h2 { font-size: 13px; margin: 0 0 8px; color: var(--dim); font-weight: 600;
              text-transform: uppercase; letter-spacing: .6px; }
  #chart { width: 100%; height: 240px; display: block; }
  .tables { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
  @media (max-width: 900px) { .tables { grid-template-columns: 1fr; } }
  table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
  th, td { text-align: left; padding: 4px 6px; border-bottom: 1px solid var(--line);
           white-space: nowrap; overflow: hidden; text-overflow: ellipsis; max-width: 260px; }
  th { color: var(--dim); font-weight: 600; font-size: 12px; }
  td.num, th.num { text-align: right; }
  .tag { font-size: 11px; padding: 0 6px; border-radius: 6px; background: #26384d; }
  .tag.mqtt { background: #3b2f4f; }
  .empty { color: var(--dim); }
  .jsline { color: var(--dim); font-size: 13px; margin-bottom: 8px; }
  .jsline b { color: var(--text); font-weight: 600; font-variant-numeric: tabular-nums; }
  .jsline b.bad, .jsline span.bad { color: var(--bad); }
  tr.internal td { color: var(--dim); }
</style>
</head>
<body>
<header>
  <h1>hybridbus</h1>
  <span class="meta">server <code id="server-name">-</code></span>
  <span class="meta">id <code id="server-id">-</code></span>
  <span class="meta">hybridbus <code id="version">-</code></span>
  <span class="meta">up <code id="uptime">-</code></span>
  <span class="meta">polls <code id="poll-count">0</code></span>
  <span id="status">connecting</span>
</header>
<main>
  <section class="cards">
    <div class="card"><div class="label">Connections</div><div class="value" id="conn-total">-</div>
      <div class="sub">NATS <span id="conn-nats">-</span> &middot; MQTT <span id="conn-mqtt">-</span></div></div>
    <div class="card"><div class="label">Subscriptions</div><div class="value" id="subs-total">-</div>
      <div class="sub">total accepted <span id="conn-accepted">-</span></div></div>
    <div class="card"><div class="label">Msgs in / s</div><div class="value" id="in-rate">-</div>
      <div class="sub">total <span id="in-msgs">-</span></div></div>
    <div class="card"><div class="label">Msgs out / s</div><div class="value" id="out-rate">-</div>
      <div class="sub">total <span id="out-msgs">-</span></div></div>
    <div class="card"><div class="label">Bytes in / s</div><div class="value" id="in-bytes-rate">-</div>
      <div class="sub">total <span id="in-bytes">-</span></div></div>
    <div class="card"><div class="label">Bytes out / s</div><div class="value" id="out-bytes-rate">-</div>
      <div class="sub">total <span id="out-bytes">-</span></div></div>
    <div class="card"><div class="label">Slow consumers</div><div class="value" id="slow">-</div>
      <div class="sub">stale <span id="stale">-</span></div></div>
    <div class="card"><div class="label">Process</div><div class="value" id="mem">-</div>
      <div class="sub">CPU <span id="cpu">-</span></div></div>
  </section>
  <section class="cards">
    <div class="card"><div class="label">MQTT sessions online</div>
      <div class="value" id="mqtt-online">-</div>
      <div class="sub">offline <span id="mqtt-offline">-</span></div></div>
    <div class="card"><div class="label">Retained messages</div>
      <div class="value" id="retained">-</div>
      <div class="sub">dropped <span id="dropped">-</span></div></div>
    <div class="card"><div class="label">QoS 1/2 in flight</div>
      <div class="value" id="inflight">-</div>
      <div class="sub">queued <span id="queued">-</span></div></div>
    <div class="card"><div class="label">Store</div><div class="value" id="store-size">-</div>
      <div class="sub">messages <span id="store-msgs">-</span></div></div>
    <div class="card"><div class="label">fsync latency</div>
      <div class="value" id="fsync-latency">-</div>
      <div class="sub">fsyncs <span id="fsync-count">-</span> &middot;
        <span id="sync-policy">-</span></div></div>
    <div class="card"><div class="label">Streams</div><div class="value" id="streams">-</div>
      <div class="sub">consumers <span id="consumers">-</span></div></div>
  </section>
  <section class="panel">
    <h2>Messages per second (last 2 minutes)</h2>
    <canvas id="chart"></canvas>
  </section>
  <section class="tables">
    <div class="panel">
      <h2>Busiest clients</h2>
      <table>
        <thead><tr><th>cid</th><th>type</th><th>name / client id</th><th>address</th>
          <th class="num">in/s</th><th class="num">out/s</th><th class="num">in</th>
          <th class="num">out</th><th class="num">subs</th><th class="num">pending</th></tr></thead>
        <tbody id="client-rows"><tr><td colspan="10" class="empty">no data yet</td></tr></tbody>
      </table>
    </div>
    <div class="panel">
      <h2>Busiest subjects</h2>
      <table>
        <thead><tr><th>subject</th><th class="num">subscribers</th>
          <th class="num">msgs/s</th><th class="num">delivered</th></tr></thead>
        <tbody id="subject-rows"><tr><td colspan="4" class="empty">no data yet</td></tr></tbody>
      </table>
    </div>
  </section>
  <section class="panel" id="leaf-panel">
    <h2>Cluster link</h2>
    <div class="jsline"><span id="leaf-state">-</span> &middot; links
      <b id="leaf-links">-</b> of <b id="leaf-remotes">-</b> &middot; hub
      <b id="leaf-hubs">-</b> &middot; rtt <b id="leaf-rtt">-</b> &middot; messages in
      <b id="leaf-in">-</b> out <b id="leaf-out">-</b></div>
  </section>
  <section class="panel" id="js-panel">
    <h2>JetStream</h2>
    <div class="jsline"><span id="js-state">-</span> &middot; API requests
      <b id="js-api-total">-</b> &middot; errors <b id="js-api-errors">-</b> &middot;
      streams <b id="js-streams">-</b></div>
    <table>
      <thead><tr><th>stream</th><th>subjects</th><th class="num">messages</th>
        <th class="num">bytes</th><th class="num">consumers</th></tr></thead>
      <tbody id="stream-rows"><tr><td colspan="5" class="empty">no data yet</td></tr></tbody>
    </table>
  </section>
</main>
<script>
"use strict";
const BASE = __BASE__;
const HISTORY = 120;
const TOP = 12;
const series = { inRate: [], outRate: [] };
let prevVarz = null, prevT = 0, polls = 0, busy = false, prevFsync = null;
let prevClients = new Map(), prevSubjects = new Map();

function $(id) { return document.getElementById(id); }
function setText(id, v) { const e = $(id); if (e) e.textContent = v; }
function fmtNum(n) {
  if (!isFinite(n)) return "-";
  if (Math.abs(n) >= 100) return Math.round(n).toLocaleString("en-US");
  return (Math.round(n * 10) / 10).toLocaleString("en-US");
}
function fmtBytes(n) {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : Math.round(n)) + " " + u[i];
}
// Go's RFC 3339 times carry up to 9 fraction digits; Date wants at most 3.
function parseTime(s) { return Date.parse(String(s).replace(/(\.\d{3})\d+/, "$1")); }

async function getJSON(path) {
  const r = await fetch(BASE + path, { cache: "no-store" });
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}

function rate(cur, prev, dt) { return dt > 0 && prev !== undefined ? Math.max(0, (cur - prev) / dt) : 0; }

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function fillRows(tbody, rows, cols) {
  tbody.replaceChildren();
  if (!rows.length) {
    const tr = document.createElement("tr");
    const td = cell(tr, "none", "empty");
    td.colSpan = cols;
    tbody.appendChild(tr);
    return;
  }
  for (const r of rows) tbody.appendChild(r);
}

function renderVarz(v, dt) {
  setText("server-id", v.server_id);
  setText("uptime", v.uptime);
  setText("conn-total", fmtNum(v.connections));
  setText("conn-accepted", fmtNum(v.total_connections));
  setText("subs-total", fmtNum(v.subscriptions));
  setText("in-msgs", fmtNum(v.in_msgs));
  setText("out-msgs", fmtNum(v.out_msgs));
  setText("in-bytes", fmtBytes(v.in_bytes));
  setText("out-bytes", fmtBytes(v.out_bytes));
  setText("slow", fmtNum(v.slow_consumers));
  setText("stale", fmtNum(v.stale_connections));
  setText("mem", fmtBytes(v.mem));
  setText("cpu", v.cpu.toFixed(1) + " %");
  const p = prevVarz || {};
  const inRate = rate(v.in_msgs, p.in_msgs, dt), outRate = rate(v.out_msgs, p.out_msgs, dt);
  setText("in-rate", fmtNum(inRate));
  setText("out-rate", fmtNum(outRate));
  setText("in-bytes-rate", fmtBytes(rate(v.in_bytes, p.in_bytes, dt)));
  setText("out-bytes-rate", fmtBytes(rate(v.out_bytes, p.out_bytes, dt)));
  if (prevVarz) {
    series.inRate.push(inRate); series.outRate.push(outRate);
    if (series.inRate.length > HISTORY) { series.inRate.shift(); series.outRate.shift(); }
  }
}

function renderClients(connz, dt) {
  let nats = 0, mqtt = 0;
  const seen = new Map(), rows = [];
  for (const c of connz.connections || []) {
    if (c.type === "mqtt") mqtt++; else nats++;
    const p = prevClients.get(c.cid);
    const inR = p ? rate(c.in_msgs, p.in_msgs, dt) : 0, outR = p ? rate(c.out_msgs, p.out_msgs, dt) : 0;
    seen.set(c.cid, { in_msgs: c.in_msgs, out_msgs: c.out_msgs });
    rows.push({ c, inR, outR });
  }
  prevClients = seen;
  setText("conn-nats", fmtNum(nats));
  setText("conn-mqtt", fmtNum(mqtt));
  rows.sort((a, b) => (b.inR + b.outR) - (a.inR + a.outR) ||
    (b.c.in_msgs + b.c.out_msgs) - (a.c.in_msgs + a.c.out_msgs) || a.c.cid - b.c.cid);
  const trs = rows.slice(0, TOP).map(({ c, inR, outR }) => {
    const tr = document.createElement("tr");
    tr.dataset.cid = c.cid;
    cell(tr, String(c.cid));
    const t = cell(tr, ""); const tag = document.createElement("span");
    tag.className = "tag " + c.type; tag.textContent = c.type; t.appendChild(tag);
    cell(tr, c.mqtt_client || c.name || "");
    cell(tr, c.ip + ":" + c.port);
    cell(tr, fmtNum(inR), "num"); cell(tr, fmtNum(outR), "num");
    cell(tr, fmtNum(c.in_msgs), "num"); cell(tr, fmtNum(c.out_msgs), "num");
    cell(tr, fmtNum(c.subscriptions), "num"); cell(tr, fmtBytes(c.pending_bytes), "num");
    return tr;
  });
  fillRows($("client-rows"), trs, 10);
}

function renderSubjects(subsz, dt) {
  const agg = new Map();
  for (const s of subsz.subscriptions_list || []) {
    if (s.cid === 0 && s.subject.startsWith("$SYS.")) continue;  // the server's own services
    const a = agg.get(s.subject) || { subject: s.subject, subs: 0, msgs: 0 };
    a.subs++; a.msgs += s.msgs;
    agg.set(s.subject, a);
  }
  const seen = new Map(), rows = [];
  for (const a of agg.values()) {
    const prev = prevSubjects.get(a.subject);
    a.rate = prev === undefined ? 0 : rate(a.msgs, prev, dt);
    seen.set(a.subject, a.msgs);
    rows.push(a);
  }
  prevSubjects = seen;
  rows.sort((x, y) => y.rate - x.rate || y.msgs - x.msgs || y.subs - x.subs ||
    (x.subject < y.subject ? -1 : 1));
  const trs = rows.slice(0, TOP).map(a => {
    const tr = document.createElement("tr");
    cell(tr, a.subject);
    cell(tr, fmtNum(a.subs), "num");
    cell(tr, fmtNum(a.rate), "num");
    cell(tr, fmtNum(a.msgs), "num");
    return tr;
  });
  fillRows($("subject-rows"), trs, 4);
}

function fmtSeconds(s) {
  if (!isFinite(s)) return "-";
  if (s >= 1) return s.toFixed(2) + " s";
  if (s >= 0.001) return (s * 1000).toFixed(s >= 0.01 ? 1 : 2) + " ms";
  return Math.round(s * 1e6) + " \u00b5s";
}

function renderOverview(o) {
  // hybridbus's own name and version; /varz's "version" is the NATS protocol level.
  setText("server-name", o.server_name);
  setText("version", o.version);
  $("version").title = "speaks the NATS protocol of nats-server " + o.nats_version;
  const m = o.mqtt, s = o.store;
  setText("mqtt-online", fmtNum(m.sessions_online));
  setText("mqtt-offline", fmtNum(m.sessions_offline));
  setText("retained", fmtNum(m.retained_messages));
  setText("dropped", fmtNum(m.dropped_messages));
  setText("inflight", fmtNum(m.inflight_messages));
  setText("queued", fmtNum(m.queued_messages));
  setText("store-size", fmtBytes(s.bytes));
  setText("store-msgs", fmtNum(s.messages));
  setText("streams", fmtNum(s.streams));
  setText("consumers", fmtNum(s.consumers));
  setText("fsync-count", fmtNum(s.fsyncs));
  setText("sync-policy", s.sync_always ? "sync always" : "sync on interval");
  // The mean over the last interval when there were fsyncs in it, else overall.
  const p = prevFsync;
  let mean = NaN;
  if (p && s.fsyncs > p.fsyncs) mean = (s.fsync_seconds_sum - p.fsync_seconds_sum) / (s.fsyncs - p.fsyncs);
  else if (s.fsyncs > 0) mean = s.fsync_seconds_sum / s.fsyncs;
  setText("fsync-latency", s.fsyncs > 0 ? fmtSeconds(mean) : "none yet");
  prevFsync = { fsyncs: s.fsyncs, fsync_seconds_sum: s.fsync_seconds_sum };
}

function renderJetStream(js) {
  setText("js-state", js.enabled ? "enabled" : "disabled");
  setText("js-api-total", fmtNum(js.api.total));
  setText("js-api-errors", fmtNum(js.api.errors));
  $("js-api-errors").className = js.api.errors > 0 ? "bad" : "";
  setText("js-streams", fmtNum(js.streams_total));
  // user streams first, then the MQTT layer's own (dimmed); by name within each
  const streams = js.streams.slice().sort((a, b) => a.internal - b.internal);
  const trs = streams.map(st => {
    const tr = document.createElement("tr");
    tr.dataset.stream = st.name;
    // the MQTT layer's own streams are shown dimmed
    if (st.internal) tr.className = "internal";
    cell(tr, st.name);
    cell(tr, st.subjects.join(" "));
    cell(tr, fmtNum(st.messages), "num");
    cell(tr, fmtBytes(st.bytes), "num");
    cell(tr, fmtNum(st.consumers), "num");
    return tr;
  });
  fillRows($("stream-rows"), trs, 5);
}

function niceMax(v) {
  if (v <= 0) return 10;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function drawChart() {
  const canvas = $("chart");
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 800, h = canvas.clientHeight || 240;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
  }
  const g = canvas.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const left = 64, right = 12, top = 12, bottom = 26;
  const pw = w - left - right, ph = h - top - bottom;
  const max = niceMax(Math.max(1, ...series.inRate, ...series.outRate));
  g.font = "11px system-ui, sans-serif";
  g.strokeStyle = "#2a3441"; g.fillStyle = "#8a97a8"; g.lineWidth = 1;
  g.textAlign = "right"; g.textBaseline = "middle";
  for (let i = 0; i <= 4; i++) {
    const y = top + ph - (ph * i) / 4;
    g.beginPath(); g.moveTo(left, Math.round(y) + 0.5); g.lineTo(left + pw, Math.round(y) + 0.5); g.stroke();
    g.fillText(fmtNum((max * i) / 4), left - 6, y);
  }
  g.textAlign = "center"; g.textBaseline = "top";
  for (const s of [120, 90, 60, 30, 0]) {
    const x = left + pw - (pw * s) / HISTORY;
    g.fillText(s ? "-" + s + "s" : "now", x, top + ph + 6);
  }
  const plot = (data, color, fill) => {
    if (!data.length) return;
    const n = data.length;
    const xAt = i => left + pw - (pw * (n - 1 - i)) / HISTORY;
    const yAt = v => top + ph - (ph * v) / max;
    if (fill) {
      // "in" is filled, so it stays visible when "out" runs on top of it
      g.fillStyle = fill; g.beginPath(); g.moveTo(xAt(0), top + ph);
      data.forEach((v, i) => g.lineTo(xAt(i), yAt(v)));
      g.lineTo(xAt(n - 1), top + ph); g.closePath(); g.fill();
    }
    g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
    data.forEach((v, i) => { if (i === 0) g.moveTo(xAt(i), yAt(v)); else g.lineTo(xAt(i), yAt(v)); });
    g.stroke();
    const last = data[n - 1];
    g.fillStyle = color; g.beginPath();
    g.arc(left + pw, top + ph - (ph * last) / max, 3, 0, Math.PI * 2); g.fill();
  };
  plot(series.inRate, "#4aa3ff", "rgba(74, 163, 255, 0.18)");
  plot(series.outRate, "#5fd38d", null);
  g.textAlign = "left"; g.textBaseline = "middle";
  const legend = [["in", "#4aa3ff"], ["out", "#5fd38d"]];
  legend.forEach(([name, color], i) => {
    const x = left + 10 + i * 100;
    g.fillStyle = color; g.fillRect(x, top + 6, 14, 3);
    g.fillStyle = "#e3e8ef"; g.fillText(name + " msgs/s", x + 18, top + 8);
  });
}

function renderLeaf(varz, leafz) {
  // The leaf-node links to NATS hubs: /varz counts them, /leafz names them.
  const remotes = ((varz.leaf || {}).remotes || []).length;
  const leafs = leafz.leafs || [];
  const up = leafs.length;
  setText("leaf-links", fmtNum(up));
  setText("leaf-remotes", fmtNum(remotes));
  setText("leaf-hubs", leafs.map(l => l.name).join(", ") || "-");
  setText("leaf-rtt", leafs.map(l => l.rtt).join(", ") || "-");
  setText("leaf-in", fmtNum(leafs.reduce((n, l) => n + l.in_msgs, 0)));
  setText("leaf-out", fmtNum(leafs.reduce((n, l) => n + l.out_msgs, 0)));
  const state = remotes === 0 ? "not configured" : up === 0 ? "down" : up < remotes ? "partial" : "up";
  const e = $("leaf-state");
  e.textContent = state;
  e.className = state === "down" || state === "partial" ? "bad" : "";
}

function setStatus(ok, text) {
  const s = $("status");
  s.className = ok ? "ok" : "bad";
  s.textContent = text;
}

async function poll() {
  if (busy) return;
  busy = true;
  try {
    const [varz, connz, subsz, overview, leafz] = await Promise.all([
      getJSON("/varz"), getJSON("/connz?limit=1024"), getJSON("/subsz?subs=1&limit=1024"),
      getJSON("/overviewz"), getJSON("/leafz"),
    ]);
    const t = parseTime(varz.now) / 1000;
    const dt = prevT ? t - prevT : 0;
    renderVarz(varz, dt);
    renderClients(connz, dt);
    renderSubjects(subsz, dt);
    renderOverview(overview);
    renderJetStream(overview.jetstream);
    renderLeaf(varz, leafz);
    prevVarz = varz; prevT = t;
    polls++;
    setText("poll-count", String(polls));
    drawChart();
    setStatus(true, "live");
  } catch (err) {
    setStatus(false, "offline: " + err.message);
  } finally {
    busy = false;
  }
}

window.addEventListener("resize", drawChart);
drawChart();
poll();
setInterval(poll, 1000);
</script>
</body>
</html>
"""


def render_dashboard(base_path: str) -> str:
    """The page, with the endpoints' base path ("" at the root) built in."""
    base = "" if base_path in ("", "/") else base_path.rstrip("/")
    # JSON is a JS string literal; "</" is escaped so it cannot end the <script>.
    literal = json.dumps(base).replace("</", "<\\/")
    return _PAGE.replace("__BASE__", literal)
