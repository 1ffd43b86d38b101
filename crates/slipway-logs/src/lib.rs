//! The log router: every app's log stream in Heroku's line format.
//!
//! Producers (dyno output, the dyno manager, the router, the API) call [`LogRouter::emit`] with an
//! app id, a [`Source`] and a dyno name. Each app keeps the last [`HISTORY_LINES`] lines in a ring
//! buffer and fans new lines out to live tails over a broadcast channel. Log sessions
//! ([`LogRouter::create_session`]) hand out unguessable, expiring tokens that name an app and a
//! filter; the API serves a session's stream at its `logplex_url`.

pub mod history;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::broadcast;
use tokio::time::Instant;

/// Lines kept per app, as Heroku's Logplex does.
pub const HISTORY_LINES: usize = 1500;
/// Longer messages are split into several lines.
pub const MAX_LINE_BYTES: usize = 10_000;
/// How long a log session's URL stays valid.
pub const SESSION_TTL: Duration = Duration::from_secs(3600);

/// Who wrote a line: the app's own processes or the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    App,
    Heroku,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::App => "app",
            Source::Heroku => "heroku",
        }
    }
}

/// One log line.
#[derive(Debug, Clone)]
pub struct LogLine {
    /// Position in the app's stream; used as the SSE event id.
    pub seq: u64,
    pub time: DateTime<Utc>,
    pub source: Source,
    /// `web.1`, `router`, `api`, `run.1234`, ...
    pub dyno: Arc<str>,
    /// Shared, not copied, by the ring, the tails, the drains and the history.
    pub message: Arc<str>,
}

/// A time as log lines show it: `2026-11-26T05:15:59.123456+00:00` (RFC 3339, UTC, µs; always
/// 32 bytes). Written digit by digit: chrono's formatter was the log path's largest cost.
pub fn stamp(t: DateTime<Utc>) -> [u8; 32] {
    use chrono::{Datelike, Timelike};
    use std::cell::Cell;
    thread_local! {
        /// The date and time of day of the last second stamped on this thread.
        static LAST: Cell<(i64, [u8; 19])> = const { Cell::new((i64::MIN, [0; 19])) };
    }
    fn put(b: &mut [u8], at: usize, width: usize, mut v: u32) {
        for i in (0..width).rev() {
            b[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    }
    let mut b = *b"0000-00-00T00:00:00.000000+00:00";
    let secs = t.timestamp();
    let (last, prefix) = LAST.get();
    if last == secs {
        b[..19].copy_from_slice(&prefix);
    } else {
        put(&mut b, 0, 4, t.year().clamp(0, 9999) as u32);
        put(&mut b, 5, 2, t.month());
        put(&mut b, 8, 2, t.day());
        put(&mut b, 11, 2, t.hour());
        put(&mut b, 14, 2, t.minute());
        put(&mut b, 17, 2, t.second().min(59));
        let mut p = [0u8; 19];
        p.copy_from_slice(&b[..19]);
        LAST.set((secs, p));
    }
    put(&mut b, 20, 6, (t.nanosecond() % 1_000_000_000) / 1000);
    b
}

/// [`stamp`] as a `&str`-ready string.
pub fn stamp_str(t: DateTime<Utc>) -> String {
    String::from_utf8_lossy(&stamp(t)).into_owned()
}

impl LogLine {
    /// Appends the line as [`fmt::Display`] shows it, without formatting machinery.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&stamp(self.time));
        out.push(b' ');
        out.extend_from_slice(self.source.as_str().as_bytes());
        out.push(b'[');
        out.extend_from_slice(self.dyno.as_bytes());
        out.extend_from_slice(b"]: ");
        out.extend_from_slice(self.message.as_bytes());
    }
}

impl fmt::Display for LogLine {
    /// `2026-11-26T05:15:59.123456+00:00 app[web.1]: message`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = stamp(self.time);
        f.write_str(std::str::from_utf8(&st).unwrap_or("0000-00-00T00:00:00.000000+00:00"))?;
        f.write_str(" ")?;
        f.write_str(self.source.as_str())?;
        f.write_str("[")?;
        f.write_str(&self.dyno)?;
        f.write_str("]: ")?;
        f.write_str(&self.message)
    }
}

/// Which lines a reader wants.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// `web` matches every web dyno, `web.1` only that one.
    pub dyno: Option<String>,
    pub source: Option<Source>,
}

impl Filter {
    pub fn matches(&self, line: &LogLine) -> bool {
        if let Some(s) = self.source {
            if s != line.source {
                return false;
            }
        }
        match &self.dyno {
            None => true,
            Some(d) if d.contains('.') => *line.dyno == **d,
            Some(d) => *line.dyno == **d || line.dyno.split('.').next() == Some(d.as_str()),
        }
    }
}

/// Parses `app` / `heroku` as given to `logs --source`.
pub fn parse_source(s: &str) -> Option<Source> {
    match s {
        "app" => Some(Source::App),
        "heroku" => Some(Source::Heroku),
        _ => None,
    }
}

struct AppLog {
    next_seq: u64,
    lines: VecDeque<LogLine>,
    tx: broadcast::Sender<LogLine>,
}

impl AppLog {
    fn new() -> Self {
        AppLog {
            next_seq: 1,
            lines: VecDeque::with_capacity(64),
            tx: broadcast::channel(8192).0,
        }
    }
}

/// What a log session was created for.
#[derive(Debug, Clone)]
pub struct Session {
    pub app_id: String,
    pub filter: Filter,
    pub lines: usize,
    pub tail: bool,
    /// A search of the on-disk history (`--since`, `--until`, `--grep`) instead of the recent lines.
    pub search: Option<history::Query>,
    expires: Instant,
}

/// Receives every line as it is logged (log drains, the on-disk history). Called after the log's
/// lock is released, on the producer's thread: it must only queue the line, never block.
pub trait LineSink: Send + Sync + 'static {
    fn line(&self, app_id: &str, line: &LogLine);
    /// The app was destroyed.
    fn remove_app(&self, _app_id: &str) {}
}

/// All apps' logs and the open log sessions; cheap to clone.
#[derive(Clone, Default)]
pub struct LogRouter {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Each app's log behind its own lock: a flood in one app does not hold up another. Looked
    /// up for every line; the keys are app IDs Slipway made, so a fast (seeded) hash will do.
    apps: std::sync::RwLock<HashMap<String, Arc<Mutex<AppLog>>, foldhash::fast::RandomState>>,
    sessions: Mutex<HashMap<String, Session>>,
    sinks: std::sync::RwLock<Vec<Arc<dyn LineSink>>>,
    history: std::sync::OnceLock<history::History>,
}

impl LogRouter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps every line on disk too, searchable with [`LogRouter::history`].
    pub fn enable_history(&self, h: history::History) {
        if self.inner.history.set(h.clone()).is_ok() {
            self.add_sink(Arc::new(h));
        }
    }

    /// Fills an app's recent lines (what `logs -n` shows) from the on-disk history, as a
    /// server starts: the lines of the previous run are still there, as they are on Heroku.
    /// Only into an empty log; sinks do not see them again.
    pub fn restore_recent(&self, app_id: &str) {
        let Some(h) = self.history() else {
            return;
        };
        let lines = h.newest(app_id, HISTORY_LINES);
        let app = self.app_log(app_id);
        let mut log = app.lock().unwrap_or_else(|e| e.into_inner());
        if !log.lines.is_empty() {
            return;
        }
        for text in &lines {
            if let Some(line) = history::parse(text, log.next_seq) {
                log.next_seq += 1;
                log.lines.push_back(line);
            }
        }
    }

    /// The on-disk history, if enabled.
    pub fn history(&self) -> Option<&history::History> {
        self.inner.history.get()
    }

    /// Adds a receiver of every line logged from now on.
    pub fn add_sink(&self, sink: Arc<dyn LineSink>) {
        self.inner
            .sinks
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(sink);
    }

    /// Appends a message to an app's log, split into lines of at most [`MAX_LINE_BYTES`].
    pub fn emit(&self, app_id: &str, source: Source, dyno: &str, message: &str) {
        self.emit_shared(app_id, source, &Arc::from(dyno), message);
    }

    /// [`LogRouter::emit`] for a source that logs often (a dyno's output): its name is shared by
    /// its lines, not copied into each.
    pub fn emit_shared(&self, app_id: &str, source: Source, dyno: &Arc<str>, message: &str) {
        let time = Utc::now();
        let app = self.app_log(app_id);
        let mut apps = app.lock().unwrap_or_else(|e| e.into_inner());
        let log = &mut *apps;
        let sinks = self.inner.sinks.read().unwrap_or_else(|e| e.into_inner());
        // Sinks are called once the app's lock is released (a sink may log to the app); most
        // messages are one line, which needs no list.
        let mut first: Option<LogLine> = None;
        let mut more: Vec<LogLine> = Vec::new();
        for_each_part(message, |part| {
            let line = LogLine {
                seq: log.next_seq,
                time,
                source,
                dyno: dyno.clone(),
                message: part.into(),
            };
            log.next_seq += 1;
            if log.lines.len() == HISTORY_LINES {
                log.lines.pop_front();
            }
            if log.tx.receiver_count() > 0 {
                let _ = log.tx.send(line.clone());
            }
            if !sinks.is_empty() {
                if first.is_none() {
                    first = Some(line.clone());
                } else {
                    more.push(line.clone());
                }
            }
            log.lines.push_back(line);
        });
        drop(apps);
        for line in first.iter().chain(&more) {
            for sink in sinks.iter() {
                sink.line(app_id, line);
            }
        }
    }

    /// An app's log, made on first use.
    fn app_log(&self, app_id: &str) -> Arc<Mutex<AppLog>> {
        if let Some(a) = self
            .inner
            .apps
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(app_id)
        {
            return a.clone();
        }
        self.inner
            .apps
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(app_id.to_string())
            .or_insert_with(|| Arc::new(Mutex::new(AppLog::new())))
            .clone()
    }

    /// The last `n` matching lines, oldest first, and a receiver for lines that come after them.
    pub fn snapshot(
        &self,
        app_id: &str,
        filter: &Filter,
        n: usize,
    ) -> (Vec<LogLine>, broadcast::Receiver<LogLine>) {
        let app = self.app_log(app_id);
        let log = app.lock().unwrap_or_else(|e| e.into_inner());
        let mut lines: Vec<LogLine> = log
            .lines
            .iter()
            .rev()
            .filter(|l| filter.matches(l))
            .take(n)
            .cloned()
            .collect();
        lines.reverse();
        (lines, log.tx.subscribe())
    }

    /// Lines after `seq` (for resuming a stream with `Last-Event-ID`), and a receiver for later ones.
    pub fn since(
        &self,
        app_id: &str,
        filter: &Filter,
        seq: u64,
    ) -> (Vec<LogLine>, broadcast::Receiver<LogLine>) {
        let app = self.app_log(app_id);
        let log = app.lock().unwrap_or_else(|e| e.into_inner());
        let lines = log
            .lines
            .iter()
            .filter(|l| l.seq > seq && filter.matches(l))
            .cloned()
            .collect();
        (lines, log.tx.subscribe())
    }

    /// Forgets an app's log (when the app is destroyed).
    pub fn remove_app(&self, app_id: &str) {
        for sink in self
            .inner
            .sinks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            sink.remove_app(app_id);
        }
        self.inner
            .apps
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(app_id);
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, s| s.app_id != app_id);
    }

    /// Opens a log session and returns its token (48 hex chars from the OS's random source).
    pub fn create_session(&self, app_id: &str, filter: Filter, lines: usize, tail: bool) -> String {
        let token: [u8; 24] = rand::random();
        let token = hex::encode(token);
        let now = Instant::now();
        let mut sessions = self
            .inner
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, s| s.expires > now);
        sessions.insert(
            token.clone(),
            Session {
                app_id: app_id.to_string(),
                filter,
                lines: lines.min(HISTORY_LINES),
                tail,
                search: None,
                expires: now + SESSION_TTL,
            },
        );
        token
    }

    /// Opens a log session that searches the on-disk history, and returns its token.
    pub fn create_search_session(&self, app_id: &str, query: history::Query, tail: bool) -> String {
        let token = self.create_session(app_id, query.filter.clone(), 0, tail);
        if let Some(s) = self
            .inner
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&token)
        {
            s.search = Some(query);
        }
        token
    }

    /// The session for a token, if it exists and has not expired.
    pub fn session(&self, token: &str) -> Option<Session> {
        let sessions = self
            .inner
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        sessions
            .get(token)
            .filter(|s| s.expires > Instant::now())
            .cloned()
    }
}

/// Splits a message into pieces of at most [`MAX_LINE_BYTES`] bytes, on char boundaries.
/// Calls `f` with each line of `message` (one line per line: a newline inside would break SSE
/// framing), longer ones cut at [`MAX_LINE_BYTES`]; an empty message is one empty line.
fn for_each_part<'a>(message: &'a str, mut f: impl FnMut(&'a str)) {
    // The common case: one short line.
    if message.len() <= MAX_LINE_BYTES
        && memchr::memchr2(b'\n', b'\r', message.as_bytes()).is_none()
    {
        f(message);
        return;
    }
    if message.is_empty() {
        f("");
        return;
    }
    for line in message.lines() {
        split_long(line, &mut f);
    }
}

fn split_long<'a>(message: &'a str, mut f: impl FnMut(&'a str)) {
    let message = message.trim_end_matches(['\n', '\r']);
    let mut rest = message;
    while rest.len() > MAX_LINE_BYTES {
        let mut cut = MAX_LINE_BYTES;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        f(&rest[..cut]);
        rest = &rest[cut..];
    }
    f(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_match_chronos_format() {
        for t in [
            "2026-11-26T05:15:59.123456Z",
            // The same second again (its date and time of day come from the cache).
            "2026-11-26T05:15:59.000001Z",
            "1999-01-02T03:04:05.000001Z",
            "2030-12-31T23:59:59.999999Z",
        ] {
            let t = DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc);
            assert_eq!(
                stamp_str(t),
                t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
            );
        }
    }

    #[test]
    fn line_format_matches_heroku() {
        let line = LogLine {
            seq: 1,
            time: DateTime::parse_from_rfc3339("2026-11-26T05:15:59.123456Z")
                .unwrap()
                .with_timezone(&Utc),
            source: Source::Heroku,
            dyno: "router".into(),
            message: "at=info".into(),
        };
        assert_eq!(
            line.to_string(),
            "2026-11-26T05:15:59.123456+00:00 heroku[router]: at=info"
        );
    }

    #[test]
    fn keeps_last_1500_and_filters() {
        let r = LogRouter::new();
        for i in 0..2000 {
            r.emit(
                "a",
                Source::App,
                if i % 2 == 0 { "web.1" } else { "worker.1" },
                &format!("line {i}"),
            );
        }
        r.emit(
            "a",
            Source::Heroku,
            "web.2",
            "State changed from starting to up",
        );
        let (all, _) = r.snapshot("a", &Filter::default(), 5000);
        assert_eq!(all.len(), HISTORY_LINES);
        assert_eq!(
            all.last().unwrap().message,
            "State changed from starting to up".into()
        );
        let web = Filter {
            dyno: Some("web".into()),
            source: None,
        };
        let (lines, _) = r.snapshot("a", &web, 3);
        assert_eq!(
            lines.iter().map(|l| &*l.dyno).collect::<Vec<_>>(),
            ["web.1", "web.1", "web.2"]
        );
        let web1_app = Filter {
            dyno: Some("web.1".into()),
            source: Some(Source::App),
        };
        let (lines, _) = r.snapshot("a", &web1_app, 1500);
        assert!(lines
            .iter()
            .all(|l| &*l.dyno == "web.1" && l.source == Source::App));
        let (after, _) = r.since("a", &Filter::default(), all[all.len() - 2].seq);
        assert_eq!(after.len(), 1);
    }

    #[test]
    fn multi_line_messages_become_lines() {
        let r = LogRouter::new();
        r.emit("a", Source::Heroku, "api", "Build failed:\nline two\r\n");
        r.emit("a", Source::App, "web.1", "");
        let (lines, _) = r.snapshot("a", &Filter::default(), 10);
        let msgs: Vec<&str> = lines.iter().map(|l| &*l.message).collect();
        assert_eq!(msgs, ["Build failed:", "line two", ""]);
    }

    #[test]
    fn long_lines_are_split() {
        let r = LogRouter::new();
        r.emit("a", Source::App, "web.1", &"é".repeat(6000));
        let (lines, _) = r.snapshot("a", &Filter::default(), 10);
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| l.message.len() <= MAX_LINE_BYTES));
        assert_eq!(
            lines
                .iter()
                .map(|l| l.message.chars().count())
                .sum::<usize>(),
            6000
        );
    }

    #[tokio::test]
    async fn tails_receive_new_lines_and_sessions_expire() {
        let r = LogRouter::new();
        let (_, mut rx) = r.snapshot("a", &Filter::default(), 10);
        r.emit("a", Source::App, "web.1", "hello");
        assert_eq!(&*rx.recv().await.unwrap().message, "hello");
        let token = r.create_session("a", Filter::default(), 100, true);
        assert_eq!(token.len(), 48);
        assert!(r.session(&token).is_some());
        assert!(r.session("nope").is_none());
        tokio::time::pause();
        tokio::time::advance(SESSION_TTL + Duration::from_secs(1)).await;
        assert!(r.session(&token).is_none());
    }
}
