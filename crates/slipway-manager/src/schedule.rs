//! The dyno manager's clocks: crash cool-offs and daily cycling.

use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};

const MIN: u64 = 60;

/// Heroku's cool-off before restarting a dyno after its `crashes`-th crash in a row: at once after
/// the first, then 20, 40, 60 and 180 minutes, then every 320 minutes.
pub fn restart_delay(crashes: u32) -> Duration {
    let minutes = match crashes {
        0 | 1 => 0,
        2 => 20,
        3 => 40,
        4 => 60,
        5 => 180,
        _ => 320,
    };
    Duration::from_secs(minutes * MIN)
}

/// A dyno that ran this long before exiting made a clean start: its crash series starts over.
pub const CLEAN_RUN: Duration = Duration::from_secs(10 * MIN);

/// When an app's dynos are cycled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cycling {
    /// Heroku's: 24 hours after the start, plus up to 216 random minutes.
    Daily,
    /// Never.
    Off,
    /// Every day at this time (UTC), each dyno within 15 random minutes of it, so they do not
    /// all restart at once; never less than an hour after the dyno started.
    At { hour: u32, minute: u32 },
}

impl Cycling {
    /// Parses `daily`, `off` or `HH:MM` (UTC).
    pub fn parse(s: &str) -> Result<Cycling, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "daily" | "on" | "" => Ok(Cycling::Daily),
            "off" | "never" => Ok(Cycling::Off),
            t => {
                let t = t.trim_end_matches("utc").trim();
                let (h, m) = t.split_once(':').unwrap_or((t, "00"));
                match (h.parse::<u32>(), m.parse::<u32>()) {
                    (Ok(hour), Ok(minute)) if hour < 24 && minute < 60 => {
                        Ok(Cycling::At { hour, minute })
                    }
                    _ => Err(format!(
                        "{s:?} is not a cycling setting: use daily, off, or a time of day such as 04:30 (UTC)"
                    )),
                }
            }
        }
    }

    /// How the setting is stored and shown.
    pub fn as_setting(&self) -> String {
        match self {
            Cycling::Daily => "daily".into(),
            Cycling::Off => "off".into(),
            Cycling::At { hour, minute } => format!("{hour:02}:{minute:02}"),
        }
    }

    /// How long after `now` a dyno starting now is cycled; `jitter` in [0, 1) picks its place in
    /// the random window. `None` when cycling is off.
    pub fn next_cycle(&self, now: DateTime<Utc>, jitter: f64) -> Option<Duration> {
        let jitter = jitter.clamp(0.0, 1.0);
        match *self {
            Cycling::Off => None,
            Cycling::Daily => Some(Duration::from_secs(
                24 * 60 * MIN + (jitter * (216 * MIN) as f64) as u64,
            )),
            Cycling::At { hour, minute } => {
                let now_secs = u64::from(now.num_seconds_from_midnight());
                let at = u64::from(hour * 3600 + minute * 60);
                let day = 24 * 60 * MIN;
                let mut wait = (at + day - now_secs) % day;
                if wait < 60 * MIN {
                    wait += day;
                }
                Some(Duration::from_secs(
                    wait + (jitter * (15 * MIN) as f64) as u64,
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn cool_offs_follow_herokus_schedule() {
        let minutes: Vec<u64> = (1..=8).map(|n| restart_delay(n).as_secs() / 60).collect();
        assert_eq!(minutes, [0, 20, 40, 60, 180, 320, 320, 320]);
    }

    #[test]
    fn cycling_settings_parse_and_schedule() {
        assert_eq!(Cycling::parse("daily"), Ok(Cycling::Daily));
        assert_eq!(Cycling::parse("OFF"), Ok(Cycling::Off));
        assert_eq!(
            Cycling::parse("04:30"),
            Ok(Cycling::At {
                hour: 4,
                minute: 30
            })
        );
        assert_eq!(Cycling::parse("4"), Ok(Cycling::At { hour: 4, minute: 0 }));
        assert!(Cycling::parse("25:00").unwrap_err().contains("time of day"));
        assert!(Cycling::parse("soon").is_err());
        assert_eq!(Cycling::At { hour: 4, minute: 5 }.as_setting(), "04:05");

        let now = Utc.with_ymd_and_hms(2026, 11, 26, 2, 0, 0).unwrap();
        // Daily: between 24 h and 24 h + 216 min.
        assert_eq!(
            Cycling::Daily.next_cycle(now, 0.0),
            Some(Duration::from_secs(24 * 3600))
        );
        assert_eq!(
            Cycling::Daily
                .next_cycle(now, 0.999_999)
                .map(|d| d.as_secs() / 60),
            Some(24 * 60 + 215)
        );
        assert_eq!(Cycling::Off.next_cycle(now, 0.5), None);
        // At 04:30: today, 2.5 h from now, within the 15-minute window.
        let at = Cycling::At {
            hour: 4,
            minute: 30,
        };
        assert_eq!(at.next_cycle(now, 0.0), Some(Duration::from_secs(150 * 60)));
        assert_eq!(
            at.next_cycle(now, 0.5),
            Some(Duration::from_secs(150 * 60 + 450))
        );
        // Less than an hour away: tomorrow's.
        let late = Utc.with_ymd_and_hms(2026, 11, 26, 4, 0, 0).unwrap();
        assert_eq!(
            at.next_cycle(late, 0.0),
            Some(Duration::from_secs((24 * 60 + 30) * 60))
        );
    }
}
