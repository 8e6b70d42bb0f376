// tunnelwatch console: polls the JSON API and renders tables. Three views, chosen by the URL
// fragment: the overview (#/), one session and its timeline (#/sessions/ID) and what one user
// touched (#/users/NAME?from=&to=).
//
// Every value is inserted with textContent (or as a property, for links), never as HTML, so
// hostile identities, paths or log lines cannot inject markup; printable() also shows control
// characters (CR, LF, ESC…) and invisible direction overrides as escapes instead of letting
// them hide or reorder text. Links to other views are fragments built with
// encodeURIComponent, so they cannot become javascript: URLs.
"use strict";

const REFRESH_MS = 3000;

// C0 and C1 controls, DEL, zero-width characters and bidirectional overrides.
const INVISIBLE = /[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]/g;
const NAMED_ESCAPES = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };

function printable(value) {
  if (value === null || value === undefined || value === "") return "–";
  return String(value).replace(INVISIBLE, (ch) => {
    if (NAMED_ESCAPES[ch]) return NAMED_ESCAPES[ch];
    const code = ch.charCodeAt(0);
    return code < 0x100
      ? "\\x" + code.toString(16).padStart(2, "0")
      : "\\u{" + code.toString(16) + "}";
  });
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = printable(text);
  if (className) td.className = className;
  return td;
}

function link(text, href) {
  const a = document.createElement("a");
  a.href = href;
  a.textContent = printable(text);
  return a;
}

function linkCell(text, href, className) {
  const td = document.createElement("td");
  if (text === null || text === undefined || text === "") {
    td.textContent = "–";
  } else {
    td.appendChild(link(text, href));
  }
  if (className) td.className = className;
  return td;
}

function sessionHref(id) {
  return "#/sessions/" + encodeURIComponent(id);
}

function userHref(name, from, to) {
  const params = new URLSearchParams();
  if (from) params.set("from", from);
  if (to) params.set("to", to);
  const query = params.toString();
  return "#/users/" + encodeURIComponent(name) + (query ? "?" + query : "");
}

function formatTime(value) {
  if (!value) return "";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return value;
  // Milliseconds only when there are some (flows and API calls come close together).
  return date.toISOString().replace("T", " ").replace(/\.000Z$/, "Z").replace(/Z$/, " UTC");
}

function formatBytes(bytes) {
  if (bytes === null || bytes === undefined) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = Number(bytes);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return (unit === 0 ? value.toFixed(0) : value.toFixed(1)) + " " + units[unit];
}

// ECS durations are nanoseconds.
function formatNanos(nanos) {
  if (nanos === null || nanos === undefined) return "";
  const ms = Number(nanos) / 1e6;
  if (ms < 1000) return (ms < 10 ? ms.toFixed(1) : ms.toFixed(0)) + " ms";
  let seconds = Math.round(ms / 1000);
  const hours = Math.floor(seconds / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  seconds %= 60;
  if (hours > 0) return hours + " h " + minutes + " min";
  if (minutes > 0) return minutes + " min " + seconds + " s";
  return seconds + " s";
}

function between(start, end) {
  const from = new Date(start).getTime();
  const to = new Date(end).getTime();
  if (Number.isNaN(from) || Number.isNaN(to)) return "";
  return formatNanos((to - from) * 1e6);
}

function endpoint(ip, port) {
  if (!ip) return "";
  const host = String(ip).includes(":") ? "[" + ip + "]" : String(ip);
  return port === null || port === undefined ? String(ip) : host + ":" + port;
}

function joined(parts) {
  return parts.filter((part) => part !== null && part !== undefined && part !== "").join(" · ");
}

function plural(count, word) {
  return count + " " + word + (Number(count) === 1 ? "" : "s");
}

function spaced(parts) {
  return parts.filter((part) => part !== null && part !== undefined && part !== "").join(" ");
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
  if (!response.ok) {
    let message = "HTTP " + response.status;
    try {
      const body = await response.json();
      if (body && body.message) message = body.message;
    } catch (_) { /* not JSON */ }
    if (response.status === 401) {
      // Not signed in, or the session ended: the sign-in page brings the user back.
      window.location.assign("/login");
    }
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return response.json();
}

function setStatus(text, className) {
  const status = document.getElementById("status");
  status.textContent = printable(text);
  status.className = "status " + className;
}

// ---- overview -------------------------------------------------------------------------

async function refreshOverview(isCurrent) {
  const [stats, sessions, failures, alerts] = await Promise.all([
    getJson("/api/v1/stats"),
    getJson("/api/v1/sessions?limit=200"),
    getJson("/api/v1/auth-events?outcome=failure&limit=100"),
    // Alerting may be off on this server: the rest of the overview still shows.
    getJson("/api/v1/alerts?status=open&limit=100").catch((error) => ({ error })),
  ]);
  if (!isCurrent()) return;
  const alertsNote = document.getElementById("alerts-note");
  if (alerts.error) {
    alertsNote.textContent = printable(alerts.error.message);
    fill("alerts", [], [], "alerts are not available");
  } else {
    alertsNote.textContent = plural(alerts.total, "open alert");
    fill("alerts", alerts.alerts, [
      (a) => cell(a.status, "state alert-" + a.status),
      (a) => cell(a.severity, "severity severity-" + a.severity),
      (a) => cell(a.rule_name),
      (a) => (a.user ? linkCell(a.user, userHref(a.user), "user") : cell("—", "muted")),
      (a) => cell(a.source_ip || "—", a.source_ip ? "" : "muted"),
      (a) => cell(String(a.count)),
      (a) => cell(formatTime(a.first)),
      (a) => cell(formatTime(a.last)),
      (a) => cell(a.message, "reason"),
    ], "no open alerts");
  }
  document.getElementById("stat-active").textContent = stats.active_sessions;
  document.getElementById("stat-sessions").textContent = stats.sessions;
  document.getElementById("stat-failures").textContent = stats.auth_failures;
  document.getElementById("stat-successes").textContent = stats.auth_successes;
  document.getElementById("stat-rejected").textContent = stats.rejected_lines;
  fill("sessions", sessions.sessions, [
    (s) => linkCell(s.session_id, sessionHref(s.session_id), "mono"),
    (s) => linkCell(s.user_name, userHref(s.user_name), "user"),
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
    (e) => linkCell(e.user_name, userHref(e.user_name), "user"),
    (e) => cell(e.source_ip),
    (e) => cell(e.source_geo_country_iso_code || "unknown", e.source_geo_country_iso_code ? "" : "muted"),
    (e) => cell(e.vpn_auth_method),
    (e) => cell(e.vpn_auth_failure, "failure"),
    (e) => cell(e.event_reason, "reason"),
    (e) => cell(e.observer_hostname),
  ], "no authentication failures");
  return true;
}

// ---- one session ----------------------------------------------------------------------

function fact(list, label, value, href) {
  const dt = document.createElement("dt");
  dt.textContent = label;
  const dd = document.createElement("dd");
  if (href && value) dd.appendChild(link(value, href));
  else dd.textContent = printable(value);
  list.appendChild(dt);
  list.appendChild(dd);
}

function renderSessionFacts(s) {
  const list = document.createElement("dl");
  list.id = "session-facts";
  list.className = "facts";
  fact(list, "User", s.user_name, s.user_name ? userHref(s.user_name) : null);
  for (const [label, key] of [
    ["IKE identity", "vpn_ike_id"], ["EAP identity", "vpn_eap_id"], ["XAuth user", "vpn_xauth_id"],
    ["Certificate", "vpn_cert_subject"], ["Certificate serial", "vpn_cert_serial"],
  ]) {
    if (s[key]) fact(list, label, s[key]);
  }
  fact(list, "Method", s.vpn_auth_method);
  fact(list, "Connection", s.vpn_connection);
  fact(list, "Client", endpoint(s.source_ip, s.source_port));
  fact(list, "Location", joined([s.source_geo_country_iso_code, s.source_geo_city_name]) || "unknown");
  fact(list, "Network", joined([s.source_as_number ? "AS" + s.source_as_number : "", s.source_as_organization_name]));
  fact(list, "Virtual IP", s.vpn_virtual_ip);
  fact(list, "Gateway", s.observer_hostname);
  fact(list, "Start", formatTime(s.event_start));
  fact(list, "End", s.event_end ? formatTime(s.event_end) : "open");
  fact(list, "Duration", s.event_duration !== null ? formatNanos(s.event_duration) : "");
  fact(list, "State", s.vpn_state);
  fact(list, "Terminate cause", s.vpn_terminate_cause);
  fact(list, "Bytes in / out", formatBytes(s.source_bytes) + " / " + formatBytes(s.destination_bytes));
  if (s.source_packets !== null || s.destination_packets !== null) {
    fact(list, "Packets in / out", printable(s.source_packets) + " / " + printable(s.destination_packets));
  }
  fact(list, "Rekeys", s.vpn_rekey_count);
  fact(list, "IKE_SA ids", s.vpn_ike_sa_ids);
  fact(list, "Snapshot", joined(["version " + s.vpn_session_version, formatTime(s.timestamp)]));
  document.getElementById("session-facts").replaceWith(list);
}

// The columns of the timeline, per kind of item: what, result, from, to, bytes, details.
const TIMELINE = {
  auth: (i) => [
    spaced(["login", i.vpn_eap_id || i.vpn_ike_id || i.user_name, i.vpn_auth_method ? "(" + i.vpn_auth_method + ")" : ""]),
    spaced([i.event_outcome, i.vpn_auth_failure ? "(" + i.vpn_auth_failure + ")" : ""]),
    endpoint(i.source_ip, i.source_port),
    "",
    "",
    joined([i.event_reason, i.source_geo_country_iso_code, i.vpn_connection]),
  ],
  event: (i) => [
    i.event_action,
    i.event_outcome || i.vpn_terminate_cause,
    endpoint(i.source_ip, i.source_port),
    endpoint(i.destination_ip, i.destination_port),
    "",
    joined([i.event_reason, i.vpn_virtual_ip ? "virtual IP " + i.vpn_virtual_ip : "", i.error_message]),
  ],
  flow: (i) => [
    spaced([i.network_transport, "flow"]),
    i.vpn_flow_end,
    endpoint(i.source_ip, i.source_port),
    endpoint(i.destination_ip, i.destination_port),
    "↑ " + formatBytes(i.source_bytes) + " / ↓ " + formatBytes(i.destination_bytes),
    joined([
      (Number(i.source_packets) + Number(i.destination_packets)) + " packets",
      between(i.event_start, i.event_end),
      i.vpn_session_join,
    ]),
  ],
  api_request: (i) => [
    spaced([i.http_request_method, (i.url_domain || "") + (i.url_path || "")]),
    i.http_response_status_code,
    i.source_ip,
    endpoint(i.destination_ip, i.destination_port),
    formatBytes(i.http_response_bytes),
    joined([formatNanos(i.event_duration), i.http_request_id ? "request " + i.http_request_id : "", i.vpn_session_join]),
  ],
};

function resultClass(item) {
  if (item.kind === "auth" && item.event_outcome === "failure") return "failure";
  if (item.kind === "api_request" && Number(item.http_response_status_code) >= 400) return "failure";
  return "";
}

function renderTimeline(body) {
  const columns = [(i) => cell(formatTime(i.timestamp)), (i) => cell(i.kind, "kind kind-" + i.kind)];
  for (let index = 0; index < 6; index += 1) {
    columns.push((i) => {
      const values = (TIMELINE[i.kind] || (() => []))(i);
      const className = ["what", index === 1 ? "result " + resultClass(i) : "", "", "", "", "reason"][index];
      return cell(values[index], className);
    });
  }
  fill("timeline", body.timeline, columns, "nothing recorded for this session");
  document.getElementById("timeline-note").textContent =
    plural(body.count, "item") + (body.truncated ? " (the first " + body.limit + "; there are more)" : "");
}

async function refreshSession(id, isCurrent) {
  const body = await getJson("/api/v1/sessions/" + encodeURIComponent(id));
  if (!isCurrent()) return;
  document.getElementById("session-title").textContent = printable(body.session.session_id);
  renderSessionFacts(body.session);
  renderTimeline(body);
  // A closed session does not change: stop polling it.
  return body.session.vpn_state === "active";
}

// ---- one user -------------------------------------------------------------------------

async function refreshUser(name, params, isCurrent) {
  const query = new URLSearchParams();
  if (params.get("from")) query.set("from", params.get("from"));
  if (params.get("to")) query.set("to", params.get("to"));
  const suffix = query.toString() ? "?" + query.toString() : "";
  const body = await getJson("/api/v1/users/" + encodeURIComponent(name) + "/activity" + suffix);
  if (!isCurrent()) return;
  document.getElementById("user-title").textContent = printable(body.user_name);
  document.getElementById("user-from").value = params.get("from") || "";
  document.getElementById("user-to").value = params.get("to") || "";
  const cut = Object.entries(body.truncated).filter(([, value]) => value).map(([key]) => key);
  document.getElementById("user-note").textContent =
    formatTime(body.from) + " to " + formatTime(body.to) + " · " +
    plural(body.totals.sessions, "session") + ", " + plural(body.totals.flows, "flow") + ", " +
    plural(body.totals.api_requests, "API request") +
    (cut.length ? " · showing the first " + body.limit + " " + cut.join(", ") : "");
  fill("user-sessions", body.sessions, [
    (s) => linkCell(s.session_id, sessionHref(s.session_id), "mono"),
    (s) => cell(s.source_ip),
    (s) => cell(s.source_geo_country_iso_code || "unknown", s.source_geo_country_iso_code ? "" : "muted"),
    (s) => cell(s.vpn_virtual_ip),
    (s) => cell(formatTime(s.event_start)),
    (s) => cell(s.event_end ? formatTime(s.event_end) : "open", s.event_end ? "" : "muted"),
    (s) => cell(s.vpn_state, "state state-" + s.vpn_state),
    (s) => cell(s.flows),
    (s) => cell(s.api_requests),
  ], "no sessions in this window");
  fill("user-destinations", body.destinations, [
    (d) => cell(endpoint(d.destination_ip, d.destination_port)),
    (d) => cell(d.network_transport),
    (d) => cell(d.flows),
    (d) => cell(d.sessions),
    (d) => cell(formatBytes(d.source_bytes) + " / " + formatBytes(d.destination_bytes)),
    (d) => cell(d.packets),
    (d) => cell(formatTime(d.first_seen)),
    (d) => cell(formatTime(d.last_seen)),
  ], "no flows in this window");
  fill("user-api-paths", body.api_paths, [
    (p) => cell(p.http_request_method),
    (p) => cell(p.url_domain),
    (p) => cell(p.url_path, "what"),
    (p) => cell(p.requests),
    (p) => cell(p.errors, Number(p.errors) > 0 ? "failure" : ""),
    (p) => cell(p.sessions),
    (p) => cell(formatBytes(p.response_bytes)),
    (p) => cell(formatTime(p.first_seen)),
    (p) => cell(formatTime(p.last_seen)),
  ], "no API requests in this window");
  return false;
}

// ---- routing --------------------------------------------------------------------------

let generation = 0;
let timer = null;

function show(viewId) {
  for (const id of ["view-overview", "view-session", "view-user"]) {
    document.getElementById(id).hidden = id !== viewId;
  }
}

// What the fragment names: a view and its loader. The loader returns whether to poll again.
function parseRoute(hash) {
  const [path, query] = hash.replace(/^#/, "").split("?", 2);
  const parts = path.split("/").filter((part) => part !== "");
  if (parts.length === 2 && parts[0] === "sessions") {
    const id = decodeURIComponent(parts[1]);
    return { view: "view-session", load: (isCurrent) => refreshSession(id, isCurrent) };
  }
  if (parts.length === 2 && parts[0] === "users") {
    const name = decodeURIComponent(parts[1]);
    const params = new URLSearchParams(query || "");
    return { view: "view-user", name, load: (isCurrent) => refreshUser(name, params, isCurrent) };
  }
  return { view: "view-overview", load: refreshOverview };
}

function route() {
  generation += 1;
  const mine = generation;
  const isCurrent = () => mine === generation;
  if (timer !== null) clearTimeout(timer);
  timer = null;
  let current;
  try {
    current = parseRoute(location.hash);
  } catch (error) {
    show("view-overview");
    setStatus("cannot read the address: " + error.message, "error");
    return;
  }
  show(current.view);
  if (current.view === "view-user") {
    document.getElementById("user-window").dataset.user = current.name;
  }
  const tick = async () => {
    try {
      const again = await current.load(isCurrent);
      if (!isCurrent()) return;
      setStatus("live · updated " + new Date().toLocaleTimeString(), "ok");
      if (again) timer = setTimeout(tick, REFRESH_MS);
    } catch (error) {
      if (!isCurrent()) return;
      if (error.status) {
        setStatus(error.message, "error");
      } else {
        setStatus("cannot reach the server: " + error.message, "error");
        timer = setTimeout(tick, REFRESH_MS);
      }
    }
  };
  tick();
}

document.getElementById("user-window").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  location.hash = userHref(
    form.dataset.user || "",
    document.getElementById("user-from").value.trim(),
    document.getElementById("user-to").value.trim(),
  );
});
// Who is signed in: their name and role with a sign-out button, or the anonymous banner.
let csrfToken = null;

async function whoami() {
  const response = await fetch("/api/v1/auth/me", { headers: { accept: "application/json" } });
  if (response.status === 401) {
    window.location.assign("/login");
    return false;
  }
  if (!response.ok) return true;
  const me = await response.json();
  const box = document.getElementById("whoami");
  box.replaceChildren();
  if (me.kind === "anonymous") {
    const banner = document.getElementById("anonymous-banner");
    banner.hidden = false;
    document.getElementById("anonymous-role").textContent = printable(me.role);
    const signIn = link("Sign in", "/login");
    box.appendChild(signIn);
    return true;
  }
  csrfToken = me.csrf_token;
  const who = document.createElement("span");
  who.id = "whoami-name";
  who.textContent = printable(me.name) + " (" + printable(me.role) + ")";
  box.appendChild(who);
  if (me.kind === "user") {
    const button = document.createElement("button");
    button.id = "sign-out";
    button.type = "button";
    button.textContent = "Sign out";
    button.addEventListener("click", signOut);
    box.appendChild(button);
  }
  return true;
}

async function signOut() {
  await fetch("/api/v1/auth/logout", {
    method: "POST",
    headers: { "x-csrf-token": csrfToken || "" },
    credentials: "same-origin",
  });
  window.location.assign("/login");
}

window.addEventListener("hashchange", route);
whoami().then((go) => { if (go) route(); }, () => route());
