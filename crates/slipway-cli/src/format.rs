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

/// Rows as `psql` prints them (aligned format, border 1): titles centered, cells left-aligned
/// except in columns whose every value is a number, a cell's further lines under it with `+` at
/// the end of the line before, `NULL` (`None`) as an empty cell, then `(N rows)` and a blank line.
pub fn psql_table(columns: &[String], rows: &[Vec<Option<String>>]) -> String {
    let width = |s: &str| s.chars().count();
    let cells: Vec<Vec<Vec<&str>>> = rows
        .iter()
        .map(|row| {
            (0..columns.len())
                .map(|i| match row.get(i) {
                    Some(Some(text)) => text.split('\n').collect(),
                    _ => vec![""],
                })
                .collect()
        })
        .collect();
    let mut widths: Vec<usize> = columns.iter().map(|c| width(c)).collect();
    for row in &cells {
        for (i, lines) in row.iter().enumerate() {
            for line in lines {
                widths[i] = widths[i].max(width(line));
            }
        }
    }
    let right: Vec<bool> = (0..columns.len())
        .map(|i| {
            let mut values = rows.iter().filter_map(|r| r.get(i).cloned().flatten());
            let first = values.next();
            first.is_some_and(|v| is_number(&v)) && values.all(|v| is_number(&v))
        })
        .collect();
    let mut out = String::new();
    for (i, title) in columns.iter().enumerate() {
        if i > 0 {
            out.push('|');
        }
        let space = widths[i] - width(title);
        out.push(' ');
        out.extend(std::iter::repeat_n(' ', space / 2));
        out.push_str(title);
        out.extend(std::iter::repeat_n(' ', space.div_ceil(2)));
        out.push(' ');
    }
    out.push('\n');
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(w + 2)).collect();
    out.push_str(&rule.join("+"));
    out.push('\n');
    for row in &cells {
        let height = row.iter().map(Vec::len).max().unwrap_or(1);
        for n in 0..height {
            for (i, lines) in row.iter().enumerate() {
                out.push_str(if i == 0 { " " } else { "| " });
                let text = lines.get(n).copied().unwrap_or("");
                let more = n + 1 < lines.len();
                let last = i + 1 == row.len();
                let pad = widths[i] - width(text);
                if right[i] {
                    out.extend(std::iter::repeat_n(' ', pad));
                    out.push_str(text);
                } else {
                    out.push_str(text);
                    if !last || more {
                        out.extend(std::iter::repeat_n(' ', pad));
                    }
                }
                if more {
                    out.push('+');
                } else if !last {
                    out.push(' ');
                }
            }
            out.push('\n');
        }
    }
    match rows.len() {
        1 => out.push_str("(1 row)\n\n"),
        n => out.push_str(&format!("({n} rows)\n\n")),
    }
    out
}

/// One CSV field, quoted as RFC 4180 asks when it holds a `,`, a `"` or a line break (`"`
/// doubled inside); `None` (NULL) is an empty field.
pub fn csv_field(value: Option<&str>) -> String {
    let Some(v) = value else {
        return String::new();
    };
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_owned()
    }
}

/// A header row, then one line per row, as CSV with RFC 4180's CRLF line breaks (as the server's
/// `.csv` links serve it).
pub fn csv(columns: &[String], rows: &[Vec<Option<String>>]) -> String {
    let mut out = String::new();
    let mut line = |cells: Vec<String>| {
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    };
    line(columns.iter().map(|c| csv_field(Some(c))).collect());
    for row in rows {
        line(row.iter().map(|c| csv_field(c.as_deref())).collect());
    }
    out
}

/// Whether a cell reads as a number (`psql` right-aligns numeric columns).
fn is_number(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, "0"));
    !int.is_empty()
        && !frac.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
}

/// Cuts `s` to 40 characters, the last being `…`, as `--truncate` does to queries.
pub fn truncate_query(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(MAX - 1).collect();
    out.push('…');
    out
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
    fn psql_tables_look_like_psql() {
        let cols = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let cell = |s: &str| Some(s.to_owned());
        // `SELECT 1 AS a, 2 AS bb` in psql.
        assert_eq!(
            psql_table(&cols(&["a", "bb"]), &[vec![cell("1"), cell("2")]]),
            " a | bb \n---+----\n 1 |  2\n(1 row)\n\n"
        );
        assert_eq!(
            psql_table(&cols(&["pg_cancel_backend"]), &[vec![cell("t")]]),
            " pg_cancel_backend \n-------------------\n t\n(1 row)\n\n"
        );
        // Text left-aligned, titles centered, NULL empty, a second line marked with `+`.
        let rows = vec![
            vec![cell("12345"), cell("active"), None, cell("SELECT 1")],
            vec![cell("7"), cell("idle"), cell("psql"), cell("SELECT\n  2")],
        ];
        assert_eq!(
            psql_table(&cols(&["pid", "state", "source", "query"]), &rows),
            "  pid  | state  | source |  query   \n\
             -------+--------+--------+----------\n \
             12345 | active |        | SELECT 1\n     \
             7 | idle   | psql   | SELECT  +\n       \
             |        |        |   2\n\
             (2 rows)\n\n"
        );
        assert_eq!(
            psql_table(&cols(&["pid", "query"]), &[]),
            " pid | query \n-----+-------\n(0 rows)\n\n"
        );
        assert!(is_number("12") && is_number("-1.5") && !is_number("1.") && !is_number("t"));
    }

    #[test]
    fn csv_quotes_as_rfc_4180_asks() {
        assert_eq!(csv_field(Some("plain")), "plain");
        assert_eq!(csv_field(Some("")), "");
        assert_eq!(csv_field(None), "");
        assert_eq!(csv_field(Some("a,b")), "\"a,b\"");
        assert_eq!(csv_field(Some("say \"hi\"")), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field(Some("two\nlines")), "\"two\nlines\"");
        assert_eq!(csv_field(Some("cr\r")), "\"cr\r\"");
        assert_eq!(csv_field(Some(" spaced ")), " spaced ");
        let cols = vec!["id".to_owned(), "note, long".to_owned()];
        let rows = vec![
            vec![Some("1".to_owned()), None],
            vec![Some("2".to_owned()), Some("a \"b\"\nc".to_owned())],
        ];
        assert_eq!(
            csv(&cols, &rows),
            "id,\"note, long\"\r\n1,\r\n2,\"a \"\"b\"\"\nc\"\r\n"
        );
        assert_eq!(csv(&cols, &[]), "id,\"note, long\"\r\n");
    }

    #[test]
    fn queries_truncate_to_forty_characters() {
        let long = "SELECT * FROM very_long_table_name WHERE id = 1";
        let cut = truncate_query(long);
        assert_eq!(cut.chars().count(), 40);
        assert_eq!(cut, "SELECT * FROM very_long_table_name WHER…");
        assert_eq!(truncate_query("SELECT 1"), "SELECT 1");
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
