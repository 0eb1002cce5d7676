// sitsmon dashboard UI: plain JS over the API; Leaflet for the map, uPlot for the chart.
// The token lives in sessionStorage; every request sends it as a bearer header (images and the
// live stream too, through fetch), so no token ever appears in a URL.
"use strict";

const state = { me: null, page: 1, pageSize: 25, cursors: [null], ladder: null, map: null, layers: null, streamAbort: null };
const $ = (sel) => document.querySelector(sel);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const LIGHT_COLOURS = { green: "#2e9d3a", orange: "#f39c12", red: "#d62c1a", not_analysable: "#aaaaaa" };

function token() { return sessionStorage.getItem("sitsmon-token") || ""; }

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${token()}`, ...(options.headers || {}) };
  if (options.body && typeof options.body !== "string") { headers["Content-Type"] = "application/json"; options.body = JSON.stringify(options.body); }
  const r = await fetch(path, { ...options, headers });
  if (r.status === 401) { logout(); throw new Error("not logged in"); }
  if (!r.ok) { let d = r.statusText; try { d = (await r.json()).detail; } catch (e) { /* not JSON */ } const err = new Error(typeof d === "string" ? d : JSON.stringify(d)); err.status = r.status; throw err; }
  return r;
}
const getJSON = async (path) => (await api(path)).json();

function toast(text) {
  const t = document.createElement("div"); t.className = "toast"; t.textContent = text;
  $("#toasts").appendChild(t); setTimeout(() => t.remove(), 6000);
}

// A view's hash is #/view/arg?key=value: the query keeps the page's choices (the campaign) in the link.
// Parcel ids are URL-encoded in the hash, so the first '?' always starts the query.
function hashRoute() {
  const h = location.hash, q = h.indexOf("?");
  const [, view, ...rest] = (q < 0 ? h : h.slice(0, q)).split("/");
  return { view, arg: decodeURIComponent(rest.join("/")), params: new URLSearchParams(q < 0 ? "" : h.slice(q + 1)) };
}

function show(view) {
  document.querySelectorAll(".view").forEach((v) => { v.hidden = v.id !== `view-${view}`; });
  document.querySelectorAll("header nav a").forEach((a) => a.classList.toggle("active", a.id === `nav-${view}`));
}

// ---- login ---------------------------------------------------------------------------------
async function login(tok) {
  sessionStorage.setItem("sitsmon-token", tok);
  try { state.me = await getJSON("/api/me"); } catch (e) { sessionStorage.removeItem("sitsmon-token"); throw e; }
  $("#top").hidden = false;
  $("#whoami").textContent = `${state.me.name} (${state.me.role}; tiles ${state.me.tiles.join(", ")})`;
  $("#nav-ops").hidden = !state.me.may_operate;
  document.body.classList.toggle("no-triage", !state.me.may_triage);
  state.ladder = await getJSON("/api/alerts/ladder");
  startStream();
}
function logout() {
  sessionStorage.removeItem("sitsmon-token"); state.me = null;
  if (state.streamAbort) state.streamAbort.abort();
  $("#top").hidden = true; show("login");
}
$("#login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault(); $("#login-error").textContent = "";
  try {
    await login($("#token").value.trim());
    if (!location.hash || location.hash === "#/" || location.hash === "#/login") location.hash = "#/map"; else route();
  }
  catch (e) { $("#login-error").textContent = `Login failed: ${e.message}`; }
});
$("#logout").addEventListener("click", logout);

// ---- live stream (Server-Sent Events read through fetch, so the bearer header is sent) ------
async function startStream() {
  if (state.streamAbort) state.streamAbort.abort();
  const ctrl = new AbortController(); state.streamAbort = ctrl;
  try {
    const r = await fetch("/api/alerts/stream", { headers: { Authorization: `Bearer ${token()}` }, signal: ctrl.signal });
    if (!r.ok) throw new Error(`stream ${r.status}`);
    $("#live").className = "live on";
    const reader = r.body.getReader(); const dec = new TextDecoder(); let buf = "";
    for (;;) {
      const { value, done } = await reader.read(); if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, i); buf = buf.slice(i + 2);
        let event = "message", data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data += line.slice(5).trim();
        }
        if (event === "alert" && data) onLiveAlert(JSON.parse(data));
      }
    }
  } catch (e) { if (ctrl.signal.aborted) return; }
  $("#live").className = "live off";
  if (!ctrl.signal.aborted && state.me) setTimeout(startStream, 2000);
}

function onLiveAlert(ev) {
  const what = ev.kind === "new" ? `new ${ev.type} alert on ${ev.parcel_id}` : `${ev.type} alert on ${ev.parcel_id}: ${ev.kind}`;
  toast(what);
  const { view, arg } = hashRoute();
  if (view === "alerts") loadQueue(ev.alert_id);
  else if (view === "map") loadAlertMarkers();
  else if (view === "parcel" && arg === ev.parcel_id) loadParcelAlerts(ev.parcel_id);
}

// ---- map -----------------------------------------------------------------------------------
const parcelStyle = (f) => ({ color: "#333", weight: 1, fillColor: LIGHT_COLOURS[f.properties.light] || "#aaaaaa", fillOpacity: 0.75 });
const parcelTip = (p) => `${esc(p.parcel_id)} · ${esc(p.land_use)} · ${esc(p.light || "no light")}`;

async function showMap(campaign) {
  show("map");
  if (!state.map) {
    state.map = L.map("map", { preferCanvas: false, attributionControl: false });
    state.layers = { parcels: L.geoJSON(null, {
      style: parcelStyle,
      onEachFeature: (f, layer) => {
        layer.bindTooltip(parcelTip(f.properties));
        layer.on("click", () => { location.hash = `#/parcel/${encodeURIComponent(f.properties.parcel_id)}`; });
      },
    }).addTo(state.map), alerts: L.layerGroup().addTo(state.map), tiles: L.layerGroup().addTo(state.map),
    quicklook: L.layerGroup().addTo(state.map) };
    L.control.layers(null, { "cube quicklook": state.layers.quicklook, "tile outlines": state.layers.tiles },
      { collapsed: false }).addTo(state.map);  // expanded: no toggle icon (Leaflet's images are not vendored)
  }
  setTimeout(() => state.map.invalidateSize(), 0);
  const gen = (state.mapGen = (state.mapGen || 0) + 1);  // a newer call supersedes this one
  const tiles = await getJSON("/api/tiles");
  if (gen !== state.mapGen) return;
  state.layers.tiles.clearLayers();
  state.layers.quicklook.clearLayers();
  let bounds = null;
  for (const t of tiles.data) {
    const [x0, y0, x1, y1] = t.bbox; const b = L.latLngBounds([y0, x0], [y1, x1]);
    L.rectangle(b, { color: "#234", weight: 1, fill: false, dashArray: "4", interactive: false }).addTo(state.layers.tiles);
    bounds = bounds ? bounds.extend(b) : b;
    loadQuicklook(t.tile_id);
  }
  state.layers.parcels.clearLayers();
  let page = 1, total = 0, loaded = 0;
  for (;;) {
    const fc = await getJSON(`/api/parcels?page=${page}&page_size=500`);
    if (gen !== state.mapGen) return;
    state.layers.parcels.addData(fc); total = fc.count; loaded += fc.features.length;
    if (loaded >= total || !fc.features.length) break; page += 1;
  }
  $("#map-count").textContent = ` · ${total} parcels`;
  if (bounds) state.map.fitBounds(bounds.pad(0.05)); else state.map.setView([48, 16], 10);
  state.mapCampaign = campaign || null;
  await loadLights(campaign, gen);
  await loadAlertMarkers();
}

// Every page of a paged API answer (`url` without `page`): the rows and the last answer, or null once
// `stale()` says a newer call superseded this one.
async function allPages(url, stale) {
  const rows = [];
  for (let page = 1; ; page += 1) {
    const res = await getJSON(`${url}&page=${page}`);
    if (stale()) return null;
    rows.push(...res.data);
    if (rows.length >= res.count || !res.data.length) return { rows, last: res };
  }
}

// The lights of one campaign (none: each parcel's latest) recolour the drawn parcels; a parcel
// without a light in that campaign turns grey. The export links follow the campaign.
async function loadLights(campaign, gen) {
  const q = campaign ? `&campaign=${encodeURIComponent(campaign)}` : "";
  const pages = await allPages(`/api/lights?page_size=500${q}`, () => gen !== state.mapGen);
  if (!pages) return;
  const lights = new Map(pages.rows.map((r) => [r.parcel_id, r.light]));
  const res = pages.last;
  const sel = $("#map-campaign");
  sel.innerHTML = `<option value="">latest</option>${res.campaigns.slice().reverse().map((c) => `<option value="${c}">${c}</option>`).join("")}`;
  sel.value = campaign && res.campaigns.includes(Number(campaign)) ? String(campaign) : "";
  state.layers.parcels.eachLayer((layer) => {
    const p = layer.feature.properties; p.light = lights.get(p.parcel_id) || null;
    layer.setStyle(parcelStyle(layer.feature)); layer.setTooltipContent(parcelTip(p));
  });
  $("#map").dataset.campaign = campaign || "latest";  // says which campaign the colours are of
  document.querySelectorAll("#map-export a").forEach((a) => { a.href = `/api/lights/export?format=${a.dataset.format}${q}`; });
}
// another campaign: the hash keeps it (replaced, not pushed: the parcels stay, only their lights change)
$("#map-campaign").addEventListener("change", () => {
  const c = $("#map-campaign").value;
  history.replaceState(null, "", c ? `#/map?campaign=${c}` : "#/map");
  state.mapCampaign = c || null;  // the alert markers follow the lights' campaign
  Promise.all([loadLights(c, state.mapGen), loadAlertMarkers()]).catch((e) => toast(`error: ${e.message}`));
});
// the export is fetched with the bearer header (no token in a URL) and saved from a blob
$("#map-export").addEventListener("click", async (ev) => {
  const a = ev.target.closest("a[data-format]"); if (!a) return;
  ev.preventDefault();
  try {
    const r = await api(a.getAttribute("href"));
    const name = (r.headers.get("Content-Disposition") || "").match(/filename="([^"]+)"/)?.[1] || "traffic-lights";
    const save = Object.assign(document.createElement("a"), { href: URL.createObjectURL(await r.blob()), download: name });
    save.click(); setTimeout(() => URL.revokeObjectURL(save.href), 10000);
  } catch (e) { toast(`export failed: ${e.message}`); }
});

// the tile's latest clear true colour from the cube, under the parcels (fetched with the token)
async function loadQuicklook(tileId) {
  try {
    const r = await api(`/api/tiles/${encodeURIComponent(tileId)}/quicklook`);
    const [s, w, n, e] = r.headers.get("X-Bounds").split(",").map(Number);
    const url = URL.createObjectURL(await r.blob());
    L.imageOverlay(url, [[s, w], [n, e]], { opacity: 0.85, interactive: false, alt: `quicklook ${tileId} ${r.headers.get("X-Date")}` })
      .addTo(state.layers.quicklook).bringToBack();
  } catch (e) { /* no cube for the tile: the map works without it */ }
}

// The open alerts on the map: of the campaign the lights are of (state.mapCampaign; none, "latest":
// every open alert, the work queue of every season), every page of them.
async function loadAlertMarkers() {
  if (!state.layers) return;
  const gen = (state.markerGen = (state.markerGen || 0) + 1);
  const campaign = state.mapCampaign;
  const q = campaign ? `&campaign=${encodeURIComponent(campaign)}` : "";
  const open = "status=new&status=acknowledged&status=remote_review&status=photo_request&status=field_check";
  const pages = await allPages(`/api/alerts?${open}&page_size=500${q}`, () => gen !== state.markerGen);
  if (!pages) return;
  state.layers.alerts.clearLayers();
  for (const a of pages.rows) {
    if (!a.centroid) continue;
    L.circleMarker([a.centroid[1], a.centroid[0]], { radius: 7, color: "#7b1fa2", weight: 3, fill: false, className: "alert-marker" })
      .bindTooltip(`${esc(a.type)} ${esc(a.event_date)} (${esc(a.status)})`)
      .on("click", () => { location.hash = `#/parcel/${encodeURIComponent(a.parcel_id)}`; })
      .addTo(state.layers.alerts);
  }
  $("#map").dataset.alertMarkers = `${campaign || "latest"}:${state.layers.alerts.getLayers().length}`;
}

// ---- parcel page ----------------------------------------------------------------------------
const toSec = (iso) => Math.floor(Date.parse(iso) / 1000);
const day = (iso) => iso.slice(0, 10);

// One campaign (season) at a time: `campaign` (from the hash; none: the parcel's latest) chooses the
// series, and with it the chart, the chips' dates, the calendar's days and the alerts (the API answers
// only that campaign's alerts with the series).
async function showParcel(pid, campaign) {
  show("parcel");
  $("#parcel-title").textContent = `Parcel ${pid}`;
  $("#chart").innerHTML = "loading…"; $("#chips").innerHTML = ""; $("#parcel-alerts").innerHTML = ""; $("#series-range").textContent = "";
  const enc = encodeURIComponent(pid);
  const q = campaign ? `?campaign=${encodeURIComponent(campaign)}` : "";
  const [feature, series] = await Promise.all([getJSON(`/api/parcels/${enc}${q}`), getJSON(`/api/parcels/${enc}/series${q}`)]);
  const p = feature.properties;
  $("#parcel-info").innerHTML = `tile ${esc(p.tile_id)} · ${esc(p.land_use)} · declared ${esc(p.declared_practice || "—")} · `
    + `<b style="color:${LIGHT_COLOURS[p.light] || "#555"}">${esc(p.light || "no light")}</b>${p.campaign ? ` (campaign ${esc(p.campaign)})` : ""} ${esc(p.reasons || "")}`;
  state.parcelCampaign = series.campaign;
  const sel = $("#parcel-campaign");
  sel.innerHTML = series.campaigns.slice().reverse().map((c) => `<option value="${c}">${c}</option>`).join("");
  sel.value = String(series.campaign);
  sel.onchange = () => { location.hash = `#/parcel/${enc}?campaign=${sel.value}`; };
  $("#series-range").textContent = seriesRange(series);
  drawChart(series);
  drawChips(enc, series);
  $("#calendar").innerHTML = "";
  $("#calendar-btn").onclick = () => drawCalendar(enc, series.campaign_window);
  renderAlerts($("#parcel-alerts"), series.alerts, false);
}

// what the chart holds: the campaign's window, its views per sensor, the first and last view
function seriesRange(series) {
  const days = [...series.s2, ...series.s1].map((r) => day(r.time)).sort();
  const [w0, w1] = series.campaign_window || [];
  return `${w0 ? `${w0} – ${w1}: ` : ""}${series.s2.length} S2 views, ${series.s1.length} S1 views`
    + (days.length ? `, ${days[0]} to ${days[days.length - 1]}` : "");
}

async function loadParcelAlerts(pid) {
  const c = state.parcelCampaign ? `&campaign=${state.parcelCampaign}` : "";
  const s = await getJSON(`/api/alerts?parcel_id=${encodeURIComponent(pid)}&page_size=100${c}`);
  renderAlerts($("#parcel-alerts"), s.data, false);
}

function drawChart(series) {
  const times = new Map();
  for (const r of series.s2) times.set(toSec(r.time), { s2: r });
  for (const r of series.s1) { const t = toSec(r.time); times.set(t, { ...(times.get(t) || {}), s1: r }); }
  const xs = [...times.keys()].sort((a, b) => a - b);
  const col = (f) => xs.map((t) => { const v = f(times.get(t)); return v === undefined ? null : v; });
  const ndvi = col((o) => (o.s2 && o.s2.clear ? o.s2.ndvi : null));
  const cloudy = col((o) => (o.s2 && !o.s2.clear ? o.s2.ndvi : null));
  const exp = col((o) => o.s2?.expected_ndvi);
  const hi = col((o) => (o.s2?.expected_ndvi != null ? o.s2.expected_ndvi + o.s2.expected_ndvi_std : null));
  const lo = col((o) => (o.s2?.expected_ndvi != null ? o.s2.expected_ndvi - o.s2.expected_ndvi_std : null));
  const vv = col((o) => o.s1?.vv_db); const vh = col((o) => o.s1?.vh_db);
  const filled = col((o) => (o.s2 && o.s2.filled ? o.s2.filled_ndvi : null));
  const filledStd = col((o) => (o.s2 && o.s2.filled ? o.s2.filled_ndvi_std : null));
  const alertTimes = series.alerts.map((a) => ({ t: toSec(a.event_date + "T12:00:00Z"), label: a.type }));
  const alertLines = { hooks: { draw: [(u) => {
    const ctx = u.ctx; ctx.save(); ctx.strokeStyle = "#7b1fa2"; ctx.lineWidth = 2; ctx.setLineDash([6, 4]);
    ctx.fillStyle = "#7b1fa2"; ctx.font = `${12 * devicePixelRatio}px sans-serif`;
    alertTimes.forEach((a, i) => {  // labels on staggered rows so close alerts stay readable
      const x = u.valToPos(a.t, "x", true); ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke();
      ctx.fillText(a.label, x + 4, u.bbox.top + (14 + 16 * (i % 3)) * devicePixelRatio);
    });
    ctx.setLineDash([]); ctx.strokeStyle = "#e65100"; ctx.lineWidth = 1.5 * devicePixelRatio;
    xs.forEach((t, i) => {  // gap-filled NDVI: its uncertainty as a whisker (± std)
      if (filled[i] == null || filledStd[i] == null) return;
      const x = u.valToPos(t, "x", true);
      const y0 = u.valToPos(filled[i] - filledStd[i], "ndvi", true), y1 = u.valToPos(filled[i] + filledStd[i], "ndvi", true);
      ctx.beginPath(); ctx.moveTo(x, y0); ctx.lineTo(x, y1); ctx.moveTo(x - 4, y0); ctx.lineTo(x + 4, y0); ctx.moveTo(x - 4, y1); ctx.lineTo(x + 4, y1); ctx.stroke();
    });
    ctx.restore();
  }] } };
  const opts = {
    width: Math.min(1000, window.innerWidth - 60), height: 340, plugins: [alertLines],
    scales: { x: { time: true }, ndvi: { range: [-0.1, 1] }, db: { auto: true } },
    axes: [{}, { scale: "ndvi", label: "NDVI" }, { scale: "db", side: 1, label: "S1 dB", grid: { show: false } }],
    series: [
      {},
      { label: "NDVI (clear)", scale: "ndvi", stroke: "#2e7d32", width: 0, points: { show: true, size: 8, fill: "#2e7d32" } },
      { label: "NDVI (cloudy)", scale: "ndvi", stroke: "#bbb", width: 0, points: { show: true, size: 5, fill: "#ccc" } },
      { label: "expected NDVI", scale: "ndvi", stroke: "#1565c0", width: 2, spanGaps: true },
      { label: "expected + std", scale: "ndvi", stroke: "rgba(21,101,192,0.3)", width: 1, spanGaps: true },
      { label: "expected − std", scale: "ndvi", stroke: "rgba(21,101,192,0.3)", width: 1, spanGaps: true },
      { label: "VV dB", scale: "db", stroke: "#ef6c00", width: 1, spanGaps: true },
      { label: "VH dB", scale: "db", stroke: "#8d6e63", width: 1, spanGaps: true },
      { label: "gap-filled NDVI ± std", scale: "ndvi", stroke: "#e65100", width: 0, points: { show: true, size: 8, fill: "#fff", stroke: "#e65100" } },
    ],
    bands: [{ series: [4, 5], fill: "rgba(21,101,192,0.15)" }],
  };
  $("#chart").innerHTML = "";
  state.chart = new uPlot(opts, [xs, ndvi, cloudy, exp, hi, lo, vv, vh, filled], $("#chart"));
}

async function chipImg(enc, kind, date, label, target = "#chips") {
  const box = document.createElement("div"); box.className = "chip";
  box.innerHTML = `<img alt="${esc(kind)} ${esc(date)}"><span>${esc(label)} · ${esc(kind)} · ${esc(date)}</span>`;
  $(target).appendChild(box);
  try {
    const blob = await (await api(`/api/parcels/${enc}/chips/${kind}?date=${date}`)).blob();
    const img = box.querySelector("img"); img.src = URL.createObjectURL(blob); img.dataset.loaded = "1";
  } catch (e) { box.querySelector("span").textContent += ` (${e.message})`; }
}

function drawChips(enc, series) {
  const clear = series.s2.filter((r) => r.clear).map((r) => day(r.time));
  const s2 = clear.length ? clear : series.s2.map((r) => day(r.time));
  const s1 = series.s1.map((r) => day(r.time));
  const a = series.alerts[0];
  const pivot = a ? a.event_date : s2[Math.floor(s2.length / 2)];
  if (!pivot) { $("#chips").textContent = "no acquisitions"; return; }
  const before = (list) => list.filter((d) => d < pivot).pop();
  const after = (list) => list.find((d) => d >= pivot);
  const jobs = [];
  for (const [label, pick] of [["before", before], ["after", after]]) {
    const d2 = pick(s2), d1 = pick(s1);
    if (d2) { jobs.push(chipImg(enc, "true_color", d2, label)); jobs.push(chipImg(enc, "ndvi", d2, label)); }
    if (d1) jobs.push(chipImg(enc, "vv", d1, label));
  }
  return Promise.all(jobs);
}

// The controllers' remote review: a chip of every acquisition of the period, in time order
// (S2 true colour and NDVI; S1 VV labelled with its orbit direction).
async function drawCalendar(enc, window) {
  $("#calendar").innerHTML = "";
  const d = await getJSON(`/api/parcels/${enc}/dates`);
  const inCampaign = (a) => !window || (a.date >= window[0] && a.date <= window[1]);  // the shown campaign's days
  const all = [...d.acquisitions.S2.map((a) => ({ ...a, sensor: "S2" })), ...d.acquisitions.S1.map((a) => ({ ...a, sensor: "S1" }))]
    .filter(inCampaign).sort((a, b) => a.time.localeCompare(b.time));
  const todo = [];
  for (const a of all) {
    if (a.sensor === "S2") todo.push(["true_color", a.date, "S2"], ["ndvi", a.date, "S2"]);
    else todo.push(["vv", a.date, `S1 ${a.pass}`]);
  }
  // placeholders in time order first, then at most four chip requests in flight
  const boxes = todo.map(() => { const b = document.createElement("div"); $("#calendar").appendChild(b); return b; });
  let next = 0;
  const worker = async () => {
    while (next < todo.length) {
      const i = next++; const [kind, date, label] = todo[i];
      boxes[i].id = `cal-${i}`; await chipImg(enc, kind, date, label, `#cal-${i}`);
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
}

// ---- alert queue and triage -----------------------------------------------------------------
function renderAlerts(target, alerts, withSelect, flashId) {
  const rows = alerts.map((a) => {
    const last = a.history.length ? a.history[a.history.length - 1] : null;
    const next = state.ladder ? state.ladder.transitions[a.status] : [];
    const options = next.map((s) => `<option value="${s}">${s}</option>`).join("");
    return `<tr data-id="${esc(a.alert_id)}" class="${a.alert_id === flashId ? "flash" : ""}">
      <td>${withSelect ? `<input type="checkbox" class="sel" value="${esc(a.alert_id)}">` : ""}</td>
      <td>${esc(a.event_date)}</td><td>${esc(a.type)}</td>
      <td><a href="#/parcel/${encodeURIComponent(a.parcel_id)}">${esc(a.parcel_id)}</a></td>
      <td>${(a.confidence * 100).toFixed(0)} %</td>
      <td><span class="status ${esc(a.status)}">${esc(a.status)}</span></td>
      <td>${last ? `${esc(last.who)}: ${esc(last.note || last.status)}` : "—"}</td>
      <td class="triage">${a.status === "new" ? `<button type="button" class="ack">Acknowledge</button>` : ""}
        ${options ? `<select class="next"><option value="">escalate / close…</option>${options}</select>
        <input class="note" placeholder="note" size="14"><button type="button" class="apply">Apply</button>` : ""}</td></tr>`;
  }).join("");
  target.innerHTML = alerts.length
    ? `<table class="alerts"><thead><tr><th></th><th>Event</th><th>Type</th><th>Parcel</th><th>Confidence</th><th>Status</th><th>Last change</th><th class="triage">Triage</th></tr></thead><tbody>${rows}</tbody></table>`
    : "<p>No alerts.</p>";
  target.querySelectorAll("tr[data-id]").forEach((tr) => {
    const id = tr.dataset.id;
    tr.querySelector(".ack")?.addEventListener("click", () => setStatus(id, "acknowledged", ""));
    tr.querySelector(".apply")?.addEventListener("click", () => {
      const s = tr.querySelector(".next").value; if (s) setStatus(id, s, tr.querySelector(".note").value);
    });
  });
}

async function setStatus(id, status, note) {
  try {
    const a = await (await api(`/api/alerts/${encodeURIComponent(id)}/status`, { method: "POST", body: { status, note } })).json();
    toast(`alert ${a.parcel_id} ${a.type}: ${a.status}`);
  } catch (e) { toast(`status change refused: ${e.message}`); }
  refreshView();
}

async function loadQueue(flashId) {
  // keyset paging: state.cursors[k] is the cursor of page k + 1 (the next_cursor of page k)
  const q = new URLSearchParams({ page: state.page, page_size: state.pageSize, sort: $("#f-sort").value });
  const cursor = state.cursors[state.page - 1];
  if (cursor) q.append("cursor", cursor);
  if ($("#f-status").value) q.append("status", $("#f-status").value);
  if ($("#f-type").value) q.append("type", $("#f-type").value);
  const res = await getJSON(`/api/alerts?${q}`);
  $("#queue-count").textContent = `(${res.count})`;
  const pages = Math.max(1, Math.ceil(res.count / state.pageSize));
  $("#page").textContent = `page ${state.page} of ${pages}`;
  state.cursors.length = state.page; state.cursors.push(res.next_cursor);
  $("#prev").disabled = state.page <= 1; $("#next").disabled = !res.next_cursor;
  const holder = document.createElement("div");
  renderAlerts(holder, res.data, true, flashId);
  $("#queue").replaceWith(Object.assign(holder.querySelector("table") || document.createElement("table"), { id: "queue" }));
  if (!res.data.length) $("#queue").innerHTML = "<tr><td>No alerts.</td></tr>";
}

async function showAlerts() {
  show("alerts");
  if ($("#f-status").options.length === 1 && state.ladder) {
    for (const s of Object.keys(state.ladder.transitions)) $("#f-status").add(new Option(s, s));
    for (const t of ["mowing", "grazing", "harvest", "solar_construction", "no_activity"]) $("#f-type").add(new Option(t, t));
  }
  await loadQueue();
}
$("#filters").addEventListener("submit", (ev) => { ev.preventDefault(); state.page = 1; state.cursors = [null]; loadQueue(); });
$("#f-sort").addEventListener("change", () => { state.page = 1; state.cursors = [null]; });
$("#prev").addEventListener("click", () => { state.page -= 1; loadQueue(); });
$("#next").addEventListener("click", () => { state.page += 1; loadQueue(); });
$("#bulk-ack").addEventListener("click", async () => {
  const ids = [...document.querySelectorAll("#queue .sel:checked")].map((c) => c.value);
  if (!ids.length) return toast("select alerts first");
  try {
    const r = await (await api("/api/alerts/acknowledge", { method: "POST", body: { alert_ids: ids } })).json();
    toast(`${r.acknowledged.length} acknowledged, ${Object.keys(r.skipped).length} skipped`);
  } catch (e) { toast(`refused: ${e.message}`); }
  loadQueue();
});

// ---- operator page --------------------------------------------------------------------------
const kv = (obj) => `<table class="kv">${Object.entries(obj).map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(typeof v === "object" ? JSON.stringify(v) : v)}</td></tr>`).join("")}</table>`;
async function showOps() {
  show("ops");
  const [mon, ing] = await Promise.all([getJSON("/api/ops/monitor"), getJSON("/api/ops/ingest")]);
  $("#ops-monitor").innerHTML = mon.running
    ? `<p><b>running</b> (pid ${esc(mon.pid)}, updated ${esc(mon.updated_at)}, ${esc(mon.age_s)} s ago) · lag ${esc(mon.total_lag)} · processed ${esc(mon.processed)} · last error ${esc(mon.last_error || "none")}</p>${kv(mon.tiles)}`
    : `<p class="error" id="monitor-down">${esc(mon.reason)}</p>`;
  $("#ops-ingest").innerHTML = !ing.available ? `<p class="error">${esc(ing.reason)}</p>`
    : `<p>items: ${esc(JSON.stringify(ing.counts))}</p><h4>Watermarks</h4>
       <table><tr><th>source</th><th>collection</th><th>area</th><th>watermark</th></tr>${ing.watermarks.map((w) => `<tr><td>${esc(w.source)}</td><td>${esc(w.collection)}</td><td>${esc(w.tile_id)}</td><td>${esc(w.watermark)}</td></tr>`).join("")}</table>
       <h4>Quarantined (${ing.quarantined_count})</h4>
       <table><tr><th>item</th><th>tile</th><th>acquired</th><th>reason</th></tr>${ing.quarantined.map((q) => `<tr><td>${esc(q.item_id)}</td><td>${esc(q.tile_id)}</td><td>${esc(q.acquired)}</td><td>${esc(q.reason)}</td></tr>`).join("") || "<tr><td colspan=4>none</td></tr>"}</table>`;
  await loadBackfill();
}

// backfill jobs: a `monitor replay` of some tiles (or a polygon's) and a period; progress polled
async function loadBackfill() {
  const jobs = await getJSON("/api/ops/backfill?page_size=20");
  $("#ops-backfill").innerHTML = `<table id="backfill-jobs"><tr><th>job</th><th>by</th><th>tiles</th><th>period</th><th>state</th><th>started</th><th>ended</th><th>progress</th><th></th></tr>${
    jobs.data.map((j) => `<tr data-job="${esc(j.id)}" class="job-${esc(j.state)}"><td>${esc(j.id)}</td><td>${esc(j.who)}</td><td>${esc(j.tiles.join(", "))}</td><td>${esc(j.start)} – ${esc(j.end)}</td><td class="state">${esc(j.state)}</td><td>${esc(j.started_at || "")}</td><td>${esc(j.ended_at || "")}</td><td class="progress">${esc(`${j.tiles_done}/${j.tiles_total} tiles, ${j.acquisitions_done} acquisitions`)}<br><small>${esc(j.error && j.state !== "cancelled" ? `${j.error}: ${j.progress || ""}` : j.progress || "")}</small></td><td>${
      ["queued", "running"].includes(j.state) ? `<button type="button" class="bf-cancel" data-job="${esc(j.id)}">Cancel</button>` : ""}</td></tr>`).join("")
    || "<tr><td colspan=9>no jobs yet</td></tr>"}</table>`;
  document.querySelectorAll(".bf-cancel").forEach((b) => b.addEventListener("click", async () => {
    try { await api(`/api/ops/backfill/${b.dataset.job}/cancel`, { method: "POST" }); } catch (e) { toast(`cancel refused: ${e.message}`); }
    loadBackfill();
  }));
  clearTimeout(state.backfillTimer);
  if (jobs.data.some((j) => ["queued", "running"].includes(j.state)) && location.hash.startsWith("#/ops")) {
    state.backfillTimer = setTimeout(() => loadBackfill().catch(() => {}), 1000);
  }
}
$("#backfill-form").addEventListener("submit", async (ev) => {
  ev.preventDefault(); $("#bf-error").textContent = "";
  const body = { start: $("#bf-start").value, end: $("#bf-end").value };
  const poly = $("#bf-polygon").value.trim();
  try {
    if (poly) body.polygon = JSON.parse(poly);
    else body.tiles = $("#bf-tiles").value.split(",").map((t) => t.trim()).filter(Boolean);
    const job = await (await api("/api/ops/backfill", { method: "POST", body })).json();
    toast(`backfill job ${job.id} ${job.state}`);
  } catch (e) { $("#bf-error").textContent = e.message; }
  loadBackfill();
});

// ---- routing --------------------------------------------------------------------------------
function refreshView() { route(); }
async function route() {
  if (!state.me) { show("login"); return; }
  const { view, arg, params } = hashRoute();
  try {
    if (view === "parcel") await showParcel(arg, params.get("campaign"));
    else if (view === "alerts") await showAlerts();
    else if (view === "ops") await showOps();
    else await showMap(params.get("campaign"));
  } catch (e) { toast(`error: ${e.message}`); }
}
window.addEventListener("hashchange", route);
(async () => {
  if (token()) { try { await login(token()); } catch (e) { /* fall through to the login form */ } }
  route();
})();
