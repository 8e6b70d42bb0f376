//! Sessions right on a live gateway: one session per login, whatever arrives first, for the
//! agent's VICI source and for its charon log source, each beside its RADIUS accounting
//! receiver (charon's eap-radius accounting for every IKE_SA), across an agent restart (SIGTERM
//! with a user connected; SIGKILL while a user leaves) and a server restart; and `ingest` of
//! the charon log and FreeRADIUS's own detail file gives the same sessions in either order.
//!
//! Everything is real: strongSwan 5.9.8 and FreeRADIUS in network namespaces (the testbed),
//! the `tunnelwatch` binary as server and agent inside the gateway's namespace. Needs root
//! and Debian's strongSwan and FreeRADIUS packages (installed by the testbed when missing; a
//! missing prerequisite fails with a clear message).

#![cfg(feature = "server")]
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::{Daemon, wait_for};
use testbed::{Client, Credential, Login, Options, Testbed};

/// Where the agent hears of the VPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VpnSource {
    Vici,
    CharonLog,
}

struct Setup {
    testbed: Testbed,
    work: tempfile::TempDir,
    config: PathBuf,
    source: VpnSource,
}

const PORT: u16 = 18_090;
const ACCT_PORT: u16 = 18_813;

impl Setup {
    fn new(source: VpnSource) -> Setup {
        let testbed = Testbed::up(Options {
            radius: true,
            radius_acct_port: Some(ACCT_PORT),
            ..Options::default()
        })
        .unwrap_or_else(|error| panic!("the strongSwan testbed did not come up: {error}"));
        let work = tempfile::tempdir().unwrap();
        let vpn_source = match source {
            VpnSource::Vici => format!(
                "type = \"vici\"\nsocket = \"{}\"",
                testbed.vici_socket().display()
            ),
            VpnSource::CharonLog => format!(
                "type = \"file\"\nformat = \"charon\"\npath = \"{}\"",
                testbed.gateway_log().display()
            ),
        };
        let config_path = support::live_agent_config(work.path(), &vpn_source, PORT, ACCT_PORT);
        Setup {
            testbed,
            work,
            config: config_path,
            source,
        }
    }

    fn data(&self) -> PathBuf {
        self.work.path().join("data")
    }

    fn log(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    fn server(&self, log: &str) -> Daemon {
        let mut command = self.testbed.gateway_command(Path::new(support::binary()));
        command.args(["server", "--config", self.config.to_str().unwrap()]);
        Daemon::spawn_command("server", command, &self.log(log))
    }

    /// Starts the agent and waits until it follows the VPN (VICI: reconciled with charon).
    fn gateway(&self, log: &str) -> Daemon {
        let mut command = self.testbed.gateway_command(Path::new(support::binary()));
        command.args(["gateway", "--config", self.config.to_str().unwrap()]);
        let daemon = Daemon::spawn_command("gateway", command, &self.log(log));
        let needle = match self.source {
            VpnSource::Vici => "following charon over VICI",
            VpnSource::CharonLog => "receiving radius accounting",
        };
        wait_for(
            &format!("the agent to start ({needle})"),
            Duration::from_secs(30),
            || {
                std::fs::read_to_string(self.log(log))
                    .ok()
                    .filter(|text| text.contains(needle))
            },
        );
        daemon
    }

    /// Waits until `query` answers `expected` (the pipeline is asynchronous).
    fn wait_for_rows(&self, query: &str, expected: &str) {
        let data = self.data();
        let mut last = String::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        while std::time::Instant::now() < deadline {
            if let Some(rows) = support::try_sql_csv(&data, query) {
                if rows == expected {
                    return;
                }
                last = rows;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!(
            "{:?} source: {query}\nexpected:\n{expected}\ngot:\n{last}\n{}",
            self.source,
            self.explain()
        );
    }

    /// What the store holds, for a failure message.
    fn explain(&self) -> String {
        let data = self.data();
        let sessions = support::try_sql_csv(
            &data,
            "select session_id, user_name, vpn_connection, vpn_ike_sa_ids, vpn_virtual_ip, event_start, event_end, vpn_state, vpn_terminate_cause, vpn_accounting_id, source_bytes from sessions order by event_start",
        )
        .unwrap_or_default();
        let events = support::try_sql_csv(
            &data,
            "select timestamp, event_dataset, event_action, event_outcome, user_name, vpn_ike_sa_id, vpn_terminate_cause, session_id from events order by timestamp, event_id",
        )
        .unwrap_or_default();
        let agent = std::fs::read_to_string(self.log("gateway.log")).unwrap_or_default();
        format!(
            "sessions:\n{sessions}\nevents:\n{events}\nagent log (tail):\n{}",
            agent.lines().rev().take(20).collect::<Vec<_>>().join("\n")
        )
    }

    /// The one session of `user` that is active now, once it is there.
    fn active_session_of(&self, user: &str) -> String {
        let query = format!(
            "select session_id from sessions where user_name = '{user}' and vpn_state = 'active'"
        );
        let data = self.data();
        wait_for(
            &format!("an active session of {user}"),
            Duration::from_secs(60),
            || {
                let rows = support::try_sql_csv(&data, &query)?;
                let ids: Vec<&str> = rows.lines().skip(1).collect();
                (ids.len() == 1).then(|| ids[0].to_owned())
            },
        )
    }

    /// The server's `/metrics` (Prometheus text).
    fn metrics(&self) -> String {
        let mut curl = self.testbed.gateway_command(Path::new("curl"));
        curl.args(["-sf", &format!("http://127.0.0.1:{PORT}/metrics")]);
        let output = curl.output().unwrap();
        assert!(output.status.success(), "curl: {output:?}");
        String::from_utf8(output.stdout).unwrap()
    }

    /// `/api/v1/sessions?state=active`, as the console asks (the server listens in the
    /// gateway's namespace).
    fn active_sessions_api(&self) -> Vec<String> {
        let mut curl = self.testbed.gateway_command(Path::new("curl"));
        curl.args([
            "-sf",
            &format!("http://127.0.0.1:{PORT}/api/v1/sessions?state=active"),
        ]);
        let output = curl.output().unwrap();
        assert!(output.status.success(), "curl: {output:?}");
        let body: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let rows = body
            .get("sessions")
            .and_then(serde_json::Value::as_array)
            .cloned()
            .unwrap_or_else(|| panic!("no sessions in {body}"));
        let mut users: Vec<String> = rows
            .iter()
            .map(|row| row["user_name"].as_str().unwrap_or("?").to_owned())
            .collect();
        users.sort();
        users
    }
}

/// Sessions in the order of their logins: charon numbers IKE_SAs in that order (log times
/// have whole seconds, so several logins may start in one).
const LOGIN_ORDER: &str = "cast(split_part(vpn_ike_sa_ids, ',', 1) as bigint)";

fn login(testbed: &Testbed, client: Client, conn: &str) {
    assert_eq!(
        testbed.login(client, conn, Credential::Correct).unwrap(),
        Login::Established,
        "{conn} login of {client:?}"
    );
}

/// The whole story against the live gateway, with `source` as the agent's VPN source.
fn live_story(source: VpnSource) {
    let setup = Setup::new(source);
    let testbed = &setup.testbed;
    let server = setup.server("server.log");
    let gateway = setup.gateway("gateway.log");

    // PSK, HTTP through the tunnel, the client leaves.
    login(testbed, Client::Client1, "rw-psk");
    testbed.curl(Client::Client1).unwrap();
    testbed.disconnect(Client::Client1).unwrap();
    // A wrong PSK: no session.
    assert_eq!(
        testbed
            .login(
                Client::Client2,
                "rw-psk",
                Credential::WrongPsk("wrong-psk".to_owned())
            )
            .unwrap(),
        Login::AuthFailed
    );
    // A certificate, rekeyed, then terminated by the gateway by IKE_SA id.
    login(testbed, Client::Client1, "rw-cert");
    testbed.rekey(Client::Client1).unwrap();
    testbed.terminate(Client::Client1).unwrap();
    // EAP checked by charon (bob), terminated by the gateway by connection name.
    login(testbed, Client::Client2, "rw-eap");
    testbed.curl(Client::Client2).unwrap();
    testbed.terminate_connection("rw-eap").unwrap();
    // IKEv1 main mode comes up, quick mode fails (both sides keep the IKE_SA until the
    // client deletes it): no login, no session.
    assert_eq!(
        testbed
            .login(Client::Client1, "l2tp-psk", Credential::Correct)
            .unwrap(),
        Login::ChildSaFailed
    );
    testbed.disconnect(Client::Client1).unwrap();
    // EAP via RADIUS (dave) stays connected.
    login(testbed, Client::Client2, "rw-radius");
    testbed.curl(Client::Client2).unwrap();
    let dave = setup.active_session_of("dave");
    assert_eq!(setup.active_sessions_api(), ["dave"], "listed once");

    // The agent restarts (SIGTERM) while dave is connected: his session goes on.
    gateway.stop();
    std::thread::sleep(Duration::from_secs(2));
    let gateway = setup.gateway("gateway-2.log");
    testbed.curl(Client::Client2).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(setup.active_session_of("dave"), dave, "the same session");
    setup.wait_for_rows(
        "select user_name, count(*) as logins from auth_events where event_outcome = 'success' and user_name = 'dave' group by 1",
        "user_name,logins\ndave,1\n",
    );

    // The agent dies (SIGKILL) while client1 is connected; client1 leaves meanwhile. charon's
    // accounting Stop finds nobody (it gives up retransmitting within the wait).
    login(testbed, Client::Client1, "rw-psk");
    let client1_again = setup.active_session_of("client1@psk.vpn.test");
    drop(gateway);
    testbed.disconnect(Client::Client1).unwrap();
    std::thread::sleep(Duration::from_secs(25));
    let _gateway = setup.gateway("gateway-3.log");

    // The server restarts while dave is connected; then dave leaves.
    server.stop();
    std::thread::sleep(Duration::from_secs(2));
    let _server = setup.server("server-2.log");
    assert_eq!(setup.active_session_of("dave"), dave, "the same session");
    testbed.disconnect(Client::Client2).unwrap();

    // What the VPN says of the login found gone after the agent's death: the VICI source
    // can only say it went while nobody listened; the log source reads the client's delete.
    let found_gone = match source {
        VpnSource::Vici => "lost",
        VpnSource::CharonLog => "user_request",
    };
    // One session per login: its connection, state, end cause, rekeys, IKE_SAs, and the
    // accounting's Acct-Session-Id (for every login charon's accounting reached the agent).
    setup.wait_for_rows(
        &format!("select user_name, vpn_connection, vpn_state, vpn_terminate_cause, vpn_rekey_count, \
         array_length(string_to_array(vpn_ike_sa_ids, ',')) as ike_sas, vpn_virtual_ip is not null as vip, \
         vpn_accounting_id is not null as accounting from sessions order by {LOGIN_ORDER}"),
        &format!(
            "user_name,vpn_connection,vpn_state,vpn_terminate_cause,vpn_rekey_count,ike_sas,vip,accounting\n\
             client1@psk.vpn.test,rw-psk,closed,user_request,0,1,true,true\n\
             client1@cert.vpn.test,rw-cert,closed,admin_reset,1,2,true,true\n\
             bob,rw-eap,closed,admin_reset,0,1,true,true\n\
             dave,rw-radius,closed,user_request,0,1,true,true\n\
             client1@psk.vpn.test,rw-psk,closed,{found_gone},0,1,true,true\n"
        ),
    );
    // The ids stayed: dave's across both restarts, client1's second login's after the kill.
    setup.wait_for_rows(
        &format!(
            "select count(*) as n from sessions where session_id in ('{dave}', '{client1_again}')"
        ),
        "n\n2\n",
    );
    // Bytes: charon's accounting (and VICI's CHILD_SA counters) for the users who sent some.
    setup.wait_for_rows(
        "select user_name, source_bytes > 0 as sent from sessions where vpn_connection in ('rw-eap', 'rw-radius') order by 1",
        "user_name,sent\nbob,true\ndave,true\n",
    );
    // Every login is on its session's timeline, once; every event's session exists.
    setup.wait_for_rows(
        &format!("select s.user_name, count(a.event_id) as logins from sessions s left join auth_events a \
         on a.session_id = s.session_id and a.event_outcome = 'success' group by s.session_id, s.user_name, s.vpn_ike_sa_ids order by {LOGIN_ORDER}"),
        "user_name,logins\n\
         client1@psk.vpn.test,1\n\
         client1@cert.vpn.test,1\n\
         bob,1\n\
         dave,1\n\
         client1@psk.vpn.test,1\n",
    );
    setup.wait_for_rows(
        "select count(*) as dangling from events e left join sessions s on e.session_id = s.session_id \
         where e.session_id is not null and s.session_id is null",
        "dangling\n0\n",
    );
    setup.wait_for_rows(
        "select count(*) as dangling from auth_events a left join sessions s on a.session_id = s.session_id \
         where a.session_id is not null and s.session_id is null",
        "dangling\n0\n",
    );
    // The failures: the wrong PSK, and (VICI) the IKEv1 quick mode; no session for either.
    setup.wait_for_rows(
        "select vpn_connection, count(*) as n from auth_events where event_outcome = 'failure' \
         and session_id is null group by 1 order by 1",
        match source {
            VpnSource::Vici => "vpn_connection,n\nl2tp-psk,1\nrw-psk,1\n",
            VpnSource::CharonLog => "vpn_connection,n\nl2tp-psk,1\nrw-psk,1\n",
        },
    );
    assert!(setup.active_sessions_api().is_empty());
    // Nothing left half-assembled, no accounting made a session of its own, no checkpoint
    // lost (the collector's figures on /metrics).
    let metrics = setup.metrics();
    for (name, expected) in [
        ("tunnelwatch_sessions_pending", 0),
        ("tunnelwatch_sessions_accounting_only_total", 0),
        ("tunnelwatch_sessions_checkpoint_unreadable_total", 0),
    ] {
        let value = metrics
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .and_then(|value| value.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{metrics}"));
        assert_eq!(value, expected, "{name}\n{metrics}");
    }
}

#[test]
fn vici_and_accounting_one_session_per_login_across_restarts() {
    live_story(VpnSource::Vici);
}

#[test]
fn charon_log_and_accounting_one_session_per_login_across_restarts() {
    live_story(VpnSource::CharonLog);
}

/// FreeRADIUS's own `detail` file and the charon log of the same logins, through `ingest`,
/// in either order: the same sessions.
#[test]
fn ingest_gives_the_same_sessions_with_the_detail_file_first_or_last() {
    let testbed = Testbed::up(Options {
        radius: true,
        ..Options::default()
    })
    .unwrap_or_else(|error| panic!("the strongSwan testbed did not come up: {error}"));
    login(&testbed, Client::Client1, "rw-psk");
    testbed.curl(Client::Client1).unwrap();
    login(&testbed, Client::Client2, "rw-radius");
    testbed.rekey(Client::Client2).unwrap();
    testbed.disconnect(Client::Client1).unwrap();
    login(&testbed, Client::Client1, "rw-cert");
    testbed.rekey(Client::Client1).unwrap();
    testbed.terminate(Client::Client1).unwrap();
    login(&testbed, Client::Client1, "rw-eap");
    testbed.terminate_connection("rw-eap").unwrap();
    // The pool gives client1's first address again.
    login(&testbed, Client::Client1, "rw-psk");
    let radacct = testbed.dir().join("gw/radius/log/radacct/127.0.0.1");
    let detail = wait_for(
        "FreeRADIUS's detail file with 8 records",
        Duration::from_secs(30),
        || {
            let file = std::fs::read_dir(&radacct)
                .ok()?
                .flatten()
                .map(|entry| entry.path())
                .find(|path| {
                    path.file_name()
                        .is_some_and(|name| name.to_string_lossy().starts_with("detail-"))
                })?;
            let text = std::fs::read_to_string(&file).ok()?;
            // Five Starts, three Stops (client1's PSK, certificate and EAP logins).
            (text.matches("Acct-Status-Type").count() >= 8).then_some(file)
        },
    );
    let work = tempfile::tempdir().unwrap();
    // The log goes on for hours after these logins (one line, written here in charon's
    // format, two hours after its last): read whole before the detail file, the logins would
    // be long closed when their accounting came, were the files not merged by time.
    let log = std::fs::read_to_string(testbed.gateway_log()).unwrap();
    let year = jiff::tz::Offset::UTC
        .to_datetime(jiff::Timestamp::now())
        .year();
    let last = log.lines().last().unwrap();
    let last_at = jiff::civil::DateTime::strptime("%Y %b %e %T", format!("{year} {}", &last[..15]))
        .unwrap_or_else(|error| panic!("{last}: {error}"));
    let later = last_at + jiff::SignedDuration::from_hours(2);
    let long_log = work.path().join("charon-long.log");
    std::fs::write(
        &long_log,
        format!(
            "{log}{} 05[IKE] <42> 192.0.2.99 is initiating an IKE_SA\n",
            later.strftime("%b %e %T")
        ),
    )
    .unwrap();
    let charon = format!("charon:{}", long_log.display());
    let detail = format!("radius-detail:{}", detail.display());
    let year = year.to_string();
    let query = "select user_name, vpn_connection, vpn_ike_sa_ids, vpn_virtual_ip, event_start, event_end, \
                 vpn_state, vpn_terminate_cause, vpn_rekey_count, vpn_accounting_id, source_bytes, destination_bytes \
                 from sessions order by event_start, vpn_ike_sa_ids";
    let mut answers = Vec::new();
    for (name, first, last) in [
        ("detail-first", &detail, &charon),
        ("detail-last", &charon, &detail),
    ] {
        let data = work.path().join(name);
        let output = support::run(&[
            "ingest",
            "--year",
            &year,
            "--data",
            data.to_str().unwrap(),
            first,
            last,
        ]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let sessions = support::sql_csv(&data, query);
        let dangling = support::sql_csv(
            &data,
            "select count(*) as n from events e left join sessions s on e.session_id = s.session_id \
             where e.session_id is not null and s.session_id is null",
        );
        assert_eq!(dangling, "n\n0\n", "{name}: {sessions}");
        answers.push((name, sessions));
    }
    assert_eq!(answers[0].1, answers[1].1, "{answers:#?}");
    // Five logins, five sessions, each with its Acct-Session-Id; dave's and client1's last
    // are still up.
    let rows: Vec<&str> = answers[0].1.lines().skip(1).collect();
    assert_eq!(rows.len(), 5, "{}", answers[0].1);
    let data = work.path().join("detail-first");
    assert_eq!(
        support::sql_csv(
            &data,
            "select count(*) as n, count(distinct vpn_accounting_id) as accounting, \
             sum(case when vpn_state = 'active' then 1 else 0 end) as active from sessions"
        ),
        "n,accounting,active\n5,5,2\n"
    );
}
