"use strict";
const ROUTES = { fast_vardkontakt: "Fast vårdkontakt", mobile_team: "Mobilt team",
                 unit_fallback: "Jourkontakt" };
const STATUSES = { open: "Ny", acknowledged: "Kvitterad", resolved: "Åtgärdad" };
const LEVELS = { red: "Röd", yellow: "Gul" };
const OUTCOMES = { patient_contacted: "Kontakt med patienten", advice_given: "Råd givet",
  medication_changed: "Läkemedel ändrat", referred_mobile_team: "Till mobilt team",
  no_action: "Ingen åtgärd behövs" };
const NAMES = { heart_rate: "Puls", spo2: "Syremättnad", blood_pressure_systolic: "Systoliskt blodtryck",
  blood_pressure_diastolic: "Diastoliskt blodtryck", body_weight: "Vikt",
  body_temperature: "Kroppstemperatur", respiratory_rate: "Andningsfrekvens", blood_glucose: "Blodsocker" };
const ZONE = { timeZone: "Europe/Stockholm" };
const ACTIONS = { opened: "öppnat", occurred: "nytt värde", acknowledge: "kvitterat",
  resolve: "åtgärdat", snooze: "snoozat", snooze_ended: "snooze slut", escalated: "eskalerat",
  cleared: "åter inom gränsen" };
const LIMITS = { yellow_above: "gul över", red_above: "röd över", yellow_below: "gul under",
  red_below: "röd under", above: "över", below: "under" };
function span(text) {
  const units = { m: "min", h: "tim", d: "dygn", w: "veckor" };
  const match = /^(\d+)([mhdw])$/.exec(text || "");
  return match ? `${match[1]} ${units[match[2]]}` : text;
}
function describe(rule) {
  const what = NAMES[rule.measurement] || (rule.kind === "news2" ? "NEWS2" : rule.measurement);
  const limits = Object.entries(LIMITS).filter(([k]) => rule[k] !== null && rule[k] !== undefined)
    .map(([k, v]) => `${v} ${rule[k]}`).join(", ");
  const kinds = { threshold: "gränser", rise: `ökning inom ${span(rule.within)}`,
    fall: `minskning inom ${span(rule.within)}`, mean: `medelvärde ${span(rule.within)}`,
    missed: `mätning var ${span(rule.every)}${rule.before ? " före " + rule.before.slice(0, 5) : ""}`,
    news2: `skala ${rule.scale}, ${span(rule.within)}` };
  return `${what}: ${kinds[rule.kind] || rule.kind}${limits ? " – " + limits : ""}${rule.level ? " (" + (LEVELS[rule.level] || rule.level).toLowerCase() + ")" : ""}`;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v); else node.setAttribute(k, v);
  }
  node.append(...children.filter(c => c !== null && c !== undefined));
  return node;
}
function when(iso) { return new Date(iso).toLocaleString("sv-SE", ZONE); }
function showError(e) { document.getElementById("error").textContent = e ? e.message : ""; }

async function api(path, options = {}) {
  // the session cookie (HttpOnly, SameSite=Strict) goes with every same-origin request
  const response = await fetch(path, { ...options, credentials: "same-origin",
    headers: { "Content-Type": "application/json" } });
  if (response.status === 401) { location.assign("/login"); throw new Error("Logga in igen."); }
  const body = await response.json();
  if (!response.ok) throw new Error(body.detail || response.statusText);
  return body;
}
function show(id) {
  for (const section of ["login", "worklist", "patient"]) document.getElementById(section).hidden = section !== id;
}
function badge(a) {
  const notice = a.category !== "clinical";
  return el("span", { class: "level " + (notice ? "notice" : a.level) },
            notice ? (a.category === "device" ? "Mätare" : "Följsamhet") : LEVELS[a.level]);
}
function actions(a) {
  const cell = el("td");
  if (a.status === "open") cell.append(el("button", { class: "ack", onclick: () => act(a.id, "acknowledge", {}) }, "Kvittera"));
  const outcome = el("select", { "aria-label": "Utfall" },
    ...Object.entries(OUTCOMES).map(([k, v]) => el("option", { value: k }, v)));
  cell.append(outcome, el("button", { class: "resolve", onclick: () => act(a.id, "resolve", { outcome: outcome.value }) }, "Åtgärdad"));
  const minutes = el("select", { "aria-label": "Snooza" },
    ...[30, 60, 120, 240].map(m => el("option", { value: m }, `${m} min`)));
  cell.append(minutes, el("button", { class: "snooze", onclick: () => act(a.id, "snooze", { minutes: Number(minutes.value) }) }, "Snooza"));
  return cell;
}
async function act(id, action, body) {
  try { await api(`/api/v1/alerts/${id}/${action}`, { method: "POST", body: JSON.stringify(body) }); showError(); }
  catch (e) { showError(e); }
  route();
}

async function worklist() {
  const { alerts } = await api("/api/v1/alerts");
  const routeFilter = document.getElementById("filter-route").value;
  const unitSelect = document.getElementById("filter-unit");
  const categoryFilter = document.getElementById("filter-category").value;
  for (const unit of new Set(alerts.map(a => a.unit_id))) {
    if (![...unitSelect.options].some(o => o.value === unit)) unitSelect.append(el("option", { value: unit }, unit));
  }
  const shown = alerts.filter(a => (!routeFilter || a.route === routeFilter)
    && (!unitSelect.value || a.unit_id === unitSelect.value)
    && (!categoryFilter || (categoryFilter === "clinical") === (a.category === "clinical")));
  const rows = document.getElementById("alerts");
  rows.replaceChildren(...shown.map(a => el("tr", { "data-id": a.id },
    el("td", {}, badge(a)),
    el("td", {}, el("a", { href: `#patient=${encodeURIComponent(a.patient_id)}`, class: "patient" }, a.patient_id)),
    el("td", {}, a.explanation, a.cleared_at ? el("div", { class: "muted" }, `Åter inom gränsen ${when(a.cleared_at)}`) : null,
      a.snoozed_until ? el("div", { class: "muted" }, `Snoozad till ${when(a.snoozed_until)}`) : null),
    el("td", {}, String(a.occurrences)), el("td", {}, when(a.opened_at)),
    el("td", {}, ROUTES[a.route]), el("td", { class: "status" }, STATUSES[a.status]), actions(a))));
  const clinical = alerts.filter(a => a.category === "clinical");
  const red = clinical.filter(a => a.level === "red").length;
  document.getElementById("count-red").textContent = `Röda: ${red}`;
  document.getElementById("count-yellow").textContent = `Gula: ${clinical.length - red}`;
  document.getElementById("count-notices").textContent = `Mätare och följsamhet: ${alerts.length - clinical.length}`;
  document.getElementById("empty").hidden = shown.length > 0;
  document.getElementById("updated").textContent = "Uppdaterad " + new Date().toLocaleTimeString("sv-SE", ZONE);
}

function chart(kind, readings, rules) {
  const W = 720, H = 200, L = 48, R = 12, T = 12, B = 26;
  const limits = [];
  for (const rule of rules) {
    if (rule.kind !== "threshold" || rule.measurement !== kind) continue;
    for (const [key, cls, label] of [["red_above", "limit-red", "röd"], ["yellow_above", "limit-yellow", "gul"],
                                     ["yellow_below", "limit-yellow", "gul"], ["red_below", "limit-red", "röd"]]) {
      if (rule[key] !== null && rule[key] !== undefined) limits.push({ value: rule[key], cls, label });
    }
  }
  const values = readings.map(r => r.value).concat(limits.map(l => l.value));
  let lo = Math.min(...values), hi = Math.max(...values);
  if (hi - lo < 1) { lo -= 1; hi += 1; }
  const pad = (hi - lo) * 0.1; lo -= pad; hi += pad;
  const times = readings.map(r => new Date(r.measured_at).getTime());
  const t0 = Math.min(...times), t1 = Math.max(...times, t0 + 1);
  const x = t => L + (W - L - R) * (t - t0) / (t1 - t0);
  const y = v => T + (H - T - B) * (1 - (v - lo) / (hi - lo));
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`); svg.setAttribute("class", "chart");
  svg.setAttribute("width", W); svg.setAttribute("height", H); svg.setAttribute("data-measurement", kind);
  const add = (tag, attrs, text) => { const n = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text; svg.append(n); return n; };
  for (const l of limits) {
    add("line", { x1: L, x2: W - R, y1: y(l.value), y2: y(l.value), class: `limit ${l.cls}` });
    add("text", { x: W - R - 4, y: y(l.value) - 3, "text-anchor": "end" }, `${l.label} gräns ${l.value}`);
  }
  add("text", { x: 4, y: T + 8 }, hi.toFixed(1)); add("text", { x: 4, y: H - B }, lo.toFixed(1));
  add("text", { x: L, y: H - 6 }, new Date(t0).toLocaleDateString("sv-SE", ZONE));
  add("text", { x: W - R, y: H - 6, "text-anchor": "end" }, new Date(t1).toLocaleDateString("sv-SE", ZONE));
  add("polyline", { class: "line", points: readings.map(r => `${x(new Date(r.measured_at).getTime())},${y(r.value)}`).join(" ") });
  for (const r of readings) add("circle", { class: "dot", r: 3, cx: x(new Date(r.measured_at).getTime()), cy: y(r.value) },
                                undefined).append(Object.assign(document.createElementNS(ns, "title"),
                                { textContent: `${when(r.measured_at)}: ${r.value}` }));
  return svg;
}

async function patient(id) {
  document.getElementById("patient-title").textContent = `Patient ${id}`;
  const since = new Date(Date.now() - 14 * 86400000).toISOString();
  const [{ alerts }, { readings }, rules] = await Promise.all([
    api(`/api/v1/alerts?patient=${encodeURIComponent(id)}`),
    api(`/api/v1/patients/${encodeURIComponent(id)}/readings?since=${encodeURIComponent(since)}`),
    api(`/api/v1/patients/${encodeURIComponent(id)}/rules`)]);
  const current = rules.current ? rules.current.rules : [];
  const details = await Promise.all(alerts.map(a => api(`/api/v1/alerts/${a.id}`)));
  document.getElementById("patient-alerts").replaceChildren(...details.map(a => el("section", { class: "card alert", "data-id": a.id },
    el("p", {}, badge(a), " ", el("strong", {}, a.explanation)),
    el("p", { class: "muted" }, `${ROUTES[a.route]} · ${STATUSES[a.status]} · ${a.occurrences} gånger · regelversion ${a.rule_version}`),
    el("table", {}, el("tbody", {}, el("tr", {}, actions(a)))),
    el("ul", { class: "history" }, ...a.history.map(h => el("li", {},
      `${when(h.at)} ${h.actor}: ${ACTIONS[h.action] || h.action}${h.value !== null ? " " + h.value : ""}${h.note ? " – " + h.note : ""}`))))));
  const byKind = {};
  for (const r of readings) (byKind[r.type] = byKind[r.type] || []).push(r);
  document.getElementById("charts").replaceChildren(...Object.entries(byKind).map(([kind, rs]) =>
    el("figure", {}, el("figcaption", {}, NAMES[kind] || kind), chart(kind, rs, current))));
  document.getElementById("rules").replaceChildren(
    el("p", { class: "muted" }, rules.current ? `Version ${rules.current.version}, ändrad ${when(rules.current.changed_at)} av ${rules.current.changed_by}: ${rules.current.reason}` : "Inga regler"),
    el("ul", {}, ...current.map(r => el("li", {}, describe(r)))),
    el("details", {}, el("summary", {}, `Alla versioner (${rules.versions.length})`),
      el("ul", {}, ...rules.versions.map(v => el("li", {}, `Version ${v.version}: ${when(v.changed_at)}, ${v.changed_by} – ${v.reason}`)))));
}

async function route() {
  const current = new URLSearchParams(location.hash.slice(1));
  try {
    if (current.get("patient")) { show("patient"); await patient(current.get("patient")); }
    else { show("worklist"); await worklist(); }
    showError();
  } catch (e) { showError(e); }
}
async function start() {
  try {
    const me = await api("/api/v1/me");
    document.getElementById("who").textContent = `${me.user} (${me.unit || me.team || "administratör"})`;
  } catch (e) { showError(e); return; }
  await route();
  setInterval(route, 10000);
}
window.addEventListener("hashchange", route);
for (const id of ["filter-route", "filter-unit", "filter-category"]) document.getElementById(id).addEventListener("change", worklist);
document.getElementById("home").addEventListener("click", e => { e.preventDefault(); location.hash = ""; });
start();
