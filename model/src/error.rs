//! The one error of this crate: a field name that is not in the dictionary.

use std::fmt;

/// An error of the model crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A rule or mapping named a field that [`crate::fields::resolve`] does not know.
    #[error("unknown field {name:?}{}{}", Cut(*len, name), Suggestion(*closest))]
    UnknownField {
        /// The name as given, cut to its first 64 characters.
        name: String,
        /// The length in bytes of the name as given.
        len: usize,
        /// The known field nearest to it, if one is near.
        closest: Option<&'static str>,
    },
}

impl Error {
    pub fn kind(&self) -> model::ErrorKind {
        match self {
            Error::UnknownField { .. } => model::ErrorKind::Invalid,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// ` (cut from N bytes)` after a quoted name that was cut.
struct Cut<'a>(usize, &'a str);

impl fmt::Display for Cut<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Cut(len, quoted) = *self;
        if len > quoted.len() {
            write!(f, "… (cut from {len} bytes)")?;
        }
        Ok(())
    }
}

/// `; did you mean "source.ip"?`
struct Suggestion(Option<&'static str>);

impl fmt::Display for Suggestion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(name) => write!(f, "; did you mean {name:?}?"),
            None => Ok(()),
        }
    }
}
