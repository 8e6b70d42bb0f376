use model::EventBody;

use super::*;
use crate::sink::SharedSpool;
use crate::spool::Spool;

const SECRET: &[u8] = b"testing123";

/// An Accounting-Request with a correct authenticator for [`SECRET`].
fn request(identifier: u8, attributes: &[(u8, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (kind, value) in attributes {
        body.push(*kind);
        body.push(u8::try_from(value.len() + 2).unwrap());
        body.extend_from_slice(value);
    }
    sign(identifier, &body)
}

fn sign(identifier: u8, body: &[u8]) -> Vec<u8> {
    let length = u16::try_from(packet::HEADER_LEN + body.len()).unwrap();
    let authenticator = packet::request_authenticator(4, identifier, length, body, SECRET);
    let mut datagram = vec![4, identifier];
    datagram.extend_from_slice(&length.to_be_bytes());
    datagram.extend_from_slice(&authenticator);
    datagram.extend_from_slice(body);
    datagram
}

fn handler(clients: Option<Vec<ClientNet>>) -> Handler {
    Handler {
        secret: Secret(SECRET.to_vec()),
        clients,
        stats: Arc::new(RadiusStats::default()),
        duplicates: DuplicateCache::new(DUPLICATE_WINDOW, 100, 1 << 20),
        log: LogThrottle::new(LOG_WINDOW, LOG_BURST),
        observer: Observer {
            hostname: Some("gw1".to_owned()),
            product: None,
        },
    }
}

fn sink(dir: &Path) -> Sink {
    let spool = SharedSpool::new(Spool::open(dir, 1 << 20).unwrap());
    Sink::new(spool, "gw1/radius@1".to_owned(), 0, 100)
}

fn from() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 40000))
}

#[test]
fn client_nets() {
    let net = |text: &str| text.parse::<ClientNet>().unwrap();
    let ip = |text: &str| text.parse::<IpAddr>().unwrap();
    assert!(net("192.0.2.1").contains(ip("192.0.2.1")));
    assert!(!net("192.0.2.1").contains(ip("192.0.2.2")));
    assert!(net("10.0.0.0/8").contains(ip("10.255.0.1")));
    assert!(net("10.1.2.3/8").contains(ip("10.255.0.1")));
    assert!(!net("10.0.0.0/8").contains(ip("11.0.0.1")));
    assert!(net("0.0.0.0/0").contains(ip("203.0.113.9")));
    assert!(!net("0.0.0.0/0").contains(ip("2001:db8::1")));
    assert!(net("10.0.0.0/8").contains(ip("::ffff:10.0.0.1")));
    assert!(net("::ffff:10.0.0.1").contains(ip("10.0.0.1")));
    assert!(net("2001:db8::/32").contains(ip("2001:db8:ffff::1")));
    assert!(!net("2001:db8::/32").contains(ip("2001:db9::1")));
    assert!(net("::/0").contains(ip("::1")));
    assert_eq!(net("10.0.0.0/8").to_string(), "10.0.0.0/8");
    for bad in [
        "",
        "10.0.0.0/33",
        "::/129",
        "10.0.0.0/",
        "10.0.0.0/-1",
        "host",
        "10.0.0/8",
    ] {
        assert!(bad.parse::<ClientNet>().is_err(), "{bad}");
    }
}

#[test]
fn configuration() {
    let config: RadiusConfig =
        serde_json::from_str(r#"{"secret_file": "/etc/tw/radius"}"#).unwrap();
    assert_eq!(config, RadiusConfig::new("/etc/tw/radius"));
    assert_eq!(config.listen.to_string(), "0.0.0.0:1813");
    let config: RadiusConfig = serde_json::from_str(
        r#"{"listen": "127.0.0.1:1814", "secret_file": "s", "clients": ["192.0.2.0/24", "::1"]}"#,
    )
    .unwrap();
    assert_eq!(config.clients.unwrap().len(), 2);
    let error =
        serde_json::from_str::<RadiusConfig>(r#"{"secret_file": "s", "secret": "x"}"#).unwrap_err();
    assert!(
        error.to_string().contains("unknown field `secret`"),
        "{error}"
    );
    let error =
        serde_json::from_str::<RadiusConfig>(r#"{"secret_file": "s", "clients": ["10.0.0.0/40"]}"#)
            .unwrap_err();
    assert!(
        error.to_string().contains("invalid prefix length"),
        "{error}"
    );
}

#[tokio::test]
async fn the_secret_loses_one_trailing_newline_and_must_not_be_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret");
    for (content, expected) in [
        (&b"s3cret\n"[..], &b"s3cret"[..]),
        (b"s3cret\r\n", b"s3cret"),
        (b"s3cret", b"s3cret"),
        (b" s3 cret \n\n", b" s3 cret \n"),
    ] {
        std::fs::write(&path, content).unwrap();
        assert_eq!(read_secret(&path).await.unwrap().0, expected);
    }
    for empty in [&b""[..], b"\n", b"\r\n"] {
        std::fs::write(&path, empty).unwrap();
        let error = read_secret(&path).await.unwrap_err();
        assert!(error.to_string().contains("is empty"), "{error}");
        assert_eq!(error.kind(), model::ErrorKind::Invalid);
    }
    let error = read_secret(&dir.path().join("missing")).await.unwrap_err();
    assert_eq!(error.kind(), model::ErrorKind::NotFound);
    assert_eq!(format!("{:?}", Secret(b"s3cret".to_vec())), "Secret(..)");
}

#[tokio::test]
async fn bind_refuses_an_empty_client_list() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "s3cret\n").unwrap();
    let mut config = RadiusConfig::new(dir.path().join("secret"));
    config.clients = Some(Vec::new());
    let error = RadiusReceiver::bind(&config).await.unwrap_err();
    assert!(error.to_string().contains("`clients` is empty"), "{error}");
}

#[test]
fn a_session_request_is_answered_after_its_event_and_a_retransmit_only_answered() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = sink(dir.path());
    let mut handler = handler(None);
    let datagram = request(7, &[(40, &[0, 0, 0, 1]), (1, b"carol"), (33, b"proxy")]);
    let answer = handler.handle(&datagram, from(), &mut sink).unwrap();
    let event = answer.event.unwrap();
    assert_eq!(event.id.seq, 0);
    assert_eq!(event.dataset, "radius.accounting");
    assert_eq!(event.observer.hostname.as_deref(), Some("gw1"));
    assert!(matches!(event.body, EventBody::Session(_)));
    // The response carries the Proxy-State back.
    assert_eq!(answer.response[..2], [5, 7]);
    assert_eq!(&answer.response[20..], b"\x21\x07proxy");

    let again = handler.handle(&datagram, from(), &mut sink).unwrap();
    assert!(again.event.is_none());
    assert_eq!(again.response, answer.response);
    // The same bytes from another port are another client's request.
    let other_port = SocketAddr::from(([127, 0, 0, 1], 40001));
    let other = handler.handle(&datagram, other_port, &mut sink).unwrap();
    assert_eq!(other.event.unwrap().id.seq, 1);

    let stats = handler.stats.snapshot();
    assert_eq!(
        stats,
        RadiusStatsSnapshot {
            datagrams: 3,
            sessions: 2,
            duplicates: 1,
            ..RadiusStatsSnapshot::default()
        }
    );
}

#[test]
fn forged_and_broken_datagrams_make_no_event() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = sink(dir.path());
    let mut handler = handler(Some(vec!["127.0.0.0/8".parse().unwrap()]));
    let mut forged = request(1, &[(40, &[0, 0, 0, 1]), (1, b"carol")]);
    forged[25] = b'k';
    let mut wrong_code = request(2, &[(40, &[0, 0, 0, 1])]);
    wrong_code[0] = 1;
    let mut bad_length = request(3, &[(40, &[0, 0, 0, 1])]);
    bad_length[3] = 200;
    let cases: [(&[u8], SocketAddr); 5] = [
        (&forged, from()),
        (&wrong_code, from()),
        (&bad_length, from()),
        (&[0u8; 5000], from()),
        (
            &request(4, &[(40, &[0, 0, 0, 1])]),
            SocketAddr::from(([192, 0, 2, 1], 1645)),
        ),
    ];
    for (datagram, source) in cases {
        assert!(handler.handle(datagram, source, &mut sink).is_none());
    }
    assert_eq!(sink.next_seq(), 0, "no event id was taken");
    assert_eq!(
        handler.stats.snapshot(),
        RadiusStatsSnapshot {
            datagrams: 5,
            bad_authenticator: 1,
            wrong_code: 1,
            malformed: 1,
            oversized: 1,
            unknown_client: 1,
            ..RadiusStatsSnapshot::default()
        }
    );
}

#[test]
fn authentic_but_unusable_requests_are_kept_and_answered() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = sink(dir.path());
    let mut handler = handler(None);
    // Broken attribute framing, correctly signed.
    let broken = sign(1, &[40, 6, 0, 0, 0, 1, 1, 1]);
    let answer = handler.handle(&broken, from(), &mut sink).unwrap();
    let event = answer.event.unwrap();
    assert_eq!(event.body.action(), "rejected-malformed");
    assert!(
        event
            .original
            .contains("[malformed: attribute 1 at offset 26 has length 1")
    );
    // No Acct-Status-Type.
    let untyped = request(2, &[(1, b"carol"), (200, b"?")]);
    let answer = handler.handle(&untyped, from(), &mut sink).unwrap();
    assert_eq!(answer.event.unwrap().body.action(), "rejected-malformed");
    // Accounting-On: answered, nothing spooled.
    let on = request(3, &[(40, &[0, 0, 0, 7])]);
    let answer = handler.handle(&on, from(), &mut sink).unwrap();
    assert!(answer.event.is_none());
    assert_eq!(answer.response.len(), 20);
    assert_eq!(
        handler.stats.snapshot(),
        RadiusStatsSnapshot {
            datagrams: 3,
            pipeline_errors: 2,
            ignored: 1,
            unknown_attributes: 1,
            ..RadiusStatsSnapshot::default()
        }
    );
}

#[test]
fn the_log_throttle_lets_a_burst_through_per_window() {
    let start = Instant::now();
    let mut throttle = LogThrottle::new(Duration::from_secs(60), 3);
    let admitted: Vec<Option<u64>> = (0..5).map(|_| throttle.admit(start)).collect();
    assert_eq!(admitted, [Some(0), Some(0), Some(0), None, None]);
    assert_eq!(throttle.admit(start + Duration::from_secs(59)), None);
    assert_eq!(throttle.admit(start + Duration::from_secs(60)), Some(3));
    assert_eq!(throttle.admit(start + Duration::from_secs(61)), Some(0));
}
