//! The secrets of access: Argon2id password hashes, random tokens stored as SHA-256 hashes,
//! random ids, constant-time comparison, and the rules for names and passwords (checked
//! before anything is hashed, so that an oversized password costs nothing).

use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
use sha2::{Digest, Sha256};

use super::{Error, Result};

/// Argon2id above OWASP's minimum (19 MiB, 2 passes): 64 MiB and 3 passes, one lane, which
/// takes about 170 ms here (the benchmark's target is 50 to 250 ms: strong, yet not a denial
/// of service; at most [`crate::access::CONCURRENT_LOGINS`] run at once). Hashes made with
/// other parameters verify with their own.
const ARGON2_MEMORY_KIB: u32 = 64 * 1024;
const ARGON2_PASSES: u32 = 3;

/// Passwords shorter than this are refused.
pub const MIN_PASSWORD_BYTES: usize = 10;
/// Passwords longer than this are refused before hashing.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Names of accounts, tokens and gateways: at most this long.
pub const MAX_NAME_BYTES: usize = 64;

fn argon2() -> Result<Argon2<'static>> {
    let params = Params::new(ARGON2_MEMORY_KIB, ARGON2_PASSES, 1, None)
        .map_err(|error| Error::Internal(format!("argon2 parameters: {error}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// The PHC string (`$argon2id$v=19$m=65536,t=3,p=1$…`) of `password`, with a random salt.
pub fn hash_password(password: &str) -> Result<String> {
    check_password(password)?;
    let hash = argon2()?
        .hash_password(password.as_bytes())
        .map_err(|error| Error::Internal(format!("cannot hash the password: {error}")))?;
    Ok(hash.to_string())
}

/// Whether `password` matches the PHC string `hash` (with the parameters it names). A
/// password of the wrong size is never hashed.
pub fn verify_password(password: &str, hash: &str) -> bool {
    if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    argon2().is_ok_and(|argon2| argon2.verify_password(password.as_bytes(), hash).is_ok())
}

/// A password an account may have.
pub fn check_password(password: &str) -> Result<()> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(Error::Invalid(format!(
            "the password is longer than {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    if password.len() < MIN_PASSWORD_BYTES {
        return Err(Error::Invalid(format!(
            "the password is shorter than {MIN_PASSWORD_BYTES} characters"
        )));
    }
    if password
        .chars()
        .any(|c| c == '\0' || c == '\n' || c == '\r')
    {
        return Err(Error::Invalid(
            "the password holds a NUL or line break".to_owned(),
        ));
    }
    Ok(())
}

/// The one spelling of a name of an account, a token or a gateway: ASCII letters (any
/// case, kept as lowercase), digits and `.`, `_`, `-`, `@`, starting with a letter or digit.
/// Names that differ only in case are the same name; anything outside ASCII is refused, so
/// that two names that look alike (Unicode forms, confusable letters) cannot both exist.
pub fn canonical_name(what: &str, name: &str) -> Result<String> {
    let shown: String = name.chars().take(MAX_NAME_BYTES).collect();
    if name.is_empty() {
        return Err(Error::Invalid(format!("the {what} name is empty")));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(Error::Invalid(format!(
            "the {what} name {shown:?}… is longer than {MAX_NAME_BYTES} bytes"
        )));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@')))
    {
        return Err(Error::Invalid(format!(
            "the {what} name {shown:?} holds {bad:?}: use ASCII letters, digits and . _ - @"
        )));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(Error::Invalid(format!(
            "the {what} name {shown:?} must start with a letter or digit"
        )));
    }
    Ok(name.to_ascii_lowercase())
}

/// `n` random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)
        .map_err(|error| Error::Internal(format!("no randomness from the system: {error}")))?;
    Ok(bytes)
}

pub use model::hex::encode as hex;

/// What API tokens start with, so that secret scanners and people recognise them.
pub const TOKEN_PREFIX: &str = "tw_";

/// A new API token: 256 random bits.
pub fn new_token() -> Result<String> {
    Ok(format!("{TOKEN_PREFIX}{}", hex(&random_bytes::<32>()?)))
}

/// The stored form of a token or session id: SHA-256 (right for 256-bit random secrets;
/// a slow hash is for passwords people choose).
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Compares secrets without leaking where they differ through the time taken.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// A stored SHA-256 (64 hex digits).
pub fn parse_hash(text: &str) -> Option<[u8; 32]> {
    model::hex::decode(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_against_its_argon2id_hash_only() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=65536,t=3,p=1$"),
            "{hash}"
        );
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterx", &hash));
        assert!(!verify_password("", &hash));
        assert!(!verify_password(
            "correct horse battery",
            "not a phc string"
        ));
        // The hash unknown names are checked against has today's parameters (so they cost
        // the same as a real account's) and matches no password.
        let parameters = |phc: &str| phc.split('$').take(4).collect::<Vec<_>>().join("$");
        assert_eq!(
            parameters(super::super::UNKNOWN_ACCOUNT_HASH),
            parameters(&hash)
        );
        assert!(!verify_password(
            "correct horse battery",
            super::super::UNKNOWN_ACCOUNT_HASH
        ));
        // Each hash has its own salt.
        assert_ne!(hash, hash_password("correct horse battery").unwrap());
    }

    #[test]
    fn bad_passwords_are_refused_before_hashing() {
        let huge = "x".repeat(MAX_PASSWORD_BYTES + 1);
        for (password, expected) in [
            (huge.as_str(), "longer than 1024 bytes"),
            ("short", "shorter than 10"),
            ("with a\nline break", "NUL or line break"),
            ("nul\0inside password", "NUL or line break"),
        ] {
            let error = hash_password(password).unwrap_err().to_string();
            assert!(error.contains(expected), "{password:?}: {error}");
        }
        // An oversized password never reaches Argon2 at login either.
        assert!(!verify_password(
            &huge,
            "$argon2id$v=19$m=19456,t=2,p=1$AAAA$AAAA"
        ));
    }

    #[track_caller]
    fn check_name(name: &str, expected: std::result::Result<&str, &str>) {
        match (canonical_name("account", name), expected) {
            (Ok(canonical), Ok(want)) => assert_eq!(canonical, want),
            (Err(error), Err(want)) => {
                assert!(error.to_string().contains(want), "{name:?}: {error}")
            }
            (got, want) => panic!("{name:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn names_have_one_spelling() {
        check_name("alice", Ok("alice"));
        check_name("Alice", Ok("alice"));
        check_name("soc.oncall-2@example", Ok("soc.oncall-2@example"));
        check_name("", Err("is empty"));
        check_name(&"a".repeat(65), Err("longer than 64 bytes"));
        check_name("al\u{0130}ce", Err("holds"));
        // The same look in two Unicode forms: both refused, so they cannot be two accounts.
        check_name("jos\u{e9}", Err("holds"));
        check_name("jose\u{301}", Err("holds"));
        check_name("bob\tadmin", Err("holds '\\t'"));
        check_name("bob\u{1b}[31m", Err("holds"));
        check_name("../etc", Err("holds '/'"));
        check_name(".hidden", Err("must start with a letter or digit"));
    }

    #[test]
    fn tokens_are_random_hashed_and_compared_in_constant_time() {
        let token = new_token().unwrap();
        assert!(token.starts_with("tw_") && token.len() == 67, "{token}");
        assert_ne!(token, new_token().unwrap());
        let hash = token_hash(&token);
        assert_eq!(parse_hash(&hex(&hash)), Some(hash));
        assert_eq!(parse_hash("zz"), None);
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
