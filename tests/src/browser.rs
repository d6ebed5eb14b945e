//! A real browser for the end-to-end tests: Debian's headless Chromium (`chromium` or
//! `chromium-browser` on PATH, never a downloaded build) driven over the DevTools protocol by
//! `chromiumoxide`.
//!
//! [`Browser::launch`] starts one in a test's own directory (its profile, config and cache
//! there, its stderr in `chromium.log` there) and hands back [`Skip`] when there is no
//! chromium, for the caller to pass to [`crate::skip`]; [`Browser::launch_or_skip`] does both.
//! Every process of the browser is killed when the [`Browser`] drops, the crash handler that
//! Chromium detaches into a session of its own included; [`Browser::close`] also fails the
//! test if one survives.
//!
//! A [`Page`] records what the page logs (its console, its uncaught exceptions and the
//! browser's own messages about it, such as a refused WebSocket), and every failure of a
//! page's method panics with that log, the page's address and text, a screenshot (kept in
//! `$TMPDIR/aifactory-browser-failures/`, since the test's directory goes with the test) and
//! the end of `chromium.log`. Waits are the page's own: [`Page::wait_until`] resolves inside
//! the page on a DOM change or a short timer, bounded by a generous timeout, never by a fixed
//! sleep; [`Page::wait_for_console`] wakes on each line the page logs.
//!
//! ```no_run
//! # async fn demo(dir: &std::path::Path) {
//! use aifactory_tests::browser::{Browser, TIMEOUT};
//! let Some(browser) = Browser::launch_or_skip("my_test", dir).await else { return };
//! let page = browser.new_page().await;
//! page.set_viewport(1000, 700).await;
//! page.goto("http://127.0.0.1:8080/").await;
//! page.wait_until("document.querySelector('#out')?.textContent.includes('ready')", "the output", TIMEOUT).await;
//! page.type_text("ls").await;
//! page.press("Enter").await;
//! let width: u32 = page.eval("window.innerWidth").await;
//! assert_eq!(width, 1000);
//! page.screenshot(&dir.join("console.png")).await;
//! browser.close();
//! # }
//! ```
//!
//! Chromium gets no network but loopback: every other address goes to a proxy on a closed
//! local port, and its background traffic (component updates, sync, pings) is switched off.

use std::fmt;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aifactory_common::procfs;
use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
use chromiumoxide::cdp::browser_protocol::input::{
    DispatchKeyEventParams, DispatchKeyEventType, InsertTextParams,
};
use chromiumoxide::cdp::browser_protocol::log::EventEntryAdded;
pub use chromiumoxide::cdp::browser_protocol::network::{Cookie, CookieSameSite};
use chromiumoxide::cdp::browser_protocol::page::CaptureScreenshotFormat;
use chromiumoxide::cdp::js_protocol::runtime::{
    EventConsoleApiCalled, EventExceptionThrown, ExceptionDetails, RemoteObject,
};
use chromiumoxide::error::CdpError;
use chromiumoxide::handler::HandlerConfig;
use chromiumoxide::keys;
use chromiumoxide::page::ScreenshotParams;
use futures::StreamExt;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde::de::DeserializeOwned;

use crate::{is_root, skip};

/// Where tests keep the screenshots they take on purpose (`target/screenshots/`), after their
/// own directory is gone: CI's artifacts, and README's pictures.
pub fn screenshots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("screenshots");
    if let Err(e) = std::fs::create_dir_all(&dir) {
        panic!("cannot create {}: {e}", dir.display());
    }
    dir
}

/// A liveness bound for one browser step on a loaded 2-core machine, not a speed target.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// How long Chromium may take to start listening for DevTools.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(90);

/// How long teardown waits for the browser's processes to be gone.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// Chromium's flags besides the profile's place and the sandbox. `--headless` is the new
/// headless mode (the whole browser) since Chromium 132; the old one is a separate binary
/// (Debian's `chromium-headless-shell`), not used here. The proxy on a closed loopback port
/// keeps every non-loopback request on the machine: Chromium never sends loopback through a
/// proxy. No `--disable-crashpad-for-testing`: in Chromium 156 it makes the network service
/// crash in a loop ("FD ownership violation").
const FLAGS: &[&str] = &[
    "--headless",
    "--remote-debugging-port=0",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-breakpad",
    "--no-pings",
    "--metrics-recording-only",
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
    "--password-store=basic",
    "--use-mock-keychain",
    "--proxy-server=http://127.0.0.1:9",
    "--window-size=1280,800",
    "--lang=en-US",
];

/// Why a browser test cannot run here; pass it to [`crate::skip`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip(pub String);

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The first of Debian's Chromium binaries found on PATH.
pub fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser"].iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// A running headless Chromium and the DevTools connection to it; every process of it is
/// killed when dropped.
pub struct Browser {
    cdp: chromiumoxide::Browser,
    handler: tokio::task::JoinHandle<()>,
    shared: Arc<Shared>,
    processes: Processes,
}

/// What a browser's pages need to report a failure.
struct Shared {
    /// The test's directory: its name names failure screenshots.
    dir: PathBuf,
    /// Chromium's stderr.
    log: PathBuf,
    /// What the DevTools connection reported going wrong.
    connection_errors: Mutex<Vec<String>>,
    screenshots: AtomicUsize,
}

impl Browser {
    /// Starts Chromium with its profile, config and cache under `dir/chromium/` and its stderr
    /// in `dir/chromium.log`, and connects to it. `Err` only when there is no chromium on
    /// PATH; a chromium that fails to start fails the test with its log.
    pub async fn launch(dir: &Path) -> Result<Browser, Skip> {
        let Some(executable) = chromium() else {
            return Err(Skip(
                "no chromium on PATH: `apt-get install chromium`".to_string(),
            ));
        };
        Ok(Self::launch_executable(&executable, dir).await)
    }

    /// [`Browser::launch`], or `None` after reporting the skip for `test` (a failure under
    /// `AIFACTORY_REQUIRE_ALL=1`).
    pub async fn launch_or_skip(test: &str, dir: &Path) -> Option<Browser> {
        match Self::launch(dir).await {
            Ok(browser) => Some(browser),
            Err(why) => {
                skip(test, &why.0);
                None
            }
        }
    }

    /// Starts the given Chromium binary; see [`Browser::launch`].
    pub async fn launch_executable(executable: &Path, dir: &Path) -> Browser {
        let home = dir.join("chromium");
        for sub in ["profile", "config", "cache"] {
            if let Err(e) = fs::create_dir_all(home.join(sub)) {
                panic!("create {}: {e}", home.join(sub).display());
            }
        }
        let log = dir.join("chromium.log");
        let mut log_file = File::create(&log)
            .unwrap_or_else(|e| panic!("create chromium's log {}: {e}", log.display()));
        let mut cmd = Command::new(executable);
        cmd.args(FLAGS)
            .arg(format!(
                "--user-data-dir={}",
                home.join("profile").display()
            ))
            // Its crash handler's database, and whatever else it keeps per user, stay here
            // too: the handler's command line names this directory, which is how teardown
            // finds it after it left the process group.
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_CACHE_HOME", home.join("cache"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // A group of its own, so that its helpers are killed with it.
            .process_group(0);
        if is_root() {
            // Chromium refuses to run as root with its sandbox on.
            cmd.arg("--no-sandbox");
        }
        cmd.arg("about:blank");
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", executable.display()));
        let stderr = child.stderr.take();
        // From here on, dropping `processes` (a panic included) kills the browser.
        let mut processes = Processes {
            pgid: child.id() as i32,
            child: Some(child),
            marker: format!("{}/", home.display()),
        };

        // Chromium's stderr goes to the log, line by line, and its DevTools address to us.
        let (address_tx, address_rx) = tokio::sync::oneshot::channel::<String>();
        std::thread::spawn(move || {
            let Some(stderr) = stderr else { return };
            let mut address_tx = Some(address_tx);
            for line in BufReader::new(stderr).split(b'\n') {
                let Ok(line) = line else { break };
                let _ = log_file.write_all(&line);
                let _ = log_file.write_all(b"\n");
                let text = String::from_utf8_lossy(&line);
                if let Some(at) = text.find("DevTools listening on ")
                    && let Some(tx) = address_tx.take()
                {
                    let _ = tx.send(text[at + "DevTools listening on ".len()..].trim().into());
                }
            }
        });
        let address = match tokio::time::timeout(LAUNCH_TIMEOUT, address_rx).await {
            Ok(Ok(address)) => address,
            Ok(Err(_)) => {
                // Its stderr ended: it has ended or is about to.
                let status = processes.child.as_mut().map(Child::try_wait);
                panic!(
                    "chromium ended ({status:?}) before it listened for DevTools; {}:\n{}",
                    log.display(),
                    fs::read_to_string(&log).unwrap_or_default()
                )
            }
            Err(_) => panic!(
                "chromium did not listen for DevTools within {LAUNCH_TIMEOUT:?}; {}:\n{}",
                log.display(),
                fs::read_to_string(&log).unwrap_or_default()
            ),
        };

        let config = HandlerConfig {
            // Each call here has its own timeout (a wait's may be long); the handler's own
            // would cut a long wait short.
            request_timeout: Duration::from_secs(3600),
            viewport: None,
            ..HandlerConfig::default()
        };
        let connected = tokio::time::timeout(
            TIMEOUT,
            chromiumoxide::Browser::connect_with_config(address.clone(), config),
        )
        .await;
        let (cdp, mut handler) = match connected {
            Ok(Ok(connected)) => connected,
            Ok(Err(e)) => panic!("connect to chromium's DevTools at {address}: {e}"),
            Err(_) => panic!("chromium's DevTools at {address} did not answer within {TIMEOUT:?}"),
        };
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            log,
            connection_errors: Mutex::new(Vec::new()),
            screenshots: AtomicUsize::new(0),
        });
        let handler = tokio::spawn({
            let shared = Arc::clone(&shared);
            async move {
                while let Some(event) = handler.next().await {
                    if let Err(e) = event {
                        let fatal = matches!(e, CdpError::Ws(_) | CdpError::Io(_));
                        lock(&shared.connection_errors).push(e.to_string());
                        if fatal {
                            break;
                        }
                    }
                }
            }
        });
        Browser {
            cdp,
            handler,
            shared,
            processes,
        }
    }

    /// Opens a new tab on `about:blank`, already recording what it logs.
    pub async fn new_page(&self) -> Page {
        let page = match tokio::time::timeout(TIMEOUT, self.cdp.new_page("about:blank")).await {
            Ok(Ok(page)) => page,
            Ok(Err(e)) => panic!("open a tab: {e}\n{}", self.shared.report_tail()),
            Err(_) => panic!(
                "no tab opened within {TIMEOUT:?}\n{}",
                self.shared.report_tail()
            ),
        };
        let console = Arc::new(Console::default());
        let listeners = async {
            let calls = page.event_listener::<EventConsoleApiCalled>().await?;
            let exceptions = page.event_listener::<EventExceptionThrown>().await?;
            let entries = page.event_listener::<EventEntryAdded>().await?;
            Ok::<_, CdpError>(futures::stream::select(
                calls.map(|e| describe_console_call(&e)),
                futures::stream::select(
                    exceptions.map(|e| describe_exception(&e.exception_details)),
                    entries.map(|e| {
                        format!(
                            "[{} {}] {}{}",
                            e.entry.source.as_ref(),
                            e.entry.level.as_ref(),
                            e.entry.text,
                            e.entry
                                .url
                                .as_deref()
                                .map(|u| format!(" ({u})"))
                                .unwrap_or_default()
                        )
                    }),
                ),
            ))
        };
        let mut lines = match tokio::time::timeout(TIMEOUT, listeners).await {
            Ok(Ok(lines)) => lines,
            Ok(Err(e)) => panic!(
                "listen to the tab's console: {e}\n{}",
                self.shared.report_tail()
            ),
            Err(_) => panic!(
                "the tab's console listeners were not set up within {TIMEOUT:?}\n{}",
                self.shared.report_tail()
            ),
        };
        let recorder = tokio::spawn({
            let console = Arc::clone(&console);
            async move {
                while let Some(line) = lines.next().await {
                    lock(&console.lines).push(line);
                    console.added.notify_waiters();
                }
            }
        });
        Page {
            page,
            console,
            recorder,
            shared: Arc::clone(&self.shared),
        }
    }

    /// Chromium's stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.shared.log).unwrap_or_default()
    }

    /// The process group every Chromium process but the crash handler is in.
    pub fn pgid(&self) -> u32 {
        self.processes.pgid as u32
    }

    /// Kills the browser and fails if any of its processes is still there afterwards.
    pub fn close(mut self) {
        self.handler.abort();
        let survivors = self.processes.kill_all();
        assert!(
            survivors.is_empty(),
            "chromium processes survived SIGKILL for {KILL_TIMEOUT:?}: {survivors:?}"
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.handler.abort();
        let survivors = self.processes.kill_all();
        if !survivors.is_empty() {
            eprintln!("chromium processes survived SIGKILL for {KILL_TIMEOUT:?}: {survivors:?}");
        }
    }
}

/// Every process of one Chromium: its process group, and the crash handler (which starts a
/// session of its own, but names the browser's private directory in its command line).
struct Processes {
    child: Option<Child>,
    pgid: i32,
    /// The browser's private directory, with a trailing `/`.
    marker: String,
}

impl Processes {
    /// The browser's processes, zombies included: pid, state letter and command line.
    fn members(&self) -> Vec<(u32, char, String)> {
        crate::process::pids()
            .into_iter()
            .filter_map(|pid| {
                let stat = procfs::stat(pid).ok()?;
                let cmdline = fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
                    .unwrap_or_default();
                let ours = (self.pgid > 0 && stat.pgid == self.pgid as u32)
                    || (!self.marker.is_empty() && cmdline.contains(&self.marker));
                ours.then(|| (pid, stat.state, cmdline.chars().take(160).collect()))
            })
            .collect()
    }

    /// SIGKILLs them all, reaps the browser, and waits (bounded) until none is left, not
    /// even a zombie for init to reap (so `pgrep chromium` right after a test finds none);
    /// returns those still alive then.
    fn kill_all(&mut self) -> Vec<(u32, String)> {
        if self.pgid <= 0 {
            return Vec::new();
        }
        let deadline = Instant::now() + KILL_TIMEOUT;
        loop {
            let _ = killpg(Pid::from_raw(self.pgid), Signal::SIGKILL);
            let members = self.members();
            let alive: Vec<(u32, String)> = members
                .into_iter()
                .filter(|(_, state, _)| !matches!(state, 'Z' | 'X'))
                .map(|(pid, _, cmdline)| (pid, cmdline))
                .collect();
            for (pid, _) in &alive {
                let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
            }
            if let Some(child) = &mut self.child {
                let _ = child.wait();
                self.child = None;
            }
            if self.members().is_empty() {
                self.pgid = 0;
                return Vec::new();
            }
            if Instant::now() >= deadline {
                if alive.is_empty() {
                    self.pgid = 0;
                }
                return alive;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        self.kill_all();
    }
}

impl Shared {
    /// The connection's errors and the end of chromium's log, for a failure message.
    fn report_tail(&self) -> String {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        // Without a system or session bus (as in a container), Chromium logs every D-Bus
        // call it fails to make: noise for a test.
        let lines: Vec<&str> = log
            .lines()
            .filter(|line| !line.contains(":ERROR:dbus/"))
            .collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        let errors = lock(&self.connection_errors).clone();
        format!(
            "DevTools connection errors: {errors:?}\nchromium's log ({}), last 30 lines but D-Bus's:\n{tail}",
            self.log.display()
        )
    }
}

/// Whether an evaluation failed because its document went away (a navigation), not because
/// of the script.
fn navigated(e: &CdpError) -> bool {
    let text = e.to_string();
    [
        "Cannot find context",
        "Execution context was destroyed",
        "Inspected target navigated",
    ]
    .iter()
    .any(|sign| text.contains(sign))
}

/// One tab; records its console, uncaught exceptions and the browser's messages about it.
pub struct Page {
    page: chromiumoxide::Page,
    console: Arc<Console>,
    recorder: tokio::task::JoinHandle<()>,
    shared: Arc<Shared>,
}

impl Drop for Page {
    fn drop(&mut self) {
        self.recorder.abort();
    }
}

impl Page {
    /// Navigates and waits until the new document has loaded. The navigation is the page's
    /// own (`location.assign`) and so is the wait ([`Page::wait_until`]): chromiumoxide's
    /// navigation watch gives up on a page that rewrites its own address while it loads (the
    /// login page, a redirect to it). Not for a URL that differs only in its fragment, which
    /// loads no new document.
    pub async fn goto(&self, url: &str) {
        // Marks the document being left, so the wait cannot be satisfied by it.
        let js = format!("window.__aifactoryLeaving = true; location.assign({url:?})");
        match tokio::time::timeout(TIMEOUT, self.page.evaluate_expression(js.as_str())).await {
            Ok(Ok(_)) => {}
            // The old document may be gone before it answers.
            Ok(Err(e)) if navigated(&e) => {}
            Ok(Err(e)) => self.fail(&format!("open {url}: {e}")).await,
            Err(_) => {
                self.fail(&format!(
                    "{url}: no answer to the navigation within {TIMEOUT:?}"
                ))
                .await
            }
        }
        self.wait_until(
            "window.__aifactoryLeaving !== true && document.readyState === 'complete'",
            &format!("{url} to load"),
            TIMEOUT,
        )
        .await;
    }

    /// The value of the JavaScript expression `js`, a promise's once it settles, as `T`
    /// (`undefined` reads as JSON `null`); fails the test on an exception.
    pub async fn eval<T: DeserializeOwned>(&self, js: &str) -> T {
        match self.try_eval(js).await {
            Ok(value) => value,
            Err(e) => self.fail(&format!("evaluate `{js}`: {e}")).await,
        }
    }

    /// [`Page::eval`] that returns the exception (or the browser's error) as text.
    pub async fn try_eval<T: DeserializeOwned>(&self, js: &str) -> Result<T, String> {
        let result = tokio::time::timeout(TIMEOUT, self.page.evaluate_expression(js))
            .await
            .map_err(|_| format!("no answer within {TIMEOUT:?}"))?
            .map_err(|e| match e {
                CdpError::JavascriptException(details) => describe_exception(&details),
                other => other.to_string(),
            })?;
        let value = result.value().cloned().unwrap_or(serde_json::Value::Null);
        serde_json::from_value(value.clone())
            .map_err(|e| format!("the value {value} is not what was asked for: {e}"))
    }

    /// Waits until the JavaScript expression `condition` is truthy in the page, checking it
    /// in the page on every DOM change and every 50 ms, for at most `timeout`; then fails
    /// naming `what`, the condition, what it last threw, and the page's console. A navigation
    /// while it waits (the page changing its own address) starts the check again in the new
    /// document, within the same `timeout`.
    pub async fn wait_until(&self, condition: &str, what: &str, timeout: Duration) {
        #[derive(serde::Deserialize)]
        struct Outcome {
            ok: bool,
            last: Option<String>,
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let failure = loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let js = format!(
                r#"new Promise((resolve) => {{
  let done = false, last = null, observer = null, timer = null, limit = null;
  const finish = (ok) => {{
    if (done) return;
    done = true;
    if (observer) observer.disconnect();
    clearInterval(timer);
    clearTimeout(limit);
    resolve({{ok, last}});
  }};
  const check = () => {{
    try {{ if ({condition}) finish(true); }} catch (e) {{ last = String(e && e.stack || e); }}
  }};
  observer = new MutationObserver(check);
  observer.observe(document, {{subtree: true, childList: true, characterData: true, attributes: true}});
  timer = setInterval(check, 50);
  limit = setTimeout(() => finish(false), {ms});
  check();
}})"#,
                ms = left.as_millis()
            );
            // The page's own timer ends the wait; this one only catches a browser that stopped
            // answering.
            let answer =
                tokio::time::timeout(left + TIMEOUT, self.page.evaluate_expression(js.as_str()))
                    .await;
            break match answer {
                Ok(Ok(result)) => match result.into_value::<Outcome>() {
                    Ok(Outcome { ok: true, .. }) => return,
                    Ok(Outcome { ok: false, last }) => format!(
                        "timed out after {timeout:?} waiting for {what}: `{condition}` never held{}",
                        last.map(|e| format!("; it last threw: {e}"))
                            .unwrap_or_default()
                    ),
                    Err(e) => format!("waiting for {what}: the page's answer: {e}"),
                },
                Ok(Err(e)) if navigated(&e) && tokio::time::Instant::now() < deadline => {
                    // The document the check ran in is gone; run it in the new one once that
                    // has a context (the next DevTools event, or a moment).
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                Ok(Err(e)) => format!("waiting for {what} (`{condition}`): {e}"),
                Err(_) => format!(
                    "waiting for {what} (`{condition}`): the browser did not answer within {:?}",
                    left + TIMEOUT
                ),
            };
        };
        self.fail(&failure).await
    }

    /// Types `text` with the keyboard (CDP `Input.dispatchKeyEvent`: keydown, keypress and
    /// input events, as a person's typing): `\n` is Enter; a character with no key on a US
    /// keyboard is inserted as text (`Input.insertText`).
    pub async fn type_text(&self, text: &str) {
        for c in text.chars() {
            match c {
                '\n' | '\r' => self.press("Enter").await,
                c => match keys::get_key_definition(c.to_string()) {
                    Some(key) => self.dispatch_key(key, 0).await,
                    None => {
                        let insert = InsertTextParams::new(c.to_string());
                        if let Err(e) = self.run(insert).await {
                            self.fail(&format!("type {c:?}: {e}")).await
                        }
                    }
                },
            }
        }
    }

    /// Presses and releases one key by its DOM name (`Enter`, `Tab`, `Backspace`,
    /// `ArrowUp`, `Escape`, `a`, ...), with modifiers before it: `Control+c`, `Shift+Tab`,
    /// `Alt+x`, `Meta+k`. With Control, Alt or Meta held no character is typed.
    pub async fn press(&self, chord: &str) {
        let mut modifiers = 0;
        let mut key = chord;
        while let Some((modifier, rest)) = key.split_once('+') {
            let bit = match modifier {
                "Alt" => 1,
                "Control" | "Ctrl" => 2,
                "Meta" => 4,
                "Shift" => 8,
                _ => break,
            };
            if rest.is_empty() {
                break;
            }
            modifiers |= bit;
            key = rest;
        }
        match keys::get_key_definition(key) {
            Some(definition) => self.dispatch_key(definition, modifiers).await,
            None => {
                self.fail(&format!("press {chord:?}: no key named {key:?}"))
                    .await
            }
        }
    }

    async fn dispatch_key(&self, key: &keys::KeyDefinition, modifiers: i64) {
        let text = if modifiers & (1 | 2 | 4) != 0 {
            None
        } else {
            key.text
                .or((key.key.chars().count() == 1).then_some(key.key))
        };
        let mut down = DispatchKeyEventParams::new(if text.is_some() {
            DispatchKeyEventType::KeyDown
        } else {
            DispatchKeyEventType::RawKeyDown
        });
        down.key = Some(key.key.to_string());
        down.code = Some(key.code.to_string());
        down.windows_virtual_key_code = Some(key.key_code);
        down.native_virtual_key_code = Some(key.key_code);
        down.modifiers = Some(modifiers);
        down.text = text.map(str::to_string);
        down.unmodified_text = down.text.clone();
        let mut up = down.clone();
        up.r#type = DispatchKeyEventType::KeyUp;
        up.text = None;
        up.unmodified_text = None;
        for event in [down, up] {
            if let Err(e) = self.run(event).await {
                self.fail(&format!("press {:?}: {e}", key.key)).await
            }
        }
    }

    /// Emulates a `width` x `height` CSS-pixel viewport at device scale 1
    /// (`Emulation.setDeviceMetricsOverride`).
    pub async fn set_viewport(&self, width: u32, height: u32) {
        let params =
            SetDeviceMetricsOverrideParams::new(i64::from(width), i64::from(height), 1.0, false);
        if let Err(e) = self.run(params).await {
            self.fail(&format!("set the viewport to {width}x{height}: {e}"))
                .await
        }
    }

    /// Writes a PNG of the viewport to `path`.
    pub async fn screenshot(&self, path: &Path) {
        if let Err(e) = self.try_screenshot(path).await {
            self.fail(&format!("screenshot to {}: {e}", path.display()))
                .await
        }
    }

    async fn try_screenshot(&self, path: &Path) -> Result<(), String> {
        let params = ScreenshotParams::builder()
            .format(CaptureScreenshotFormat::Png)
            .build();
        let png = tokio::time::timeout(TIMEOUT, self.page.screenshot(params))
            .await
            .map_err(|_| format!("no screenshot within {TIMEOUT:?}"))?
            .map_err(|e| e.to_string())?;
        fs::write(path, png).map_err(|e| e.to_string())
    }

    /// The cookies the browser would send to the page's address.
    pub async fn cookies(&self) -> Vec<Cookie> {
        match tokio::time::timeout(TIMEOUT, self.page.get_cookies()).await {
            Ok(Ok(cookies)) => cookies,
            Ok(Err(e)) => self.fail(&format!("read the cookies: {e}")).await,
            Err(_) => self.fail(&format!("no cookies within {TIMEOUT:?}")).await,
        }
    }

    /// What the page logged so far, a line each: `[console.log] ...`, `[exception] ...`,
    /// `[network error] ...` (the browser's own messages, e.g. a refused WebSocket).
    pub fn console(&self) -> Vec<String> {
        lock(&self.console.lines).clone()
    }

    /// Waits until a line of the page's log (see [`Page::console`]) matches `pred`, woken by
    /// each new line, for at most `timeout`; returns the line, or fails naming `what`.
    pub async fn wait_for_console(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let added = self.console.added.notified();
            tokio::pin!(added);
            added.as_mut().enable();
            if let Some(line) = lock(&self.console.lines).iter().find(|l| pred(l)) {
                return line.clone();
            }
            if tokio::time::timeout_at(deadline, added).await.is_err() {
                return self
                    .fail(&format!(
                        "timed out after {timeout:?} waiting for {what} in the page's console"
                    ))
                    .await;
            }
        }
    }

    /// The underlying chromiumoxide page, for whatever this module does not offer.
    pub fn cdp(&self) -> &chromiumoxide::Page {
        &self.page
    }

    async fn run<C: chromiumoxide::types::Command>(&self, command: C) -> Result<(), String> {
        match tokio::time::timeout(TIMEOUT, self.page.execute(command)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {TIMEOUT:?}")),
        }
    }

    /// Fails the test with `message` and everything known about the page: its address, a
    /// screenshot, its text, its console, the connection's errors and the end of chromium's
    /// log.
    async fn fail<T>(&self, message: &str) -> T {
        panic!("{message}\n{}", self.report().await)
    }

    /// Everything known about the page, for a failure message.
    pub async fn report(&self) -> String {
        let url = match tokio::time::timeout(Duration::from_secs(5), self.page.url()).await {
            Ok(Ok(Some(url))) => url,
            Ok(Ok(None)) => "(none)".to_string(),
            Ok(Err(e)) => format!("(unknown: {e})"),
            Err(_) => "(unknown: no answer)".to_string(),
        };
        let shown = match tokio::time::timeout(
            Duration::from_secs(5),
            self.page
                .evaluate_expression("document.body ? document.body.innerText.slice(-2000) : ''"),
        )
        .await
        {
            Ok(Ok(text)) => text.into_value::<String>().unwrap_or_default(),
            Ok(Err(e)) => format!("(unknown: {e})"),
            Err(_) => "(unknown: no answer)".to_string(),
        };
        // Outside the test's directory, which goes when the test does.
        let n = self.shared.screenshots.fetch_add(1, Ordering::SeqCst);
        let shots = std::env::temp_dir().join("aifactory-browser-failures");
        let _ = fs::create_dir_all(&shots);
        let name = self
            .shared
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let shot = shots.join(format!("{name}-{n}.png"));
        let shot =
            match tokio::time::timeout(Duration::from_secs(10), self.try_screenshot(&shot)).await {
                Ok(Ok(())) => shot.display().to_string(),
                Ok(Err(e)) => format!("(none: {e})"),
                Err(_) => "(none: no answer)".to_string(),
            };
        let console = self.console();
        format!(
            "page: {url}\nscreenshot: {shot}\nthe page's text (its last 2000 characters):\n{shown}\nthe page's console ({} lines):\n{}\n{}",
            console.len(),
            console.join("\n"),
            self.shared.report_tail()
        )
    }
}

/// A page's log lines, and a wake-up for each one added.
#[derive(Default)]
struct Console {
    lines: Mutex<Vec<String>>,
    added: tokio::sync::Notify,
}

fn describe_remote(object: &RemoteObject) -> String {
    match (
        &object.value,
        &object.unserializable_value,
        &object.description,
    ) {
        (Some(serde_json::Value::String(s)), _, _) => s.clone(),
        (Some(value), _, _) => value.to_string(),
        (None, Some(value), _) => value.as_ref().to_string(),
        (None, None, Some(description)) => description.clone(),
        (None, None, None) => object.r#type.as_ref().to_string(),
    }
}

fn describe_console_call(call: &EventConsoleApiCalled) -> String {
    let args: Vec<String> = call.args.iter().map(describe_remote).collect();
    format!("[console.{}] {}", call.r#type.as_ref(), args.join(" "))
}

fn describe_exception(details: &ExceptionDetails) -> String {
    let what = details
        .exception
        .as_ref()
        .and_then(|e| e.description.clone())
        .unwrap_or_else(|| details.text.clone());
    format!(
        "[exception] {what} ({}:{}:{})",
        details.url.as_deref().unwrap_or("?"),
        details.line_number + 1,
        details.column_number + 1
    )
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A page served at `http://127.0.0.1:PORT/` by a small server on a thread of its own, with
/// extra response headers (`/favicon.ico` is an empty 204, any other path a 404); stops when
/// dropped.
pub struct Served {
    /// `http://127.0.0.1:PORT`, for the shim's `--allow-origin`.
    pub origin: String,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Served {
    /// Serves `html` with `headers` (each `Name: value`).
    pub fn start(html: String, headers: &[&str]) -> Served {
        let listener = TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("bind the page's server on loopback: {e}"));
        let origin = match listener.local_addr() {
            Ok(addr) => format!("http://{addr}"),
            Err(e) => panic!("the page server's address: {e}"),
        };
        let stopping = Arc::new(AtomicBool::new(false));
        let head: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
        let thread = std::thread::spawn({
            let stopping = Arc::clone(&stopping);
            move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    answer(stream, &html, &head);
                }
            }
        });
        Served {
            origin,
            stopping,
            thread: Some(thread),
        }
    }

    /// The page's address: the origin and `/`.
    pub fn url(&self) -> String {
        format!("{}/", self.origin)
    }
}

/// Answers one request on `stream` (one per connection) and closes it.
fn answer(mut stream: TcpStream, html: &str, head: &str) {
    let _ = stream.set_read_timeout(Some(TIMEOUT));
    let Ok(reader) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(reader);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() || line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let _ = reader.take(length as u64).read_to_end(&mut Vec::new());
    let response = if request_line.starts_with("GET /favicon.ico ") {
        // Not a 404 in every page's console.
        "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n".to_string()
    } else if request_line.starts_with("GET / ") {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\n{head}Connection: close\r\n\r\n{html}",
            html.len()
        )
    } else {
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
    };
    let _ = stream.write_all(response.as_bytes());
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wakes the accept; the thread sees the flag and ends.
        let _ = TcpStream::connect(self.origin.trim_start_matches("http://"));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
