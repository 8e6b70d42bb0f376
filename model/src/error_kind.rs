//! The one classification of failures that every crate's error shares.

/// What kind of failure an error is, whatever crate it comes from. Each library crate's
/// `Error::kind()` returns one; callers decide on it (retry or not, what to tell the user),
/// and `dashboards` alone turns it into an HTTP response. This is pure data: it knows no
/// crate's error type and no protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// What was asked for does not exist: a missing file, a directory that holds no data,
    /// an unknown session.
    NotFound,
    /// The request, the input or the configuration is wrong, and asking again the same way
    /// fails the same way: a bad query, an invalid setting, a batch the server refused.
    Invalid,
    /// Something is busy, full or out of reach for now, and a later try may succeed: a full
    /// disk or spool, too many queries, an unreachable server, object store or socket, a
    /// timeout, a closed channel.
    Unavailable,
    /// A fault in tunnelwatch's own machinery that neither input nor configuration explains:
    /// corrupt state, an I/O failure, a task that panicked, a value that would not encode.
    Internal,
}
