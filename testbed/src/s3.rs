//! A real S3-compatible server for tests: moto's `moto_server` (PyPI `moto[server]`) on a
//! loopback port, with one bucket. It is killed (by its pid) when dropped.
//!
//! `scripts/test.sh` installs moto into a virtualenv and sets `TW_MOTO_SERVER`; without it,
//! `moto_server` must be on `PATH`. A missing server is an error that says so, never a skip.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Credentials moto accepts (any are accepted; requests are still signed with them).
pub const ACCESS_KEY_ID: &str = "AKIATUNNELWATCHTEST";
pub const SECRET_ACCESS_KEY: &str = "tunnelwatch-test-secret";
pub const REGION: &str = "us-east-1";

/// A running moto server.
#[derive(Debug)]
pub struct S3Server {
    child: Child,
    port: u16,
}

impl S3Server {
    /// Starts moto on a free loopback port and waits until it answers.
    pub fn start() -> Result<S3Server, String> {
        S3Server::start_on(free_port()?)
    }

    /// Starts moto on `port` (see [`S3Server::port`]).
    pub fn start_on(port: u16) -> Result<S3Server, String> {
        #[allow(clippy::disallowed_methods)]
        let program = std::env::var("TW_MOTO_SERVER").unwrap_or_else(|_| "moto_server".to_owned());
        let log = std::env::temp_dir().join(format!("tunnelwatch-moto-{port}.log"));
        let log_file = std::fs::File::create(&log)
            .map_err(|error| format!("cannot create {}: {error}", log.display()))?;
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(
                log_file
                    .try_clone()
                    .map_err(|error| format!("cannot open the moto log: {error}"))?,
            )
            .stderr(log_file)
            .spawn()
            .map_err(|error| {
                format!(
                    "cannot run `{program}` ({error}): the S3 tests need moto's server; \
                     run scripts/test.sh (it installs it) or `pip install 'moto[server]'` and set TW_MOTO_SERVER"
                )
            })?;
        let mut server = S3Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                let output = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("moto_server exited ({status}): {output}"));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "moto_server did not listen on 127.0.0.1:{port} within 30 s (log: {})",
                    log.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Let it finish starting up before the first request.
        server.request("GET", "/", b"")?;
        Ok(server)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket (moto does not check signatures, so a plain request will do).
    pub fn create_bucket(&self, name: &str) -> Result<(), String> {
        let response = self.request("PUT", &format!("/{name}"), b"")?;
        if response.starts_with("HTTP/1.1 200") {
            Ok(())
        } else {
            Err(format!("creating bucket {name}: {response}"))
        }
    }

    /// The object keys in a bucket (from the ListObjectsV2 XML).
    pub fn list(&self, bucket: &str) -> Result<Vec<String>, String> {
        let response =
            self.request("GET", &format!("/{bucket}?list-type=2&max-keys=10000"), b"")?;
        Ok(response
            .split("<Key>")
            .skip(1)
            .filter_map(|part| part.split("</Key>").next())
            .map(str::to_owned)
            .collect())
    }

    /// The port it listens on (to start another on the same one after [`S3Server::stop`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server (the next request fails until [`S3Server::start`] again).
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn request(&self, method: &str, path: &str, body: &[u8]) -> Result<String, String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))
            .map_err(|error| format!("cannot connect to moto: {error}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|error| error.to_string())?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        )
        .and_then(|()| stream.write_all(body))
        .map_err(|error| format!("cannot send to moto: {error}"))?;
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .map_err(|error| format!("cannot read from moto: {error}"))?;
        Ok(response)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|error| format!("no free port: {error}"))
}
