//! Certificates made with rcgen (a chosen expiry), in PEM and DER, beside files that are not
//! certificates.

use super::*;

fn certificate(cn: &str, not_after: (i32, u8, u8)) -> rcgen::Certificate {
    let mut params = rcgen::CertificateParams::new(vec![format!("{cn}.vpn.test")]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.not_before = rcgen::date_time_ymd(2026, 1, 1);
    params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x5f, 0x3a, 0x01]));
    let key = rcgen::KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap()
}

#[test]
fn pem_and_der_certificates_are_read_and_the_rest_named() {
    let dir = tempfile::tempdir().unwrap();
    let soon = certificate("alice", (2027, 1, 15));
    let later = certificate("bob", (2030, 6, 1));
    std::fs::write(
        dir.path().join("clients.pem"),
        format!("{}{}", soon.pem(), later.pem()),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("carol.der"),
        certificate("carol", (2028, 2, 2)).der(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("key.pem"),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("garbage.crt"), [0u8, 1, 2, 3]).unwrap();
    std::fs::write(
        dir.path().join("huge.pem"),
        vec![b'x'; MAX_FILE_BYTES as usize + 1],
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("subdir")).unwrap();
    let (found, problems) = read_dir(dir.path()).unwrap();
    let names: Vec<&str> = found.iter().map(|found| found.subject.as_str()).collect();
    assert_eq!(names, ["CN=carol", "CN=alice", "CN=bob"]);
    assert_eq!(found[1].serial, "5f:3a:01");
    assert_eq!(found[1].not_after.to_string(), "2027-01-15T00:00:00Z");
    let why: Vec<(String, &str)> = problems
        .iter()
        .map(|problem| {
            (
                problem
                    .path
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                problem.why.as_str(),
            )
        })
        .collect();
    assert_eq!(why.len(), 3, "{why:?}");
    assert!(
        why[0].0 == "garbage.crt" && why[0].1.contains("not an X.509 certificate"),
        "{why:?}"
    );
    assert!(
        why[1].0 == "huge.pem" && why[1].1.contains("larger than"),
        "{why:?}"
    );
    assert!(
        why[2].0 == "key.pem" && why[2].1.contains("no CERTIFICATE"),
        "{why:?}"
    );
    // As an event: subject and serial as a peer's certificate identities, the expiry.
    let event = found[1].event(
        model::EventId::new("gw1/certificates@1", 7, 0),
        "gw1",
        "2026-12-07T00:00:00Z".parse().unwrap(),
    );
    assert_eq!(event.body.action(), "certificate-seen");
    let value = |field: &model::fields::Field| {
        (field.event.unwrap())(&event).map(|value| match value {
            model::fields::Value::Str(text) => text.into_owned(),
            model::fields::Value::Time(at) => at.to_string(),
            other => format!("{other:?}"),
        })
    };
    assert_eq!(
        value(&model::fields::VPN_CERT_SERIAL).as_deref(),
        Some("5f:3a:01")
    );
    assert_eq!(
        value(&model::fields::VPN_CERT_SUBJECT).as_deref(),
        Some("CN=alice")
    );
    assert!(
        value(&model::fields::X509_NOT_AFTER)
            .unwrap()
            .starts_with("2027-01-15")
    );
    assert_eq!(value(&model::fields::USER_NAME), None);
}

#[test]
fn a_missing_directory_is_an_error() {
    assert!(read_dir(Path::new("/nonexistent/tunnelwatch-certs")).is_err());
}
