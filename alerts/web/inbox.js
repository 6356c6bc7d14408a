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
  cleared: "åter inom gränsen", note: "anteckning", assigned: "tilldelat" };
const GROUPS = { heart_failure: "hjärtsvikt", copd: "KOL", hypertension: "högt blodtryck",
  diabetes: "diabetes" };
const TOLD = { green: "Grön", yellow: "Gul", red: "Röd", rejected: "Ej mottagen" };
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
function num(v) { return Number(v).toLocaleString("sv-SE", { maximumFractionDigits: 1 }); }
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
  const mine = document.getElementById("filter-mine").value === "me";
  const { alerts } = await api("/api/v1/alerts" + (mine ? "?assignee=me" : ""));
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
    el("td", {}, el("a", { href: `#patient=${encodeURIComponent(a.patient_id)}`, class: "patient" }, a.patient_display || a.patient_id)),
    el("td", {}, a.explanation, a.cleared_at ? el("div", { class: "muted" }, `Åter inom gränsen ${when(a.cleared_at)}`) : null,
      a.snoozed_until ? el("div", { class: "muted" }, `Snoozad till ${when(a.snoozed_until)}`) : null),
    el("td", {}, String(a.occurrences)),
    el("td", {}, when(a.opened_at), a.waiting ? el("div", { class: "waiting" }, a.waiting) : null),
    el("td", {}, ROUTES[a.route], a.assignee ? el("div", { class: "muted assignee" }, "Tilldelad: " + (a.assignee_name || assigneeName(a.assignee))) : null),
    el("td", { class: "status" }, STATUSES[a.status]), actions(a))));
  const clinical = alerts.filter(a => a.category === "clinical");
  const red = clinical.filter(a => a.level === "red").length;
  document.getElementById("count-red").textContent = `Röda: ${red}`;
  document.getElementById("count-yellow").textContent = `Gula: ${clinical.length - red}`;
  document.getElementById("count-notices").textContent = `Mätare och följsamhet: ${alerts.length - clinical.length}`;
  document.getElementById("empty").hidden = shown.length > 0;
  document.getElementById("updated").textContent = "Uppdaterad " + new Date().toLocaleTimeString("sv-SE", ZONE);
}

const DAY = 86400000;
function zoneOffset(t) {
  const parts = Object.fromEntries(new Intl.DateTimeFormat("en-GB", { ...ZONE, hourCycle: "h23",
    year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" })
    .formatToParts(new Date(t)).map(p => [p.type, p.value]));
  return Date.UTC(+parts.year, +parts.month - 1, +parts.day, +parts.hour, +parts.minute, +parts.second) - Math.floor(t / 1000) * 1000;
}
function midnight(t) {  // the start of the Stockholm day that t falls in
  const wall = new Date(t + zoneOffset(t));
  const m = Date.UTC(wall.getUTCFullYear(), wall.getUTCMonth(), wall.getUTCDate());
  return m - zoneOffset(m);
}
const LIMIT_KEYS = [["red_above", "limit-red", "röd"], ["yellow_above", "limit-yellow", "gul"],
                    ["yellow_below", "limit-yellow", "gul"], ["red_below", "limit-red", "röd"]];
function limitSegments(kind, versions, t0, t1) {
  // the oldest version is drawn back to the axis' start: it is what those readings were judged by
  const ordered = [...versions].sort((a, b) => a.version - b.version);
  const segments = [];
  ordered.forEach((v, i) => {
    const from = i === 0 ? t0 : Math.max(t0, new Date(v.effective_from).getTime());
    const to = i + 1 < ordered.length ? Math.min(t1, new Date(ordered[i + 1].effective_from).getTime()) : t1;
    if (to <= from) return;
    for (const rule of v.rules) {
      if (rule.kind !== "threshold" || rule.measurement !== kind) continue;
      for (const [key, cls, label] of LIMIT_KEYS) {
        if (rule[key] !== null && rule[key] !== undefined) segments.push({ from, to, value: rule[key], cls, label, version: v.version });
      }
    }
  });
  return segments;
}
function chart(kind, readings, versions, alerts, t0, t1) {
  const W = 720, H = 220, L = 48, R = 12, T = 12, B = 40;
  const limits = limitSegments(kind, versions, t0, t1);
  const values = readings.map(r => r.value).concat(limits.map(l => l.value));
  let lo = Math.min(...values), hi = Math.max(...values);
  if (hi - lo < 1) { lo -= 1; hi += 1; }
  const pad = (hi - lo) * 0.1; lo -= pad; hi += pad;
  const x = t => L + (W - L - R) * (t - t0) / (t1 - t0);
  const y = v => T + (H - T - B) * (1 - (v - lo) / (hi - lo));
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  const last = readings[readings.length - 1];
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`); svg.setAttribute("class", "chart");
  svg.setAttribute("width", W); svg.setAttribute("height", H); svg.setAttribute("data-measurement", kind);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `${NAMES[kind] || kind}: ${readings.length} värden, senaste ${num(last.value)} ${when(last.measured_at)}`);
  const add = (tag, attrs, text) => { const n = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text; svg.append(n); return n; };
  const days = Math.round((t1 - t0) / DAY);
  const every = Math.max(1, Math.ceil(days / 14));
  for (let d = midnight(t0) + DAY, i = 0; d < t1; d = midnight(d + DAY + 3600000), i++) {
    add("line", { x1: x(d), x2: x(d), y1: T, y2: H - B, class: "day" });
    if (i % every === 0) add("text", { x: x(d), y: H - B + 14, "text-anchor": "middle", class: "day-label" },
      new Date(d).toLocaleDateString("sv-SE", { ...ZONE, day: "numeric", month: "numeric" }));
  }
  add("text", { x: L, y: H - 6, class: "axis-note" }, `Dygn, från ${new Date(t0).toLocaleDateString("sv-SE", ZONE)} till nu`);
  for (const l of limits) {
    add("line", { x1: x(l.from), x2: x(l.to), y1: y(l.value), y2: y(l.value), class: `limit ${l.cls}`, "data-version": l.version });
    // each period's limits are labelled where they end, unless too short to hold the text
    if (l.to === t1 || x(l.to) - x(l.from) > 90) add("text", { x: x(l.to) - 4, y: y(l.value) - 3, "text-anchor": "end" }, `${l.label} gräns ${l.value}`);
  }
  for (const v of versions) {
    const t = new Date(v.effective_from).getTime();
    if (v.version === Math.min(...versions.map(w => w.version)) || t <= t0) continue;
    add("line", { x1: x(t), x2: x(t), y1: T, y2: H - B, class: "rule-change" });
    add("text", { x: x(t) - 3, y: H - B - 4, "text-anchor": "end", class: "rule-label" }, `regler v${v.version}`);
  }
  for (const a of alerts) {
    // where the excursion began: the reading that opened the alert
    const opened = (a.history || []).find(h => h.action === "opened");
    const t = new Date(opened && opened.measured_at ? opened.measured_at : a.opened_at).getTime();
    if (a.measurement !== kind || t < t0) continue;
    add("line", { x1: x(t), x2: x(t), y1: T, y2: H - B, class: "alert-start" });
    add("text", { x: x(t) - 3, y: T + 10, "text-anchor": "end", class: "alert-label" }, `larm ${new Date(t).toLocaleTimeString("sv-SE", { ...ZONE, hour: "2-digit", minute: "2-digit" })}`);
  }
  add("text", { x: 4, y: T + 8 }, hi.toFixed(1)); add("text", { x: 4, y: H - B }, lo.toFixed(1));
  add("polyline", { class: "line", points: readings.map(r => `${x(new Date(r.measured_at).getTime())},${y(r.value)}`).join(" ") });
  for (const r of readings) add("circle", { class: "dot", r: 3, cx: x(new Date(r.measured_at).getTime()), cy: y(r.value) },
                                undefined).append(Object.assign(document.createElementNS(ns, "title"),
                                { textContent: `${when(r.measured_at)}: ${num(r.value)}` }));
  return svg;
}

let colleagues = {};
function assigneeName(id) { return id === "mobile_team" ? "Mobilt team" : (colleagues[id] || id); }
function historyLine(h) {
  if (h.action === "readings" || h.action === "level_raised") return `${when(h.at)} ${h.text}`;
  let note = h.note;
  if (h.action === "assigned") note = assigneeName(h.note);
  if (h.action === "resolve" && note) {
    const [code, ...rest] = note.split(": ");
    if (OUTCOMES[code]) note = [OUTCOMES[code], ...rest].join(": ");
  }
  return `${when(h.at)} ${assigneeName(h.actor)}: ${ACTIONS[h.action] || h.action}${h.value !== null && h.value !== undefined ? " " + num(h.value) : ""}${note ? " – " + note : ""}`;
}
function alertCard(a, card) {
  const noteId = `note-${a.id}`, assignId = `assign-${a.id}`;
  const text = el("textarea", { id: noteId, rows: 2, class: "note-text" });
  const noteForm = el("form", { class: "note-form", onsubmit: e => { e.preventDefault();
    if (text.value.trim()) post(a.id, "notes", { text: text.value.trim() }); } },
    el("label", { for: noteId }, "Ny anteckning"), text, el("button", { type: "submit", class: "note" }, "Spara anteckning"));
  const choices = [el("option", { value: "" }, "Välj kollega eller team"),
    ...(card.colleagues || []).map(c => el("option", { value: c.id }, c.name)),
    card.mobile_team ? el("option", { value: "mobile_team" }, `Mobilt team (${card.mobile_team_name})`) : null];
  const who = el("select", { id: assignId }, ...choices);
  const assignForm = el("form", { class: "assign-form", onsubmit: e => { e.preventDefault();
    if (who.value) post(a.id, "assign", { assignee: who.value }); } },
    el("label", { for: assignId }, "Tilldela"), who, el("button", { type: "submit", class: "assign" }, "Tilldela"));
  return el("section", { class: "card alert", "data-id": a.id, tabindex: "-1", "aria-labelledby": `alert-title-${a.id}` },
    el("h3", { id: `alert-title-${a.id}` }, badge(a), " ", a.explanation),
    el("p", { class: "muted" }, `${ROUTES[a.route]} · ${STATUSES[a.status]} · ${a.occurrences} gånger · regelversion ${a.rule_version}`
      + (a.waiting ? ` · ${a.waiting}` : "") + (a.assignee ? ` · Tilldelad: ${a.assignee_name || assigneeName(a.assignee)}` : "")),
    el("table", { class: "actions" }, el("tbody", {}, el("tr", {}, actions(a)))),
    el("h4", {}, "Händelser"),
    el("ul", { class: "history" }, ...a.history.map(h => el("li", { class: "event-" + h.action }, historyLine(h)))),
    el("h4", {}, `Anteckningar (${a.notes.length})`),
    el("ul", { class: "notes" }, ...a.notes.map(n => el("li", {}, `${when(n.at)} ${assigneeName(n.actor)}: ${n.text}`))),
    noteForm, assignForm);
}
async function post(id, what, body) {
  try { await api(`/api/v1/alerts/${id}/${what}`, { method: "POST", body: JSON.stringify(body) }); showError(); }
  catch (e) { showError(e); return; }
  await route();
  const card = document.querySelector(`section.alert[data-id="${id}"]`);
  if (card) card.focus();
}

async function patient(id) {
  const q = encodeURIComponent(id);
  const since = new Date(Date.now() - 14 * DAY).toISOString();
  const [card, { alerts }, { readings }, rules, { feedback }] = await Promise.all([
    api(`/api/v1/patients/${q}`),
    api(`/api/v1/alerts?patient=${q}`),
    api(`/api/v1/patients/${q}/readings?since=${encodeURIComponent(since)}`),
    api(`/api/v1/patients/${q}/rules`),
    api(`/api/v1/patients/${q}/feedback`)]);
  colleagues = Object.fromEntries((card.colleagues || []).map(c => [c.id, c.name]));
  document.getElementById("patient-title").textContent = card.patient_display || id;
  document.getElementById("patient-card").replaceChildren(
    el("span", {}, `Pseudonym ${card.patient_id}`), el("span", {}, card.unit_name),
    el("span", {}, `Fast vårdkontakt: ${card.fast_vardkontakt_name}`),
    card.mobile_team ? el("span", {}, `Mobilt team: ${card.mobile_team_name}`) : null,
    el("span", {}, `Grupper: ${card.groups.map(g => GROUPS[g] || g).join(", ") || "inga"}`));
  const current = rules.current ? rules.current.rules : [];
  const details = await Promise.all(alerts.map(a => api(`/api/v1/alerts/${a.id}`)));
  document.getElementById("patient-alerts").replaceChildren(...details.map(a => alertCard(a, card)));
  const byKind = {};
  for (const r of readings) (byKind[r.type] = byKind[r.type] || []).push(r);
  const now = Date.now();
  const starts = readings.map(r => new Date(r.measured_at).getTime()).concat(alerts.map(a => new Date(a.opened_at).getTime()));
  const t0 = midnight(Math.min(now - DAY, ...starts));
  document.getElementById("charts").replaceChildren(...Object.entries(byKind).map(([kind, rs]) =>
    el("figure", {}, el("figcaption", {}, NAMES[kind] || kind), chart(kind, rs, rules.versions, details, t0, now))));
  document.getElementById("feedback").replaceChildren(feedback.length ? el("ul", { class: "told" },
    ...feedback.slice(0, 20).map(f => el("li", {}, el("span", { class: "level told-" + f.status }, TOLD[f.status]), ` ${when(f.at)}: ${f.text}`)))
    : el("p", { class: "muted" }, "Inga meddelanden de senaste 14 dygnen."));
  document.getElementById("rules").replaceChildren(
    el("p", { class: "muted" }, rules.current ? `Version ${rules.current.version}, ändrad ${when(rules.current.changed_at)} av ${rules.current.changed_by}: ${rules.current.reason}` : "Inga regler"),
    el("ul", {}, ...current.map(r => el("li", {}, describe(r)))),
    el("details", {}, el("summary", {}, `Alla versioner (${rules.versions.length})`),
      el("ul", {}, ...rules.versions.map(v => el("li", {}, `Version ${v.version}: ${when(v.changed_at)}, ${v.changed_by} – ${v.reason}`)))),
    ruleEditor(id, rules));
}

const EDITABLE = [["yellow_below", "Gul under"], ["red_below", "Röd under"],
  ["yellow_above", "Gul över"], ["red_above", "Röd över"]];

// The patient's limits, changed and previewed before they are saved: what the new limits
// would have raised on her stored readings, beside what today's did.
function ruleEditor(id, rules) {
  const q = encodeURIComponent(id);
  const personal = rules.current ? rules.current.personal : [];
  const thresholds = (rules.current ? rules.current.rules : []).filter(r => r.kind === "threshold");
  const fields = [];
  const rows = thresholds.map(rule => el("tr", {}, el("th", { scope: "row" }, NAMES[rule.measurement] || rule.measurement),
    ...EDITABLE.map(([key, label]) => {
      const input = el("input", { type: "number", step: "any", "aria-label": `${NAMES[rule.measurement] || rule.measurement}: ${label.toLowerCase()}`,
        "data-measurement": rule.measurement, "data-limit": key, value: rule[key] ?? "" });
      fields.push([rule, key, input]);
      return el("td", {}, input);
    })));
  function proposed() {
    const changed = {};
    for (const [rule, key, input] of fields) {
      const value = input.value === "" ? null : Number(input.value);
      if (value !== (rule[key] ?? null)) changed[rule.measurement] = true;
    }
    const kept = personal.filter(r => !(r.kind === "threshold" && changed[r.measurement]));
    const edited = thresholds.filter(r => changed[r.measurement]).map(rule => {
      const next = { ...rule };
      for (const [r, key, input] of fields) if (r === rule) next[key] = input.value === "" ? null : Number(input.value);
      return next;
    });
    return kept.concat(edited);
  }
  const result = el("p", { id: "preview-result", role: "status", "aria-live": "polite" });
  const reason = el("input", { type: "text", id: "rules-reason", size: "40", "aria-label": "Varför ändras gränserna" });
  const preview = el("button", { type: "button", id: "preview-button", onclick: async () => {
    result.textContent = "Räknar …";
    try {
      const out = await api(`/api/v1/patients/${q}/rules/preview`, { method: "POST", body: JSON.stringify({ rules: proposed() }) });
      result.textContent = `${out.text}.`;
    } catch (e) { result.textContent = ""; showError(e); }
  } }, "Förhandsgranska");
  const save = el("button", { type: "button", id: "save-rules", onclick: async () => {
    try {
      await api(`/api/v1/patients/${q}/rules`, { method: "PUT", body: JSON.stringify({ rules: proposed(), reason: reason.value }) });
      await route();
    } catch (e) { showError(e); }
  } }, "Spara gränserna");
  return el("details", { id: "rule-editor" }, el("summary", {}, "Ändra gränserna"),
    el("table", {}, el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Mätning"),
      ...EDITABLE.map(([, label]) => el("th", { scope: "col" }, label)))), el("tbody", {}, ...rows)),
    el("p", {}, el("label", { for: "rules-reason" }, "Varför: "), reason),
    el("p", {}, preview, " ", save), result);
}

async function route() {
  const current = new URLSearchParams(location.hash.slice(1));
  try {
    if (current.get("patient")) { show("patient"); await patient(current.get("patient")); }
    else { show("worklist"); await worklist(); }
    showError();
  } catch (e) { showError(e); }
}
async function navigate() {
  await route();
  const heading = document.getElementById(new URLSearchParams(location.hash.slice(1)).get("patient") ? "patient-title" : "worklist-title");
  if (heading) heading.focus();
}
function refresh() {
  // a re-render would take away what a nurse is typing or where her keyboard focus is
  const active = document.activeElement;
  if (active && (["INPUT", "TEXTAREA", "SELECT", "BUTTON", "A"].includes(active.tagName)
      || active.matches("section.alert")) && document.querySelector("main").contains(active)) return;
  route();
}
async function start() {
  try {
    const me = await api("/api/v1/me");
    document.getElementById("who").textContent = `${me.user} (${me.unit || me.team || "administratör"})`;
  } catch (e) { showError(e); return; }
  await route();
  setInterval(refresh, 10000);
}
window.addEventListener("hashchange", navigate);
for (const id of ["filter-route", "filter-unit", "filter-category", "filter-mine"]) document.getElementById(id).addEventListener("change", worklist);
document.getElementById("home").addEventListener("click", e => { e.preventDefault(); location.hash = ""; });
start();
