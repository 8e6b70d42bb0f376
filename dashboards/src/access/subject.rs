//! The subject of a client certificate, for gateway credentials bound to one under mutual
//! TLS (`tunnelwatch token create NAME --gateway --client-subject "CN=gw-a, O=Acme"`).
//!
//! A subject is its attributes in certificate order, each `TYPE=value`. The text form is the
//! one `openssl x509 -noout -subject` prints (`CN = gw-a, O = Acme`, spaces optional),
//! with RFC 4514 escapes (`\,` `\+` `\=` `\\`) for those characters inside a value, so a
//! common name that contains `, O=Acme` cannot pass for two attributes. Attribute types
//! compare without regard to case; values exactly. The reversed order (RFC 4514's, what
//! `-nameopt RFC2253` prints) names the same subject.

use std::fmt;

use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::Error;

/// Longest subject text accepted.
pub const MAX_SUBJECT_LEN: usize = 1024;

/// A certificate subject: `(TYPE, value)` in certificate order, types upper-case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject(Vec<(String, String)>);

impl Subject {
    /// Parses the text form (see the module documentation).
    pub fn parse(text: &str) -> Result<Subject, Error> {
        let invalid = |why: &str| {
            Error::Invalid(format!(
                "client subject `{}`: {why} (write it like `CN=gw-a, O=Acme`)",
                text.escape_debug()
            ))
        };
        if text.len() > MAX_SUBJECT_LEN {
            return Err(invalid(&format!("longer than {MAX_SUBJECT_LEN} bytes")));
        }
        if text.chars().any(char::is_control) {
            return Err(invalid("control characters"));
        }
        let mut attributes = Vec::new();
        let mut part = String::new();
        let mut parts = Vec::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    // Keep the escape: `=` is told apart from a separator below.
                    Some(escaped) => {
                        part.push('\\');
                        part.push(escaped);
                    }
                    None => return Err(invalid("it ends in a lone `\\`")),
                },
                ',' | '+' | ';' => parts.push(std::mem::take(&mut part)),
                c => part.push(c),
            }
        }
        parts.push(part);
        for part in parts {
            let Some((kind, value)) = split_unescaped_eq(&part) else {
                return Err(invalid(&format!("`{}` is not TYPE=value", part.trim())));
            };
            let kind = kind.trim();
            if kind.is_empty()
                || !kind
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
            {
                return Err(invalid(&format!("`{kind}` is not an attribute type")));
            }
            let value = unescape(value.trim());
            if value.is_empty() {
                return Err(invalid(&format!("{kind} has no value")));
            }
            attributes.push((kind.to_ascii_uppercase(), value));
        }
        Ok(Subject(attributes))
    }

    /// The subject of a DER certificate; `None` when it cannot be read (then it matches no
    /// binding).
    pub fn of_certificate(der: &[u8]) -> Option<Subject> {
        let (_, certificate) = X509Certificate::from_der(der).ok()?;
        let registry = x509_parser::objects::oid_registry();
        let mut attributes = Vec::new();
        for attribute in certificate.subject().iter_attributes() {
            let kind = match x509_parser::objects::oid2abbrev(attribute.attr_type(), registry) {
                Ok(abbrev) => abbrev.to_ascii_uppercase(),
                Err(_) => attribute.attr_type().to_id_string(),
            };
            // A value that is not a string (rare) cannot be written in a binding: no match.
            let value = attribute.as_str().ok()?;
            attributes.push((kind, value.to_owned()));
        }
        Some(Subject(attributes))
    }

    /// Whether `presented` (a certificate's subject) is this one, in either order.
    pub fn matches(&self, presented: &Subject) -> bool {
        self == presented || self.0.iter().rev().eq(presented.0.iter())
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, (kind, value)) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{kind}=")?;
            for c in value.chars() {
                if matches!(c, ',' | '+' | ';' | '=' | '\\' | '"' | '<' | '>') {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// Splits `TYPE=value` at the first `=` that is not escaped.
fn split_unescaped_eq(part: &str) -> Option<(&str, &str)> {
    let mut escaped = false;
    for (index, c) in part.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '=' => return Some((&part[..index], &part[index + 1..])),
            _ => {}
        }
    }
    None
}

fn unescape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::pem::PemObject;

    use super::*;

    #[test]
    fn the_openssl_and_rfc_4514_forms_are_read_alike() {
        let a = Subject::parse("CN=gw-a, O=Acme").unwrap();
        assert_eq!(a.to_string(), "CN=gw-a, O=Acme");
        assert_eq!(Subject::parse("cn = gw-a , o = Acme").unwrap(), a);
        assert_eq!(Subject::parse("CN=gw-a,O=Acme").unwrap(), a);
        // The reversed (RFC 4514) order names the same subject; values compare exactly.
        assert!(a.matches(&Subject::parse("O=Acme,CN=gw-a").unwrap()));
        assert!(!a.matches(&Subject::parse("CN=GW-A, O=Acme").unwrap()));
        assert!(!a.matches(&Subject::parse("CN=gw-a").unwrap()));
        assert!(!a.matches(&Subject::parse("CN=gw-a, O=Acme, OU=x").unwrap()));
    }

    #[test]
    fn an_escaped_comma_stays_inside_its_value() {
        let tricky = Subject::parse(r"CN=gw-a\, O=Acme").unwrap();
        assert_eq!(tricky.0, vec![("CN".to_owned(), "gw-a, O=Acme".to_owned())]);
        assert!(!tricky.matches(&Subject::parse("CN=gw-a, O=Acme").unwrap()));
        // Display escapes it again, and reads back to the same subject.
        assert_eq!(Subject::parse(&tricky.to_string()).unwrap(), tricky);
        let equals = Subject::parse(r"CN=a\=b").unwrap();
        assert_eq!(equals.0[0].1, "a=b");
    }

    #[test]
    fn malformed_subjects_are_refused_with_the_reason() {
        for (text, why) in [
            ("", "is not TYPE=value"),
            ("gw-a", "is not TYPE=value"),
            ("CN=", "has no value"),
            ("CN=a,", "is not TYPE=value"),
            ("=a", "is not an attribute type"),
            ("C N=a", "is not an attribute type"),
            ("CN=a\\", "lone"),
            ("CN=a\nO=b", "control characters"),
        ] {
            let error = Subject::parse(text).unwrap_err().to_string();
            assert!(error.contains(why), "{text:?}: {error}");
        }
        let long = format!("CN={}", "a".repeat(MAX_SUBJECT_LEN));
        assert!(
            Subject::parse(&long)
                .unwrap_err()
                .to_string()
                .contains("longer than")
        );
    }

    #[test]
    fn a_certificates_subject_is_read_in_order() {
        let pki = testbed::pki::server_certificate("test CA", &["localhost"]);
        let client = pki.client_certificate("gw-a", Some("Acme, Inc."));
        let der =
            rustls::pki_types::CertificateDer::from_pem_slice(client.chain_pem.as_bytes()).unwrap();
        let subject = Subject::of_certificate(&der).unwrap();
        assert_eq!(subject.to_string(), r"CN=gw-a, O=Acme\, Inc.");
        assert!(
            Subject::parse(r"CN=gw-a, O=Acme\, Inc.")
                .unwrap()
                .matches(&subject)
        );
        assert!(Subject::of_certificate(b"not a certificate").is_none());
    }
}
