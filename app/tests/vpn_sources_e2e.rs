//! The gateway agent's live sources against real strongSwan: the agent follows the
//! gateway's charon over VICI and receives charon's own RADIUS accounting (eap-radius with
//! `accounting = yes`, sent to the agent instead of FreeRADIUS) while real clients log in and out with every method, fail,
//! get terminated, die, rekey, and while charon itself restarts and the server is away
//! for 30 seconds. At the end the store holds exactly the expected logins, failures and
//! sessions: nothing lost, nothing twice.
//!
//! The server and the agent run inside the testbed gateway's network namespace (as they
//! would on the VPN host); the test reads the store with `tunnelwatch sql --data`.
//! Needs root and Debian's strongSwan and FreeRADIUS packages (installed by the testbed
//! when missing; a missing prerequisite fails the test with a clear message).

#![cfg(feature = "server")]
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::{Daemon, wait_for};
use testbed::{Client, Credential, Options, Testbed};

struct Setup {
    testbed: Testbed,
    work: tempfile::TempDir,
    config: PathBuf,
}

impl Setup {
    fn data(&self) -> PathBuf {
        self.work.path().join("data")
    }

    fn server(&self, log: &str) -> Daemon {
        let mut command = self.testbed.gateway_command(Path::new(support::binary()));
        command.args(["server", "--config", self.config.to_str().unwrap()]);
        Daemon::spawn_command("server", command, &self.work.path().join(log))
    }

    fn gateway(&self) -> Daemon {
        let mut command = self.testbed.gateway_command(Path::new(support::binary()));
        command.args(["gateway", "--config", self.config.to_str().unwrap()]);
        Daemon::spawn_command("gateway", command, &self.work.path().join("gateway.log"))
    }

    /// Waits until `query` answers `expected` (the pipeline is asynchronous).
    fn wait_for_rows(&self, query: &str, expected: &str) {
        let data = self.data();
        let mut last = String::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            if let Some(rows) = support::try_sql_csv(&data, query) {
                if rows == expected {
                    return;
                }
                last = rows;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let gateway_log =
            std::fs::read_to_string(self.work.path().join("gateway.log")).unwrap_or_default();
        let sessions = support::try_sql_csv(
            &data,
            "select session_id, user_name, vpn_ike_sa_ids, vpn_virtual_ip, event_start, event_end, vpn_state, vpn_terminate_cause, vpn_accounting_id from sessions order by event_start",
        )
        .unwrap_or_default();
        let accounting = support::try_sql_csv(
            &data,
            "select timestamp, event_action, vpn_ike_sa_id, vpn_accounting_id, session_id from events where event_dataset = 'radius.accounting' order by timestamp",
        )
        .unwrap_or_default();
        panic!(
            "{query}\nexpected:\n{expected}\ngot:\n{last}\nsessions:\n{sessions}\naccounting:\n{accounting}\ngateway log (tail):\n{}",
            gateway_log
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

fn setup() -> Setup {
    let acct_port = 18_813;
    let testbed = Testbed::up(Options {
        radius: true,
        radius_acct_port: Some(acct_port),
        ..Options::default()
    })
    .unwrap_or_else(|error| panic!("the strongSwan testbed did not come up: {error}"));
    let work = tempfile::tempdir().unwrap();
    let vici = format!(
        "type = \"vici\"\nsocket = \"{}\"",
        testbed.vici_socket().display()
    );
    let config_path = support::live_agent_config(work.path(), &vici, 18_080, acct_port);
    Setup {
        testbed,
        work,
        config: config_path,
    }
}

fn login(testbed: &Testbed, client: Client, conn: &str) {
    assert!(
        testbed.connect(client, conn, Credential::Correct).unwrap(),
        "{conn} login of {client:?} failed"
    );
}

fn failed_login(testbed: &Testbed, client: Client, conn: &str, credential: Credential) {
    assert!(
        !testbed.connect(client, conn, credential).unwrap(),
        "{conn} login of {client:?} with a wrong credential succeeded"
    );
}

#[test]
fn every_vpn_event_reaches_the_store_exactly_once() {
    let setup = setup();
    let testbed = &setup.testbed;
    let server = setup.server("server.log");
    let gateway = setup.gateway();
    // The agent is following charon once it reconciled (an empty list).
    wait_for(
        "the agent to follow charon",
        Duration::from_secs(30),
        || {
            std::fs::read_to_string(setup.work.path().join("gateway.log"))
                .ok()
                .filter(|log| log.contains("following charon over VICI"))
        },
    );

    // Every method, good and bad.
    login(testbed, Client::Client1, "rw-psk");
    testbed.curl(Client::Client1).unwrap();
    testbed.disconnect(Client::Client1).unwrap();
    failed_login(
        testbed,
        Client::Client2,
        "rw-psk",
        Credential::WrongPsk("wrong-psk".to_owned()),
    );
    login(testbed, Client::Client1, "rw-cert");
    testbed.disconnect(Client::Client1).unwrap();
    login(testbed, Client::Client2, "rw-eap");
    testbed.disconnect(Client::Client2).unwrap();
    failed_login(
        testbed,
        Client::Client1,
        "rw-eap",
        Credential::WrongEapPassword("wrong-password".to_owned()),
    );
    login(testbed, Client::Client2, "rw-radius");
    testbed.disconnect(Client::Client2).unwrap();
    failed_login(
        testbed,
        Client::Client1,
        "rw-radius",
        Credential::WrongEapPassword("wrong-password".to_owned()),
    );
    // The gateway terminates a user.
    login(testbed, Client::Client2, "rw-psk");
    testbed.terminate(Client::Client2).unwrap();

    // The server goes away for 30 s; meanwhile a user logs in, is rekeyed and dies (DPD).
    server.stop();
    login(testbed, Client::Client1, "rw-psk");
    testbed.rekey(Client::Client1).unwrap();
    testbed.kill_client(Client::Client1).unwrap();
    std::thread::sleep(Duration::from_secs(30));
    testbed.start_client(Client::Client1).unwrap();
    let _server = setup.server("server-2.log");

    // charon restarts under a connected user, who then logs in again and leaves.
    login(testbed, Client::Client2, "rw-psk");
    testbed.restart_gateway().unwrap();
    login(testbed, Client::Client2, "rw-psk");
    testbed.disconnect(Client::Client2).unwrap();

    setup.wait_for_rows(
        "select event_outcome, vpn_auth_method, vpn_auth_failure, count(*) as n from auth_events group by 1, 2, 3 order by 1, 2, 3",
        "event_outcome,vpn_auth_method,vpn_auth_failure,n\n\
         failure,eap-mschapv2,eap_failure,1\n\
         failure,eap-radius,radius_reject,1\n\
         failure,psk,psk_mismatch,1\n\
         success,cert,,1\n\
         success,eap-mschapv2,,1\n\
         success,eap-radius,,1\n\
         success,psk,,5\n",
    );
    setup.wait_for_rows(
        "select vpn_state, vpn_terminate_cause, count(*) as n, sum(vpn_rekey_count) as rekeys from sessions group by 1, 2 order by 1, 2",
        "vpn_state,vpn_terminate_cause,n,rekeys\n\
         closed,admin_reset,1,0\n\
         closed,other,1,0\n\
         closed,user_request,5,0\n\
         lost,lost_service,1,1\n",
    );
    // charon's accounting for the same story: a Start and a Stop per IKE_SA that was up
    // (the rekeyed one keeps its Acct-Session-Id), received by the agent's RADIUS receiver.
    setup.wait_for_rows(
        "select event_action, count(*) as n from events where event_dataset = 'radius.accounting' group by 1 order by 1",
        "event_action,n\nsession-start,8\nsession-stop,8\n",
    );
    // Accounting folds into the sessions the VPN's events built, whichever came first: one
    // row per session (the counts above), each with its Acct-Session-Id, and every
    // accounting event carries its session's id.
    setup.wait_for_rows(
        "select count(*) as n, count(distinct vpn_accounting_id) as accounting_ids from sessions",
        "n,accounting_ids\n8,8\n",
    );
    setup.wait_for_rows(
        "select count(*) as unjoined from events e left join sessions s on e.session_id = s.session_id \
         where e.event_dataset = 'radius.accounting' and s.session_id is null",
        "unjoined\n0\n",
    );
    // The collector's figures reach /metrics: the sessions it holds (restored after the
    // restart, then the new ones), and the bad-input counters, present even when zero.
    // (The server listens in the gateway's namespace.)
    let metrics = wait_for("the collector's metrics", Duration::from_secs(10), || {
        let mut curl = testbed.gateway_command(Path::new("curl"));
        curl.args(["-sf", "http://127.0.0.1:18080/metrics"]);
        let output = curl.output().ok()?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.contains("\ntunnelwatch_sessions_in_memory ")
            .then_some(text)
    });
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
    };
    assert!(value("tunnelwatch_sessions_in_memory") >= 1, "{metrics}");
    value("tunnelwatch_sessions_orphan_events_total");
    value("tunnelwatch_sessions_repeated_ends_total");
    value("tunnelwatch_join_unmatched_total");
    assert_eq!(
        value("tunnelwatch_join_pending_dropped_total"),
        0,
        "{metrics}"
    );
    assert_eq!(
        value("tunnelwatch_join_unmatched_dropped_total"),
        0,
        "{metrics}"
    );
    drop(gateway);
}
