//! Request matching: the one place that says whether a captured request is the one asked for.
//!
//! - [`RequestFilter`]: the filters of `GET .../requests` (method, path, text), applied by every
//!   backend when it reads a page;
//! - [`Matcher`]: what `GET /api/bins/{bin}/wait` waits for, compiled from the contract's
//!   [`api::WaitQuery`] (method, path glob, headers, JSON values, the bin's checks);
//! - [`TextSearch`] (`search`): the text search of `q=`.
//!
//! The rules, the same wherever they apply: methods compare ignoring ASCII case; header names
//! ignore ASCII case and their values are trimmed before they are compared; a glob's `*` is any
//! run of bytes and `?` any one byte.

mod search;

pub use search::{MAX_TEXT_BYTES, TextSearch, TextTooLong};

use super::CapturedRequest;

/// Filters of `GET .../requests`; all must match.
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    /// Method, case-insensitive.
    pub method: Option<String>,
    /// Path below the bin: exact, or a prefix when it ends with `*`.
    pub path: Option<String>,
    /// Text searched (ASCII case-insensitive) in path, query, header names and values, and
    /// body. The scan reads every stored byte of the bin: with it, call
    /// [`super::Store::requests`] off the async runtime's worker threads.
    pub text: Option<TextSearch>,
}

impl RequestFilter {
    /// Whether `r` passes every filter.
    pub fn matches(&self, r: &CapturedRequest) -> bool {
        if !method_matches(self.method.as_deref(), r) {
            return false;
        }
        if let Some(p) = &self.path {
            let ok = match p.strip_suffix('*') {
                Some(prefix) => r.path().starts_with(prefix),
                None => r.path() == p,
            };
            if !ok {
                return false;
            }
        }
        self.text.as_ref().is_none_or(|t| t.matches(r))
    }
}

/// What a waited-for request must look like ([`api::WaitQuery`], its JSON values read once).
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    method: Option<String>,
    path: Option<String>,
    headers: Vec<(String, Option<String>)>,
    /// A pointer and the value expected there: as written, and read as JSON (else a string).
    json: Vec<(String, Option<(String, serde_json::Value)>)>,
    valid: Option<bool>,
}

impl Matcher {
    /// The matcher of a wait's filters (its `after` and `timeout` are the route's).
    pub fn new(q: &api::WaitQuery) -> Self {
        let json = q
            .json
            .iter()
            .map(|(pointer, raw)| {
                let expect = raw.as_ref().map(|raw| {
                    let value = serde_json::from_str(raw)
                        .unwrap_or_else(|_| serde_json::Value::String(raw.clone()));
                    (raw.clone(), value)
                });
                (pointer.clone(), expect)
            })
            .collect();
        Self {
            method: q.method.clone(),
            path: q.path.clone(),
            headers: q.headers.clone(),
            json,
            valid: q.valid,
        }
    }

    /// Whether `r` matches every filter.
    pub fn matches(&self, r: &CapturedRequest) -> bool {
        if !method_matches(self.method.as_deref(), r) {
            return false;
        }
        if let Some(p) = &self.path
            && !glob(p.as_bytes(), r.path().as_bytes())
        {
            return false;
        }
        for (name, value) in &self.headers {
            let mut same_name = r
                .headers()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()));
            let hit = match value {
                None => same_name.next().is_some(),
                Some(v) => same_name.any(|(_, got)| glob(v.as_bytes(), got.trim_ascii())),
            };
            if !hit {
                return false;
            }
        }
        if let Some(want) = self.valid
            && api::checks_passed(r.validation.as_deref(), r.signature.as_deref()) != want
        {
            return false;
        }
        if !self.json.is_empty() {
            let Ok(doc) = serde_json::from_slice::<serde_json::Value>(r.body()) else {
                return false;
            };
            for (pointer, expect) in &self.json {
                let Some(got) = doc.pointer(pointer) else {
                    return false;
                };
                if let Some((raw, value)) = expect
                    && got != value
                    && got.as_str() != Some(raw.as_str())
                {
                    return false;
                }
            }
        }
        true
    }
}

/// The method filter: none, or the same method ignoring ASCII case.
fn method_matches(method: Option<&str>, r: &CapturedRequest) -> bool {
    method.is_none_or(|m| r.method().eq_ignore_ascii_case(m))
}

/// Matches `text` against a pattern where `*` is any run of bytes and `?` any one byte.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was, and the text position it currently swallows up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewCapture, RawHeaders};

    /// A `POST` captured with these parts.
    pub(super) fn request(
        path: &str,
        query: Option<&str>,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> CapturedRequest {
        let mut h = RawHeaders::new();
        for (n, v) in headers {
            h.push(n.as_bytes(), v.as_bytes());
        }
        let mut c = NewCapture::new(
            "POST",
            path,
            query,
            &h,
            body.len(),
            "127.0.0.1:1".parse().unwrap(),
        );
        c.push_body(body);
        c.finish(1, chrono::Utc::now())
    }

    fn wait_for(pairs: &[(&str, &str)]) -> Matcher {
        let q = api::WaitQuery::parse(pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())));
        Matcher::new(&q.unwrap())
    }

    #[test]
    fn a_wait_matcher_asks_every_filter() {
        let r = request(
            "/github/push",
            Some("a=1"),
            &[("X-Event", " issues "), ("X-Empty", "")],
            br#"{"n": 42, "s": "42", "status": "paid"}"#,
        );
        for hit in [
            &[][..],
            &[("method", "post"), ("path", "/github/*")],
            &[("path", "/github/pus?")],
            &[("header", "x-event: iss*"), ("header", "X-Empty")],
            &[
                ("json", "/n=42"),
                ("json", "/s=42"),
                ("json", "/status=paid"),
            ],
            &[("json", "/status"), ("valid", "true")],
        ] {
            assert!(wait_for(hit).matches(&r), "{hit:?}");
        }
        for miss in [
            &[("method", "PUT")][..],
            &[("path", "/github")],
            &[("header", "X-Event: push")],
            &[("header", "X-Missing")],
            &[("json", "/n=43")],
            &[("json", "/missing")],
            &[("valid", "false")],
        ] {
            assert!(!wait_for(miss).matches(&r), "{miss:?}");
        }
        // JSON filters never match a body that is not JSON.
        assert!(!wait_for(&[("json", "/n")]).matches(&request("/", None, &[], b"n=42")));
    }

    #[test]
    fn a_page_filter_takes_a_trailing_star_as_a_prefix() {
        let r = request("/github/push", None, &[], b"");
        let filter = |method: Option<&str>, path: &str| RequestFilter {
            method: method.map(Into::into),
            path: Some(path.into()),
            text: None,
        };
        assert!(filter(Some("POST"), "/github/*").matches(&r));
        assert!(filter(Some("post"), "/github/push").matches(&r));
        assert!(!filter(Some("GET"), "/github/*").matches(&r));
        assert!(!filter(None, "/github").matches(&r));
        assert!(!filter(None, "/github/pus?").matches(&r));
    }

    #[test]
    fn globs() {
        assert!(glob(b"/a/*", b"/a/b/c"));
        assert!(glob(b"/a/?", b"/a/b"));
        assert!(!glob(b"/a/?", b"/a/bc"));
        assert!(glob(b"*", b""));
        assert!(glob(b"/x", b"/x"));
        assert!(!glob(b"/x", b"/xy"));
        assert!(glob(b"*.json", b"/events/a.json"));
        assert!(!glob(b"*.json", b"/events/a.jsonx"));
        assert!(glob(b"a*b*c", b"aXbYbZc"));
    }
}
