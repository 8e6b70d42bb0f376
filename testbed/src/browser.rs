//! A headless Chromium driven over the DevTools protocol (a WebSocket on loopback), for
//! tests that must click: sign in, sign out, type a code. [`Browser::launch`] starts the
//! browser with a throwaway profile; [`Page::eval`] runs JavaScript in the page and returns
//! its value; [`Page::wait_for`] polls an expression until it holds. The browser is killed
//! (by its pid) when dropped.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

/// A running browser.
pub struct Browser {
    child: Child,
    socket: WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

/// One tab of it.
pub struct Page<'a> {
    browser: &'a mut Browser,
    session: String,
}

impl Browser {
    /// Starts headless Chromium with its profile in `profile` (a fresh directory).
    pub fn launch(profile: &Path) -> Result<Browser, String> {
        let child = Command::new(crate::chromium::binary())
            .args(crate::chromium::HEADLESS)
            .args(["--remote-debugging-port=0", "--remote-allow-origins=*"])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| format!("cannot start chromium: {error}"))?;
        let mut browser_guard = Killer(Some(child));
        let port_file = profile.join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(30);
        let (port, path) = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    break (port.to_owned(), path.to_owned());
                }
            }
            if Instant::now() > deadline {
                return Err("chromium did not open its DevTools port within 30 s".to_owned());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let (socket, _) = tungstenite::connect(format!("ws://127.0.0.1:{port}{path}"))
            .map_err(|error| format!("cannot reach chromium's DevTools: {error}"))?;
        if let tungstenite::stream::MaybeTlsStream::Plain(stream) = socket.get_ref() {
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .map_err(|error| error.to_string())?;
        }
        Ok(Browser {
            child: browser_guard.0.take().ok_or("no child")?,
            socket,
            next_id: 1,
        })
    }

    /// Sends a command (to a page when `session` is given) and waits for its answer.
    fn call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::text(message.to_string()))
            .map_err(|error| format!("{method}: {error}"))?;
        loop {
            let reply = self
                .socket
                .read()
                .map_err(|error| format!("{method}: no answer: {error}"))?;
            let Message::Text(text) = reply else { continue };
            let value: Value =
                serde_json::from_str(text.as_str()).map_err(|error| error.to_string())?;
            if value["id"].as_u64() != Some(id) {
                continue; // an event
            }
            if let Some(error) = value.get("error") {
                return Err(format!("{method}: {error}"));
            }
            return Ok(value["result"].clone());
        }
    }

    /// A new tab.
    pub fn page(&mut self) -> Result<Page<'_>, String> {
        let target = self.call(None, "Target.createTarget", json!({"url": "about:blank"}))?;
        let target_id = target["targetId"]
            .as_str()
            .ok_or("no target id")?
            .to_owned();
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        )?;
        let session = attached["sessionId"]
            .as_str()
            .ok_or("no session id")?
            .to_owned();
        let mut page = Page {
            browser: self,
            session,
        };
        page.call("Page.enable", json!({}))?;
        page.call("Runtime.enable", json!({}))?;
        Ok(page)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Killer(Option<Child>);

impl Drop for Killer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Page<'_> {
    fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        let session = self.session.clone();
        self.browser.call(Some(&session), method, params)
    }

    /// Opens `url` and waits for the document to be complete.
    pub fn goto(&mut self, url: &str) -> Result<(), String> {
        self.call("Page.navigate", json!({"url": url}))?;
        std::thread::sleep(Duration::from_millis(100));
        self.wait_for(
            "document.readyState === 'complete'",
            Duration::from_secs(20),
        )
    }

    /// The value of a JavaScript expression in the page (promises are awaited).
    pub fn eval(&mut self, expression: &str) -> Result<Value, String> {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
        )?;
        if let Some(exception) = result.get("exceptionDetails") {
            return Err(format!("{expression}: {exception}"));
        }
        Ok(result["result"]["value"].clone())
    }

    /// Polls `expression` until it is `true`, for at most `timeout`.
    pub fn wait_for(&mut self, expression: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            // A navigation in progress destroys the context an evaluation ran in: try again.
            if let Ok(Value::Bool(true)) = self.eval(expression) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let body = self
                    .eval("document.body ? document.body.innerText : ''")
                    .unwrap_or_default();
                let location = self.eval("location.href").unwrap_or_default();
                return Err(format!(
                    "`{expression}` not true within {timeout:?} at {location}; the page says: {body}"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Types `text` into the input `#id` (as its value, with an input event).
    pub fn fill(&mut self, id: &str, text: &str) -> Result<(), String> {
        let script = format!(
            "(() => {{ const e = document.getElementById({id}); e.value = {text}; e.dispatchEvent(new Event('input')); return true; }})()",
            id = json!(id),
            text = json!(text)
        );
        self.eval(&script).map(|_| ())
    }

    /// Clicks the element `#id`.
    pub fn click(&mut self, id: &str) -> Result<(), String> {
        self.eval(&format!(
            "document.getElementById({}).click(), true",
            json!(id)
        ))
        .map(|_| ())
    }
}
