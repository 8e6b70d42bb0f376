// tunnelwatch console: polls the JSON API and renders tables. Every value is inserted with
// textContent, never as HTML, so hostile identities in VPN logs cannot inject markup.
"use strict";

const REFRESH_MS = 3000;

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined || text === "" ? "–" : String(text);
  if (className) td.className = className;
  return td;
}

function formatTime(value) {
  if (!value) return "";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return value;
  return date.toISOString().replace("T", " ").replace(/\.\d+Z$|Z$/, " UTC");
}

function formatBytes(bytes) {
  if (bytes === null || bytes === undefined) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = Number(bytes);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return (unit === 0 ? value.toFixed(0) : value.toFixed(1)) + " " + units[unit];
}

function fill(tableId, rows, columns, emptyText) {
  const tbody = document.querySelector("#" + tableId + " tbody");
  const fresh = document.createElement("tbody");
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    const td = cell(emptyText, "empty");
    td.colSpan = columns.length;
    tr.appendChild(td);
    fresh.appendChild(tr);
  }
  for (const row of rows) {
    const tr = document.createElement("tr");
    for (const column of columns) tr.appendChild(column(row));
    fresh.appendChild(tr);
  }
  tbody.replaceWith(fresh);
}

async function getJson(path) {
  const response = await fetch(path, { headers: { accept: "application/json" } });
  if (!response.ok) throw new Error(path + ": HTTP " + response.status);
  return response.json();
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const [stats, sessions, failures] = await Promise.all([
      getJson("/api/v1/stats"),
      getJson("/api/v1/sessions?limit=200"),
      getJson("/api/v1/auth-events?outcome=failure&limit=100"),
    ]);
    document.getElementById("stat-active").textContent = stats.active_sessions;
    document.getElementById("stat-sessions").textContent = stats.sessions;
    document.getElementById("stat-failures").textContent = stats.auth_failures;
    document.getElementById("stat-successes").textContent = stats.auth_successes;
    document.getElementById("stat-rejected").textContent = stats.rejected_lines;
    fill("sessions", sessions.sessions, [
      (s) => cell(s.user_name, "user"),
      (s) => cell(s.source_ip),
      (s) => cell(s.source_geo_country_iso_code || "unknown", s.source_geo_country_iso_code ? "" : "muted"),
      (s) => cell(s.vpn_virtual_ip),
      (s) => cell(s.vpn_auth_method),
      (s) => cell(formatTime(s.event_start)),
      (s) => cell(s.event_end ? formatTime(s.event_end) : "open", s.event_end ? "" : "muted"),
      (s) => cell(formatBytes(s.source_bytes) + " / " + formatBytes(s.destination_bytes)),
      (s) => cell(s.vpn_state, "state state-" + s.vpn_state),
      (s) => cell(s.observer_hostname),
    ], "no sessions yet");
    fill("failures", failures.auth_events, [
      (e) => cell(formatTime(e.timestamp)),
      (e) => cell(e.user_name, "user"),
      (e) => cell(e.source_ip),
      (e) => cell(e.source_geo_country_iso_code || "unknown", e.source_geo_country_iso_code ? "" : "muted"),
      (e) => cell(e.vpn_auth_method),
      (e) => cell(e.vpn_auth_failure, "failure"),
      (e) => cell(e.event_reason, "reason"),
      (e) => cell(e.observer_hostname),
    ], "no authentication failures");
    status.textContent = "live · updated " + new Date().toLocaleTimeString();
    status.className = "status ok";
  } catch (error) {
    status.textContent = "cannot reach the server: " + error.message;
    status.className = "status error";
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
