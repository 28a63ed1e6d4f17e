//! The CI toolkit's wire types: the `wait` contract, replaying a captured request.
//!
//! `GET /api/bins/{bin}/wait` takes a [`WaitQuery`] and answers with a
//! [`crate::CapturedRequestOut`] (or a 408 error body); exports are HAR 1.2 or NDJSON of
//! [`crate::CapturedRequestOut`], so they need no types here.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long one `GET /api/bins/{bin}/wait` lasts when the query has no `timeout=`.
pub const WAIT_DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest `timeout=` one `GET /api/bins/{bin}/wait` accepts; clients wait longer by
/// chaining polls. Long polls longer than this are cut by proxies and load balancers anyway.
pub const WAIT_MAX_TIMEOUT: Duration = Duration::from_secs(300);

/// The query of `GET /api/bins/{bin}/wait`: what the route reads ([`WaitQuery::parse`]) and
/// what clients send ([`WaitQuery::pairs`]). Every filter given must match:
/// - `method=POST` (case-insensitive);
/// - `path=/github/*` (the path below the bin; exact, or a glob with `*` and `?`);
/// - `header=Name:value` (repeatable; name case-insensitive, value exact or a glob; `header=Name`
///   only asks that the header is present);
/// - `json=/pointer=value` (repeatable; the body's value at the JSON pointer equals `value`
///   read as JSON, or as a string when it is not JSON: `json=/n=42` matches `42` and `"42"`,
///   `json=/status=paid` matches `"paid"`; `json=/pointer` only asks that it exists);
/// - `valid=true|false`: the request passed (or failed) every check of the bin (schema,
///   signature); a bin without checks passes everything;
/// - `after=<sequence number or request id>`: only requests captured after it. Without it, a
///   matching request already stored counts;
/// - `timeout=30s` (default [`WAIT_DEFAULT_TIMEOUT`], at most [`WAIT_MAX_TIMEOUT`]; the units of
///   [`crate::units::parse_duration`]; `0` only looks at what is stored).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WaitQuery {
    pub method: Option<String>,
    pub path: Option<String>,
    /// A header's name and the value it must have (exact or a glob); `None`: present.
    pub headers: Vec<(String, Option<String>)>,
    /// A JSON pointer and the value the body has there, as written (JSON, else a string);
    /// `None`: the pointer exists.
    pub json: Vec<(String, Option<String>)>,
    pub valid: Option<bool>,
    /// A sequence number or request id.
    pub after: Option<String>,
    /// `None`: [`WAIT_DEFAULT_TIMEOUT`].
    pub timeout: Option<Duration>,
}

impl WaitQuery {
    /// Reads `Name: value` (or `Name`, present), as `header=` and `--header` spell it.
    pub fn header_filter(spec: &str) -> (String, Option<String>) {
        match spec.split_once(':') {
            Some((n, v)) => (n.trim().to_owned(), Some(v.trim().to_owned())),
            None => (spec.trim().to_owned(), None),
        }
    }

    /// Reads `/pointer=value` (or `/pointer`, present), as `json=` and `--json` spell it.
    pub fn json_filter(spec: &str) -> (String, Option<String>) {
        match spec.split_once('=') {
            Some((p, raw)) => (p.to_owned(), Some(raw.to_owned())),
            None => (spec.to_owned(), None),
        }
    }

    /// Reads a query's pairs; the error says which parameter is wrong and how to write it.
    pub fn parse(pairs: impl IntoIterator<Item = (String, String)>) -> Result<Self, String> {
        let mut q = Self::default();
        for (key, value) in pairs {
            match key.as_str() {
                "method" => q.method = Some(value),
                "path" => q.path = Some(value),
                "header" => {
                    let (name, v) = Self::header_filter(&value);
                    if name.is_empty() {
                        return Err(format!("header={value:?}: use header=Name:value"));
                    }
                    q.headers.push((name, v));
                }
                "json" => {
                    let (pointer, expect) = Self::json_filter(&value);
                    if !(pointer.is_empty() || pointer.starts_with('/')) {
                        return Err(format!(
                            "json={value:?}: the JSON pointer must start with '/' (json=/order/id=42)"
                        ));
                    }
                    q.json.push((pointer, expect));
                }
                "valid" => {
                    q.valid =
                        Some(value.parse().map_err(|_| {
                            format!("valid={value:?}: use valid=true or valid=false")
                        })?);
                }
                "after" => q.after = Some(value),
                "timeout" => {
                    let timeout = crate::units::parse_duration(&value)
                        .map_err(|e| format!("timeout: {e}"))?;
                    if timeout > WAIT_MAX_TIMEOUT {
                        return Err(format!(
                            "timeout={value} is longer than the maximum of {}s",
                            WAIT_MAX_TIMEOUT.as_secs()
                        ));
                    }
                    q.timeout = Some(timeout);
                }
                other => {
                    return Err(format!(
                        "unknown parameter {other:?}: use method, path, header, json, valid, \
                         after, timeout"
                    ));
                }
            }
        }
        Ok(q)
    }

    /// The query's pairs, as a client sends them.
    pub fn pairs(&self) -> Vec<(String, String)> {
        let mut q = Vec::new();
        if let Some(m) = &self.method {
            q.push(("method".into(), m.clone()));
        }
        if let Some(p) = &self.path {
            q.push(("path".into(), p.clone()));
        }
        q.extend(
            self.headers
                .iter()
                .map(|h| ("header".into(), written(h, ": "))),
        );
        q.extend(self.json.iter().map(|j| ("json".into(), written(j, "="))));
        if let Some(v) = self.valid {
            q.push(("valid".into(), v.to_string()));
        }
        if let Some(a) = &self.after {
            q.push(("after".into(), a.clone()));
        }
        if let Some(t) = self.timeout {
            q.push(("timeout".into(), format!("{}ms", t.as_millis())));
        }
        q
    }

    /// The filters in words (`a request with method=POST, header X-A: b`), for the route's
    /// timeout message.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(m) = &self.method {
            parts.push(format!("method={m}"));
        }
        if let Some(p) = &self.path {
            parts.push(format!("path={p}"));
        }
        parts.extend(
            self.headers
                .iter()
                .map(|h| format!("header {}", written(h, ": "))),
        );
        parts.extend(
            self.json
                .iter()
                .map(|j| format!("json {}", written(j, "="))),
        );
        if let Some(v) = self.valid {
            parts.push(format!("valid={v}"));
        }
        if parts.is_empty() {
            "any request".into()
        } else {
            format!("a request with {}", parts.join(", "))
        }
    }
}

/// A header filter as written (`Name: value` or `Name`, `sep` ": "), or a JSON filter
/// (`/pointer=value` or `/pointer`, `sep` "=").
fn written((key, value): &(String, Option<String>), sep: &str) -> String {
    match value {
        Some(v) => format!("{key}{sep}{v}"),
        None => key.clone(),
    }
}

/// Body of `POST /api/bins/{bin}/requests/{id}/replay`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReplayIn {
    /// Where to send the request (`http://` or `https://`).
    pub url: String,
    /// Append the path the request had below the bin (`/b/{bin}/github` -> `{url}/github`);
    /// a request to the bin itself adds nothing. Default true.
    #[serde(default = "yes")]
    pub append_path: bool,
}

fn yes() -> bool {
    true
}

/// What happened when a captured request was sent again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReplayOut {
    /// The URL the request went to (with the captured path and query).
    pub url: String,
    /// The answer's status; absent when none came (connection error, timeout).
    pub status: Option<u16>,
    pub duration_ms: u64,
    /// The first 4 KiB of the answer's body (lossy UTF-8).
    pub response_excerpt: Option<String>,
    /// What went wrong, when no answer came.
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &[(&str, &str)]) -> Result<WaitQuery, String> {
        WaitQuery::parse(v.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())))
    }

    #[test]
    fn wait_queries_are_checked() {
        assert!(parse(&[("timeout", "301s")]).is_err());
        assert!(parse(&[("timeout", "soon")]).is_err());
        assert!(parse(&[("json", "order=1")]).is_err());
        assert!(parse(&[("header", ": x")]).is_err());
        assert!(parse(&[("valid", "yes")]).is_err());
        assert!(parse(&[("nope", "1")]).is_err());
        let ok = parse(&[
            ("timeout", "1500ms"),
            ("header", "X-A: b"),
            ("json", "/a/b=1"),
        ])
        .unwrap();
        assert_eq!(ok.timeout, Some(Duration::from_millis(1500)));
        assert_eq!(ok.describe(), "a request with header X-A: b, json /a/b=1");
    }

    #[test]
    fn what_a_client_sends_reads_back_the_same() {
        let q = WaitQuery {
            method: Some("POST".into()),
            path: Some("/gh/*".into()),
            headers: vec![
                ("X-Event".into(), Some("a:b".into())),
                ("X-Any".into(), None),
            ],
            json: vec![("/n".into(), Some("42".into())), ("/id".into(), None)],
            valid: Some(false),
            after: Some("7".into()),
            timeout: Some(Duration::from_millis(1500)),
        };
        assert_eq!(WaitQuery::parse(q.pairs()), Ok(q));
        assert_eq!(WaitQuery::parse(Vec::new()), Ok(WaitQuery::default()));
    }
}
