// The bedside page: one EventSource (/api/events), a snapshot then one event per window, link change, alert.
// No polling; the browser reconnects by itself when the monitor restarts (the server sends `retry:`).
"use strict";

const COLOURS = { "No Pain": "#4cd07d", "Low Pain": "#ffb020", "High Pain": "#ff6b5e" };
const LEVEL_CLASS = { "No Pain": "level-no", "Low Pain": "level-low", "High Pain": "level-high" };
const FLAG_TEXT = { missing: "missing", flat_line: "flat", saturation: "saturated", lead_off: "lead-off",
                    out_of_range: "out of range" };
const HOUR_S = 3600;
const STALE_S = 30;
const TRACE_HEIGHT = 64;
const TOKEN_KEY = "biomoe-dashboard-token";

const state = { labels: [], channels: [], timeline: [], last: null, traces: null, link: null, alert: null,
                live: true, canAcknowledge: false, alertAfter: 60, clockOffset: 0, zoom: "hour" };
let timelineChart = null;
const traceCharts = {};
let source = null;

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- access token (from the link's #fragment)

function takeToken() {
  const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (match) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname);  // the token leaves the address bar
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

async function login(token) {
  if (!token) return;
  try {
    await fetch("/api/login", { method: "POST", headers: { Authorization: `Bearer ${token}` } });
  } catch (error) { /* the stream's own error handling reports a server that is down */ }
}

// ---------------------------------------------------------------- formatting

function serverNow() { return Date.now() / 1000 + state.clockOffset; }

function duration(seconds) {
  seconds = Math.max(0, Math.round(seconds));
  if (seconds < 90) return `${seconds} s`;
  if (seconds < 5400) return `${Math.floor(seconds / 60)} min ${seconds % 60} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
}

function clock(wallTime) { return new Date(wallTime * 1000).toLocaleTimeString(); }

function percent(p) { return p == null ? "" : `${Math.round(p * 100)}%`; }

// ---------------------------------------------------------------- the level

function currentLevel() {
  for (let i = state.timeline.length - 1; i >= 0; i--) {
    const point = state.timeline[i];
    if (point.level) return point;
  }
  return null;
}

function renderLevel() {
  const box = $("level"), point = currentLevel(), last = state.timeline[state.timeline.length - 1];
  box.className = "level " + (point ? LEVEL_CLASS[point.level] || "level-none" : "level-none");
  if (point) {
    $("level-text").textContent = point.level;
    const p = point.p ? point.p[state.labels.indexOf(point.level)] : null;
    $("level-probability").textContent = p == null ? "" : `probability ${percent(p)} (smoothed)`;
  } else {
    $("level-text").textContent = last && last.skip === "calibrating" ? "Calibrating" : "Waiting for the first window";
    $("level-probability").textContent = last && last.skip === "calibrating"
      ? "learning the patient's rest baseline" : "";
  }
  let note = "";
  if (last && last.skip && last.skip !== "calibrating") note = `last window skipped (${last.skip}); level held`;
  else if (last && last.flagged.length) note = `${last.flagged.join(", ")} failed the quality check; level held`;
  $("level-note").textContent = note;
}

function renderAge() {
  const last = state.timeline[state.timeline.length - 1], age = $("age");
  if (!last) { age.textContent = "none yet"; return; }
  const seconds = serverNow() - last.t;
  age.textContent = `${duration(seconds)} ago`;
  age.className = state.live && seconds > STALE_S ? "stale" : "";
}

// ---------------------------------------------------------------- the timeline

function timelineData() {
  // A pause in the windows (the monitor stopped, the link was down) longer than three hops breaks the lines.
  const steps = state.timeline.slice(1).map((point, i) => point.t - state.timeline[i].t).sort((a, b) => a - b);
  const longest = 3 * (steps.length ? steps[Math.floor(steps.length / 2)] : Infinity);
  const xs = [], series = state.labels.map(() => []), flagged = [], skipped = [], calibrating = [];
  const add = (t, p, flag, skip, calibration) => {
    xs.push(t);
    state.labels.forEach((_, k) => series[k].push(p ? p[k] : null));
    flagged.push(flag);
    skipped.push(skip);
    calibrating.push(calibration);
  };
  state.timeline.forEach((point, i) => {
    const before = state.timeline[i - 1];
    if (before && point.t - before.t > longest) add((point.t + before.t) / 2, null, null, null, null);
    add(point.t, point.p, point.flagged.length ? 1.1 : null,
        point.skip && point.skip !== "calibrating" ? -0.1 : null, point.skip === "calibrating" ? 0.5 : null);
  });
  return [xs, ...series, flagged, skipped, calibrating];
}

function marks(label, stroke) {
  return { label, stroke, fill: stroke, width: 0, paths: () => null, points: { show: true, size: 9, fill: stroke },
           value: (u, v) => (v == null ? "" : "yes") };
}

function makeTimeline() {
  const host = $("timeline");
  host.textContent = "";
  const series = [{ label: "time", value: (u, v) => (v == null ? "" : clock(v)) },
    ...state.labels.map((label) => ({ label, stroke: COLOURS[label] || "#ccc", width: 2, spanGaps: false,
                                      value: (u, v) => percent(v) })),
    marks("▲ quality flagged", "#ffb347"), marks("▼ skipped", "#c0c6d0"), marks("● calibrating", "#8a93a0")];
  timelineChart = new uPlot({
    width: host.clientWidth || 600, height: timelineHeight(), series,
    scales: { y: { range: [-0.2, 1.2] } },
    axes: [{ stroke: "#b8bec7", grid: { stroke: "#2c3138" } },
           { stroke: "#b8bec7", grid: { stroke: "#2c3138" }, splits: () => [0, 0.5, 1],
             values: (u, splits) => splits.map((v) => `${Math.round(v * 100)}%`) }],
    cursor: { drag: { x: false, y: false } },
  }, timelineData(), host);
}

function timelineHeight() { return Math.max(110, Math.min(280, Math.round(window.innerHeight * 0.28))); }

function fitCharts() {
  if (timelineChart) timelineChart.setSize({ width: $("timeline").clientWidth, height: timelineHeight() });
  for (const chart of Object.values(traceCharts)) {
    chart.setSize({ width: chart.root.parentElement.parentElement.clientWidth, height: TRACE_HEIGHT });
  }
}

function renderTimeline() {
  const host = $("timeline"), flagged = state.timeline.filter((p) => p.flagged.length).length;
  host.dataset.windows = state.timeline.length;
  host.dataset.flagged = flagged;
  host.dataset.skipped = state.timeline.filter((p) => p.skip && p.skip !== "calibrating").length;
  if (!timelineChart) return;
  const data = timelineData();
  timelineChart.setData(data, false);
  const xs = data[0];
  if (!xs.length) return;
  const end = xs[xs.length - 1], start = state.zoom === "hour" ? Math.max(xs[0], end - HOUR_S) : xs[0];
  timelineChart.setScale("x", { min: start - 5, max: end + 5 });
}

function setZoom(zoom) {
  state.zoom = zoom;
  $("zoom-hour").setAttribute("aria-pressed", String(zoom === "hour"));
  $("zoom-session").setAttribute("aria-pressed", String(zoom === "session"));
  renderTimeline();
}

// ---------------------------------------------------------------- quality and link

function renderQuality() {
  const body = $("quality").tBodies[0];
  body.textContent = "";
  const quality = state.last ? state.last.quality : {};
  for (const channel of state.channels) {
    const row = body.insertRow(), verdict = quality[channel];
    row.dataset.channel = channel;
    const name = row.insertCell(), text = row.insertCell();
    name.className = "name";
    name.textContent = channel;
    if (!verdict) {
      text.textContent = state.last ? "not checked (window skipped)" : "no window yet";
    } else if (verdict.ok) {
      text.textContent = "✓ ok";
    } else {
      text.className = "bad";
      text.textContent = "⚠ " + verdict.flags.map((flag) => FLAG_TEXT[flag] || flag).join(", ");
    }
  }
  const link = $("link"), info = state.link;
  if (!info) {
    link.textContent = state.live ? "Link: unknown" : "Link: not shown (database view)";
    link.className = "";
    return;
  }
  const lost = Object.entries(info.samples_lost || {}).filter(([, n]) => n > 0);
  const total = lost.reduce((sum, [, n]) => sum + n, 0);
  const words = {up: "connected", "no data": "connected, NO DATA"};
  link.textContent = `Link: ${words[info.state] || "DISCONNECTED"}, ${total} samples lost` +
    (lost.length ? ` (${lost.map(([c, n]) => `${c} ${n}`).join(", ")})` : "");
  link.className = info.state === "up" ? "" : "down";
}

// ---------------------------------------------------------------- the last window's signals

function renderTraces() {
  const host = $("traces"), traces = state.traces;
  $("traces-note").textContent = !state.live ? "Signals are shown beside a running monitor only (not stored)."
    : traces && state.last && traces.index !== state.last.index
      ? `From window ${traces.index}; the last one was skipped.` : "";
  if (!traces) return;
  for (const channel of state.channels) {
    const values = traces.channels[channel];
    if (!values) continue;
    const xs = values.map((_, i) => (i * traces.seconds) / values.length);
    if (!traceCharts[channel]) {
      const box = document.createElement("div"), title = document.createElement("h3");
      const plot = document.createElement("div");
      box.className = "trace";
      box.dataset.channel = channel;
      title.textContent = channel;
      box.append(title, plot);
      host.append(box);
      traceCharts[channel] = new uPlot({
        width: box.clientWidth, height: TRACE_HEIGHT, legend: { show: false }, cursor: { show: false },
        series: [{}, { stroke: "#7cc4ff", width: 1.5, spanGaps: false }],
        axes: [{ show: false }, { stroke: "#b8bec7", size: 44, grid: { stroke: "#2c3138" }, ticks: { show: false } }],
      }, [xs, values], plot);
    } else {
      traceCharts[channel].setData([xs, values]);
    }
    traceCharts[channel].root.parentElement.parentElement.dataset.points = values.length;
  }
}

// ---------------------------------------------------------------- the alert

function renderAlert() {
  const banner = $("alert"), alert = state.alert;
  banner.hidden = !alert;
  if (!alert) return;
  const high = serverNow() - alert.raised_wall_time + alert.high_seconds;
  const acknowledged = alert.acknowledged_wall_time != null;
  banner.className = "alert" + (acknowledged ? " acknowledged" : "");
  banner.dataset.alertId = alert.id;
  $("alert-text").textContent = acknowledged
    ? `High Pain for ${duration(high)}; acknowledged at ${clock(alert.acknowledged_wall_time)}`
    : `HIGH PAIN for ${duration(high)} (alert since ${clock(alert.raised_wall_time)})`;
  const ack = $("ack");
  ack.hidden = acknowledged || !state.canAcknowledge;
  if (!state.canAcknowledge) $("ack-note").textContent = "read-only view: acknowledge on the monitor's page";
}

async function acknowledge() {
  const token = sessionStorage.getItem(TOKEN_KEY), note = $("ack-note");
  if (!token) { note.textContent = "open the link the monitor printed (with its token) to acknowledge"; return; }
  const response = await fetch("/api/alerts/ack", {
    method: "POST", headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: JSON.stringify({ id: state.alert.id }),
  });
  note.textContent = response.ok ? "" : response.status === 403 || response.status === 401
    ? "token not accepted: open the link the monitor printed" : (await response.text()).trim();
}

// ---------------------------------------------------------------- the event stream

function renderAll() {
  renderLevel(); renderAge(); renderTimeline(); renderQuality(); renderTraces(); renderAlert();
}

function onSnapshot(event) {
  const data = JSON.parse(event.data);
  Object.assign(state, { labels: data.labels, channels: data.channels, timeline: data.timeline, last: data.last,
                         traces: data.traces, link: data.link, alert: data.alert, live: data.live,
                         canAcknowledge: data.can_acknowledge, alertAfter: data.alert_after_seconds,
                         clockOffset: data.now - Date.now() / 1000 });
  $("mode").textContent = data.live ? "to the running monitor" : "to a results database (read-only view)";
  $("traces").textContent = "";
  for (const channel of Object.keys(traceCharts)) delete traceCharts[channel];
  makeTimeline();
  renderAll();
}

function onWindow(event) {
  const data = JSON.parse(event.data), last = state.timeline[state.timeline.length - 1];
  state.clockOffset = data.now - Date.now() / 1000;
  if (last && data.point.t <= last.t) return;  // already in the snapshot
  state.timeline.push(data.point);
  state.last = data.last;
  state.traces = data.traces || state.traces;
  state.link = data.link;
  renderAll();
}

function onLink(event) {
  const data = JSON.parse(event.data);
  state.link = data.link;
  renderQuality();
}

function onAlert(event) {
  state.alert = JSON.parse(event.data).alert;
  renderAlert();
}

function connect() {
  source = new EventSource("/api/events");
  source.addEventListener("snapshot", onSnapshot);
  source.addEventListener("window", onWindow);
  source.addEventListener("link", onLink);
  source.addEventListener("alert", onAlert);
  source.onopen = () => { $("connection").textContent = "Connected"; $("connection").className = ""; };
  source.onerror = () => {
    $("connection").textContent = "Reconnecting";
    $("connection").className = "stale";
    if (source.readyState === EventSource.CLOSED) setTimeout(connect, 3000);  // refused: try again, gently
  };
}

document.addEventListener("DOMContentLoaded", async () => {
  $("zoom-hour").addEventListener("click", () => setZoom("hour"));
  $("zoom-session").addEventListener("click", () => setZoom("session"));
  $("ack").addEventListener("click", acknowledge);
  window.addEventListener("resize", fitCharts);
  setInterval(() => { renderAge(); renderAlert(); }, 1000);
  await login(takeToken());
  connect();
});
