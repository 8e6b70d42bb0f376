//! Brings a real testbed up, logs in with the right and a wrong pre-shared key, and
//! checks what the gateway's charon logged.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::time::Duration;

use testbed::{Client, Credential, Options, Testbed};

#[test]
fn psk_login_good_and_wrong() {
    let tb = Testbed::up(Options::default()).unwrap();

    assert!(
        tb.connect(Client::Client1, "rw-psk", Credential::Correct)
            .unwrap()
    );
    assert!(
        tb.curl(Client::Client1)
            .unwrap()
            .contains("tunnelwatch testbed api")
    );
    assert!(
        !tb.connect(
            Client::Client2,
            "rw-psk",
            Credential::WrongPsk("not-the-key".into())
        )
        .unwrap()
    );

    let success = tb
        .wait_for_gateway_log(
            "authentication of 'client1@psk.vpn.test' with pre-shared key successful",
            Duration::from_secs(5),
        )
        .unwrap();
    assert!(success.contains("<rw-psk|"), "{success}");
    tb.wait_for_gateway_log("IKE_SA rw-psk[", Duration::from_secs(5))
        .unwrap();
    let mismatch = tb
        .wait_for_gateway_log(
            "tried 1 shared key for 'gw.vpn.test' - 'client2@psk.vpn.test', but MAC mismatched",
            Duration::from_secs(5),
        )
        .unwrap();
    assert!(mismatch.contains("[IKE] <rw-psk|"), "{mismatch}");

    // The ike_name = no log has the same messages without the <conn|id> prefix.
    let noname = fs::read_to_string(tb.gateway_log_noname()).unwrap();
    assert!(noname.contains(
        "[IKE] tried 1 shared key for 'gw.vpn.test' - 'client2@psk.vpn.test', but MAC mismatched"
    ));
    assert!(fs::metadata(tb.vici_socket()).is_ok());

    tb.disconnect(Client::Client1).unwrap();
    tb.wait_for_gateway_log(
        "by 'client1@psk.vpn.test' went offline",
        Duration::from_secs(5),
    )
    .unwrap();
    tb.down().unwrap();
}
