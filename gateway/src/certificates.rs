//! The certificates a gateway holds, read every while from a directory (PEM, one or more per
//! file, or DER) and from charon itself (VICI `list-certs`: what it has loaded): each becomes
//! a [`model::CertificateEvent`] with its subject, serial, issuer and validity, for the rules
//! that watch certificate lifetimes.
//!
//! [`read_dir`] is pure apart from reading the files: what cannot be read or parsed is a
//! [`Problem`] naming the file and why (counted and logged by [`Scanner::run`], never fatal).

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use model::{CertificateEvent, Event, EventBody, Identities, Observer, Peer};
use tokio::sync::watch;

use crate::sink::Sink;

/// Largest certificate file read.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Most files read per scan (the rest are named as a problem).
pub const MAX_FILES: usize = 10_000;
/// The dataset of these events.
pub const DATASET: &str = "tunnelwatch.certificates";

/// One certificate found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub path: PathBuf,
    pub subject: String,
    pub issuer: String,
    /// Hex, colon-separated as strongSwan prints serials (`5f:3a:…`).
    pub serial: String,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
}

/// A file that could not be read as certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: PathBuf,
    pub why: String,
}

/// Reads every regular file of `dir` (not recursively, sorted by name) as certificates.
pub fn read_dir(dir: &Path) -> Result<(Vec<Found>, Vec<Problem>), std::io::Error> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
        .map(|entry| entry.path())
        .collect();
    paths.sort();
    let mut found = Vec::new();
    let mut problems = Vec::new();
    if paths.len() > MAX_FILES {
        problems.push(Problem {
            path: dir.to_owned(),
            why: format!("{} files: only the first {MAX_FILES} are read", paths.len()),
        });
        paths.truncate(MAX_FILES);
    }
    for path in paths {
        match read_file(&path) {
            Ok(certificates) => found.extend(certificates),
            Err(why) => problems.push(Problem { path, why }),
        }
    }
    Ok((found, problems))
}

/// The certificates of one file: PEM (`CERTIFICATE` blocks; keys and CRLs are skipped) or
/// one DER certificate.
pub fn read_file(path: &Path) -> Result<Vec<Found>, String> {
    let size = std::fs::metadata(path)
        .map_err(|error| error.to_string())?
        .len();
    if size > MAX_FILE_BYTES {
        return Err(format!("{size} bytes: larger than {MAX_FILE_BYTES}"));
    }
    let bytes = std::fs::read(path).map_err(|error| error.to_string())?;
    let mut found = Vec::new();
    if bytes.starts_with(b"-----BEGIN") || bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        for pem in x509_parser::pem::Pem::iter_from_buffer(&bytes) {
            let pem = pem.map_err(|error| format!("not valid PEM: {error}"))?;
            if pem.label != "CERTIFICATE" && pem.label != "X509 CERTIFICATE" {
                continue;
            }
            found.push(parse(path, &pem.contents)?);
        }
        if found.is_empty() {
            return Err("no CERTIFICATE in it".to_owned());
        }
    } else {
        found.push(parse(path, &bytes)?);
    }
    Ok(found)
}

fn parse(path: &Path, der: &[u8]) -> Result<Found, String> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der)
        .map_err(|error| format!("not an X.509 certificate: {error}"))?;
    let time = |at: x509_parser::time::ASN1Time| {
        Timestamp::from_second(at.timestamp())
            .map_err(|error| format!("a date out of range: {error}"))
    };
    let serial = certificate
        .raw_serial()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    Ok(Found {
        path: path.to_owned(),
        subject: certificate.subject().to_string(),
        issuer: certificate.issuer().to_string(),
        serial,
        not_before: time(certificate.validity().not_before)?,
        not_after: time(certificate.validity().not_after)?,
    })
}

impl Found {
    /// The certificate as an event of `hostname`'s gateway, seen at `at`.
    pub fn event(&self, id: model::EventId, hostname: &str, at: Timestamp) -> Event {
        Event {
            id,
            timestamp: at,
            dataset: DATASET.to_owned(),
            observer: Observer {
                hostname: Some(hostname.to_owned()),
                product: Some("tunnelwatch".to_owned()),
            },
            original: format!(
                "certificate {} subject=\"{}\" serial={} issuer=\"{}\" not_before={} not_after={}",
                self.path.display(),
                self.subject,
                self.serial,
                self.issuer,
                self.not_before,
                self.not_after
            ),
            session_id: None,
            source_geo: None,
            body: EventBody::Certificate(CertificateEvent {
                peer: Peer {
                    identities: Identities {
                        cert_subject: Some(self.subject.clone()),
                        cert_serial: Some(self.serial.clone()),
                        ..Identities::default()
                    },
                    ..Peer::default()
                },
                issuer: Some(self.issuer.clone()),
                not_before: self.not_before,
                not_after: self.not_after,
                location: Some(self.path.display().to_string()),
            }),
        }
    }
}

/// The X.509 certificates charon has loaded (VICI `list-certs`), located as `vici:<socket>`.
pub async fn read_vici(socket: &Path) -> Result<(Vec<Found>, Vec<Problem>), String> {
    let mut client = crate::vici::client::Client::connect(socket)
        .await
        .map_err(|error| error.to_string())?;
    let (listed, _) = client
        .streamed(
            "list-certs",
            "list-cert",
            &crate::vici::wire::Message::new().with("type", "X509"),
        )
        .await
        .map_err(|error| error.to_string())?;
    let location = PathBuf::from(format!("vici:{}", socket.display()));
    let mut found = Vec::new();
    let mut problems = Vec::new();
    for certificate in listed {
        let Some(crate::vici::wire::Value::Str(der)) = certificate.get("data") else {
            problems.push(Problem {
                path: location.clone(),
                why: "a list-cert event without data".to_owned(),
            });
            continue;
        };
        match parse(&location, der) {
            Ok(one) => found.push(one),
            Err(why) => problems.push(Problem {
                path: location.clone(),
                why,
            }),
        }
    }
    Ok((found, problems))
}

/// The running source: reads the directory and charon now and every `every`.
#[derive(Debug, Clone)]
pub struct Scanner {
    pub dir: Option<PathBuf>,
    pub vici: Option<PathBuf>,
    pub every: Duration,
    pub hostname: String,
}

impl Scanner {
    pub async fn run(self, mut sink: Sink, mut stop: watch::Receiver<bool>) -> crate::Result<()> {
        loop {
            let mut found = Vec::new();
            let mut problems = Vec::new();
            if let Some(dir) = self.dir.clone() {
                let shown = dir.display().to_string();
                match tokio::task::spawn_blocking(move || read_dir(&dir)).await {
                    Ok(Ok((some, bad))) => {
                        found.extend(some);
                        problems.extend(bad);
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(dir = %shown, %error, "cannot read the certificates directory; trying again at the next scan");
                    }
                    Err(error) => tracing::error!(%error, "the certificate scan panicked"),
                }
            }
            if let Some(socket) = &self.vici {
                match read_vici(socket).await {
                    Ok((some, bad)) => {
                        found.extend(some);
                        problems.extend(bad);
                    }
                    Err(error) => {
                        tracing::warn!(socket = %socket.display(), %error, "cannot list charon's certificates; trying again at the next scan");
                    }
                }
            }
            for problem in &problems {
                tracing::warn!(path = %problem.path.display(), why = %problem.why, "a certificate could not be read");
            }
            let now = Timestamp::now();
            let events: Vec<Event> = found
                .iter()
                .map(|certificate| certificate.event(sink.next_id(), &self.hostname, now))
                .collect();
            tracing::info!(
                n_certificates = events.len(),
                n_problems = problems.len(),
                "certificates read"
            );
            if !events.is_empty() && !sink.append(events, &mut stop).await? {
                return Ok(());
            }
            tokio::select! {
                () = tokio::time::sleep(self.every) => {}
                _ = stop.changed() => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests;
