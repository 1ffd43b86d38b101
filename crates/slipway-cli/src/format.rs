//! Heroku-style output: `=== ` section headers, aligned `Key: value` blocks, header-less tables,
//! `2026/11/26 05:19:49 +0000 (~ 5s ago)` times and shell quoting.

use chrono::{DateTime, Utc};

/// A section header followed by a blank line, as Heroku's CLI prints it.
pub fn header(title: &str) -> String {
    format!("=== {title}\n\n")
}

/// Rows padded into columns separated by two spaces; the last column is not padded.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; cols];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i] - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A table under a row of column titles underlined with `─`, as Heroku's CLI prints lists with
/// several columns.
pub fn titled_table(titles: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = titles.iter().map(|t| t.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut all = vec![titles.iter().map(|t| t.to_string()).collect::<Vec<_>>()];
    all.push(widths.iter().map(|w| "─".repeat(*w)).collect());
    all.extend(rows.iter().cloned());
    table(&all)
}

/// `KEY: value` lines with the values aligned one column past the longest key. A value of
/// several lines continues under its first line.
pub fn key_values(pairs: &[(String, String)]) -> String {
    let width = pairs
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (k, v) in pairs {
        let pad = width - k.chars().count();
        let mut lines = v.lines();
        let line = format!("{k}:{} {}", " ".repeat(pad), lines.next().unwrap_or(""));
        out.push_str(line.trim_end());
        out.push('\n');
        for more in lines {
            let line = format!("{} {more}", " ".repeat(width + 1));
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    out
}

/// `2026/11/26 05:19:49 +0000 (~ 5s ago)`; times more than 25 hours old get no "ago" part, as in
/// Heroku's `ps`. Times are shown in UTC.
pub fn time_ago(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let stamp = t.format("%Y/%m/%d %H:%M:%S %z");
    let secs = (now - t).num_seconds().max(0);
    if secs < 60 {
        format!("{stamp} (~ {secs}s ago)")
    } else if secs < 60 * 60 {
        format!("{stamp} (~ {}m ago)", secs / 60)
    } else if secs < 25 * 60 * 60 {
        format!("{stamp} (~ {}h ago)", secs / 3600)
    } else {
        stamp.to_string()
    }
}

/// Quotes `s` for a POSIX shell when it holds anything but safe characters.
pub fn shell_quote(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Byte counts as `512 B`, `12 KB`, `3.4 MB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value >= 10.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A size limit as plans state it: `1 GB`, `25 MB`, `7.5 GB` (no `.0`).
pub fn limit_size(bytes: u64) -> String {
    human_size(bytes).replacen(".0 ", " ", 1)
}

/// `10000000` as `10,000,000`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A price as Heroku's CLI prints it: `free`, `$5/month`, `$7.50/month`, `contract`.
pub fn price(cents: i64, unit: &str, contract: bool) -> String {
    if contract {
        return "contract".to_owned();
    }
    if cents == 0 {
        return "free".to_owned();
    }
    let unit = if unit.is_empty() { "month" } else { unit };
    let dollars = cents / 100;
    if cents % 100 == 0 {
        format!("${}/{unit}", thousands(dollars.unsigned_abs()))
    } else {
        format!(
            "${}.{:02}/{unit}",
            thousands(dollars.unsigned_abs()),
            (cents % 100).abs()
        )
    }
}

/// `web.10` sorts after `web.9`: compares the type, then the number after the dot.
pub fn dyno_sort_key(name: &str) -> (String, u64, String) {
    match name.rsplit_once('.') {
        Some((ty, n)) => match n.parse::<u64>() {
            Ok(n) => (ty.to_owned(), n, String::new()),
            Err(_) => (ty.to_owned(), u64::MAX, n.to_owned()),
        },
        None => (name.to_owned(), 0, String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn tables_align_columns() {
        let rows = vec![
            vec!["v10".into(), "Deploy abc".into(), "me@x".into()],
            vec![
                "v9".into(),
                "Set FOO config vars".into(),
                "someone@x".into(),
            ],
        ];
        assert_eq!(
            table(&rows),
            "v10  Deploy abc           me@x\nv9   Set FOO config vars  someone@x\n"
        );
        assert_eq!(table(&[]), "");
    }

    #[test]
    fn titled_tables_underline_each_column() {
        let rows = vec![vec!["www.example.com".into(), "CNAME".into()]];
        assert_eq!(
            titled_table(&["Domain Name", "Type"], &rows),
            "Domain Name      Type\n───────────────  ─────\nwww.example.com  CNAME\n"
        );
    }

    #[test]
    fn key_values_align() {
        let pairs = vec![
            ("A".to_owned(), "1".to_owned()),
            ("LONG_KEY".to_owned(), "x y".to_owned()),
            ("EMPTY".to_owned(), String::new()),
        ];
        assert_eq!(key_values(&pairs), "A:        1\nLONG_KEY: x y\nEMPTY:\n");
        let pairs = vec![
            ("Attachments".to_owned(), "a::DATABASE\nb::REDIS".to_owned()),
            ("Plan".to_owned(), "x".to_owned()),
        ];
        assert_eq!(
            key_values(&pairs),
            "Attachments: a::DATABASE\n             b::REDIS\nPlan:        x\n"
        );
    }

    #[test]
    fn limits_counts_and_prices() {
        assert_eq!(limit_size(1 << 30), "1 GB");
        assert_eq!(limit_size(25 << 20), "25 MB");
        assert_eq!(limit_size(768 << 30), "768 GB");
        assert_eq!(limit_size((15 << 30) / 2), "7.5 GB");
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(10_000), "10,000");
        assert_eq!(thousands(10_000_000), "10,000,000");
        assert_eq!(price(0, "month", false), "free");
        assert_eq!(price(500, "month", false), "$5/month");
        assert_eq!(price(750, "month", false), "$7.50/month");
        assert_eq!(price(500, "month", true), "contract");
    }

    #[test]
    fn times() {
        let now = Utc.with_ymd_and_hms(2026, 11, 26, 6, 1, 0).unwrap();
        let at = |h, m, s| Utc.with_ymd_and_hms(2026, 11, 26, h, m, s).unwrap();
        assert_eq!(
            time_ago(at(6, 0, 55), now),
            "2026/11/26 06:00:55 +0000 (~ 5s ago)"
        );
        assert_eq!(
            time_ago(at(6, 0, 0), now),
            "2026/11/26 06:00:00 +0000 (~ 1m ago)"
        );
        assert_eq!(
            time_ago(at(4, 0, 0), now),
            "2026/11/26 04:00:00 +0000 (~ 2h ago)"
        );
        let old = Utc.with_ymd_and_hms(2026, 11, 20, 6, 0, 0).unwrap();
        assert_eq!(time_ago(old, now), "2026/11/20 06:00:00 +0000");
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("abc/def:1"), "abc/def:1");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn sizes_and_dyno_order() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(3 * 1024 * 1024 + 400_000), "3.4 MB");
        assert_eq!(human_size(20 * 1024), "20 KB");
        let mut names = vec!["web.10", "web.9", "worker.1", "web.1"];
        names.sort_by_key(|n| dyno_sort_key(n));
        assert_eq!(names, vec!["web.1", "web.9", "web.10", "worker.1"]);
    }
}
