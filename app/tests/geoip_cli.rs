//! `--geoip` on `ingest`, and `check-config` with `[collector.geoip]`: real charon captures
//! whose client addresses are moved from the documentation range (which no database
//! places) to public ones, a City database generated for those, and the stored rows carry
//! country, city, coordinates and AS.

#![cfg(feature = "server")]
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use mmdb_writer::Writer;
use mmdb_writer::ipnet::IpNet;
use support::{run, sql_csv};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../gateway/testdata/charon")
        .join(name)
}

fn city_database(path: &Path) {
    let mut writer = Writer::new("GeoIP2-Enterprise");
    writer
        .insert_value(
            "45.67.89.0/24".parse::<IpNet>().unwrap(),
            support::geo_record(
                "DE",
                "Germany",
                "Hamburg",
                53.55,
                9.99,
                64_500,
                "Example Transit",
            ),
        )
        .unwrap();
    writer
        .insert_value(
            "81.2.69.0/24".parse::<IpNet>().unwrap(),
            support::geo_record(
                "GB",
                "United Kingdom",
                "London",
                51.5142,
                -0.0931,
                64_501,
                "Example Access",
            ),
        )
        .unwrap();
    std::fs::write(path, writer.to_bytes().unwrap()).unwrap();
}

/// A capture with client 192.0.2.11 → 45.67.89.10 and 192.0.2.12 → 81.2.69.142 (the
/// gateway, 192.0.2.1, stays).
fn moved_capture(dir: &Path, name: &str) -> String {
    let text = std::fs::read_to_string(fixture(name)).unwrap();
    let moved = text
        .replace("192.0.2.11", "45.67.89.10")
        .replace("192.0.2.12", "81.2.69.142");
    let path = dir.join(name);
    std::fs::write(&path, moved).unwrap();
    format!("charon:{}", path.display())
}

#[test]
fn ingest_with_geoip_stores_country_city_and_as() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("city.mmdb");
    city_database(&database);
    let data = dir.path().join("data");
    let mut args = vec![
        "ingest".to_owned(),
        "--data".to_owned(),
        data.to_str().unwrap().to_owned(),
        "--year".to_owned(),
        "2025".to_owned(),
        "--geoip".to_owned(),
        database.to_str().unwrap().to_owned(),
    ];
    for name in ["psk-ok.log", "eap-mschapv2-ok.log", "psk-wrong.log"] {
        args.push(moved_capture(dir.path(), name));
    }
    // One capture as it was: documentation addresses are located nowhere.
    args.push(format!("charon:{}", fixture("cert-ok.log").display()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = run(&args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    assert_eq!(
        sql_csv(
            &data,
            "select source_ip, event_outcome, source_geo_country_iso_code, source_geo_country_name, \
             source_geo_city_name, source_geo_location_lat, source_geo_location_lon, source_as_number, \
             source_as_organization_name from auth_events order by source_ip, event_outcome"
        ),
        "source_ip,event_outcome,source_geo_country_iso_code,source_geo_country_name,source_geo_city_name,\
         source_geo_location_lat,source_geo_location_lon,source_as_number,source_as_organization_name\n\
         192.0.2.11,success,,,,,,,\n\
         45.67.89.10,success,DE,Germany,Hamburg,53.55,9.99,64500,Example Transit\n\
         81.2.69.142,failure,GB,United Kingdom,London,51.5142,-0.0931,64501,Example Access\n\
         81.2.69.142,success,GB,United Kingdom,London,51.5142,-0.0931,64501,Example Access\n"
    );
    assert_eq!(
        sql_csv(
            &data,
            "select source_ip, user_name, source_geo_country_iso_code, source_geo_city_name, \
             source_geo_location_lat, source_as_number, source_as_organization_name \
             from sessions order by source_ip"
        ),
        "source_ip,user_name,source_geo_country_iso_code,source_geo_city_name,source_geo_location_lat,\
         source_as_number,source_as_organization_name\n\
         192.0.2.11,client1@cert.vpn.test,,,,,\n\
         45.67.89.10,client1@psk.vpn.test,DE,Hamburg,53.55,64500,Example Transit\n\
         81.2.69.142,bob,GB,London,51.5142,64501,Example Access\n"
    );
    // Every event that names a located client carries its place; the rest none.
    assert_eq!(
        sql_csv(
            &data,
            "select source_geo_city_name, count(*) > 0 as some from events \
             where source_ip is not null group by 1 order by 1"
        ),
        "source_geo_city_name,some\nHamburg,true\nLondon,true\n,true\n"
    );
    assert_eq!(
        sql_csv(
            &data,
            "select count(*) as n from events where source_ip in ('45.67.89.10', '81.2.69.142') \
             and source_geo_city_name is null"
        ),
        "n\n0\n"
    );
}

#[test]
fn geoip_paths_are_checked_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("city.mmdb");
    city_database(&database);

    // ingest: a database named on the command line must be usable.
    let missing = dir.path().join("missing.mmdb");
    let output = run(&[
        "ingest",
        "--data",
        dir.path().join("data").to_str().unwrap(),
        "--geoip",
        missing.to_str().unwrap(),
        &format!("charon:{}", fixture("psk-ok.log").display()),
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--geoip") && stderr.contains("cannot read geoip database"),
        "{stderr}"
    );

    // check-config names the databases it found …
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[collector.geoip]\ncity_db = {:?}\nasn_db = {:?}\ncache_size = 1000\nreload_check_secs = 10\n",
            database.display(),
            database.display()
        ),
    )
    .unwrap();
    let output = run(&["check-config", config.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "[collector.geoip] city_db {}: GeoIP2-Enterprise built",
            database.display()
        )),
        "{stdout}"
    );
    assert!(stdout.contains("[collector.geoip] asn_db"), "{stdout}");

    // … and fails clearly on one it cannot use.
    let garbage = dir.path().join("garbage.mmdb");
    std::fs::write(&garbage, b"not a database").unwrap();
    for (path, needle) in [
        (&missing, "cannot read geoip database"),
        (&garbage, "could not find MaxMind DB metadata"),
    ] {
        std::fs::write(
            &config,
            format!("[collector.geoip]\ncity_db = {:?}\n", path.display()),
        )
        .unwrap();
        let output = run(&["check-config", config.to_str().unwrap()]);
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("[collector.geoip] city_db") && stderr.contains(needle),
            "{stderr}"
        );
    }
    std::fs::write(&config, "[collector.geoip]\ncity_path = \"/x\"\n").unwrap();
    let output = run(&["check-config", config.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown field `city_path`"));
}

/// A server lives with a broken database (lookups say "unknown"), and says so in its health:
/// `/healthz` is "degraded" and `/api/v1/health` names the database and what is wrong.
#[test]
fn a_broken_database_shows_in_the_servers_health() {
    let dir = tempfile::tempdir().unwrap();
    let whole = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../collector/testdata/geoip/GeoIP2-City-Test.mmdb"),
    )
    .unwrap();
    let broken = dir.path().join("city.mmdb");
    std::fs::write(&broken, &whole[..whole.len() / 2]).unwrap();
    let port = support::free_port();
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\ndata_dir = \"{}\"\n\n[dashboards]\nlisten = \"127.0.0.1:{port}\"\nanonymous_role = \"analyst\"\nallow_unauthenticated_ingest = true\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let server = support::Daemon::spawn(
        "server",
        &[
            "server",
            "--config",
            config.to_str().unwrap(),
            "--geoip",
            broken.to_str().unwrap(),
        ],
        &dir.path().join("server.log"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let health = support::wait_for(
        "the health to name the database",
        Duration::from_secs(20),
        || {
            let health = support::get_json(&format!("{base}/api/v1/health"))?;
            (health["collector"]["geoip"]["city"]["state"] == "unusable").then_some(health)
        },
    );
    assert_eq!(health["status"], "degraded", "{health:#}");
    let problems = health["problems"].to_string();
    assert!(problems.contains("geoip city database"), "{health:#}");
    assert_eq!(
        health["collector"]["geoip"]["asn"]["state"], "not_configured",
        "{health:#}"
    );
    let healthz = support::get_json(&format!("{base}/healthz")).unwrap();
    assert_eq!(healthz["status"], "degraded", "{healthz:#}");
    server.stop();
}

/// Where users logged in from, learnt by `ingest` of old logs, is known to the server started
/// after it: alice's first live login from another country fires new-country at once (a
/// server that knew nothing would only learn from it).
#[test]
fn a_server_knows_what_ingest_of_old_logs_taught_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("city.mmdb");
    city_database(&database);
    let data = dir.path().join("data");
    // The history: client1 logged in from Hamburg (DE) in November.
    let output = run(&[
        "ingest",
        "--data",
        data.to_str().unwrap(),
        "--year",
        "2026",
        "--geoip",
        database.to_str().unwrap(),
        &moved_capture(dir.path(), "psk-ok.log"),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let learnt = std::fs::read_to_string(data.join("alerting/learnt.json")).unwrap();
    assert!(
        learnt.contains("client1@psk.vpn.test") && learnt.contains("DE"),
        "{learnt}"
    );

    // A server on the same data, and client1 now logging in from London (GB).
    let port = support::free_port();
    let token = dir.path().join("ingest.token");
    std::fs::write(&token, "geo-token\n").unwrap();
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\ndata_dir = {:?}\nflush_interval_secs = 1\n\n[collector.geoip]\ncity_db = {:?}\n\n[dashboards]\nlisten = \"127.0.0.1:{port}\"\nanonymous_role = \"analyst\"\ningest_token_file = {:?}\n",
            data, database, token
        ),
    )
    .unwrap();
    let _server = support::start_server(&config, port, &dir.path().join("server.log"));
    let now = jiff::Timestamp::now();
    let capture = std::fs::read_to_string(fixture("psk-ok.log")).unwrap();
    let live: String = capture
        .lines()
        .filter(|line| line.len() > 16)
        .map(|line| {
            let stamp = now.strftime("%b %e %H:%M:%S").to_string();
            format!("{stamp}{}\n", &line[15..])
        })
        .collect::<String>()
        .replace("192.0.2.11", "81.2.69.142");
    let log = dir.path().join("live.log");
    std::fs::write(&log, live).unwrap();
    let parsed = run(&[
        "parse",
        "--format",
        "charon",
        "--hostname",
        "gw1",
        log.to_str().unwrap(),
    ]);
    assert!(parsed.status.success());
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&parsed.stdout)
        .lines()
        .map(|line| {
            let mut event: serde_json::Value = serde_json::from_str(line).unwrap();
            event["id"]["source"] = "gw1/charon@live".into();
            event
        })
        .collect();
    let client = support::http_client(None);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let status = runtime.block_on(async {
        client
            .post(format!("http://127.0.0.1:{port}/api/v1/ingest"))
            .header("authorization", "Bearer geo-token")
            .json(&serde_json::json!({"gateway": "gw1", "events": events}))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status.as_u16(), 200);
    let alert = support::wait_for("new-country", Duration::from_secs(20), || {
        let body = support::get_json(&format!(
            "http://127.0.0.1:{port}/api/v1/alerts?rule=new-country"
        ))?;
        body["alerts"].as_array()?.first().cloned()
    });
    assert_eq!(alert["user"], "client1@psk.vpn.test", "{alert:#}");
    let reason = alert["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("GB") && reason.contains("seen: DE"),
        "{alert:#}"
    );
}
