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
    /// The CA's name and private key, to sign client certificates later.
    ca_common_name: String,
    ca_key_pem: String,
}

/// A client certificate for mutual TLS and its key, PEM.
#[derive(Debug, Clone)]
pub struct ClientCertificate {
    /// The client's certificate followed by the CA's.
    pub chain_pem: String,
    /// The client's private key, PKCS#8.
    pub key_pem: String,
}

impl TestPki {
    /// A client certificate (client-auth usage) signed by this CA whose subject is
    /// `CN=<common_name>` followed by `O=<organization>` when given.
    ///
    /// # Panics
    /// If rcgen cannot generate keys (it always can here).
    pub fn client_certificate(
        &self,
        common_name: &str,
        organization: Option<&str>,
    ) -> ClientCertificate {
        self.try_client_certificate(common_name, organization)
            .unwrap_or_else(|error| panic!("cannot make a test client certificate: {error}"))
    }

    fn try_client_certificate(
        &self,
        common_name: &str,
        organization: Option<&str>,
    ) -> Result<ClientCertificate, rcgen::Error> {
        let ca_key = rcgen::KeyPair::from_pem(&self.ca_key_pem)?;
        let issuer = rcgen::Issuer::new(ca_params(&self.ca_common_name)?, ca_key);
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        if let Some(organization) = organization {
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationName, organization);
        }
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = rcgen::KeyPair::generate()?;
        let certificate = params.signed_by(&key, &issuer)?;
        Ok(ClientCertificate {
            chain_pem: format!("{}{}", certificate.pem(), self.ca_pem),
            key_pem: key.serialize_pem(),
        })
    }
}

fn ca_params(common_name: &str) -> Result<rcgen::CertificateParams, rcgen::Error> {
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
    Ok(ca_params)
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
    let ca_key = rcgen::KeyPair::generate()?;
    let ca_key_pem = ca_key.serialize_pem();
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params(common_name)?, ca_key)?;
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
        ca_common_name: common_name.to_owned(),
        ca_key_pem,
    })
}
