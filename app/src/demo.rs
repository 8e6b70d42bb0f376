//! `tunnelwatch demo`: the whole system in one process, fed with real strongSwan log lines.
//!
//! The server runs as `tunnelwatch server` would; an in-process gateway agent tails a log
//! file and ships to it over HTTP, exactly as on a VPN host. A replayer writes that log file:
//! real charon captures from the project's testbed (`gateway/testdata/charon`), with fresh
//! timestamps, unique IKE_SA ids and varied users and addresses, first a backlog covering the
//! last half hour, then a new scenario every few seconds. Some users stay connected, so the
//! console shows active sessions next to closed ones and failures.
//!
//! Every replay hands out its own virtual IPs from a pool of 50 × 3 addresses, so addresses
//! come back to other users after a while, as in a real pool. Whoever gets one calls the API
//! behind the VPN: the replayer writes those calls to an nginx JSON access log that the agent
//! tails too, and the collector joins each call to the session that held the address.
//!
//! Without `--geoip`, the collector places addresses with MaxMind's test City database
//! (fake data, built into the binary): each user connects from a home address of their own,
//! and the backlog holds two episodes the shipped rules find, a brute force that worked and
//! an impossible journey (London, then Changchun a quarter of an hour later).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use jiff::{SignedDuration, Timestamp};

use crate::server::{RunningServer, ServerSettings};

/// One real capture and whether its user stays connected until the end of the capture.
struct Scenario {
    name: &'static str,
    text: &'static str,
}

macro_rules! scenario {
    ($name:literal) => {
        Scenario {
            name: $name,
            text: include_str!(concat!("../../gateway/testdata/charon/", $name, ".log")),
        }
    };
}

const SCENARIOS: &[Scenario] = &[
    scenario!("psk-ok"),
    scenario!("psk-wrong"),
    scenario!("cert-ok"),
    scenario!("eap-mschapv2-ok"),
    scenario!("radius-wrong"),
    scenario!("rekey-by-client"),
    scenario!("eap-mschapv2-wrong"),
    scenario!("radius-ok"),
    scenario!("gateway-terminate"),
    scenario!("psk-wrong"),
    scenario!("dpd-lost"),
    scenario!("rekey"),
];

const USERS: &[&str] = &[
    "jsmith", "mlopez", "akhan", "tnguyen", "pmuller", "sdubois", "rsato", "ebrown", "lrossi",
    "kowalski",
];

/// Options of `tunnelwatch demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub listen: String,
    pub data_dir: Option<PathBuf>,
    /// A City database; the replayed clients then connect from [`PUBLIC_CLIENTS`].
    pub geoip: Option<PathBuf>,
}

/// MaxMind's test City database (Apache-2.0 or MIT; fake places), the demo's GeoIP database
/// unless `--geoip` names another.
const DEMO_CITY_DB: &[u8] = include_bytes!("../../collector/testdata/geoip/GeoIP2-City-Test.mmdb");

/// The user of the impossible journey, and where they go.
const TRAVELLER: &str = "lrossi";
const TRAVEL_AWAY: &str = "175.16.199.10";

/// The replayed users' home addresses (by their place in [`USERS`]): ones MaxMind's test
/// databases (`collector/testdata/geoip`) place.
const PUBLIC_CLIENTS: &[&str] = &[
    "81.2.69.142",
    "89.160.20.128",
    "216.160.83.58",
    "2.125.160.217",
    "175.16.199.10",
    "81.2.69.170",
    "89.160.20.115",
    "214.78.120.5",
];

pub async fn run(options: DemoOptions, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let (data_dir, _temp) = match &options.data_dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let temp = tempfile::Builder::new()
                .prefix("tunnelwatch-demo-")
                .tempdir()
                .context("cannot create a temporary data directory")?;
            (temp.path().to_owned(), Some(temp))
        }
    };
    let listener = crate::server::bind(&options.listen).await?;
    let mut store_config = store::Config::for_dir(&data_dir);
    store_config.flush_interval_secs = 2;
    let demo_dir = data_dir.join("demo");
    std::fs::create_dir_all(&demo_dir)
        .with_context(|| format!("cannot create {}", demo_dir.display()))?;
    let city_db = match &options.geoip {
        Some(path) => path.clone(),
        None => {
            let path = demo_dir.join("GeoIP2-City-Test.mmdb");
            std::fs::write(&path, DEMO_CITY_DB)
                .with_context(|| format!("cannot write {}", path.display()))?;
            path
        }
    };
    let mut collector_config = collector::Config::default();
    collector_config.geoip.city_db = Some(city_db.clone());
    // Anonymous visitors browse as viewers (a banner says so); the admin's password is new at
    // every start and printed below; the demo's gateway has a credential of its own.
    let settings = ServerSettings {
        store: store_config,
        collector: collector_config,
        ingest_token: None,
        tls: None,
        client_certificates: false,
        access: dashboards::access::Settings {
            anonymous_role: Some(dashboards::access::Role::Viewer),
            ..dashboards::access::Settings::default()
        },
        allow_unauthenticated_ingest: false,
        alerting: alerting::Config::default(),
    };
    let mut server = RunningServer::start(settings, listener).await?;
    let (admin_password, gateway_token) = {
        let access = server.access.clone();
        tokio::task::spawn_blocking(move || demo_credentials(&access))
            .await
            .context("creating the demo's accounts panicked")??
    };

    let log_path = demo_dir.join("charon.log");
    let api_log_path = demo_dir.join("api-access.json");
    let gateway_config = gateway::Config {
        name: Some("demo-gw".to_owned()),
        server_url: format!("http://{}", server.addr),
        state_dir: demo_dir.join("gateway-state"),
        batch_max_wait_ms: 200,
        poll_interval_ms: 200,
        sources: vec![
            gateway::SourceConfig::File {
                format: gateway::parse::Format::Charon,
                path: log_path.clone(),
                name: None,
                start_at: gateway::StartAt::Beginning,
                json_mapping: None,
            },
            gateway::SourceConfig::File {
                format: gateway::parse::Format::NginxJson,
                path: api_log_path.clone(),
                name: Some("api".to_owned()),
                start_at: gateway::StartAt::Beginning,
                json_mapping: None,
            },
        ],
        ..gateway::Config::default()
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let gateway_task = tokio::spawn(async move {
        gateway::run(&gateway_config, "demo-gw", Some(gateway_token), async {
            let _ = stop_rx.await;
        })
        .await
    });
    let replay_task = tokio::spawn(replay(log_path.clone(), api_log_path.clone()));

    let url = format!("http://{}", server.addr);
    let banner = [
        String::new(),
        "  tunnelwatch demo".to_owned(),
        format!("  console:  {url}   (browse as viewer, or sign in: admin / {admin_password})"),
        format!("  API:      {url}/api/v1/sessions   {url}/api/v1/auth-events"),
        format!(
            "  data:     {}{}",
            data_dir.display(),
            if options.data_dir.is_none() {
                " (temporary; removed on exit)"
            } else {
                ""
            }
        ),
        format!(
            "  log fed:  {} (real strongSwan lines, replayed)",
            log_path.display()
        ),
        format!(
            "  GeoIP:    {}{}",
            city_db.display(),
            if options.geoip.is_none() {
                " (MaxMind's test database: fake places)"
            } else {
                ""
            }
        ),
        format!(
            "  API log:  {} (nginx JSON: the calls the VPN users make)",
            api_log_path.display()
        ),
        format!(
            "  try:      {} sql \"select user_name, event_outcome, source_ip from auth_events\" --data {}",
            std::env::current_exe().map_or_else(
                |_| "tunnelwatch".to_owned(),
                |exe| exe.display().to_string()
            ),
            data_dir.display()
        ),
        "  stop:     Ctrl-C".to_owned(),
        String::new(),
    ];
    #[allow(clippy::print_stderr)]
    for line in banner {
        eprintln!("{line}");
    }

    tokio::select! {
        () = shutdown => {}
        result = server.wait() => {
            replay_task.abort();
            return result;
        }
    }
    replay_task.abort();
    let _ = stop_tx.send(());
    match gateway_task.await {
        Ok(Err(error)) => tracing::warn!(%error, "demo gateway ended with an error"),
        Err(error) => tracing::warn!(%error, "demo gateway task failed"),
        Ok(Ok(())) => {}
    }
    server.shutdown().await
}

/// The demo's admin (a new random password at every start) and its gateway's token.
fn demo_credentials(access: &dashboards::access::Access) -> anyhow::Result<(String, String)> {
    use dashboards::access::{Actor, Grant, Role, secret};
    let actor = Actor::cli("demo");
    let password = secret::hex(&secret::random_bytes::<9>()?);
    if access.users().iter().any(|user| user.name == "admin") {
        access.set_password(&actor, "admin", &password)?;
    } else {
        access.add_user(&actor, "admin", Role::Admin, &password)?;
    }
    if access
        .tokens()
        .iter()
        .any(|token| token.name == "demo-gw" && token.revoked.is_none())
    {
        access.revoke_token(&actor, "demo-gw")?;
    }
    let token = access.create_token(
        &actor,
        "demo-gw",
        Grant::Gateway {
            gateway: "demo-gw".to_owned(),
            client_subject: None,
        },
        None,
    )?;
    Ok((password, token))
}

/// Writes the backlog, then a scenario every few seconds, forever.
async fn replay(log_path: PathBuf, api_log_path: PathBuf) -> anyhow::Result<()> {
    let mut replayer = Replayer {
        public_clients: true,
        ..Replayer::default()
    };
    let now = Timestamp::now();
    // The backlog: every scenario once, over the last 30 minutes. The first three
    // successful logins stay connected.
    let mut lines = Vec::new();
    let mut api_lines = Vec::new();
    for (scenario_idx, scenario) in SCENARIOS.iter().enumerate() {
        let start = now - SignedDuration::from_secs(1800 - 150 * scenario_idx as i64);
        let keep_open = scenario_idx < 4;
        lines.extend(replayer.render(scenario, start, keep_open));
        api_lines.extend(replayer.api_calls(now));
    }
    // A brute force that worked, three minutes ago: twelve wrong pre-shared keys for one account
    // within half a minute, then its success (the alerts page shows what the rules found).
    lines.extend(replayer.brute_force(now - SignedDuration::from_secs(180)));
    // An impossible journey: a login from home (London), and another from Changchun a quarter
    // of an hour later.
    lines.extend(replayer.travel(now - SignedDuration::from_secs(1200)));
    // The log is in time order, as a gateway writes it.
    lines.sort_by_key(|line| log_order(line));
    append_lines(&log_path, &lines)?;
    append_lines(&api_log_path, &api_lines)?;
    let mut scenario_idx = 0usize;
    loop {
        tokio::time::sleep(Duration::from_secs(4)).await;
        let scenario = &SCENARIOS[scenario_idx % SCENARIOS.len()];
        let lines = replayer.render(scenario, Timestamp::now(), false);
        append_lines(&log_path, &lines)?;
        let api_lines = replayer.api_calls(Timestamp::now() + SignedDuration::from_secs(60));
        if !api_lines.is_empty() {
            append_lines(&api_log_path, &api_lines)?;
        }
        scenario_idx += 1;
    }
}

/// The API behind the demo's VPN.
const API_CALLS: &[(&str, &str, u16)] = &[
    ("GET", "/v1/orders", 200),
    ("GET", "/v1/orders/{n}", 200),
    ("POST", "/v1/payments", 201),
    ("GET", "/v1/customers/{n}/invoices", 200),
    ("GET", "/v1/reports/export", 403),
    ("PUT", "/v1/orders/{n}", 200),
    ("GET", "/v1/orders/{n}", 404),
    ("DELETE", "/v1/orders/{n}", 204),
];

/// A virtual IP held from `from` to `to` (the end of its capture, or a while for users who
/// stay connected).
#[derive(Debug, Clone)]
struct DemoLease {
    ip: String,
    from: Timestamp,
    to: Timestamp,
}

/// Where a `%b %e %T` line falls in the log: (month, day, time). (The backlog spans half an
/// hour: a new year inside it is out of order, and harmless.)
fn log_order(line: &str) -> (usize, u32, String) {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = line
        .get(..3)
        .and_then(|month| MONTHS.iter().position(|known| *known == month))
        .unwrap_or(0);
    let day = line
        .get(4..6)
        .and_then(|day| day.trim().parse().ok())
        .unwrap_or(0);
    let time = line.get(7..15).unwrap_or_default().to_owned();
    (month, day, time)
}

fn append_lines(path: &Path, lines: &[String]) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let mut text = lines.join("\n");
    text.push('\n');
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Rewrites captures so that each replay looks like a new connection.
#[derive(Debug, Default)]
struct Replayer {
    n_replays: u64,
    /// Virtual IPs handed out by the last `render`, for `api_calls`.
    leases: Vec<DemoLease>,
    /// Clients from [`PUBLIC_CLIENTS`] rather than documentation addresses.
    public_clients: bool,
    /// Both users of the next renders are this one (the brute-force episode).
    only_user: Option<&'static str>,
    /// Both clients of the next renders connect from here (the journey's second login).
    only_address: Option<&'static str>,
}

impl Replayer {
    /// Twelve failed logins of one account, two seconds apart, then its success.
    fn brute_force(&mut self, start: Timestamp) -> Vec<String> {
        let wrong = SCENARIOS
            .iter()
            .find(|scenario| scenario.name == "psk-wrong");
        let ok = SCENARIOS.iter().find(|scenario| scenario.name == "psk-ok");
        let (Some(wrong), Some(ok)) = (wrong, ok) else {
            return Vec::new();
        };
        self.only_user = Some("kowalski");
        let mut lines = Vec::new();
        for attempt in 0..12 {
            lines.extend(self.render(wrong, start + SignedDuration::from_secs(2 * attempt), false));
        }
        lines.extend(self.render(ok, start + SignedDuration::from_secs(30), false));
        self.only_user = None;
        lines
    }

    /// One user's login from home, then one from [`TRAVEL_AWAY`] 15 minutes later.
    fn travel(&mut self, start: Timestamp) -> Vec<String> {
        let Some(ok) = SCENARIOS.iter().find(|scenario| scenario.name == "psk-ok") else {
            return Vec::new();
        };
        self.only_user = Some(TRAVELLER);
        let mut lines = self.render(ok, start, false);
        self.only_address = Some(TRAVEL_AWAY);
        lines.extend(self.render(ok, start + SignedDuration::from_secs(900), false));
        self.only_address = None;
        self.only_user = None;
        lines
    }

    fn render(&mut self, scenario: &Scenario, start: Timestamp, keep_open: bool) -> Vec<String> {
        self.n_replays += 1;
        let replay = self.n_replays;
        let user_a = self
            .only_user
            .unwrap_or(USERS[(replay as usize * 3) % USERS.len()]);
        let user_b = self
            .only_user
            .unwrap_or(USERS[(replay as usize * 3 + 1) % USERS.len()]);
        let (client_a, client_b) = if let Some(address) = self.only_address {
            (address.to_owned(), address.to_owned())
        } else if self.public_clients {
            // Each user at home: the same address, so the geo rules have nothing to say.
            let home = |user: &str| {
                let index = USERS.iter().position(|known| *known == user).unwrap_or(0);
                PUBLIC_CLIENTS[index % PUBLIC_CLIENTS.len()].to_owned()
            };
            (home(user_a), home(user_b))
        } else {
            (
                format!("203.0.113.{}", 10 + (replay * 7) % 200),
                format!("198.51.100.{}", 20 + (replay * 11) % 200),
            )
        };
        let id_offset = replay * 100;
        // Each replay's addresses come from its own slot of a 50-slot pool.
        let pool_prefix = format!("10.99.{}.", 1 + replay % 50);
        self.leases.clear();
        let lines: Vec<&str> = scenario
            .text
            .lines()
            .filter(|line| line.len() > 16)
            .collect();
        let first_second = lines
            .first()
            .and_then(|line| seconds_of_day(line))
            .unwrap_or(0);
        let mut out = Vec::with_capacity(lines.len());
        for line in lines {
            let offset = seconds_of_day(line)
                .map_or(0, |second| second - first_second)
                .max(0);
            let stamp = (start + SignedDuration::from_secs(offset))
                .strftime("%b %e %T")
                .to_string();
            let body = &line[16..];
            if keep_open
                && (body.contains("received DELETE for")
                    || body.contains("closing CHILD_SA")
                    || body.contains("went offline"))
            {
                // Stop before the disconnect: this user stays online.
                break;
            }
            let body = renumber_ike_sas(body, id_offset)
                .replace("client1@", &format!("{user_a}@"))
                .replace("client2@", &format!("{user_b}@"))
                .replace("'alice'", &format!("'{user_a}'"))
                .replace("'bob'", &format!("'{user_b}'"))
                .replace("'carol'", &format!("'{user_a}'"))
                .replace("'dave'", &format!("'{user_b}'"))
                .replace("192.0.2.11", &client_a)
                .replace("192.0.2.12", &client_b)
                .replace("10.99.0.", &pool_prefix);
            let at = start + SignedDuration::from_secs(offset);
            if let Some(rest) = body.split("assigning virtual IP ").nth(1)
                && let Some(ip) = rest.split_whitespace().next()
            {
                self.leases.push(DemoLease {
                    ip: ip.to_owned(),
                    from: at,
                    to: at,
                });
            }
            for lease in &mut self.leases {
                lease.to = at;
            }
            out.push(format!("{stamp} {body}"));
        }
        if keep_open {
            // Still connected: calls go on for a while.
            for lease in &mut self.leases {
                lease.to += SignedDuration::from_secs(600);
            }
        }
        tracing::debug!(
            scenario = scenario.name,
            replay,
            n_lines = out.len(),
            "replayed a capture"
        );
        out
    }

    /// nginx JSON access-log lines of the calls the last rendered scenario's users made, no
    /// later than `until`: a few per user, spread over the time they held their address.
    fn api_calls(&self, until: Timestamp) -> Vec<String> {
        let mut lines = Vec::new();
        for (lease_idx, lease) in self.leases.iter().enumerate() {
            let to = lease.to.min(until);
            let span = (to - lease.from).as_secs();
            if span < 2 {
                continue;
            }
            let n = 3 + (self.n_replays as usize + lease_idx) % 4;
            for call in 0..n {
                let at = lease.from
                    + SignedDuration::from_secs(1 + (span - 1) * call as i64 / n as i64)
                    + SignedDuration::from_millis(137 * call as i64 % 1000);
                let pick = (self.n_replays as usize * 5 + lease_idx * 3 + call) % API_CALLS.len();
                let (method, path, status) = API_CALLS[pick];
                let path = path.replace(
                    "{n}",
                    &(1000 + (self.n_replays * 37 + call as u64) % 9000).to_string(),
                );
                let bytes = if status < 300 {
                    200 + (pick * 517) % 4000
                } else {
                    0
                };
                let request_time = 0.004 + 0.011 * (call % 5) as f64;
                lines.push(
                    serde_json::json!({
                        "time_iso8601": at.strftime("%Y-%m-%dT%H:%M:%S+00:00").to_string(),
                        "msec": format!("{}.{:03}", at.as_second(), at.subsec_millisecond()),
                        "remote_addr": lease.ip,
                        "request_method": method,
                        "request_uri": path,
                        "host": "api.internal.example",
                        "server_addr": "198.51.100.10",
                        "server_port": "443",
                        "status": status.to_string(),
                        "body_bytes_sent": bytes.to_string(),
                        "request_time": format!("{request_time:.3}"),
                        "request_id": format!("{:032x}", (self.n_replays << 32) | (lease_idx as u64) << 16 | call as u64),
                        "http_user_agent": "orders-client/2.4",
                    })
                    .to_string(),
                );
            }
        }
        lines
    }
}

/// `Nov 25 09:33:12 …` → seconds since midnight.
fn seconds_of_day(line: &str) -> Option<i64> {
    let time = line.get(7..15)?;
    let mut parts = time.split(':').map(|part| part.parse::<i64>().ok());
    Some(parts.next()??.checked_mul(3600)? + parts.next()?? * 60 + parts.next()??)
}

/// Adds `offset` to every IKE_SA unique id in a line: `<rw-psk|3>`, `<3>`, `rw-psk[3]`.
fn renumber_ike_sas(line: &str, offset: u64) -> String {
    let mut out = String::with_capacity(line.len() + 8);
    let bytes = line.as_bytes();
    let mut idx = 0;
    while idx < bytes.len() {
        let ch = bytes[idx];
        let opens_id =
            (ch == b'|' || ch == b'<') || (ch == b'[' && preceded_by_connection_name(&line[..idx]));
        if opens_id {
            let digits = bytes[idx + 1..]
                .iter()
                .take_while(|byte| byte.is_ascii_digit())
                .count();
            let closes = bytes.get(idx + 1 + digits).copied();
            let closing_ok = matches!((ch, closes), (b'|' | b'<', Some(b'>')) | (b'[', Some(b']')));
            if digits > 0
                && closing_ok
                && let Ok(id) = line[idx + 1..idx + 1 + digits].parse::<u64>()
            {
                out.push(ch as char);
                out.push_str(&(id + offset).to_string());
                idx += 1 + digits;
                continue;
            }
        }
        let next = line[idx..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&line[idx..idx + next]);
        idx += next;
    }
    out
}

/// Connection names of the captures all start with `rw-`; addresses (`192.0.2.1[500]`) do not.
fn preceded_by_connection_name(before: &str) -> bool {
    let word = before.rsplit([' ', '<', '|']).next().unwrap_or("");
    word.starts_with("rw-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renumbering_touches_ike_sa_ids_only() {
        assert_eq!(
            renumber_ike_sas(
                "<rw-psk|3> IKE_SA rw-psk[3] established between 192.0.2.1[gw]...192.0.2.11[c] <4> net{1}",
                100
            ),
            "<rw-psk|103> IKE_SA rw-psk[103] established between 192.0.2.1[gw]...192.0.2.11[c] <104> net{1}"
        );
        assert_eq!(
            renumber_ike_sas("received packet: from 192.0.2.11[4500]", 100),
            "received packet: from 192.0.2.11[4500]"
        );
        assert_eq!(renumber_ike_sas("é<", 1), "é<");
    }

    #[test]
    fn every_scenario_renders_with_fresh_times() {
        let mut replayer = Replayer::default();
        let start: Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        for scenario in SCENARIOS {
            let lines = replayer.render(scenario, start, false);
            assert!(!lines.is_empty(), "{}", scenario.name);
            assert!(
                lines[0].starts_with("Nov 25 10:00:00 "),
                "{}: {}",
                scenario.name,
                lines[0]
            );
            assert!(
                lines
                    .iter()
                    .all(|line| !line.contains("client1@") && !line.contains("192.0.2.11")),
                "{}",
                scenario.name
            );
        }
        let open = replayer.render(&SCENARIOS[0], start, true);
        assert!(open.iter().all(|line| !line.contains("went offline")));
    }

    /// The demo's brute force, as charon lines through the real parser and the shipped rules:
    /// the spike and the brute force that worked fire, each once.
    #[test]
    fn the_brute_force_episode_fires_the_shipped_rules() {
        use gateway::parse::{Format, LogClock, ParseOptions, Parser};
        let mut replayer = Replayer::default();
        let start: Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        let lines = replayer.brute_force(start);
        let clock = LogClock::new(jiff::tz::TimeZone::UTC, Some(2026), start);
        let mut parser = Parser::new(
            Format::Charon,
            ParseOptions::new("demo/charon".to_owned(), clock),
        );
        let mut events = Vec::new();
        for (seq, line) in lines.iter().enumerate() {
            parser.parse_line(line.as_bytes(), seq as u64 + 1, start, &mut events);
        }
        parser.flush(start, &mut events);
        let rules = alerting::load_rules(&alerting::Config::default())
            .unwrap()
            .into_iter()
            .map(|(rule, _)| rule)
            .collect();
        let mut engine = alerting::Engine::new(rules, alerting::engine::Limits::default());
        let fired: Vec<String> = events
            .iter()
            .flat_map(|event| engine.observe(event))
            .filter(|row| row.action == model::alert::action::FIRED)
            .map(|row| format!("{} {}", row.rule_id, row.user.unwrap_or_default()))
            .collect();
        assert_eq!(
            fired,
            [
                "auth-failure-spike-user kowalski@psk.vpn.test",
                "brute-force-then-success kowalski@psk.vpn.test"
            ]
        );
    }

    /// The demo's journey, through the real parser, the test City database and the shipped
    /// rules: impossible travel (and the new country) fire for the traveller, once each.
    #[test]
    fn the_journey_fires_impossible_travel() {
        use gateway::parse::{Format, LogClock, ParseOptions, Parser};
        let mut replayer = Replayer {
            public_clients: true,
            ..Replayer::default()
        };
        let start: Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        let lines = replayer.travel(start);
        let clock = LogClock::new(jiff::tz::TimeZone::UTC, Some(2026), start);
        let mut parser = Parser::new(
            Format::Charon,
            ParseOptions::new("demo/charon".to_owned(), clock),
        );
        let mut events = Vec::new();
        for (seq, line) in lines.iter().enumerate() {
            parser.parse_line(line.as_bytes(), seq as u64 + 1, start, &mut events);
        }
        parser.flush(start, &mut events);
        let dir = tempfile::tempdir().unwrap();
        let city_db = dir.path().join("city.mmdb");
        std::fs::write(&city_db, DEMO_CITY_DB).unwrap();
        let mut geoip = collector::GeoIp::open(&collector::GeoIpConfig {
            city_db: Some(city_db),
            ..collector::GeoIpConfig::default()
        });
        geoip.enrich_events(&mut events);
        let rules = alerting::load_rules(&alerting::Config::default())
            .unwrap()
            .into_iter()
            .map(|(rule, _)| rule)
            .collect();
        let mut engine = alerting::Engine::new(rules, alerting::engine::Limits::default());
        let fired: Vec<String> = events
            .iter()
            .flat_map(|event| engine.observe(event))
            .filter(|row| row.action == model::alert::action::FIRED)
            .map(|row| format!("{} {}", row.rule_id, row.user.unwrap_or_default()))
            .collect();
        assert_eq!(
            fired,
            [
                "impossible-travel lrossi@psk.vpn.test",
                "new-country lrossi@psk.vpn.test"
            ]
        );
    }

    #[test]
    fn users_call_the_api_from_the_address_they_hold() {
        let mut replayer = Replayer::default();
        let start: Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        let lines = replayer.render(&SCENARIOS[0], start, true);
        let vip = lines
            .iter()
            .find_map(|line| line.split("assigning virtual IP ").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap()
            .to_owned();
        assert!(vip.starts_with("10.99.2."), "{vip}");
        let calls = replayer.api_calls(start + SignedDuration::from_secs(300));
        assert!(calls.len() >= 3, "{calls:?}");
        let mut parser = gateway::parse::Parser::new(
            gateway::parse::Format::NginxJson,
            gateway::parse::ParseOptions::new(
                "demo/api",
                gateway::parse::LogClock::new(jiff::tz::TimeZone::UTC, None, start),
            ),
        );
        let mut events = Vec::new();
        for (seq, call) in calls.iter().enumerate() {
            parser.parse_line(call.as_bytes(), seq as u64, start, &mut events);
        }
        assert_eq!(events.len(), calls.len());
        for event in &events {
            let model::EventBody::ApiRequest(request) = &event.body else {
                panic!("{event:?}");
            };
            assert_eq!(
                request.client_ip.map(|ip| ip.to_string()),
                Some(vip.clone())
            );
            assert!(
                event.timestamp > start
                    && event.timestamp <= start + SignedDuration::from_secs(300)
            );
        }
    }
}
