//! The sessions a collector needs again after a restart: every open one, and the ones that
//! closed in the last [`RECENTLY_CLOSED_SECS`] of event time. Late events still find those:
//! the RADIUS Stop or lease release that follows a delete, accounting a gateway resends, a
//! flow that ended just before its session. Kept in `DATA/state/sessions.json`, rewritten at
//! every flush.

use std::collections::HashMap;
use std::path::Path;

use model::Session;

use crate::error::{Error, Result};

/// How long (in event time, before the newest session change) a closed session is kept for
/// a restart. At least the collector's own grace for closed sessions (ten minutes).
pub const RECENTLY_CLOSED_SECS: i64 = 15 * 60;

const FILE: &str = "sessions.json";
/// What data directories of earlier versions hold: the open sessions only.
const OLD_FILE: &str = "open_sessions.json";

#[derive(Debug, Default, Clone)]
pub(crate) struct RecentSessions {
    by_id: HashMap<String, Session>,
    /// How many of them are open (kept as they change: health checks read it often).
    n_open: usize,
}

impl RecentSessions {
    pub(crate) fn load(dir: &Path) -> Result<RecentSessions> {
        let state = dir.join("state");
        for name in [FILE, OLD_FILE] {
            let sessions: Option<Vec<Session>> =
                durable::read_json(&state.join(name), "sessions state file")?;
            if let Some(sessions) = sessions {
                let mut recent = RecentSessions::default();
                for session in &sessions {
                    recent.track(session);
                }
                return Ok(recent);
            }
        }
        Ok(RecentSessions::default())
    }

    /// Takes a session snapshot unless a newer version of it is known.
    pub(crate) fn track(&mut self, session: &Session) {
        let newer = self
            .by_id
            .get(&session.session_id)
            .is_none_or(|known| session.version >= known.version);
        if newer {
            let was_open = self
                .by_id
                .insert(session.session_id.clone(), session.clone())
                .is_some_and(|known| known.state.is_open());
            match (was_open, session.state.is_open()) {
                (false, true) => self.n_open += 1,
                (true, false) => self.n_open -= 1,
                _ => {}
            }
        }
    }

    /// Forgets the sessions that closed long enough before the newest change, and hands
    /// them back for the caller to drop once it has let go of the state lock: a flush under
    /// sustained ingest forgets thousands, and freeing them there held appends up for tens of
    /// milliseconds (measured with `app/benches/serve.rs`).
    #[must_use = "drop what was forgotten outside the state lock"]
    pub(crate) fn prune(&mut self) -> Vec<Session> {
        let Some(newest) = self.by_id.values().map(|session| session.updated).max() else {
            return Vec::new();
        };
        let before = newest.as_second().saturating_sub(RECENTLY_CLOSED_SECS);
        let forgotten: Vec<Session> = self
            .by_id
            .extract_if(|_, session| {
                !session.state.is_open() && session.end.is_some_and(|end| end.as_second() < before)
            })
            .map(|(_, session)| session)
            .collect();
        debug_assert_eq!(self.n_open, self.count_open());
        forgotten
    }

    /// Writes the state file (atomically, `durable::write_json`) and removes the older
    /// version's file.
    pub(crate) fn store(&self, dir: &Path) -> Result<()> {
        let state = dir.join("state");
        let sessions: Vec<&Session> = self.by_id.values().collect();
        durable::write_json(&state.join(FILE), "sessions state file", &sessions)?;
        let old = state.join(OLD_FILE);
        match std::fs::remove_file(&old) {
            Ok(()) => Ok(durable::sync_dir(&state)?),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(Error::io("remove", &old, error)),
        }
    }

    /// Open sessions, oldest first.
    pub(crate) fn open(&self) -> Vec<Session> {
        self.sorted(|session| session.state.is_open())
    }

    /// Open and recently closed sessions, oldest first.
    pub(crate) fn all(&self) -> Vec<Session> {
        self.sorted(|_| true)
    }

    pub(crate) fn n_open(&self) -> usize {
        self.n_open
    }

    fn count_open(&self) -> usize {
        self.by_id
            .values()
            .filter(|session| session.state.is_open())
            .count()
    }

    fn sorted(&self, keep: impl Fn(&Session) -> bool) -> Vec<Session> {
        let mut sessions: Vec<Session> = self
            .by_id
            .values()
            .filter(|session| keep(session))
            .cloned()
            .collect();
        sessions.sort_by(|a, b| (a.start, &a.session_id).cmp(&(b.start, &b.session_id)));
        sessions
    }
}
