//! The IKEv1 L2TP/IPsec connection (`l2tp-psk`) and the gateway terminating a connection by
//! name, against the real testbed: what charon really does on this machine.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::time::Duration;

use testbed::{Client, Credential, Login, Options, Testbed};

#[test]
fn ikev1_quick_mode_fails_and_terminate_by_name_ends_every_sa_of_the_connection() {
    let tb = Testbed::up(Options::default()).unwrap();

    // IKEv1 main mode with the shared PSK comes up; the transport-mode quick mode cannot.
    assert_eq!(
        tb.login(Client::Client1, "l2tp-psk", Credential::Correct)
            .unwrap(),
        Login::ChildSaFailed
    );
    let established = tb
        .wait_for_gateway_log("IKE_SA l2tp-psk[", Duration::from_secs(5))
        .unwrap();
    assert!(
        established.contains("established between 192.0.2.1[192.0.2.1]...192.0.2.11[192.0.2.11]"),
        "{established}"
    );
    tb.wait_for_gateway_log(
        "<l2tp-psk|1> received NO_PROPOSAL_CHOSEN error notify",
        Duration::from_secs(5),
    )
    .unwrap();
    let client_log = fs::read_to_string(tb.client_log(Client::Client1)).unwrap();
    assert!(
        client_log.contains("IPsec SA: unsupported mode"),
        "{client_log}"
    );
    // connect() does not take a half login for a whole one.
    let error = tb
        .connect(Client::Client2, "l2tp-psk", Credential::Correct)
        .unwrap_err();
    assert!(
        error.to_string().contains("CHILD_SA l2tp failed"),
        "{error}"
    );

    // Two users on rw-psk; the gateway terminates the connection by name: both go.
    for client in [Client::Client1, Client::Client2] {
        assert_eq!(
            tb.login(client, "rw-psk", Credential::Correct).unwrap(),
            Login::Established
        );
    }
    tb.terminate_connection("rw-psk").unwrap();
    let log = fs::read_to_string(tb.gateway_log()).unwrap();
    let n_deletes = log
        .lines()
        .filter(|line| line.contains("sending DELETE for IKE_SA rw-psk["))
        .count();
    assert_eq!(n_deletes, 2, "{log}");
    assert!(log.contains("vici terminate IKE_SA 'rw-psk'"), "{log}");
    // The IKEv1 SAs of the other connection stay.
    assert!(
        !log.contains("sending DELETE for IKE_SA l2tp-psk["),
        "{log}"
    );
    assert!(tb.terminate_connection("rw-psk").is_err());

    tb.disconnect(Client::Client1).unwrap();
    tb.wait_for_gateway_log(
        "<l2tp-psk|1> received DELETE for IKE_SA l2tp-psk[1]",
        Duration::from_secs(5),
    )
    .unwrap();
    tb.down().unwrap();
}
