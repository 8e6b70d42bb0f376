//! The accounts file, `DATA/access/accounts.json`: operators (Argon2id hashes, role, second
//! factor) and API tokens (SHA-256 hashes, grant, expiry). Replaced whole on every change
//! ([`durable::write_atomic`]); a file that does not read back is an error at start, never
//! an empty list of accounts.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::secret::{canonical_name, hex, parse_hash};
use super::{Error, Result, Role};

/// The format of the file.
const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Registry {
    pub version: u32,
    pub users: Vec<Account>,
    pub tokens: Vec<ApiToken>,
}

/// An operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Account {
    pub name: String,
    pub role: Role,
    /// Argon2id, PHC string.
    pub password_hash: String,
    pub disabled: bool,
    /// The TOTP secret (base32), once enrolled.
    pub totp_secret: Option<String>,
    pub created: jiff::Timestamp,
    pub changed: jiff::Timestamp,
}

/// What a token lets its holder do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Grant {
    /// The read and write API up to this role (never the ingest endpoint).
    Role { role: Role },
    /// The ingest endpoint, in this gateway's name only (never the console or the API).
    Gateway {
        gateway: String,
        /// Under mutual TLS, the client certificate's subject the gateway must present.
        #[serde(default)]
        client_subject: Option<String>,
    },
}

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Grant::Role { role } => write!(f, "role {role}"),
            Grant::Gateway {
                gateway,
                client_subject: None,
            } => write!(f, "ingest as gateway {gateway}"),
            Grant::Gateway {
                gateway,
                client_subject: Some(subject),
            } => write!(
                f,
                "ingest as gateway {gateway}, client certificate {subject}"
            ),
        }
    }
}

/// An API token: only its hash is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApiToken {
    pub name: String,
    pub grant: Grant,
    /// Hex SHA-256 of the token.
    pub sha256: String,
    pub created: jiff::Timestamp,
    pub expires: Option<jiff::Timestamp>,
    pub revoked: Option<jiff::Timestamp>,
}

impl Registry {
    pub fn empty() -> Registry {
        Registry {
            version: VERSION,
            users: Vec::new(),
            tokens: Vec::new(),
        }
    }

    /// Reads `path` (no file: no accounts yet), checking what a damaged or hand-edited file
    /// could get wrong.
    pub fn load(path: &Path) -> Result<Registry> {
        let Some(registry) = durable::read_json::<Registry>(path, "accounts file")? else {
            return Ok(Registry::empty());
        };
        registry.check().map_err(|detail| {
            Error::File(durable::FileError::corrupt("accounts file", path, detail))
        })?;
        Ok(registry)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        durable::write_json(path, "accounts file", self)?;
        Ok(())
    }

    fn check(&self) -> std::result::Result<(), String> {
        if self.version != VERSION {
            return Err(format!(
                "format version {} (this tunnelwatch reads {VERSION})",
                self.version
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for account in &self.users {
            if canonical_name("account", &account.name).ok().as_deref() != Some(&account.name) {
                return Err(format!("bad account name {:?}", account.name));
            }
            if !seen.insert(account.name.as_str()) {
                return Err(format!("account {} appears twice", account.name));
            }
            if !account.password_hash.starts_with("$argon2id$") {
                return Err(format!("account {} has no Argon2id hash", account.name));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for token in &self.tokens {
            if canonical_name("token", &token.name).ok().as_deref() != Some(&token.name) {
                return Err(format!("bad token name {:?}", token.name));
            }
            if !seen.insert(token.name.as_str()) {
                return Err(format!("token {} appears twice", token.name));
            }
            if parse_hash(&token.sha256).is_none() {
                return Err(format!("token {} has no SHA-256 hash", token.name));
            }
        }
        Ok(())
    }

    pub fn user(&self, name: &str) -> Option<&Account> {
        self.users.iter().find(|account| account.name == name)
    }

    pub fn user_mut(&mut self, name: &str) -> Result<&mut Account> {
        self.users
            .iter_mut()
            .find(|account| account.name == name)
            .ok_or_else(|| Error::NotFound(format!("no account named {name}")))
    }

    pub fn token(&self, name: &str) -> Option<&ApiToken> {
        self.tokens.iter().find(|token| token.name == name)
    }

    /// Active admins (enabled), for the rule that the last one cannot be disabled.
    pub fn n_enabled_admins(&self) -> usize {
        self.users
            .iter()
            .filter(|account| account.role == Role::Admin && !account.disabled)
            .count()
    }

    /// Token hash → index into `tokens`, for the lookup on every request.
    pub fn token_index(&self) -> HashMap<[u8; 32], usize> {
        self.tokens
            .iter()
            .enumerate()
            .filter_map(|(index, token)| Some((parse_hash(&token.sha256)?, index)))
            .collect()
    }
}

/// The stored form of a token's hash.
pub(crate) fn stored_hash(token: &str) -> String {
    hex(&super::secret::token_hash(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(name: &str) -> Account {
        Account {
            name: name.to_owned(),
            role: Role::Admin,
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA".to_owned(),
            disabled: false,
            totp_secret: None,
            created: jiff::Timestamp::UNIX_EPOCH,
            changed: jiff::Timestamp::UNIX_EPOCH,
        }
    }

    #[test]
    fn the_file_round_trips_and_a_missing_one_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access/accounts.json");
        assert_eq!(Registry::load(&path).unwrap(), Registry::empty());
        let mut registry = Registry::empty();
        registry.users.push(account("alice"));
        registry.tokens.push(ApiToken {
            name: "gw-a".to_owned(),
            grant: Grant::Gateway {
                gateway: "gw-a".to_owned(),
                client_subject: None,
            },
            sha256: stored_hash("tw_secret"),
            created: jiff::Timestamp::UNIX_EPOCH,
            expires: None,
            revoked: None,
        });
        registry.save(&path).unwrap();
        assert_eq!(Registry::load(&path).unwrap(), registry);
        assert_eq!(registry.token_index().len(), 1);
    }

    #[test]
    fn a_damaged_file_is_an_error_that_names_it_never_an_empty_list() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounts.json");
        let mut twice = Registry::empty();
        twice.users.push(account("alice"));
        twice.users.push(account("alice"));
        let mut plaintext = Registry::empty();
        plaintext.users.push(Account {
            password_hash: "hunter2".to_owned(),
            ..account("bob")
        });
        let mut bad_name = Registry::empty();
        bad_name.users.push(account("Bob"));
        let cases = [
            (b"".to_vec(), "EOF"),
            (b"{\"version\":1,\"users\":[".to_vec(), "EOF"),
            (b"[]".to_vec(), "expected struct Registry"),
            (
                b"{\"version\":2,\"users\":[],\"tokens\":[]}".to_vec(),
                "format version 2",
            ),
            (
                b"{\"version\":1,\"users\":[],\"tokens\":[],\"extra\":1}".to_vec(),
                "unknown field",
            ),
            (serde_json::to_vec(&twice).unwrap(), "appears twice"),
            (serde_json::to_vec(&plaintext).unwrap(), "no Argon2id hash"),
            (serde_json::to_vec(&bad_name).unwrap(), "bad account name"),
        ];
        for (bytes, expected) in cases {
            std::fs::write(&path, &bytes).unwrap();
            let error = Registry::load(&path).unwrap_err().to_string();
            assert!(
                error.contains("corrupt accounts file") && error.contains(expected),
                "{}: {error}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }
}
