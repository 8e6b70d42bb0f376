//! A real strongSwan VPN testbed for tunnelwatch's tests.
//!
//! [`Testbed::up`] brings up, in network namespaces private to the testbed, a real
//! strongSwan 5.9.8 IKEv2 gateway (`charon`), two road-warrior clients (each its own
//! `charon`), an HTTP server behind the gateway and, optionally, FreeRADIUS for
//! EAP via RADIUS with accounting. Tests then drive real logins, logouts, dead peers
//! and rekeys, and read what the gateway really logged ([`Testbed::gateway_log`]) or
//! talk to its VICI socket ([`Testbed::vici_socket`]).
//!
//! The work is done by `scripts/vpn-testbed.sh` (see its header for the topology and
//! the strongSwan facts it relies on); this crate runs it with a unique instance name
//! and a fresh temporary directory, so several testbeds run in parallel, and tears the
//! instance down on drop.
//!
//! Gateway connections (the `conn` argument of [`Testbed::connect`]):
//! `rw-psk` (pre-shared keys), `rw-cert` (certificates from a fresh CA),
//! `rw-eap` (EAP-MSCHAPv2 checked by charon), with [`Options::radius`],
//! `rw-radius` (EAP-MSCHAPv2 via eap-radius to FreeRADIUS), and `l2tp-psk`: IKEv1 as
//! L2TP/IPsec clients use it (main mode, one shared PSK, the client's address as its
//! identity, a transport-mode CHILD_SA for UDP 1701), whose quick mode fails here because
//! libipsec does tunnel mode only ([`Testbed::login`] says [`Login::ChildSaFailed`]).
//! Addresses: gateway
//! 192.0.2.1, clients 192.0.2.11 and .12, virtual IP pool 10.99.0.0/24, HTTP server
//! 198.51.100.10:8080.
//!
//! Prerequisites: root, a kernel with network namespaces, veth, TUN and XFRM, and
//! Debian's package manager (missing packages are installed on first use). A missing
//! prerequisite is an [`Error`] with [`ErrorKind::Prerequisite`], never a silent skip.
//!
//! [`pki`] makes a throwaway CA and server certificate for TLS tests; [`tmpfs`] a small file
//! system that fills up.

pub mod browser;
pub mod chromium;
pub mod pki;
pub mod s3;
pub mod tmpfs;

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What [`Testbed::up`] starts besides the gateway, the clients and the HTTP server.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Also run FreeRADIUS in the gateway's namespace: adds the `rw-radius`
    /// connection, and charon sends RADIUS accounting for every IKE_SA.
    pub radius: bool,
    /// With `radius`: send charon's RADIUS accounting to 127.0.0.1:PORT inside the
    /// gateway's namespace (e.g. tunnelwatch's accounting receiver, run there with
    /// [`Testbed::gateway_command`]) instead of FreeRADIUS.
    pub radius_acct_port: Option<u16>,
    /// Also run a private rsyslogd and let the gateway charon log through syslog(3):
    /// see [`Testbed::syslog_log`].
    pub syslog: bool,
    /// Keep the temporary directory (configs, logs) after the testbed is torn down.
    pub keep_dir: bool,
    /// The virtual IP pool as a range (`10.99.0.1-10.99.0.1`: one address, so that the
    /// next client gets the address the last one released). Default `10.99.0.0/24`.
    pub pool: Option<String>,
    /// nginx instead of python's http.server as the API at 198.51.100.10:8080: `/v1/*`
    /// answers JSON; see [`Testbed::api_access_log`] and [`Testbed::api_access_json`].
    pub nginx: bool,
    /// The gateway's `rw-psk` also accepts 3DES/SHA-1/MODP_1024 (after its defaults), and
    /// each client's connection `rw-weak` proposes only that: a session with weak crypto.
    pub weak_crypto: bool,
}

/// One of the two road-warrior clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// Outer address 192.0.2.11; identities `client1@{psk,cert,eap,radius}.vpn.test`,
    /// EAP user `alice`, RADIUS user `carol`.
    Client1,
    /// Outer address 192.0.2.12; identities `client2@...`, EAP user `bob`, RADIUS
    /// user `dave`.
    Client2,
}

impl Client {
    /// The script's name for the client.
    pub fn as_str(self) -> &'static str {
        match self {
            Client::Client1 => "client1",
            Client::Client2 => "client2",
        }
    }

    /// The client's outer (public) address.
    pub fn address(self) -> &'static str {
        match self {
            Client::Client1 => "192.0.2.11",
            Client::Client2 => "192.0.2.12",
        }
    }
}

/// The credential a client logs in with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// The client's configured, correct credential.
    Correct,
    /// This pre-shared key instead of the right one (for `rw-psk`): the gateway logs
    /// `... but MAC mismatched` and answers AUTH_FAILED.
    WrongPsk(String),
    /// This EAP password instead of the right one (for `rw-eap`, `rw-radius`).
    WrongEapPassword(String),
}

/// How a login ended ([`Testbed::login`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    /// The IKE_SA and its CHILD_SA are up.
    Established,
    /// The gateway refused the authentication.
    AuthFailed,
    /// The IKE_SA is up but its CHILD_SA is not (`l2tp-psk`: the client's libipsec
    /// refuses the transport-mode SA, `IPsec SA: unsupported mode`, and answers the
    /// gateway's quick mode with NO_PROPOSAL_CHOSEN). Both sides keep the IKE_SA until
    /// [`Testbed::disconnect`] deletes it.
    ChildSaFailed,
}

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Not root, no usable `ip netns`, packages could not be installed.
    Prerequisite,
    /// The testbed script failed.
    Script,
    /// Reading or writing a file, or waiting for a log line, failed.
    Io,
}

/// A testbed error, with the script's stderr when the script failed.
#[derive(Debug, Clone)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    stderr: String,
}

impl Error {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            stderr: String::new(),
        }
    }

    fn io(context: impl fmt::Display, err: std::io::Error) -> Self {
        Error::new(ErrorKind::Io, format!("{context}: {err}"))
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// What failed.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The script's stderr (empty if the script was not involved).
    pub fn stderr(&self) -> &str {
        &self.stderr
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "testbed: {}", self.message)?;
        let stderr = self.stderr.trim_end();
        if !stderr.is_empty() {
            write!(f, "\n--- vpn-testbed.sh stderr ---\n{stderr}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// A running testbed instance. Dropping it tears it down (kills its daemons, deletes
/// its namespaces).
#[derive(Debug)]
pub struct Testbed {
    name: String,
    dir: PathBuf,
    keep_dir: bool,
    is_up: bool,
}

/// `connect`'s exit status when the gateway refused the authentication.
const EXIT_AUTH_FAILED: i32 = 3;
/// `connect`'s exit status when the IKE_SA came up and its CHILD_SA did not.
const EXIT_CHILD_SA_FAILED: i32 = 5;

static COUNTER: AtomicU32 = AtomicU32::new(0);
static INSTALLED: Mutex<bool> = Mutex::new(false);

/// The path of `scripts/vpn-testbed.sh`: beside the crate whose tests run (cargo sets
/// `CARGO_MANIFEST_DIR` for them; every crate is a top-level folder of the workspace), else
/// where this crate was built. Cargo reuses a build of this crate made in another checkout of
/// the same workspace (its fingerprints are relative), so the build-time path may be gone.
pub fn script_path() -> PathBuf {
    const SCRIPT: &str = "scripts/vpn-testbed.sh";
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(|dir| Path::new(&dir).join("../testbed").join(SCRIPT))
        .filter(|path| std::fs::metadata(path).is_ok())
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(SCRIPT))
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8_lossy(&out).into_owned()
}

/// A name unique among live processes: pid and a per-process counter, base 36
/// (5 + 1 characters for the first 36 testbeds of a process).
fn unique_name() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{}{}",
        base36(u64::from(std::process::id())),
        base36(u64::from(n))
    )
}

fn run_script(args: &[&str]) -> Result<Output, Error> {
    let script = script_path();
    Command::new("bash")
        .arg(&script)
        .args(args)
        .output()
        .map_err(|e| Error::io(format!("running {}", script.display()), e))
}

fn script_error(kind: ErrorKind, what: &str, out: &Output) -> Error {
    let status = match out.status.code() {
        Some(code) => format!("exit status {code}"),
        None => "killed by a signal".to_owned(),
    };
    Error {
        kind,
        message: format!("{what} failed ({status})"),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn check_prerequisites() -> Result<(), Error> {
    let status = fs::read_to_string("/proc/self/status")
        .map_err(|e| Error::io("reading /proc/self/status", e))?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .unwrap_or("");
    if uid != "0" {
        return Err(Error::new(
            ErrorKind::Prerequisite,
            format!(
                "the VPN testbed needs root (effective uid is {uid:?}): it creates network \
                 namespaces, mounts and installs packages"
            ),
        ));
    }
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map_err(|e| {
            Error::new(
                ErrorKind::Prerequisite,
                format!("cannot run `ip netns list` (iproute2 missing?): {e}"),
            )
        })?;
    if !out.status.success() {
        let mut err = script_error(ErrorKind::Prerequisite, "`ip netns list`", &out);
        err.message
            .push_str(": network namespaces are not usable here");
        return Err(err);
    }
    Ok(())
}

/// Runs `vpn-testbed.sh install` (once per process; the script itself serialises
/// concurrent installs from several processes).
fn install(syslog: bool) -> Result<(), Error> {
    let mut done = INSTALLED
        .lock()
        .map_err(|_| Error::new(ErrorKind::Prerequisite, "an earlier install panicked"))?;
    if *done && !syslog {
        return Ok(());
    }
    let mut args = vec!["install"];
    if syslog {
        args.push("--syslog");
    }
    let out = run_script(&args)?;
    if !out.status.success() {
        return Err(script_error(
            ErrorKind::Prerequisite,
            "installing the testbed's packages (vpn-testbed.sh install)",
            &out,
        ));
    }
    *done = true;
    Ok(())
}

impl Testbed {
    /// Installs missing packages, then brings up a new testbed instance in a fresh
    /// directory under [`std::env::temp_dir`]. Returns when every daemon is ready.
    pub fn up(opts: Options) -> Result<Testbed, Error> {
        check_prerequisites()?;
        install(opts.syslog)?;
        let name = unique_name();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("tunnelwatch-testbed-{name}-{nanos:x}"));
        fs::create_dir(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        // A namespace left over from a dead process that had our pid: clear it.
        if fs::metadata(format!("/run/netns/tw-{name}-gw")).is_ok() {
            let out = run_script(&["down", &name, &dir.to_string_lossy()])?;
            if !out.status.success() {
                return Err(script_error(
                    ErrorKind::Script,
                    "clearing a stale instance",
                    &out,
                ));
            }
        }
        let mut testbed = Testbed {
            name,
            dir,
            keep_dir: opts.keep_dir,
            is_up: false,
        };
        let mut args = vec!["up"];
        if opts.radius {
            args.push("--radius");
        }
        let acct_port = opts.radius_acct_port.map(|port| port.to_string());
        if let Some(port) = &acct_port {
            args.extend(["--radius-acct-port", port.as_str()]);
        }
        if opts.syslog {
            args.push("--syslog");
        }
        if let Some(pool) = &opts.pool {
            args.extend(["--pool", pool.as_str()]);
        }
        if opts.nginx {
            args.push("--nginx");
        }
        if opts.weak_crypto {
            args.push("--weak-crypto");
        }
        // The script tears down what it built when `up` fails; the directory stays,
        // for its logs.
        if let Err(mut err) = testbed.run(&args, &[]) {
            err.message
                .push_str(&format!(" (logs in {})", testbed.dir.display()));
            return Err(err);
        }
        testbed.is_up = true;
        Ok(testbed)
    }

    /// Runs `vpn-testbed.sh SUBCOMMAND NAME DIR EXTRA...`.
    fn run_raw(&self, subcommand: &str, extra: &[&str]) -> Result<Output, Error> {
        let dir = self.dir.to_string_lossy();
        let mut args = vec![subcommand, self.name.as_str(), dir.as_ref()];
        args.extend_from_slice(extra);
        run_script(&args)
    }

    fn run(&self, subcommand_and_args: &[&str], more: &[&str]) -> Result<Output, Error> {
        let (subcommand, extra) = subcommand_and_args
            .split_first()
            .ok_or_else(|| Error::new(ErrorKind::Script, "no subcommand"))?;
        let mut all: Vec<&str> = extra.to_vec();
        all.extend_from_slice(more);
        let out = self.run_raw(subcommand, &all)?;
        if out.status.success() {
            Ok(out)
        } else {
            let what = format!("vpn-testbed.sh {subcommand} {}", all.join(" "));
            Err(script_error(ErrorKind::Script, what.trim_end(), &out))
        }
    }

    /// Moves `client` to `address` (IPv4; it exists only inside the testbed's namespaces):
    /// its next IKE_SAs come from there, as if it were elsewhere in the world.
    pub fn move_client(&self, client: Client, address: &str) -> Result<(), Error> {
        self.run(&["move", client.as_str(), address], &[])?;
        Ok(())
    }

    /// Logs `client` in on the gateway connection `conn` (`rw-psk`, `rw-cert`,
    /// `rw-eap`, `rw-radius`). `Ok(true)`: IKE_SA and CHILD_SA established;
    /// `Ok(false)`: the authentication failed; `Err`: anything else went wrong (a
    /// CHILD_SA that failed too: see [`Testbed::login`]).
    pub fn connect(&self, client: Client, conn: &str, cred: Credential) -> Result<bool, Error> {
        let (login, out) = self.try_login(client, conn, &cred)?;
        match login {
            Some(Login::Established) => Ok(true),
            Some(Login::AuthFailed) => Ok(false),
            Some(Login::ChildSaFailed) | None => Err(script_error(
                ErrorKind::Script,
                &format!("connect {} {conn}", client.as_str()),
                &out,
            )),
        }
    }

    /// Logs `client` in on the gateway connection `conn` (any of [`Testbed::connect`]'s, and
    /// `l2tp-psk`) and says how far it got; `Err` when it failed for another reason.
    pub fn login(&self, client: Client, conn: &str, cred: Credential) -> Result<Login, Error> {
        let (login, out) = self.try_login(client, conn, &cred)?;
        login.ok_or_else(|| {
            script_error(
                ErrorKind::Script,
                &format!("connect {} {conn}", client.as_str()),
                &out,
            )
        })
    }

    fn try_login(
        &self,
        client: Client,
        conn: &str,
        cred: &Credential,
    ) -> Result<(Option<Login>, Output), Error> {
        let mut args = vec![client.as_str(), conn];
        match cred {
            Credential::Correct => {}
            Credential::WrongPsk(psk) => args.extend(["--psk", psk.as_str()]),
            Credential::WrongEapPassword(pw) => args.extend(["--eap-password", pw.as_str()]),
        }
        let out = self.run_raw("connect", &args)?;
        let login = match out.status.code() {
            Some(0) => Some(Login::Established),
            Some(EXIT_AUTH_FAILED) => Some(Login::AuthFailed),
            Some(EXIT_CHILD_SA_FAILED) => Some(Login::ChildSaFailed),
            _ => None,
        };
        Ok((login, out))
    }

    /// The client deletes its CHILD_SAs and then its IKE_SA (an orderly logout).
    pub fn disconnect(&self, client: Client) -> Result<(), Error> {
        self.run(&["disconnect", client.as_str()], &[]).map(drop)
    }

    /// The client deletes only its IKE_SA (the CHILD_SAs go with it).
    pub fn disconnect_ike_only(&self, client: Client) -> Result<(), Error> {
        self.run(&["disconnect", client.as_str(), "--ike-only"], &[])
            .map(drop)
    }

    /// The gateway terminates the client's IKE_SAs (`swanctl --terminate --ike-id`).
    pub fn terminate(&self, client: Client) -> Result<(), Error> {
        self.run(&["terminate", client.as_str()], &[]).map(drop)
    }

    /// The gateway terminates every IKE_SA of connection `conn` by its name
    /// (`swanctl --terminate --ike CONN`), whichever clients hold them; returns when charon
    /// lists none of them any more.
    pub fn terminate_connection(&self, conn: &str) -> Result<(), Error> {
        self.run(&["terminate-conn", conn], &[]).map(drop)
    }

    /// SIGKILLs the client's charon: the gateway finds a dead peer by DPD within
    /// about 10 s (`giving up after 2 retransmits`).
    pub fn kill_client(&self, client: Client) -> Result<(), Error> {
        self.run(&["kill-client", client.as_str()], &[]).map(drop)
    }

    /// Starts the client's charon again after [`Testbed::kill_client`].
    pub fn start_client(&self, client: Client) -> Result<(), Error> {
        self.run(&["start-client", client.as_str()], &[]).map(drop)
    }

    /// Stops the gateway's charon and starts it again (its SAs are gone; clients must
    /// connect again). Returns when the new charon has loaded its configuration.
    pub fn restart_gateway(&self) -> Result<(), Error> {
        self.run(&["restart-gateway"], &[]).map(drop)
    }

    /// A command that runs `program` inside the gateway's network namespace (to reach
    /// addresses only the gateway sees, such as its 127.0.0.1).
    pub fn gateway_command(&self, program: &Path) -> std::process::Command {
        let mut command = std::process::Command::new("ip");
        command
            .args(["netns", "exec", &format!("tw-{}-gw", self.name)])
            .arg(program);
        command
    }

    /// The gateway rekeys the client's IKE_SA; returns when the new IKE_SA is up.
    pub fn rekey(&self, client: Client) -> Result<(), Error> {
        self.run(&["rekey", client.as_str()], &[]).map(drop)
    }

    /// The client rekeys its IKE_SA; returns when the new IKE_SA is up.
    pub fn rekey_by_client(&self, client: Client) -> Result<(), Error> {
        self.run(&["rekey", client.as_str(), "--by-client"], &[])
            .map(drop)
    }

    /// An HTTP GET from the client through the tunnel to 198.51.100.10:8080; returns
    /// the body.
    pub fn curl(&self, client: Client) -> Result<String, Error> {
        self.curl_path(client, "/")
    }

    /// An HTTP GET of `path` (plain characters only) from the client through the tunnel to
    /// the API; returns the body.
    pub fn curl_path(&self, client: Client, path: &str) -> Result<String, Error> {
        let out = self.run(&["curl", client.as_str(), path], &[])?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// With [`Options::nginx`]: the API's access log in nginx's `combined` format.
    pub fn api_access_log(&self) -> PathBuf {
        self.dir.join("api/access.log")
    }

    /// With [`Options::nginx`]: the API's access log as JSON lines (nginx variable names).
    pub fn api_access_json(&self) -> PathBuf {
        self.dir.join("api/access.json")
    }

    /// The gateway's charon log (filelog, `ike_name = yes`):
    /// `Nov 25 08:25:48 13[IKE] <rw-psk|1> IKE_SA rw-psk[1] established ...`.
    pub fn gateway_log(&self) -> PathBuf {
        self.dir.join("gw/charon.log")
    }

    /// The same log without the `<conn|id>` prefix (`ike_name = no`).
    pub fn gateway_log_noname(&self) -> PathBuf {
        self.dir.join("gw/charon-noname.log")
    }

    /// With [`Options::syslog`]: the gateway's log as a private rsyslogd wrote it,
    /// `Nov 25 08:25:48 gw charon[1234]: 13[IKE] <rw-psk|1> ...`.
    pub fn syslog_log(&self) -> PathBuf {
        self.dir.join("gw/syslog.log")
    }

    /// A client's own charon log.
    pub fn client_log(&self, client: Client) -> PathBuf {
        self.dir.join(client.as_str()).join("charon.log")
    }

    /// The gateway charon's VICI socket.
    pub fn vici_socket(&self) -> PathBuf {
        self.dir.join("gw/charon.vici")
    }

    /// The instance's working directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The instance's name (its namespaces are `tw-NAME-{gw,c1,c2,api}`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits until a line of the gateway log contains `needle`; returns that line.
    pub fn wait_for_gateway_log(&self, needle: &str, timeout: Duration) -> Result<String, Error> {
        let path = self.gateway_log();
        let deadline = Instant::now() + timeout;
        loop {
            let text = fs::read_to_string(&path)
                .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
            if let Some(line) = text.lines().find(|l| l.contains(needle)) {
                return Ok(line.to_owned());
            }
            if Instant::now() >= deadline {
                return Err(Error::new(
                    ErrorKind::Io,
                    format!(
                        "no line containing {needle:?} in {} after {timeout:?}",
                        path.display()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Tears the testbed down now, reporting failures (drop does the same silently).
    pub fn down(mut self) -> Result<(), Error> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<(), Error> {
        if !self.is_up {
            return Ok(());
        }
        self.is_up = false;
        self.run(&["down"], &[])?;
        if !self.keep_dir {
            fs::remove_dir_all(&self.dir)
                .map_err(|e| Error::io(format!("removing {}", self.dir.display()), e))?;
        }
        Ok(())
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        // Errors cannot be reported from drop; `down` is idempotent, and
        // `Testbed::down` reports them.
        let _ = self.teardown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_and_unique() {
        let a = unique_name();
        let b = unique_name();
        assert_ne!(a, b);
        assert!(
            a.len() <= 8 && a.chars().all(|c| c.is_ascii_alphanumeric()),
            "{a}"
        );
    }

    #[test]
    fn base36_digits() {
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
    }

    #[test]
    fn script_is_where_the_crate_expects_it() {
        assert!(fs::metadata(script_path()).is_ok());
    }
}
