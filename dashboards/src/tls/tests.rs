//! HTTPS against real TLS clients (reqwest with rustls) on loopback, with a throwaway CA.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use testbed::pki::server_certificate;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

fn client_trusting(ca_pem: &str) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(certificate.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[test]
fn bad_certificates_and_keys_get_clear_errors() {
    let pki = server_certificate("test CA", &["localhost"]);
    let other = server_certificate("other CA", &["localhost"]);
    let check = |cert: &str, key: &str, expected: &str| {
        let error = server_config(cert.as_bytes(), key.as_bytes(), None).unwrap_err();
        assert!(
            error.to_string().contains(expected),
            "expected `{expected}` in `{error}`"
        );
    };
    check("", &pki.key_pem, "holds no PEM certificate");
    check(
        "just some text\r\n\x1b[31m",
        &pki.key_pem,
        "holds no PEM certificate",
    );
    check(
        "-----BEGIN CERTIFICATE-----\n!!not base64!!\n-----END CERTIFICATE-----\n",
        &pki.key_pem,
        "not valid PEM",
    );
    check(&pki.chain_pem, "", "no usable private key");
    check(&pki.chain_pem, &pki.chain_pem, "no usable private key");
    // A key that is not the certificate's.
    check(&pki.chain_pem, &other.key_pem, "do not go together");
    assert!(server_config(pki.chain_pem.as_bytes(), pki.key_pem.as_bytes(), None).is_ok());
}

#[tokio::test]
async fn serves_https_to_trusting_clients_and_survives_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let pki = server_certificate("test CA", &["localhost", "127.0.0.1"]);
    let tls = server_config(pki.chain_pem.as_bytes(), pki.key_pem.as_bytes(), None).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_tls(
        listener,
        tls,
        crate::tests::state(dir.path(), None),
        async {
            let _ = stop_rx.await;
        },
    ));

    // A client that connects and says nothing does not hold up the others.
    let _silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    // Plain HTTP on the TLS port gets no HTTP answer, and the server goes on.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer)).await;
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP was answered: {}",
        String::from_utf8_lossy(&answer)
    );

    for host in ["localhost", "127.0.0.1"] {
        let response = client_trusting(&pki.ca_pem)
            .get(format!("https://{host}:{}/healthz", addr.port()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.text().await.unwrap().contains(r#""status":"ok""#));
    }

    // A client that trusts another CA refuses the server.
    let other = server_certificate("other CA", &["localhost"]);
    let error = client_trusting(&other.ca_pem)
        .get(format!("https://localhost:{}/healthz", addr.port()))
        .send()
        .await
        .unwrap_err();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    assert!(text.contains("UnknownIssuer"), "{text}");

    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
}
