//! What the notification tests share: a real SMTP server (aiosmtpd, started with
//! `$TW_AIOSMTPD_PYTHON`, killed by its pid when dropped), a scripted HTTP receiver on
//! loopback, and a notification to send.
#![allow(dead_code)] // each test file uses a part

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener as StdTcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alerting::notify::Notification;
use jiff::Timestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SMTP_SCRIPT: &str = include_str!("smtp_server.py");

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    let listener = StdTcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// `$TW_AIOSMTPD_PYTHON`, which must be there: scripts/test.sh installs aiosmtpd and sets it.
pub fn aiosmtpd_python() -> PathBuf {
    let Some(python) = std::env::var_os("TW_AIOSMTPD_PYTHON") else {
        panic!(
            "TW_AIOSMTPD_PYTHON is not set: the e-mail tests need a Python with aiosmtpd; run \
             scripts/test.sh (it installs it into /var/tmp/tunnelwatch-aiosmtpd-venv), or \
             `python3 -m venv V && V/bin/pip install aiosmtpd==1.4.6` and set TW_AIOSMTPD_PYTHON=V/bin/python"
        )
    };
    let python = PathBuf::from(python);
    let executable = std::fs::metadata(&python).is_ok_and(|metadata| {
        use std::os::unix::fs::PermissionsExt;
        metadata.is_file() && metadata.permissions().mode() & 0o111 != 0
    });
    assert!(
        executable,
        "TW_AIOSMTPD_PYTHON={} is not an executable file (run scripts/test.sh to install aiosmtpd)",
        python.display()
    );
    python
}

/// How the SMTP server behaves.
#[derive(Debug, Clone, Default)]
pub struct SmtpOptions {
    /// STARTTLS (required) with this certificate chain and key, PEM.
    pub tls: Option<(String, String)>,
    /// AUTH required with this user and password.
    pub auth: Option<(String, String)>,
    /// Answer `451 try later` to this many mails first.
    pub fail_first: u32,
    /// Answer 550 to this recipient.
    pub reject_rcpt: Option<String>,
}

/// One mail as aiosmtpd received it and Python's e-mail parser read it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ReceivedMail {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    pub tls: bool,
    pub authenticated: bool,
    pub headers: Vec<(String, String)>,
    pub subject: String,
    pub message_id: String,
    pub text: Option<String>,
    pub html: Option<String>,
    pub raw: String,
}

impl ReceivedMail {
    pub fn header_names(&self) -> Vec<String> {
        self.headers
            .iter()
            .map(|(name, _)| name.to_ascii_lowercase())
            .collect()
    }
}

/// A running aiosmtpd; killed (by its pid) when dropped.
#[derive(Debug)]
pub struct SmtpServer {
    child: Child,
    pub port: u16,
    out: PathBuf,
}

impl SmtpServer {
    /// Starts aiosmtpd on `port` in `dir` (its script, its mails) and waits until it answers.
    pub fn start(dir: &Path, port: u16, options: &SmtpOptions) -> SmtpServer {
        let python = aiosmtpd_python();
        let script = dir.join("smtp_server.py");
        std::fs::write(&script, SMTP_SCRIPT).expect("write the SMTP server script");
        let out = dir.join(format!("mail-{port}"));
        std::fs::create_dir_all(&out).expect("mail directory");
        let mut command = Command::new(&python);
        command
            .arg(&script)
            .args(["--port", &port.to_string()])
            .arg("--out")
            .arg(&out)
            .args(["--fail-first", &options.fail_first.to_string()]);
        if let Some((chain_pem, key_pem)) = &options.tls {
            let cert = dir.join("smtp-chain.pem");
            let key = dir.join("smtp-key.pem");
            std::fs::write(&cert, chain_pem).expect("write cert");
            std::fs::write(&key, key_pem).expect("write key");
            command.arg("--cert").arg(&cert).arg("--key").arg(&key);
        }
        if let Some((user, password)) = &options.auth {
            command.args(["--user", user, "--password", password]);
        }
        if let Some(rcpt) = &options.reject_rcpt {
            command.args(["--reject-rcpt", rcpt]);
        }
        let log = dir.join(format!("smtp-{port}.log"));
        let log_file = std::fs::File::create(&log).expect("smtp log");
        let child = command
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run {} ({error})", python.display()));
        let mut server = SmtpServer { child, port, out };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = std::fs::read_to_string(&log).is_ok_and(|text| text.contains("ready"));
            if ready && TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "aiosmtpd exited ({status}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// The mails received so far, in order.
    pub fn mails(&self) -> Vec<ReceivedMail> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&self.out)
            .expect("mail directory")
            .map(|entry| entry.expect("entry").path())
            .filter(|path| {
                path.extension()
                    .is_some_and(|extension| extension == "json")
            })
            .collect();
        paths.sort();
        paths
            .iter()
            .map(|path| {
                serde_json::from_slice(&std::fs::read(path).expect("read mail")).expect("mail json")
            })
            .collect()
    }

    /// Waits until `n` mails arrived (or panics after `timeout`).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<ReceivedMail> {
        let deadline = Instant::now() + timeout;
        loop {
            let mails = self.mails();
            if mails.len() >= n {
                return mails;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} mails arrived within {timeout:?}",
                mails.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        // Our own child, by its pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP request as the receiver read it.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    pub request_line: String,
    /// Lower-cased names.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

/// A hand-written HTTP/1.1 receiver on loopback that answers each request with the next
/// scripted status (the last one repeated), and keeps what it got.
#[derive(Debug, Clone)]
pub struct HttpReceiver {
    pub address: SocketAddr,
    pub requests: Arc<Mutex<Vec<ReceivedRequest>>>,
}

impl HttpReceiver {
    pub async fn start(statuses: Vec<u16>) -> HttpReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let requests: Arc<Mutex<Vec<ReceivedRequest>>> = Arc::default();
        let kept = Arc::clone(&requests);
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let request = read_request(&mut stream).await;
                let status = {
                    let mut kept = kept.lock().expect("lock");
                    kept.push(request);
                    statuses
                        .get(kept.len() - 1)
                        .or(statuses.last())
                        .copied()
                        .unwrap_or(200)
                };
                let location = if (300..400).contains(&status) {
                    format!("Location: http://{address}/elsewhere\r\n")
                } else {
                    String::new()
                };
                let response = format!(
                    "HTTP/1.1 {status} Scripted\r\n{location}Content-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            }
        });
        HttpReceiver { address, requests }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.requests.lock().expect("lock").clone()
    }
}

async fn read_request(stream: &mut tokio::net::TcpStream) -> ReceivedRequest {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break end;
        }
        let n = stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "connection closed mid-request");
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_owned();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|length| length.parse().ok())
        .unwrap_or(0);
    let mut body = buffer[header_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.expect("read body");
        assert!(n > 0, "connection closed mid-body");
        body.extend_from_slice(&chunk[..n]);
    }
    ReceivedRequest {
        request_line,
        headers,
        body,
    }
}

/// A notification with every field set.
pub fn notification(id: &str) -> Notification {
    Notification {
        id: id.to_owned(),
        alert_id: "alert-7".to_owned(),
        rule_id: "brute-force".to_owned(),
        rule_name: "Brute force".to_owned(),
        severity: "high".to_owned(),
        status: "firing".to_owned(),
        summary: "12 failed logins for alice in 1m".to_owned(),
        description: "Many failed logins from one address.".to_owned(),
        labels: BTreeMap::from([("user.name".to_owned(), "alice".to_owned())]),
        user: Some("alice".to_owned()),
        source_ips: vec!["203.0.113.7".to_owned(), "198.51.100.9".to_owned()],
        countries: vec!["NL".to_owned(), "BR".to_owned()],
        count: 12,
        first_event: Timestamp::from_second(1_800_000_000).expect("time"),
        last_event: Timestamp::from_second(1_800_000_060).expect("time"),
        console_url: Some("https://tw.example.org/alerts/alert-7".to_owned()),
        revoke_url: Some("https://tw.example.org/revoke/alert-7?user=alice".to_owned()),
    }
}

/// Waits until `condition` holds (or panics after `timeout`, saying `what`).
pub async fn eventually(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
