//! Who may do what: operator accounts, API tokens, signed-in sessions, and the audit record
//! of every change to them.
//!
//! The principal type is [`Access`]: it loads the accounts file of the data directory
//! ([`registry`]), answers "who is this?" for every request ([`Access::authenticate`]:
//! a bearer token or a session cookie, checked without a slow hash), signs operators in
//! ([`Access::login`]: Argon2id, throttled, TOTP) and makes every change (accounts, tokens)
//! through one path that writes the audit entry first and refuses the change when the audit
//! trail cannot take it (fail closed). [`Role`]s order privileges; the routes' minimum roles
//! are in [`crate::routes`].

mod login;
mod registry;
mod role;
pub mod secret;
pub mod subject;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use jiff::Timestamp;
use model::AuditDraft;

pub use login::{LoginSession, SessionLimits, Wait};
pub use registry::Grant;
pub use role::Role;

use login::{Sessions, Throttle};
use registry::{Account, ApiToken, Registry};

/// Sign-ins checked at once (each Argon2id verification takes 64 MiB and a core for about
/// 170 ms); more wait their turn.
pub const CONCURRENT_LOGINS: usize = 2;

/// What a name that is no account is checked against, so that it takes as long as a wrong
/// password (the hash of a password nobody has, with the current parameters; a test keeps it
/// in step with them).
const UNKNOWN_ACCOUNT_HASH: &str = "$argon2id$v=19$m=65536,t=3,p=1$7XH7UhLqp8ik6SuMma1lhQ$JBsbukJHthkZeRVDxjeudJIzZfnjavLkQeNGWvYQgAI";

/// Where the accounts file lives under the data directory.
pub const ACCOUNTS_FILE: &str = "access/accounts.json";

pub use crate::error::{Error, Result};

/// How access behaves (from `[dashboards]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Requests without credentials act with this role; `None`: refused.
    pub anonymous_role: Option<Role>,
    /// Accounts of this role and above must have a second factor to sign in.
    pub require_totp_for: Option<Role>,
    pub sessions: SessionLimits,
    /// The issuer shown in authenticator apps.
    pub totp_issuer: String,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            anonymous_role: None,
            require_totp_for: None,
            sessions: SessionLimits {
                idle: Duration::from_secs(30 * 60),
                absolute: Duration::from_secs(12 * 3600),
                max_sessions: 10_000,
            },
            totp_issuer: "tunnelwatch".to_owned(),
        }
    }
}

/// Who makes a change or a request, as the audit trail names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// An account name, `token:<name>`, or `cli:<unix user>` for the command line.
    pub name: String,
    pub role: Option<Role>,
    pub source_ip: Option<IpAddr>,
}

impl Actor {
    /// The command line on the server's host, run by `unix_user`.
    pub fn cli(unix_user: &str) -> Actor {
        Actor {
            name: format!("cli:{unix_user}"),
            role: Some(Role::Admin),
            source_ip: None,
        }
    }
}

/// Who a request comes from, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A signed-in browser.
    User {
        name: String,
        role: Role,
        session: LoginSession,
    },
    /// An API token.
    Token { name: String, grant: Grant },
    /// No credential, let in as `[dashboards] anonymous_role`.
    Anonymous { role: Role },
    /// The shared `[dashboards] ingest_token_file` of one-gateway set-ups: ingest only, in
    /// any gateway's name.
    SharedIngestToken,
}

impl Principal {
    /// The role for the console and the API; gateway credentials have none.
    pub fn role(&self) -> Option<Role> {
        match self {
            Principal::User { role, .. } | Principal::Anonymous { role } => Some(*role),
            Principal::Token {
                grant: Grant::Role { role },
                ..
            } => Some(*role),
            Principal::Token {
                grant: Grant::Gateway { .. },
                ..
            }
            | Principal::SharedIngestToken => None,
        }
    }

    /// The name the audit trail gives this principal.
    pub fn actor(&self, source_ip: Option<IpAddr>) -> Actor {
        let name = match self {
            Principal::User { name, .. } => name.clone(),
            Principal::Token { name, .. } => format!("token:{name}"),
            Principal::Anonymous { .. } => "anonymous".to_owned(),
            Principal::SharedIngestToken => "ingest_token_file".to_owned(),
        };
        Actor {
            name,
            role: self.role(),
            source_ip,
        }
    }
}

/// A credential a request presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    Bearer(&'a str),
    Cookie(&'a str),
}

/// An operator as listed (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UserInfo {
    pub name: String,
    pub role: Role,
    pub disabled: bool,
    pub totp: bool,
    pub created: Timestamp,
    pub changed: Timestamp,
}

/// A token as listed (never the token).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenInfo {
    pub name: String,
    pub grant: Grant,
    pub created: Timestamp,
    pub expires: Option<Timestamp>,
    pub revoked: Option<Timestamp>,
}

/// Why a login was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginRefusal {
    /// Too many failures for this account or address: wait.
    Throttled(Wait),
    /// Wrong name or password, or a disabled account (one answer for all three).
    BadCredentials,
    /// The password was right; the account's TOTP code is needed (or was wrong).
    TotpNeeded { wrong_code: bool },
    /// The role requires a second factor and the account has none.
    TotpNotEnrolled,
    /// The audit trail cannot record the login.
    Unavailable(String),
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct AccessCounters {
    pub logins_ok: std::sync::atomic::AtomicU64,
    pub logins_failed: std::sync::atomic::AtomicU64,
    pub logins_throttled: std::sync::atomic::AtomicU64,
    pub denied_requests: std::sync::atomic::AtomicU64,
    /// Ingest batches refused: sent in another gateway's name, or leaping a sequence.
    pub ingest_refused_identity: std::sync::atomic::AtomicU64,
    pub ingest_refused_sequence: std::sync::atomic::AtomicU64,
}

struct Snapshot {
    registry: Registry,
    token_index: std::collections::HashMap<[u8; 32], usize>,
}

struct Inner {
    path: PathBuf,
    settings: Settings,
    audit: store::Store,
    snapshot: RwLock<Arc<Snapshot>>,
    /// One change at a time: audit, write, swap.
    changes: Mutex<()>,
    sessions: Mutex<Sessions>,
    throttle: Mutex<Throttle>,
    /// The last TOTP step each account used (a code is accepted once).
    totp_steps: Mutex<std::collections::HashMap<String, u64>>,
    /// While no account exists: the one-time token of the first admin's sign-up.
    setup_token: Mutex<Option<String>>,
    counters: AccessCounters,
    /// At most [`CONCURRENT_LOGINS`] password checks at once.
    login_gate: tokio::sync::Semaphore,
    /// Gateway names seen with the shared `ingest_token_file` (at most a few are kept).
    shared_token_gateways: Mutex<std::collections::BTreeSet<String>>,
}

/// The front door of access control (cheap to clone).
#[derive(Clone)]
pub struct Access {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Access {
    /// Loads `DATA/access/accounts.json` (none yet: no accounts); a damaged file is an
    /// error. `audit` is the store whose audit trail records every change.
    pub fn open(data_dir: &Path, settings: Settings, audit: store::Store) -> Result<Access> {
        let path = data_dir.join(ACCOUNTS_FILE);
        let registry = Registry::load(&path)?;
        let token_index = registry.token_index();
        let setup_token = registry
            .users
            .is_empty()
            .then(secret::new_token)
            .transpose()?;
        Ok(Access {
            inner: Arc::new(Inner {
                path,
                sessions: Mutex::new(Sessions::new(settings.sessions)),
                settings,
                audit,
                snapshot: RwLock::new(Arc::new(Snapshot {
                    registry,
                    token_index,
                })),
                changes: Mutex::new(()),
                throttle: Mutex::new(Throttle::new(100_000)),
                totp_steps: Mutex::new(std::collections::HashMap::new()),
                setup_token: Mutex::new(setup_token),
                counters: AccessCounters::default(),
                shared_token_gateways: Mutex::new(std::collections::BTreeSet::new()),
                login_gate: tokio::sync::Semaphore::new(CONCURRENT_LOGINS),
            }),
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    pub fn counters(&self) -> &AccessCounters {
        &self.inner.counters
    }

    /// Waited on before [`Access::login`] from a request, so that a burst of sign-ins uses at
    /// most [`CONCURRENT_LOGINS`] × 64 MiB and as many cores.
    pub fn login_gate(&self) -> &tokio::sync::Semaphore {
        &self.inner.login_gate
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.inner
            .snapshot
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Records `draft` in the audit trail, durably, or refuses.
    fn audit(&self, draft: AuditDraft) -> Result<model::AuditEntry> {
        self.inner.audit.record_audit(draft).map_err(|error| {
            tracing::error!(%error, "the audit trail refused an entry; the action is refused");
            Error::Audit(error)
        })
    }

    /// The one way to change accounts and tokens: `change` is tried on a copy; the audit
    /// entry `draft` is written (durably) before the file; nothing changes if either fails.
    fn change(
        &self,
        by: &Actor,
        action: &str,
        target: &str,
        message: String,
        change: impl FnOnce(&mut Registry, Timestamp) -> Result<serde_json::Value>,
    ) -> Result<()> {
        let _one_at_a_time = lock(&self.inner.changes);
        let now = Timestamp::now();
        let mut registry = self.snapshot().registry.clone();
        let details = change(&mut registry, now)?;
        let mut entry = draft(by, action, Some("success"), target, message.clone());
        entry.details = Some(details.to_string());
        self.audit(entry)?;
        if let Err(error) = registry.save(&self.inner.path) {
            // Best effort: the entry above said it happened; say it did not.
            let _ = self.audit(draft(
                by,
                action,
                Some("failure"),
                target,
                format!("not done after all ({error}): {message}"),
            ));
            return Err(error);
        }
        let token_index = registry.token_index();
        *self
            .inner
            .snapshot
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(Snapshot {
            registry,
            token_index,
        });
        tracing::info!(actor = %by.name, action, target, "access changed");
        Ok(())
    }

    /// Adds an operator.
    pub fn add_user(&self, by: &Actor, name: &str, role: Role, password: &str) -> Result<()> {
        let name = secret::canonical_name("account", name)?;
        let password_hash = secret::hash_password(password)?;
        let message = format!("{} added account {name} with role {role}", by.name);
        self.change(by, "account.add", &name, message, |registry, now| {
            if registry.user(&name).is_some() {
                return Err(Error::Invalid(format!("an account named {name} exists")));
            }
            registry.users.push(Account {
                name: name.clone(),
                role,
                password_hash,
                disabled: false,
                totp_secret: None,
                created: now,
                changed: now,
            });
            Ok(serde_json::json!({"account": name, "role": role}))
        })?;
        *lock(&self.inner.setup_token) = None;
        Ok(())
    }

    /// Sets an operator's password; their sessions end.
    pub fn set_password(&self, by: &Actor, name: &str, password: &str) -> Result<()> {
        let name = secret::canonical_name("account", name)?;
        let password_hash = secret::hash_password(password)?;
        let message = format!("{} set the password of {name}", by.name);
        self.change(by, "account.password", &name, message, |registry, now| {
            let account = registry.user_mut(&name)?;
            account.password_hash = password_hash;
            account.changed = now;
            Ok(serde_json::json!({"account": name}))
        })?;
        lock(&self.inner.sessions).end_user(&name);
        Ok(())
    }

    /// Disables or enables an operator. Disabling ends their sessions at once; the last
    /// enabled admin cannot be disabled.
    pub fn set_disabled(&self, by: &Actor, name: &str, disabled: bool) -> Result<()> {
        let name = secret::canonical_name("account", name)?;
        let (action, verb) = if disabled {
            ("account.disable", "disabled")
        } else {
            ("account.enable", "enabled")
        };
        let message = format!("{} {verb} account {name}", by.name);
        self.change(by, action, &name, message, |registry, now| {
            let account = registry.user_mut(&name)?;
            if account.disabled == disabled {
                return Err(Error::Invalid(format!("account {name} is already {verb}")));
            }
            account.disabled = disabled;
            account.changed = now;
            if disabled && registry.n_enabled_admins() == 0 {
                return Err(Error::Invalid(format!(
                    "{name} is the last enabled admin; add or enable another first"
                )));
            }
            Ok(serde_json::json!({"account": name, "prior": {"disabled": !disabled}}))
        })?;
        if disabled {
            lock(&self.inner.sessions).end_user(&name);
        }
        Ok(())
    }

    /// Enrols (or re-enrols) a TOTP second factor; returns the `otpauth://` URI for the
    /// authenticator app. The next login needs a code.
    pub fn enrol_totp(&self, by: &Actor, name: &str) -> Result<String> {
        let name = secret::canonical_name("account", name)?;
        let secret = secret::random_bytes::<20>()?;
        let totp = totp(&secret)?;
        let encoded = totp_rs::Secret::from(secret.to_vec()).to_base32();
        let uri = format!(
            "otpauth://totp/{issuer}:{name}?secret={encoded}&issuer={issuer}&algorithm=SHA1&digits=6&period=30",
            issuer = percent_encode(&self.inner.settings.totp_issuer),
        );
        drop(totp);
        let message = format!("{} enrolled a TOTP second factor for {name}", by.name);
        self.change(by, "account.totp", &name, message, |registry, now| {
            let account = registry.user_mut(&name)?;
            let had_one = account.totp_secret.is_some();
            account.totp_secret = Some(encoded);
            account.changed = now;
            Ok(serde_json::json!({"account": name, "prior": {"totp": had_one}}))
        })?;
        lock(&self.inner.sessions).end_user(&name);
        Ok(uri)
    }

    pub fn users(&self) -> Vec<UserInfo> {
        self.snapshot()
            .registry
            .users
            .iter()
            .map(|account| UserInfo {
                name: account.name.clone(),
                role: account.role,
                disabled: account.disabled,
                totp: account.totp_secret.is_some(),
                created: account.created,
                changed: account.changed,
            })
            .collect()
    }

    /// Creates a token and returns it: the only time it is shown.
    pub fn create_token(
        &self,
        by: &Actor,
        name: &str,
        grant: Grant,
        expires_in_days: Option<u32>,
    ) -> Result<String> {
        let name = secret::canonical_name("token", name)?;
        let grant = match grant {
            Grant::Gateway {
                gateway,
                client_subject,
            } => Grant::Gateway {
                gateway: secret::canonical_name("gateway", &gateway)?,
                // Kept in one spelling, so that the check and `token list` agree.
                client_subject: client_subject
                    .map(|text| subject::Subject::parse(&text).map(|subject| subject.to_string()))
                    .transpose()?,
            },
            grant => grant,
        };
        if expires_in_days == Some(0) || expires_in_days.is_some_and(|days| days > 3650) {
            return Err(Error::Invalid(
                "--expires-days must be between 1 and 3650".to_owned(),
            ));
        }
        let token = secret::new_token()?;
        let sha256 = registry::stored_hash(&token);
        let message = format!(
            "{} created token {name} ({grant}{})",
            by.name,
            expires_in_days.map_or_else(
                || ", no expiry".to_owned(),
                |days| format!(", expires in {days} days")
            )
        );
        self.change(by, "token.create", &name, message, |registry, now| {
            if registry
                .token(&name)
                .is_some_and(|token| token.revoked.is_none())
            {
                return Err(Error::Invalid(format!(
                    "a token named {name} exists; revoke it first"
                )));
            }
            registry.tokens.retain(|token| token.name != name);
            let expires = expires_in_days
                .map(|days| now.checked_add(jiff::SignedDuration::from_hours(24 * i64::from(days))))
                .transpose()
                .map_err(|error| Error::Internal(error.to_string()))?;
            registry.tokens.push(ApiToken {
                name: name.clone(),
                grant: grant.clone(),
                sha256,
                created: now,
                expires,
                revoked: None,
            });
            Ok(serde_json::json!({"token": name, "grant": grant, "expires": expires}))
        })?;
        Ok(token)
    }

    pub fn tokens(&self) -> Vec<TokenInfo> {
        self.snapshot()
            .registry
            .tokens
            .iter()
            .map(|token| TokenInfo {
                name: token.name.clone(),
                grant: token.grant.clone(),
                created: token.created,
                expires: token.expires,
                revoked: token.revoked,
            })
            .collect()
    }

    /// Revokes a token: it stops working at once.
    pub fn revoke_token(&self, by: &Actor, name: &str) -> Result<()> {
        let name = secret::canonical_name("token", name)?;
        let message = format!("{} revoked token {name}", by.name);
        self.change(by, "token.revoke", &name, message, |registry, now| {
            let token = registry
                .tokens
                .iter_mut()
                .find(|token| token.name == name)
                .ok_or_else(|| Error::NotFound(format!("no token named {name}")))?;
            if token.revoked.is_some() {
                return Err(Error::Invalid(format!("token {name} is already revoked")));
            }
            token.revoked = Some(now);
            Ok(serde_json::json!({"token": name, "grant": token.grant}))
        })
    }

    /// Who presents `credential` now, if anyone: a live token or a live session of an
    /// enabled account. Cheap (a SHA-256 and a map lookup): called on every request.
    pub fn authenticate(&self, credential: Credential<'_>, now: Timestamp) -> Option<Principal> {
        match credential {
            Credential::Bearer(token) => {
                let hash = secret::token_hash(token);
                let snapshot = self.snapshot();
                let index = *snapshot.token_index.get(&hash)?;
                let stored = snapshot.registry.tokens.get(index)?;
                let stored_hash = secret::parse_hash(&stored.sha256)?;
                if !secret::constant_time_eq(&stored_hash, &hash)
                    || stored.revoked.is_some()
                    || stored.expires.is_some_and(|expires| expires <= now)
                {
                    return None;
                }
                Some(Principal::Token {
                    name: stored.name.clone(),
                    grant: stored.grant.clone(),
                })
            }
            Credential::Cookie(id) => {
                let session = lock(&self.inner.sessions).touch(id, now)?;
                let snapshot = self.snapshot();
                let account = snapshot.registry.user(&session.user)?;
                if account.disabled {
                    lock(&self.inner.sessions).end(id);
                    return None;
                }
                Some(Principal::User {
                    name: account.name.clone(),
                    role: account.role,
                    session,
                })
            }
        }
    }

    /// Signs an operator in: throttle, Argon2id, second factor, audit, new session. Slow by
    /// design (Argon2): call it off the async threads.
    pub fn login(
        &self,
        name: &str,
        password: &str,
        totp_code: Option<&str>,
        source_ip: Option<IpAddr>,
        now: Timestamp,
    ) -> std::result::Result<(String, LoginSession), LoginRefusal> {
        use std::sync::atomic::Ordering::Relaxed;
        // An unusable name is a wrong name, checked as long as a real one.
        let canonical = secret::canonical_name("account", name).ok();
        let shown = canonical
            .clone()
            .unwrap_or_else(|| name.chars().take(64).collect());
        let mut keys = vec![format!("user:{shown}")];
        if let Some(ip) = source_ip {
            keys.push(format!("ip:{ip}"));
        }
        if let Some(wait) = lock(&self.inner.throttle).check(&keys, now) {
            self.inner.counters.logins_throttled.fetch_add(1, Relaxed);
            return Err(LoginRefusal::Throttled(wait));
        }
        let snapshot = self.snapshot();
        let account = canonical
            .as_deref()
            .and_then(|name| snapshot.registry.user(name));
        let hash = account.map_or(UNKNOWN_ACCOUNT_HASH, |account| {
            account.password_hash.as_str()
        });
        let password_ok = secret::verify_password(password, hash) && account.is_some();
        let actor = Actor {
            name: shown.clone(),
            role: account.map(|account| account.role),
            source_ip,
        };
        let fail = |refusal: LoginRefusal, why: &str| {
            lock(&self.inner.throttle).failed(&keys, now);
            self.inner.counters.logins_failed.fetch_add(1, Relaxed);
            let message = format!("login of {shown} refused: {why}");
            match self.audit(draft(&actor, "login", Some("failure"), &shown, message)) {
                Ok(_) => refusal,
                Err(error) => LoginRefusal::Unavailable(error.to_string()),
            }
        };
        let Some(account) = account.filter(|_| password_ok) else {
            let why = if account.is_some() {
                "wrong password"
            } else {
                "no such account"
            };
            return Err(fail(LoginRefusal::BadCredentials, why));
        };
        if account.disabled {
            return Err(fail(
                LoginRefusal::BadCredentials,
                "the account is disabled",
            ));
        }
        match (&account.totp_secret, totp_code) {
            (Some(secret), code) => {
                let step = code.and_then(|code| check_totp(secret, code, now));
                let mut used = lock(&self.inner.totp_steps);
                let replayed = step
                    .is_some_and(|step| used.get(&account.name).is_some_and(|last| *last >= step));
                match step {
                    Some(step) if !replayed => {
                        used.insert(account.name.clone(), step);
                    }
                    _ => {
                        drop(used);
                        let why = match (code, replayed) {
                            (None, _) => "the TOTP code is missing",
                            (Some(_), true) => "the TOTP code was already used",
                            (Some(_), false) => "wrong TOTP code",
                        };
                        // The password was right: a missing code is not a failure to count.
                        if code.is_none() {
                            return Err(LoginRefusal::TotpNeeded { wrong_code: false });
                        }
                        return Err(fail(LoginRefusal::TotpNeeded { wrong_code: true }, why));
                    }
                }
            }
            (None, _) => {
                if self
                    .inner
                    .settings
                    .require_totp_for
                    .is_some_and(|from| account.role >= from)
                {
                    return Err(fail(
                        LoginRefusal::TotpNotEnrolled,
                        "the role requires a second factor and none is enrolled",
                    ));
                }
            }
        }
        let message = format!("{} signed in", account.name);
        if let Err(error) = self.audit(draft(
            &actor,
            "login",
            Some("success"),
            &account.name,
            message,
        )) {
            return Err(LoginRefusal::Unavailable(error.to_string()));
        }
        lock(&self.inner.throttle).succeeded(&keys[0]);
        self.inner.counters.logins_ok.fetch_add(1, Relaxed);
        lock(&self.inner.sessions)
            .start(&account.name, source_ip, now)
            .map_err(|error| LoginRefusal::Unavailable(error.to_string()))
    }

    /// Ends a session server-side (the cookie is worthless afterwards).
    pub fn logout(&self, cookie: &str, source_ip: Option<IpAddr>) -> Result<bool> {
        let Some(session) = lock(&self.inner.sessions).end(cookie) else {
            return Ok(false);
        };
        let actor = Actor {
            name: session.user.clone(),
            role: None,
            source_ip,
        };
        let message = format!("{} signed out", session.user);
        self.audit(draft(
            &actor,
            "logout",
            Some("success"),
            &session.user,
            message,
        ))?;
        Ok(true)
    }

    /// Records something an operator did that changes nothing here (a query, a search, an
    /// export): the entry is durable before the caller goes on, or the caller must refuse.
    pub fn record(
        &self,
        by: &Actor,
        action: &str,
        target: &str,
        message: String,
    ) -> Result<model::AuditEntry> {
        self.audit(draft(by, action, Some("success"), target, message))
    }

    /// Notes that `gateway` sent with the shared ingest token; the first time a second
    /// gateway does, returns the names (the token then speaks for several gateways, and any
    /// holder can send in any of their names).
    pub fn note_shared_token_gateway(&self, gateway: &str) -> Option<Vec<String>> {
        let mut seen = lock(&self.inner.shared_token_gateways);
        if seen.contains(gateway) || seen.len() >= 16 {
            return None;
        }
        seen.insert(gateway.chars().take(64).collect());
        (seen.len() == 2).then(|| seen.iter().cloned().collect())
    }

    /// The one-time token that lets the first admin sign up while no account exists.
    pub fn setup_token(&self) -> Option<String> {
        lock(&self.inner.setup_token).clone()
    }

    /// Creates the first admin with the setup token; refused once any account exists.
    pub fn setup_first_admin(
        &self,
        setup_token: &str,
        name: &str,
        password: &str,
        source_ip: Option<IpAddr>,
    ) -> Result<()> {
        let expected = self.setup_token();
        if !expected.is_some_and(|expected| {
            secret::constant_time_eq(expected.as_bytes(), setup_token.as_bytes())
        }) {
            return Err(Error::Invalid(
                "wrong or used setup token (it is printed in the server's log at start while no account exists)".to_owned(),
            ));
        }
        let by = Actor {
            name: "setup".to_owned(),
            role: None,
            source_ip,
        };
        self.add_user(&by, name, Role::Admin, password)
    }

    /// Live sessions and throttled keys, for `/metrics`.
    pub fn n_sessions(&self) -> usize {
        lock(&self.inner.sessions).len()
    }

    pub fn n_throttled_keys(&self) -> (usize, u64) {
        let throttle = lock(&self.inner.throttle);
        (throttle.len(), throttle.n_evicted)
    }
}

fn draft(
    by: &Actor,
    action: &str,
    outcome: Option<&str>,
    target: &str,
    message: String,
) -> AuditDraft {
    AuditDraft {
        action: action.to_owned(),
        outcome: outcome.map(str::to_owned),
        actor: Some(by.name.clone()),
        target: Some(target.to_owned()),
        source_ip: by.source_ip,
        message,
        role: by.role.map(|role| role.as_str().to_owned()),
        details: None,
    }
}

fn totp(secret: &[u8]) -> Result<totp_rs::Totp> {
    totp_rs::Builder::new()
        .with_secret(secret.to_vec())
        .build()
        .map_err(|error| Error::Internal(format!("totp: {error}")))
}

/// The step of a valid code for `secret` (base32) at `now`, one step of skew either way.
fn check_totp(secret: &str, code: &str, now: Timestamp) -> Option<u64> {
    let bytes = totp_rs::Secret::try_from_base32(secret).ok()?;
    let totp = totp(bytes.as_bytes()).ok()?;
    let seconds = u64::try_from(now.as_second()).ok()?;
    totp.check(code.trim(), seconds)
}

/// The current code of a base32 secret (for tests and the CLI's self-check).
pub fn totp_code(secret: &str, now: Timestamp) -> Option<String> {
    let bytes = totp_rs::Secret::try_from_base32(secret).ok()?;
    let totp = totp(bytes.as_bytes()).ok()?;
    Some(
        totp.generate(u64::try_from(now.as_second()).ok()?)
            .to_string(),
    )
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
                (byte as char).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
