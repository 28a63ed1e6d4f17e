//! Sizes and times the way people read them.

/// `512 B`, `1.5 KB`, `2.0 MB` (powers of 1024). Integer arithmetic: float formatting would add
/// kilobytes to the wasm.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut div: u128 = 1024;
    let mut unit = 0;
    while u128::from(bytes) >= div * 1024 && unit < UNITS.len() - 1 {
        div *= 1024;
        unit += 1;
    }
    let tenths = (u128::from(bytes) * 10 + div / 2) / div;
    format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[unit])
}

/// How long ago `then_ms` was at `now_ms` (milliseconds since the epoch), or how soon it comes
/// when it is in the future ("in 30 s").
pub fn ago(then_ms: f64, now_ms: f64) -> String {
    let future = then_ms - now_ms >= 5000.0;
    let s = ((now_ms - then_ms).abs() / 1000.0) as u64;
    if s < 5 {
        return "just now".to_owned();
    }
    let span = span(s);
    if future {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

/// A span of seconds, coarsely: `30 s`, `2 min`, `3 h`, `2 d`.
fn span(s: u64) -> String {
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        3600..=86_399 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

/// `late by 40 s` when `sent_ms` is at least `threshold_ms` after `due_ms` (milliseconds since
/// the epoch); `None` when on time or when either time is unknown (NaN).
pub fn late(due_ms: f64, sent_ms: f64, threshold_ms: f64) -> Option<String> {
    let by = sent_ms - due_ms;
    // NaN compares false: an unparsable time is never "late".
    (by >= threshold_ms).then(|| format!("late by {}", span((by / 1000.0) as u64)))
}

/// `1 request`, `2 requests`: the count with the right noun.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A duration in milliseconds as measured: `< 1 ms` when it rounded down to nothing.
pub fn millis(ms: u64) -> String {
    if ms == 0 {
        "< 1 ms".to_owned()
    } else {
        format!("{ms} ms")
    }
}

/// Splits Markdown-ish text on backticks: `(true, code)` for the parts between a pair, `(false,
/// text)` for the rest. An unpaired backtick stays as text.
pub fn backticks(text: &str) -> Vec<(bool, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('`') {
        let Some(close) = rest[open + 1..].find('`') else {
            break;
        };
        if open > 0 {
            out.push((false, rest[..open].to_owned()));
        }
        let code = &rest[open + 1..open + 1 + close];
        if !code.is_empty() {
            out.push((true, code.to_owned()));
        }
        rest = &rest[open + close + 2..];
    }
    if !rest.is_empty() {
        out.push((false, rest.to_owned()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_millis_and_backticks() {
        assert_eq!(count(1, "request", "requests"), "1 request");
        assert_eq!(count(0, "request", "requests"), "0 requests");
        assert_eq!(millis(0), "< 1 ms");
        assert_eq!(millis(12), "12 ms");
        assert_eq!(
            backticks("Sent when `payment.id` is set, `x"),
            vec![
                (false, "Sent when ".to_owned()),
                (true, "payment.id".to_owned()),
                (false, " is set, `x".to_owned())
            ]
        );
        assert_eq!(backticks("plain"), vec![(false, "plain".to_owned())]);
    }

    #[test]
    fn sizes() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.5 KB");
        assert_eq!(size(3 * 1024 * 1024), "3.0 MB");
    }

    #[test]
    fn ages() {
        assert_eq!(ago(0.0, 1_000.0), "just now");
        assert_eq!(ago(0.0, 30_000.0), "30 s ago");
        assert_eq!(ago(0.0, 125_000.0), "2 min ago");
        assert_eq!(ago(0.0, 7_200_000.0), "2 h ago");
        assert_eq!(ago(0.0, 3.0 * 86_400_000.0), "3 d ago");
        assert_eq!(ago(3_000.0, 0.0), "just now");
        assert_eq!(ago(30_000.0, 0.0), "in 30 s");
    }

    #[test]
    fn lateness() {
        assert_eq!(late(0.0, 4_999.0, 5_000.0), None);
        assert_eq!(late(0.0, 5_000.0, 5_000.0), Some("late by 5 s".to_owned()));
        assert_eq!(
            late(0.0, 150_000.0, 5_000.0),
            Some("late by 2 min".to_owned())
        );
        assert_eq!(late(10_000.0, 0.0, 5_000.0), None, "early is not late");
        assert_eq!(late(f64::NAN, 10_000.0, 5_000.0), None);
    }
}
