//! Searchable history: every app's log kept on disk, beyond the 1500 lines in memory, within a
//! size and an age limit per app, surviving restarts of the server.
//!
//! Lines go from [`History`] (a [`LineSink`]) through a bounded queue to one writer thread that
//! appends them, in Heroku's line format, to segment files `<dir>/<app id>/<first line µs>.log`
//! and starts a new segment every [`SEGMENT_BYTES`]. Old segments are removed when an app's log
//! is over its size limit or a segment is older than the age limit. A full queue drops lines
//! (counted) rather than slow down whoever logs. Queries read the segments that overlap the
//! asked-for time range; lines start with a fixed-width UTC timestamp, so time comparisons are
//! string comparisons.

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};

use crate::{Filter, LineSink, LogLine, Source};

/// A new segment is started past this size.
pub const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;
/// Lines queued for the writer; past this they are dropped and counted.
const QUEUE: usize = 65_536;

/// How much of an app's log is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub max_bytes: u64,
    pub max_age: Duration,
}

impl Default for Retention {
    /// 100 MB and 7 days.
    fn default() -> Self {
        Retention {
            max_bytes: 100 * 1024 * 1024,
            max_age: Duration::from_secs(7 * 86_400),
        }
    }
}

enum Msg {
    /// Formatted by the writer, not by the thread that logged it.
    Line(String, LogLine),
    Remove(String),
}

/// The on-disk history of every app's log.
#[derive(Clone)]
pub struct History {
    dir: PathBuf,
    tx: SyncSender<Msg>,
    dropped: Arc<AtomicU64>,
    /// Per app: lines dropped since the writer last caught up, and when the first was.
    gaps: Gaps,
    retention: Arc<RwLock<HashMap<String, Retention>>>,
}

type Gaps = Arc<std::sync::Mutex<HashMap<String, (u64, DateTime<Utc>)>>>;

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History").field("dir", &self.dir).finish()
    }
}

/// A timestamp in the log's own format, for comparisons with lines.
pub fn stamp(t: DateTime<Utc>) -> String {
    crate::stamp_str(t)
}

/// What a history query asks for.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Lines containing this text.
    pub grep: Option<String>,
    pub filter: Filter,
    /// At most this many lines (the newest).
    pub limit: usize,
}

impl Query {
    /// Whether a live line matches (for tails that go on after a query).
    pub fn matches(&self, line: &LogLine) -> bool {
        self.filter.matches(line)
            && self
                .grep
                .as_deref()
                .is_none_or(|g| line.to_string().contains(g))
    }
}

impl History {
    /// Opens (making it if needed) the history under `dir` and starts its writer thread.
    pub fn open(dir: &Path) -> std::io::Result<History> {
        Self::open_with_queue(dir, QUEUE)
    }

    fn open_with_queue(dir: &Path, queue: usize) -> std::io::Result<History> {
        fs::create_dir_all(dir)?;
        let (tx, rx) = mpsc::sync_channel(queue);
        let retention: Arc<RwLock<HashMap<String, Retention>>> = Arc::default();
        let gaps: Gaps = Arc::default();
        let writer = Writer {
            dir: dir.to_path_buf(),
            open: HashMap::new(),
            retention: retention.clone(),
            gaps: gaps.clone(),
            last_prune: SystemTime::now(),
        };
        std::thread::Builder::new()
            .name("log-history".into())
            .spawn(move || writer.run(rx))?;
        Ok(History {
            dir: dir.to_path_buf(),
            tx,
            dropped: Arc::default(),
            gaps,
            retention,
        })
    }

    /// Lines dropped because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Sets an app's limits (the default is [`Retention::default`]).
    pub fn set_retention(&self, app_id: &str, r: Retention) {
        self.retention
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(app_id.to_string(), r);
    }

    /// The newest `n` lines of an app's history, oldest first, read from the newest segment
    /// back only as far as needed (blocking).
    pub fn newest(&self, app_id: &str, n: usize) -> Vec<String> {
        let mut out: VecDeque<String> = VecDeque::new();
        for (_, path) in segments(&self.dir.join(app_id)).iter().rev() {
            let Ok(bytes) = fs::read(path) else {
                continue;
            };
            let text = String::from_utf8_lossy(finished(&bytes));
            for line in text.lines().rev() {
                if out.len() == n {
                    break;
                }
                out.push_front(line.to_string());
            }
            if out.len() >= n {
                break;
            }
        }
        out.into()
    }

    /// The lines matching `q`, oldest first (blocking: run it off the async threads).
    pub fn query(&self, app_id: &str, q: &Query) -> std::io::Result<Vec<String>> {
        let since = q.since.map(stamp);
        let until = q.until.map(stamp);
        let segments = segments(&self.dir.join(app_id));
        let mut out: VecDeque<String> = VecDeque::new();
        let limit = q.limit.max(1);
        for (i, (start, path)) in segments.iter().enumerate() {
            // A segment ends where the next begins.
            if let (Some(since), Some((next, _))) = (&since, segments.get(i + 1)) {
                if stamp_of_micros(*next) < *since {
                    continue;
                }
            }
            if let Some(until) = &until {
                if stamp_of_micros(*start) > *until {
                    break;
                }
            }
            let Ok(file) = File::open(path) else { continue };
            let mut reader = BufReader::new(file);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                // A line the writer has not finished yet (no newline) is left for the next read.
                match reader.read_until(b'\n', &mut buf) {
                    Ok(_) if buf.last() == Some(&b'\n') => buf.pop(),
                    _ => break,
                };
                let line = String::from_utf8(std::mem::take(&mut buf))
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
                let Some(ts) = line.get(..32) else { continue };
                if since.as_deref().is_some_and(|s| ts < s) {
                    continue;
                }
                if until.as_deref().is_some_and(|u| ts > u) {
                    break;
                }
                if q.grep.as_deref().is_some_and(|g| !line.contains(g)) {
                    continue;
                }
                if !matches_filter(&line, &q.filter) {
                    continue;
                }
                if out.len() == limit {
                    out.pop_front();
                }
                out.push_back(line);
            }
        }
        Ok(out.into())
    }
}

/// The part of a segment's bytes that the writer has finished: up to its last newline.
fn finished(bytes: &[u8]) -> &[u8] {
    bytes
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(&[][..], |i| &bytes[..=i])
}

/// A line as the history keeps it, `2026-…+00:00 app[web.1]: message`, read back.
pub fn parse(line: &str, seq: u64) -> Option<LogLine> {
    let time = DateTime::parse_from_rfc3339(line.get(..32)?)
        .ok()?
        .with_timezone(&Utc);
    let rest = line.get(33..)?;
    let (source, rest) = rest.split_once('[')?;
    let (dyno, message) = rest
        .split_once("]: ")
        .or_else(|| rest.strip_suffix("]:").map(|d| (d, "")))?;
    let source = match source {
        "app" => Source::App,
        "heroku" => Source::Heroku,
        _ => return None,
    };
    Some(LogLine {
        seq,
        time,
        source,
        dyno: Arc::from(dyno),
        message: Arc::from(message),
    })
}

/// `2026-…+00:00 app[web.1]: message` against a source/dyno filter.
fn matches_filter(line: &str, f: &Filter) -> bool {
    if f.source.is_none() && f.dyno.is_none() {
        return true;
    }
    let Some(rest) = line.get(33..) else {
        return false;
    };
    let Some((source, rest)) = rest.split_once('[') else {
        return false;
    };
    let Some((dyno, _)) = rest.split_once("]:") else {
        return false;
    };
    let source = match source {
        "app" => Source::App,
        _ => Source::Heroku,
    };
    f.matches(&LogLine {
        seq: 0,
        time: DateTime::<Utc>::MIN_UTC,
        source,
        dyno: dyno.into(),
        message: "".into(),
    })
}

fn stamp_of_micros(us: i64) -> String {
    stamp(DateTime::from_timestamp_micros(us).unwrap_or(DateTime::<Utc>::MIN_UTC))
}

/// An app's segments, oldest first: (first line's time in µs, path).
fn segments(dir: &Path) -> Vec<(i64, PathBuf)> {
    let mut v: Vec<(i64, PathBuf)> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let us = name.to_str()?.strip_suffix(".log")?.parse().ok()?;
            Some((us, e.path()))
        })
        .collect();
    v.sort();
    v
}

impl LineSink for History {
    fn line(&self, app_id: &str, line: &LogLine) {
        match self
            .tx
            .try_send(Msg::Line(app_id.to_string(), line.clone()))
        {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                let mut gaps = self.gaps.lock().unwrap_or_else(|e| e.into_inner());
                gaps.entry(app_id.to_string()).or_insert((0, line.time)).0 += 1;
            }
        }
    }

    fn remove_app(&self, app_id: &str) {
        let _ = self.tx.send(Msg::Remove(app_id.to_string()));
    }
}

struct Segment {
    file: BufWriter<File>,
    size: u64,
}

struct Writer {
    dir: PathBuf,
    open: HashMap<String, Segment>,
    retention: Arc<RwLock<HashMap<String, Retention>>>,
    gaps: Gaps,
    last_prune: SystemTime,
}

impl Writer {
    fn run(mut self, rx: Receiver<Msg>) {
        loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(msg) => {
                    self.handle(msg);
                    // Take what else is queued, then make it readable.
                    while let Ok(msg) = rx.try_recv() {
                        self.handle(msg);
                    }
                    // Where lines were dropped, the history says so, as Logplex does in-band.
                    let gaps: Vec<(String, (u64, DateTime<Utc>))> = self
                        .gaps
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .drain()
                        .collect();
                    for (app, (n, since)) in gaps {
                        let line = LogLine {
                            seq: 0,
                            time: Utc::now(),
                            source: Source::Heroku,
                            dyno: "logplex".into(),
                            message: format!(
                                "Error L12 (local buffer overflow): {n} messages dropped from the history since {}.",
                                stamp(since)
                            )
                            .into(),
                        };
                        let _ = self.append(&app, &line.to_string());
                    }
                    for seg in self.open.values_mut() {
                        let _ = seg.file.flush();
                    }
                    // Let lines gather for a moment: under a flood, one wake-up and one write
                    // per few thousand lines, not per line.
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if self
                .last_prune
                .elapsed()
                .is_ok_and(|e| e > Duration::from_secs(60))
            {
                self.prune_all();
            }
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Line(app, line) => {
                if let Err(error) = self.append(&app, &line.to_string()) {
                    tracing_free_warn(&app, &error);
                }
            }
            Msg::Remove(app) => {
                self.open.remove(&app);
                let _ = fs::remove_dir_all(self.dir.join(&app));
            }
        }
    }

    fn append(&mut self, app: &str, text: &str) -> std::io::Result<()> {
        let rotate = self.open.get(app).is_none_or(|s| s.size >= SEGMENT_BYTES);
        if rotate {
            let dir = self.dir.join(app);
            fs::create_dir_all(&dir)?;
            // Continue the newest segment after a restart if it has room.
            let existing = segments(&dir)
                .pop()
                .filter(|(_, p)| fs::metadata(p).is_ok_and(|m| m.len() < SEGMENT_BYTES))
                .filter(|_| !self.open.contains_key(app));
            let path = match existing {
                Some((_, p)) => p,
                None => {
                    let us = text
                        .get(..32)
                        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                        .map_or_else(|| Utc::now().timestamp_micros(), |t| t.timestamp_micros());
                    dir.join(format!("{us}.log"))
                }
            };
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .read(true)
                .open(&path)?;
            let mut size = file.metadata().map_or(0, |m| m.len());
            // A line cut short when the server stopped mid-write is ended, so that the next
            // line starts on its own.
            let mut last = [0u8];
            if size > 0
                && std::os::unix::fs::FileExt::read_at(&file, &mut last, size - 1)? == 1
                && last[0] != b'\n'
            {
                file.write_all(b"\n")?;
                size += 1;
            }
            self.open.insert(
                app.to_string(),
                Segment {
                    file: BufWriter::with_capacity(64 * 1024, file),
                    size,
                },
            );
            self.prune(app);
        }
        let Some(seg) = self.open.get_mut(app) else {
            return Ok(());
        };
        // A line and its newline reach the file in one write, so a reader never sees a line
        // cut off at a buffer boundary (a longer line than the buffer is written through).
        if seg.file.capacity() - seg.file.buffer().len() <= text.len() {
            seg.file.flush()?;
        }
        seg.file.write_all(text.as_bytes())?;
        seg.file.write_all(b"\n")?;
        seg.size += text.len() as u64 + 1;
        Ok(())
    }

    fn prune_all(&mut self) {
        self.last_prune = SystemTime::now();
        let apps: Vec<String> = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .collect();
        for app in apps {
            self.prune(&app);
        }
    }

    /// Removes the oldest segments past the app's limits (never the one being written).
    fn prune(&mut self, app: &str) {
        let r = self
            .retention
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(app)
            .copied()
            .unwrap_or_default();
        let mut segs = segments(&self.dir.join(app));
        let current = segs.pop();
        let mut total: u64 = segs
            .iter()
            .chain(current.iter())
            .map(|(_, p)| fs::metadata(p).map_or(0, |m| m.len()))
            .sum();
        let oldest_kept = SystemTime::now()
            .checked_sub(r.max_age)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        for (_, path) in &segs {
            // A segment's last line was written when the file was last modified.
            let old = fs::metadata(path)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < oldest_kept);
            if total > r.max_bytes || old {
                let len = fs::metadata(path).map_or(0, |m| m.len());
                if fs::remove_file(path).is_ok() {
                    total = total.saturating_sub(len);
                }
            }
        }
    }
}

/// The writer thread has no tracing subscriber of its own to rely on; it prints once per error.
fn tracing_free_warn(app: &str, error: &std::io::Error) {
    eprintln!("log history: cannot write the log of app {app}: {error}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_back_as_they_were_written() {
        for l in [
            line(7, "2026-11-26T05:15:59.123456Z", "web.1", "hello: [world]"),
            line(
                8,
                "2026-11-26T05:15:59.000001Z",
                "router",
                "at=info path=\"/\"",
            ),
            line(9, "2026-11-26T05:15:59.5Z", "run.1234", ""),
        ] {
            let back = parse(&l.to_string(), l.seq).expect("parses");
            assert_eq!(back.to_string(), l.to_string());
            assert_eq!(
                (back.seq, back.source, &*back.dyno),
                (l.seq, l.source, &*l.dyno)
            );
        }
        assert!(parse("not a line", 1).is_none());
        assert!(parse("2026-11-26T05:15:59.123456+00:00 other[x]: y", 1).is_none());
    }

    fn line(seq: u64, t: &str, dyno: &str, msg: &str) -> LogLine {
        LogLine {
            seq,
            time: DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc),
            source: if dyno == "router" {
                Source::Heroku
            } else {
                Source::App
            },
            dyno: dyno.into(),
            message: msg.into(),
        }
    }

    fn wait_for(h: &History, app: &str, q: &Query, n: usize) -> Vec<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let got = h.query(app, q).unwrap();
            if got.len() >= n || std::time::Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn lines_are_kept_and_found_by_time_text_and_dyno() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(dir.path()).unwrap();
        h.line("a1", &line(1, "2026-11-26T10:00:00Z", "web.1", "boot"));
        h.line(
            "a1",
            &line(2, "2026-11-26T11:00:00Z", "router", "at=info path=/x"),
        );
        h.line(
            "a1",
            &line(3, "2026-11-26T12:00:00Z", "web.2", "error: disk full"),
        );
        h.line("a2", &line(1, "2026-11-26T11:30:00Z", "web.1", "other app"));
        let all = Query {
            limit: 100,
            ..Default::default()
        };
        assert_eq!(wait_for(&h, "a1", &all, 3).len(), 3);
        let q = Query {
            since: Some("2026-11-26T10:30:00Z".parse().unwrap()),
            until: Some("2026-11-26T11:30:00Z".parse().unwrap()),
            limit: 100,
            ..Default::default()
        };
        let got = h.query("a1", &q).unwrap();
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].ends_with("heroku[router]: at=info path=/x"),
            "{got:?}"
        );
        let q = Query {
            grep: Some("disk full".into()),
            limit: 100,
            ..Default::default()
        };
        assert_eq!(h.query("a1", &q).unwrap().len(), 1);
        let q = Query {
            filter: Filter {
                dyno: Some("web".into()),
                source: None,
            },
            limit: 100,
            ..Default::default()
        };
        assert_eq!(h.query("a1", &q).unwrap().len(), 2);
        // The newest `limit`.
        let q = Query {
            limit: 1,
            ..Default::default()
        };
        let got = h.query("a1", &q).unwrap();
        assert!(got[0].contains("disk full"));
        // A new writer (a restarted server) reads and continues the same history.
        drop(h);
        let h = History::open(dir.path()).unwrap();
        h.line(
            "a1",
            &line(4, "2026-11-26T13:00:00Z", "web.1", "after restart"),
        );
        assert_eq!(wait_for(&h, "a1", &all, 4).len(), 4);
        h.remove_app("a1");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while dir.path().join("a1").exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!dir.path().join("a1").exists());
    }

    #[test]
    fn lines_dropped_under_a_flood_are_reported_in_the_history() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open_with_queue(dir.path(), 4).unwrap();
        for i in 0..5000 {
            h.line("a1", &line(i, "2026-11-26T10:00:00Z", "web.1", "flood"));
        }
        assert!(h.dropped() > 0);
        // The next batch reports the gap. A line sent while the queue is still full is dropped
        // and counted too, so one is sent again until every drop is reported.
        h.line("a1", &line(9999, "2026-11-26T10:00:00Z", "web.1", "after"));
        let q = Query {
            grep: Some("Error L12".into()),
            limit: 10_000,
            ..Default::default()
        };
        // Every dropped line is accounted for, in one or more reports.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let got = h.query("a1", &q).unwrap();
            let mut reported = 0;
            for l in &got {
                assert!(
                    l.contains("heroku[logplex]: Error L12 (local buffer overflow): ")
                        && l.contains(
                            " messages dropped from the history since 2026-11-26T10:00:00.000000+00:00."
                        ),
                    "{got:?}"
                );
                reported += l
                    .split("overflow): ")
                    .nth(1)
                    .and_then(|r| r.split(' ').next())
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap();
            }
            if !got.is_empty() && reported == h.dropped() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{reported} of {} reported: {got:?}",
                h.dropped()
            );
            std::thread::sleep(Duration::from_millis(10));
            h.line("a1", &line(9999, "2026-11-26T10:00:00Z", "web.1", "after"));
        }
    }

    #[test]
    fn a_line_cut_short_is_not_read_and_the_next_starts_on_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("a1");
        std::fs::create_dir_all(&app).unwrap();
        // A server stopped while writing its second line, halfway through a character.
        let first = line(1, "2026-11-26T10:00:00Z", "web.1", "whole").to_string();
        let cut = line(2, "2026-11-26T10:00:01Z", "web.1", "caf\u{e9} cut").to_string();
        let cut = &cut.as_bytes()[..cut.len() - 5];
        let mut bytes = format!("{first}\n").into_bytes();
        bytes.extend_from_slice(cut);
        std::fs::write(app.join("1795687200000000.log"), bytes).unwrap();

        let h = History::open(dir.path()).unwrap();
        let all = Query {
            limit: 100,
            ..Default::default()
        };
        assert_eq!(h.query("a1", &all).unwrap(), vec![first.clone()]);
        assert_eq!(h.newest("a1", 10), vec![first.clone()]);

        // The writer ends the cut line before it continues the segment.
        let next = line(3, "2026-11-26T10:00:02Z", "web.1", "next").to_string();
        h.line("a1", &line(3, "2026-11-26T10:00:02Z", "web.1", "next"));
        let got = wait_for(&h, "a1", &all, 3);
        assert_eq!(got.first(), Some(&first), "{got:?}");
        assert_eq!(got.last(), Some(&next), "{got:?}");
        assert_eq!(
            got.len(),
            3,
            "the cut line is read once it is ended: {got:?}"
        );
        assert!(got[1].ends_with(": caf\u{fffd}"), "{got:?}");
    }

    #[test]
    fn old_and_oversized_segments_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("a1");
        fs::create_dir_all(&app).unwrap();
        let now = Utc::now().timestamp_micros();
        let day = 86_400_000_000i64;
        // Three full segments: 10 days old, 2 days old, 1 day old.
        for (age, body) in [(10, "old"), (2, "mid"), (1, "new")] {
            let us = now - age * day;
            let t = stamp_of_micros(us);
            let path = app.join(format!("{us}.log"));
            fs::write(&path, format!("{t} app[web.1]: {body}\n").repeat(1000)).unwrap();
            // Last written a day after it started (the newest: now).
            let modified = SystemTime::now() - Duration::from_secs(((age - 1) * 86_400) as u64);
            File::options()
                .append(true)
                .open(&path)
                .unwrap()
                .set_modified(modified)
                .unwrap();
        }
        let h = History::open(dir.path()).unwrap();
        h.set_retention(
            "a1",
            Retention {
                max_bytes: 60_000,
                max_age: Duration::from_secs(7 * 86_400),
            },
        );
        // Writing starts a segment (the newest has room) and prunes.
        h.line("a1", &line(1, &stamp(Utc::now()), "web.1", "now"));
        let all = Query {
            limit: 10_000,
            ..Default::default()
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let got = loop {
            let got = h.query("a1", &all).unwrap();
            if got.iter().any(|l| l.ends_with(": now")) || std::time::Instant::now() > deadline {
                // Read again: that query may have begun before the writer pruned.
                break h.query("a1", &all).unwrap();
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let listing: Vec<_> = fs::read_dir(&app)
            .unwrap()
            .flatten()
            .map(|e| (e.file_name(), e.metadata().unwrap().modified().unwrap()))
            .collect();
        assert!(
            !got.iter().any(|l| l.ends_with(": old")),
            "the 10-day-old segment is gone: {listing:?}"
        );
        let mids = got.iter().filter(|l| l.ends_with(": mid")).count();
        assert_eq!(
            mids, 0,
            "over the size limit, the oldest remaining segment went too"
        );
        assert!(got.iter().any(|l| l.ends_with(": new")));
        assert!(got.iter().any(|l| l.ends_with(": now")));
    }
}
