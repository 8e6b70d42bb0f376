//! The control socket: how `tunnelwatch user …` and `tunnelwatch token …` change accounts
//! while a server runs. The server holds the data directory (and with it the audit trail),
//! so the command asks it, over `DATA/control/control.sock`: a Unix socket in a directory
//! only the server's user can enter, and whose peers must be that user or root (checked
//! with `SO_PEERCRED`). One JSON request per connection, one JSON reply. With no server
//! running, the command opens the data directory itself and does the same ([`apply`]).

use std::io::{BufRead, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use dashboards::access::{Access, Actor, Grant, Role};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// A change or a listing the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    UserAdd {
        name: String,
        role: Role,
        password: String,
    },
    UserList,
    UserPasswd {
        name: String,
        password: String,
    },
    UserDisable {
        name: String,
    },
    UserEnable {
        name: String,
    },
    UserTotp {
        name: String,
    },
    TokenCreate {
        name: String,
        grant: Grant,
        expires_days: Option<u32>,
    },
    TokenList,
    TokenRevoke {
        name: String,
    },
    AlertAck {
        id: String,
        comment: Option<String>,
    },
    AlertResolve {
        id: String,
        comment: Option<String>,
    },
    AlertAssign {
        id: String,
        assignee: String,
        comment: Option<String>,
    },
    SilenceAdd {
        request: alerting::silence::SilenceRequest,
    },
    SilenceList,
    SilenceExpire {
        id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Reply {
    Ok { text: String },
    Error { message: String },
}

/// The largest request read from the socket.
const MAX_REQUEST_BYTES: u64 = 64 * 1024;

fn socket_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("control")
}

pub fn socket_path(data_dir: &Path) -> PathBuf {
    socket_dir(data_dir).join("control.sock")
}

/// Carries out `request` as `actor`; the text is what the command prints. Alerts and
/// silences need the running server's alerting service (`alerting`).
pub fn apply(
    access: &Access,
    alerting: Option<&alerting::Alerting>,
    actor: &Actor,
    request: Request,
) -> Result<String, String> {
    let text =
        |result: dashboards::access::Result<String>| result.map_err(|error| error.to_string());
    let running = || {
        alerting.ok_or_else(|| {
            "alerts and silences change only through a running server (none answers on this data directory)".to_owned()
        })
    };
    // The audit entry before the change; when the trail cannot take it, nothing changes.
    let audit = |action: &'static str, target: &str, message: String| {
        access
            .record(actor, action, target, message)
            .map(|_| ())
            .map_err(|error| alerting::Error::Audit(error.to_string()))
    };
    match request {
        Request::AlertAck { id, comment } => {
            change_alert(running()?, actor, &id, alerting::Change::Acknowledge, comment, audit)
        }
        Request::AlertResolve { id, comment } => {
            change_alert(running()?, actor, &id, alerting::Change::Resolve, comment, audit)
        }
        Request::AlertAssign {
            id,
            assignee,
            comment,
        } => {
            let assignee = assignee.trim();
            if assignee.is_empty()
                || assignee.len() > 64
                || assignee.chars().any(|c| c.is_control())
            {
                return Err(
                    "the assignee must be 1 to 64 characters, none of them control characters"
                        .to_owned(),
                );
            }
            change_alert(
                running()?,
                actor,
                &id,
                alerting::Change::Assign(assignee.to_owned()),
                comment,
                audit,
            )
        }
        Request::SilenceAdd { request } => running()?
            .add_silence(request, &actor.name, |silence| {
                audit("silence.add", &silence.id, silence.added_message(&actor.name))
            })
            .map(|silence| format!("{} until {}", silence.id, silence.ends))
            .map_err(|error| error.to_string()),
        Request::SilenceList => {
            let now = jiff::Timestamp::now();
            let mut out = format!("{:<20} {:<8} {:<27} {:<20} {:<40} {}\n", "ID", "STATE", "ENDS", "AUTHOR", "MATCHERS", "COMMENT");
            for silence in running()?.silences() {
                out.push_str(&format!(
                    "{:<20} {:<8} {:<27} {:<20} {:<40} {}\n",
                    silence.id,
                    silence.state(now),
                    silence.ends.to_string(),
                    crate::alerts_cli::printable(&silence.author),
                    crate::alerts_cli::printable(&silence.matchers_text()),
                    crate::alerts_cli::printable(&silence.comment)
                ));
            }
            Ok(out.trim_end().to_owned())
        }
        Request::SilenceExpire { id } => running()?
            .expire_silence(&id, &actor.name, |silence| {
                audit(
                    "silence.expire",
                    &silence.id,
                    format!("{} expired silence {}", actor.name, silence.id),
                )
            })
            .map(|silence| format!("expired {}", silence.id))
            .map_err(|error| error.to_string()),
        Request::UserAdd {
            name,
            role,
            password,
        } => text(
            access
                .add_user(actor, &name, role, &password)
                .map(|()| format!("added {} with role {role}", name.to_ascii_lowercase())),
        ),
        Request::UserList => {
            let mut out = format!("{:<24} {:<10} {:<9} {:<5} {}\n", "NAME", "ROLE", "STATE", "TOTP", "CHANGED");
            for user in access.users() {
                out.push_str(&format!(
                    "{:<24} {:<10} {:<9} {:<5} {}\n",
                    user.name,
                    user.role,
                    if user.disabled { "disabled" } else { "enabled" },
                    if user.totp { "yes" } else { "no" },
                    user.changed
                ));
            }
            Ok(out.trim_end().to_owned())
        }
        Request::UserPasswd { name, password } => text(
            access
                .set_password(actor, &name, &password)
                .map(|()| format!("set the password of {}; their sessions ended", name.to_ascii_lowercase())),
        ),
        Request::UserDisable { name } => text(
            access
                .set_disabled(actor, &name, true)
                .map(|()| format!("disabled {}; their sessions ended", name.to_ascii_lowercase())),
        ),
        Request::UserEnable { name } => text(
            access
                .set_disabled(actor, &name, false)
                .map(|()| format!("enabled {}", name.to_ascii_lowercase())),
        ),
        Request::UserTotp { name } => text(access.enrol_totp(actor, &name).map(|uri| {
            format!("{uri}\n\nAdd this URI to an authenticator app (or a QR code of it); from now on {} signs in with its code.", name.to_ascii_lowercase())
        })),
        Request::TokenCreate {
            name,
            grant,
            expires_days,
        } => text(access.create_token(actor, &name, grant, expires_days)),
        Request::TokenList => {
            let mut out = format!("{:<24} {:<28} {:<27} {}\n", "NAME", "GRANT", "EXPIRES", "STATE");
            let now = jiff::Timestamp::now();
            for token in access.tokens() {
                let state = match (token.revoked, token.expires) {
                    (Some(at), _) => format!("revoked {at}"),
                    (None, Some(expires)) if expires <= now => "expired".to_owned(),
                    _ => "active".to_owned(),
                };
                out.push_str(&format!(
                    "{:<24} {:<28} {:<27} {state}\n",
                    token.name,
                    token.grant.to_string(),
                    token.expires.map_or("never".to_owned(), |at| at.to_string()),
                ));
            }
            Ok(out.trim_end().to_owned())
        }
        Request::TokenRevoke { name } => text(
            access
                .revoke_token(actor, &name)
                .map(|()| format!("revoked {}: it stops working now", name.to_ascii_lowercase())),
        ),
    }
}

/// An operator's change to an alert through the running service, audited first.
fn change_alert(
    alerting: &alerting::Alerting,
    actor: &Actor,
    id: &str,
    change: alerting::Change,
    comment: Option<String>,
    audit: impl FnOnce(&'static str, &str, String) -> Result<(), alerting::Error>,
) -> Result<String, String> {
    let message = change.audit_message(&actor.name, id, comment.as_deref());
    let action = change.audit_action();
    alerting
        .change(id, &change, &actor.name, comment, |row| {
            audit(action, &row.alert_id, message)
        })
        .map(|row| format!("{} {} ({})", row.action, row.alert_id, row.rule_id))
        .map_err(|error| error.to_string())
}

/// The user this process runs as.
fn own_uid() -> anyhow::Result<u32> {
    Ok(std::fs::metadata("/proc/self")
        .context("cannot read /proc/self")?
        .uid())
}

/// The login name of `uid` (from /etc/passwd), or `uid<N>`.
pub fn user_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                let _password = fields.next()?;
                (fields.next()?.parse::<u32>().ok()? == uid).then(|| name.to_owned())
            })
        })
        .unwrap_or_else(|| format!("uid{uid}"))
}

/// The actor of a command run on this host by this process's user.
pub fn local_actor() -> anyhow::Result<Actor> {
    Ok(Actor::cli(&user_name(own_uid()?)))
}

/// Listens on the control socket; the task runs until aborted.
pub fn listen(
    data_dir: &Path,
    access: Access,
    alerting: Option<alerting::Alerting>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let dir = socket_dir(data_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // Only the server's user may enter the directory, so no one else can reach the socket,
    // whatever the umask made of it.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict {}", dir.display()))?;
    let path = socket_path(data_dir);
    // A socket left by a server that died (this process holds the data directory's lock).
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)
        .with_context(|| format!("cannot listen on {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {}", path.display()))?;
    let server_uid = own_uid()?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let access = access.clone();
            let alerting = alerting.clone();
            tokio::spawn(async move {
                if let Err(error) = serve_one(stream, access, alerting, server_uid).await {
                    tracing::warn!(%error, "control socket request failed");
                }
            });
        }
    }))
}

async fn serve_one(
    stream: tokio::net::UnixStream,
    access: Access,
    alerting: Option<alerting::Alerting>,
    server_uid: u32,
) -> anyhow::Result<()> {
    let peer_uid = stream
        .peer_cred()
        .context("cannot read the peer's credentials")?
        .uid();
    let (read, mut write) = stream.into_split();
    if peer_uid != server_uid && peer_uid != 0 {
        tracing::warn!(peer_uid, "refused a control request from another user");
        let reply = Reply::Error {
            message: "only the server's user or root may change accounts".to_owned(),
        };
        write.write_all(&reply_line(&reply)).await?;
        return Ok(());
    }
    let mut line = String::new();
    let mut reader =
        tokio::io::BufReader::new(tokio::io::AsyncReadExt::take(read, MAX_REQUEST_BYTES));
    reader.read_line(&mut line).await?;
    let reply = match serde_json::from_str::<Request>(&line) {
        Err(error) => Reply::Error {
            message: format!("unreadable control request: {error}"),
        },
        Ok(request) => {
            let actor = Actor::cli(&user_name(peer_uid));
            match tokio::task::spawn_blocking(move || {
                apply(&access, alerting.as_ref(), &actor, request)
            })
            .await
            {
                Ok(Ok(text)) => Reply::Ok { text },
                Ok(Err(message)) => Reply::Error { message },
                Err(error) => Reply::Error {
                    message: format!("the request failed: {error}"),
                },
            }
        }
    };
    write.write_all(&reply_line(&reply)).await?;
    Ok(())
}

fn reply_line(reply: &Reply) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(reply).unwrap_or_else(|_| b"{}".to_vec());
    bytes.push(b'\n');
    bytes
}

/// Sends `request` to the server running on `data_dir`; `None` when none is running.
pub fn send(data_dir: &Path, request: &Request) -> anyhow::Result<Option<Reply>> {
    let path = socket_path(data_dir);
    let mut stream = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(stream) => stream,
        Err(error)
            if matches!(
                error.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(error) => {
            return Err(error)
                .with_context(|| format!("cannot reach the server at {}", path.display()));
        }
    };
    let mut line = serde_json::to_vec(request).context("cannot encode the request")?;
    line.push(b'\n');
    stream
        .write_all(&line)
        .context("cannot send the request to the server")?;
    let mut reply = String::new();
    std::io::BufReader::new(stream)
        .read_line(&mut reply)
        .context("no answer from the server")?;
    serde_json::from_str(&reply)
        .map(Some)
        .with_context(|| format!("unreadable answer from the server: {reply:?}"))
}

/// Runs `request` against `data_dir`: through the server when one runs, else directly.
pub fn run(data_dir: &Path, request: Request) -> anyhow::Result<String> {
    if let Some(reply) = send(data_dir, &request)? {
        return match reply {
            Reply::Ok { text } => Ok(text),
            Reply::Error { message } => Err(anyhow::anyhow!(message)),
        };
    }
    let store =
        store::Store::open(&crate::config::store_config_for_dir(data_dir)).with_context(|| {
            format!(
                "cannot open the data directory {} (a server that runs on it answers on {})",
                data_dir.display(),
                socket_path(data_dir).display()
            )
        })?;
    let access = Access::open(
        data_dir,
        dashboards::access::Settings::default(),
        store.clone(),
    )
    .with_context(|| format!("cannot read the accounts of {}", data_dir.display()))?;
    let result =
        apply(&access, None, &local_actor()?, request).map_err(|message| anyhow::anyhow!(message));
    // Sealed before the store closes, as a server does at shutdown.
    if let Err(error) = store.seal_audit() {
        tracing::error!(%error, "sealing the audit trail failed");
    }
    result
}
