//! Sizes and durations as people type them in flags, env variables and query strings: one set
//! of rules for both CLIs, the server's flags and the API (`wait?timeout=`).
//!
//! - sizes: bytes, or a `k`/`KiB`/`M`/`MiB`/`G`/`GiB` suffix (binary multiples, case-insensitive):
//!   `1048576`, `512k`, `1MiB`;
//! - durations: a whole number with `ms`, `s`, `m`, `h` or `d`; a bare number is seconds (`0`
//!   is zero, the way to say "off" where a flag allows it): `500ms`, `30s`, `5m`, `7d`, `30`;
//! - lists of durations (retry schedules): durations separated by commas, `none` (or nothing)
//!   for an empty list: `5s,5m,30m`, `1,1,2`, `none`.

use std::time::Duration;

/// Parses `1048576`, `512k`, `512KiB`, `1M`, `1MiB`, `1G`, `1GiB` (k/M/G are binary here too:
/// a byte budget is about memory).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size: use bytes or a k/KiB/M/MiB/G/GiB suffix"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?} in {s:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Parses `0`, `500ms`, `30s`, `5m`, `2h`, `7d` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration: use e.g. 500ms, 30s, 5m, 2h, 7d"))?;
    let ms = match unit {
        "ms" => 1,
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => return Err(format!("unknown duration unit {other:?} in {s:?}")),
    };
    n.checked_mul(ms)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{s:?} is too long"))
}

/// Parses a comma-separated list of durations such as `5s,5m,30m` (each read by
/// [`parse_duration`], so `1,1,2` is seconds). `none`, or an empty text, is the empty list.
pub fn parse_duration_list(s: &str) -> Result<Vec<Duration>, String> {
    let s = s.trim();
    if s.is_empty() || s.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|item| {
            if item.trim().is_empty() {
                Err(format!(
                    "{s:?} has an empty item: separate durations with one comma"
                ))
            } else {
                parse_duration(item)
            }
        })
        .collect()
}

/// A duration as people read it: whole seconds as `30s`, anything finer as `1500ms`.
pub fn format_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("42"), Ok(42));
        assert!(parse_size("1.5M").is_err());
        assert!(parse_size("10 parsecs").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert!(parse_duration("1w").is_err());
    }

    #[test]
    fn durations_read_every_unit_and_refuse_the_rest() {
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration(" 2h "), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        let unknown = parse_duration("5y").unwrap_err();
        assert!(unknown.contains("unknown duration unit"), "{unknown}");
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("99999999999999999999h").is_err());
        assert!(parse_duration("18446744073709551615d").is_err());
    }

    #[test]
    fn duration_lists() {
        assert_eq!(
            parse_duration_list(" 1s,1s,2s "),
            Ok([1, 1, 2].map(Duration::from_secs).to_vec())
        );
        assert_eq!(
            parse_duration_list("5s,5m,30m,2h"),
            Ok([5, 300, 1800, 7200].map(Duration::from_secs).to_vec())
        );
        // A bare number is seconds here as everywhere.
        assert_eq!(
            parse_duration_list("1,250ms"),
            Ok(vec![Duration::from_secs(1), Duration::from_millis(250)])
        );
        assert_eq!(parse_duration_list("none"), Ok(Vec::new()));
        assert_eq!(parse_duration_list(""), Ok(Vec::new()));
        let empty_item = parse_duration_list("1s,,2s").unwrap_err();
        assert!(empty_item.contains("empty item"), "{empty_item}");
        assert!(parse_duration_list("1s,2y").is_err());
        assert!(parse_duration_list("1s;2s").is_err());
    }

    #[test]
    fn durations_are_written_back_readably() {
        assert_eq!(format_duration(Duration::from_secs(30)), "30s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(
            parse_duration(&format_duration(Duration::from_millis(1500))),
            Ok(Duration::from_millis(1500))
        );
    }
}
