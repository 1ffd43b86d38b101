//! Heroku's `Range` / `Next-Range` list pagination, parsed leniently.
//!
//! `Range: version ..; max=15, order=desc` or `id ]<last>..; max=200`. Lists answer `206` with a
//! `Next-Range` header only when more items remain.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub const DEFAULT_MAX: usize = 200;
pub const LIMIT_MAX: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub field: Option<String>,
    /// Start value and whether it is exclusive (`]value..`).
    pub start: Option<(String, bool)>,
    pub max: usize,
    pub desc: bool,
}

impl Default for Range {
    fn default() -> Self {
        Range {
            field: None,
            start: None,
            max: DEFAULT_MAX,
            desc: false,
        }
    }
}

/// Parses a `Range` header; anything it cannot read is ignored.
pub fn parse(value: &str) -> Range {
    let mut r = Range::default();
    let (head, params) = value.split_once(';').unwrap_or((value, ""));
    let mut words = head.split_whitespace();
    if let Some(field) = words.next() {
        r.field = Some(field.to_string());
    }
    if let Some(span) = words.next() {
        let start = span.split("..").next().unwrap_or("");
        if let Some(v) = start.strip_prefix(']') {
            if !v.is_empty() {
                r.start = Some((v.to_string(), true));
            }
        } else if !start.is_empty() {
            r.start = Some((start.to_string(), false));
        }
    }
    for p in params.split([',', ';']) {
        let Some((k, v)) = p.split_once('=') else {
            continue;
        };
        match k.trim() {
            "max" => {
                if let Ok(n) = v.trim().parse::<usize>() {
                    r.max = n.clamp(1, LIMIT_MAX);
                }
            }
            "order" => r.desc = v.trim().eq_ignore_ascii_case("desc"),
            _ => {}
        }
    }
    r
}

/// Answers a list. `key` gives each item's value of the range field (`id`, `name`, `version`...);
/// `numeric` says whether that field sorts as a number.
pub fn respond<T: Serialize>(
    headers: &HeaderMap,
    default_field: &str,
    mut items: Vec<T>,
    key: impl Fn(&T, &str) -> String,
    numeric: impl Fn(&str) -> bool,
) -> Response {
    let range = headers
        .get("range")
        .and_then(|v| v.to_str().ok())
        .map(parse)
        .unwrap_or_default();
    let field = range
        .field
        .clone()
        .unwrap_or_else(|| default_field.to_string());
    let is_num = numeric(&field);
    let cmp_val = |s: &str| -> (i128, String) {
        if is_num {
            (s.parse::<i128>().unwrap_or(0), String::new())
        } else {
            (0, s.to_string())
        }
    };
    items.sort_by_key(|a| cmp_val(&key(a, &field)));
    if range.desc {
        items.reverse();
    }
    if let Some((start, exclusive)) = &range.start {
        let s = cmp_val(start);
        items.retain(|it| {
            let v = cmp_val(&key(it, &field));
            match (range.desc, exclusive) {
                (false, false) => v >= s,
                (false, true) => v > s,
                (true, false) => v <= s,
                (true, true) => v < s,
            }
        });
    }
    let more = items.len() > range.max;
    items.truncate(range.max);
    let next = match (more, items.last()) {
        (true, Some(last)) => Some(format!(
            "{field} ]{}..; max={}{}",
            key(last, &field),
            range.max,
            if range.desc { ", order=desc" } else { "" }
        )),
        _ => None,
    };
    let status = if next.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let mut resp = (status, axum::Json(items)).into_response();
    if let Some(next) = next.and_then(|n| HeaderValue::from_str(&n).ok()) {
        resp.headers_mut().insert("next-range", next);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_clients_send() {
        let r = parse("version ..; max=15, order=desc");
        assert_eq!(
            (r.field.as_deref(), r.max, r.desc, r.start),
            (Some("version"), 15, true, None)
        );
        let r = parse("version ..; order=desc,max=1");
        assert_eq!((r.max, r.desc), (1, true));
        let r = parse("id ..; max=1000;");
        assert_eq!(r.max, 1000);
        let r = parse("id ..; ;");
        assert_eq!(r.max, DEFAULT_MAX);
        assert_eq!(parse(""), Range::default());
        let r = parse("version ]3..; max=2");
        assert_eq!(r.start, Some(("3".into(), true)));
        assert_eq!(parse("id ..; max=99999").max, LIMIT_MAX);
    }
}
