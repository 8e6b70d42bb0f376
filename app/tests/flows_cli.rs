//! Capture files through the real binary: `parse --format pcap` and `ingest pcap:FILE`, then
//! the flows in SQL, joined to the sessions of a real strongSwan log.

use std::path::{Path, PathBuf};
use std::process::Command;

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_tunnelwatch")
}

fn testdata(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

fn run(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(binary())
        .args(args)
        .output()
        .expect("run tunnelwatch");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_capture_is_parsed_into_flows_and_ingested_once() {
    let pcap = testdata("gateway/testdata/pcap/any-nano.pcap");
    let pcap = pcap.to_str().expect("utf-8 path");
    let (ok, stdout, stderr) = run(&["parse", "--format", "pcap", pcap, "--hostname", "gw1"]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("92 frames: 90 packets (214478 bytes) in 14 flows"),
        "{stderr}"
    );
    let flows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON event per line"))
        .collect();
    assert_eq!(flows.len(), 14);
    assert!(
        flows
            .iter()
            .all(|flow| flow["observer"]["hostname"] == "gw1")
    );

    let data = tempfile::tempdir().expect("tempdir");
    let data = data.path().to_str().expect("utf-8 path");
    let spec = format!("pcap:{pcap}");
    let (ok, stdout, stderr) = run(&["ingest", "--data", data, &spec]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("stored 14 events (0 already there)"),
        "{stdout}"
    );
    let (ok, stdout, stderr) = run(&["ingest", "--data", data, &spec]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("stored 0 events (14 already there)"),
        "{stdout}"
    );
    let (ok, stdout, stderr) = run(&[
        "sql",
        "--data",
        data,
        "--format",
        "csv",
        "SELECT source_ip, destination_port, network_transport, destination_bytes > 200000 AS big, vpn_flow_end \
         FROM flows WHERE destination_port = 8080 ORDER BY timestamp",
    ]);
    assert!(ok, "{stderr}");
    let rows: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        rows,
        [
            "source_ip,destination_port,network_transport,big,vpn_flow_end",
            "10.99.0.5,8080,tcp,false,tcp_end",
            "10.99.0.5,8080,tcp,false,tcp_end",
            "fd99::5,8080,tcp,false,tcp_end",
            "10.99.0.5,8080,tcp,true,tcp_end",
        ]
    );
}

#[test]
fn a_cut_or_foreign_capture_is_a_clear_error_and_keeps_what_came_before() {
    let dir = tempfile::tempdir().expect("tempdir");
    let whole = std::fs::read(testdata("gateway/testdata/pcap/eth.pcap")).expect("fixture");
    let cut = dir.path().join("cut.pcap");
    std::fs::write(&cut, &whole[..100_000]).expect("write");
    let cut = cut.to_str().expect("utf-8 path");
    let (ok, stdout, stderr) = run(&["parse", "--format", "pcap", cut]);
    assert!(!ok);
    assert!(
        stderr.contains("the capture ends in the middle of a record at byte"),
        "{stderr}"
    );
    assert_eq!(
        stdout.lines().count(),
        10,
        "the flows before the cut are printed"
    );

    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8 path");
    let (ok, stdout, stderr) = run(&["ingest", "--data", data, &format!("pcap:{cut}")]);
    assert!(!ok);
    assert!(stdout.contains("stored 10 events"), "{stdout}");
    assert!(
        stderr.contains("stopped early (everything before was stored)"),
        "{stderr}"
    );

    let log = testdata("gateway/testdata/charon/cert-ok.log");
    let log = log.to_str().expect("utf-8 path");
    let (ok, _, stderr) = run(&["parse", "--format", "pcap", log]);
    assert!(!ok);
    assert!(stderr.contains("not a pcap or pcapng file"), "{stderr}");
    let (ok, _, stderr) = run(&["parse", "--format", "pcapng", log]);
    assert!(!ok);
    assert!(
        stderr.contains("or pcap (a pcap/pcapng capture)"),
        "{stderr}"
    );
}

#[test]
fn check_config_describes_capture_sources_and_refuses_bad_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, source: &str| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "[gateway]\nserver_url = \"http://127.0.0.1:1\"\nstate_dir = \"{}\"\n\n[[gateway.sources]]\n{source}\n",
                dir.path().join("state").display()
            ),
        )
        .expect("write config");
        path.to_str().expect("utf-8 path").to_owned()
    };
    let good = write(
        "good.toml",
        "type = \"capture\"\ninterface = \"ipsec0\"\nvpn_pool = [\"10.99.0.0/24\"]\napi_subnets = [\"198.51.100.0/24\"]\nidle_timeout_secs = 10",
    );
    let (ok, stdout, stderr) = run(&["check-config", &good]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(
            "flows captured on ipsec0 (VPN pool: 10.99.0.0/24; APIs: 198.51.100.0/24) through a TPACKET_V3 ring"
        ),
        "{stdout}"
    );
    let pnet = write(
        "pnet.toml",
        "type = \"capture\"\ninterface = \"ipsec0\"\nring = \"pnet\"",
    );
    let (ok, stdout, stderr) = run(&["check-config", &pnet]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(
            "flows captured on ipsec0 (VPN pool: any; APIs: any) through pnet, one system call per frame"
        ),
        "{stdout}"
    );
    for (name, source, error) in [
        (
            "timeouts.toml",
            "type = \"capture\"\ninterface = \"ipsec0\"\nidle_timeout_secs = 60\nactive_timeout_secs = 10",
            "active_timeout_secs (10) must not be shorter than idle_timeout_secs (60)",
        ),
        (
            "iface.toml",
            "type = \"capture\"\ninterface = \"../../etc\"",
            "is not an interface name",
        ),
        (
            "pool.toml",
            "type = \"capture\"\ninterface = \"ipsec0\"\nvpn_pool = [\"10.99.0.0/33\"]",
            "`10.99.0.0/33` is not a network",
        ),
        (
            "ring.toml",
            "type = \"capture\"\ninterface = \"ipsec0\"\nring = \"pcap\"",
            "ring = \"pcap\" is not a way to read an interface (write \"tpacket_v3\", the default, or \"pnet\")",
        ),
        (
            "typo.toml",
            "type = \"capture\"\ninterface = \"ipsec0\"\nidle_timout_secs = 5",
            "idle_timout_secs",
        ),
    ] {
        let path = write(name, source);
        let (ok, _, stderr) = run(&["check-config", &path]);
        assert!(!ok, "{name} was accepted");
        assert!(stderr.contains(error), "{name}: {stderr}");
    }
}
