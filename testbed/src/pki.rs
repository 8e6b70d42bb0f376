//! A throwaway certificate authority for TLS tests: a CA and a server certificate it
//! signed, made fresh per call (no key material in the repository).

/// PEM texts of a fresh CA and of a server certificate it signed.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA certificate: what a client trusts (`tls_ca_file`).
    pub ca_pem: String,
    /// The server's certificate followed by the CA's (`tls_cert_file`).
    pub chain_pem: String,
    /// The server's private key, PKCS#8 (`tls_key_file`).
    pub key_pem: String,
}

/// A CA named `common_name` and a server certificate for `names` (DNS names or IP
/// addresses, e.g. `localhost`, `127.0.0.1`).
///
/// # Panics
/// If rcgen cannot generate keys (it always can here).
pub fn server_certificate(common_name: &str, names: &[&str]) -> TestPki {
    try_server_certificate(common_name, names)
        .unwrap_or_else(|error| panic!("cannot make a test certificate: {error}"))
}

fn try_server_certificate(common_name: &str, names: &[&str]) -> Result<TestPki, rcgen::Error> {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate()?)?;
    let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
    let mut server_params = rcgen::CertificateParams::new(names)?;
    server_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "tunnelwatch test server");
    server_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = rcgen::KeyPair::generate()?;
    let server = server_params.signed_by(&server_key, &ca)?;
    Ok(TestPki {
        ca_pem: ca.pem(),
        chain_pem: format!("{}{}", server.pem(), ca.pem()),
        key_pem: server_key.serialize_pem(),
    })
}
