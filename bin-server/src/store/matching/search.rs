//! Text search over captured requests (`q=` of `GET .../requests`): case-insensitive (ASCII)
//! search of one needle in a request's path, query, header names and values, and body.
//!
//! Captured content is hostile and a query is user input, so the cost must not depend on what
//! either contains: the needle is compiled once per search into an Aho-Corasick automaton
//! (ASCII case folded into its transitions), which reads every searched byte once, in time
//! linear in the bytes searched plus the needle, whatever repeats they hold. The stored bytes
//! are searched where they lie (no lower-cased copy of a body per search). Each field is searched
//! on its own: a needle never matches across the end of one field and the start of the next.

use aho_corasick::{AhoCorasick, AhoCorasickKind};

use crate::store::CapturedRequest;

/// The longest needle accepted, in bytes. Searching is linear in the needle too, but a longer
/// query is no search a person types; the routes refuse one with `400 invalid_query`.
pub const MAX_TEXT_BYTES: usize = 256;

/// A compiled needle; build it once per search, run it over every request.
#[derive(Debug, Clone)]
pub struct TextSearch {
    automaton: AhoCorasick,
}

/// A needle longer than [`MAX_TEXT_BYTES`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the search text is {0} bytes long; at most {MAX_TEXT_BYTES} bytes are searched")]
pub struct TextTooLong(pub usize);

impl TextSearch {
    /// Compiles `needle` (matched ignoring ASCII case). An empty needle matches everything.
    pub fn new(needle: &str) -> Result<Self, TextTooLong> {
        if needle.len() > MAX_TEXT_BYTES {
            return Err(TextTooLong(needle.len()));
        }
        let automaton = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            // A DFA: one table lookup per byte searched. For one needle of at most 256 bytes its
            // table is a few hundred KiB at most, built once per search.
            .kind(Some(AhoCorasickKind::DFA))
            .build([needle])
            .or_else(|_| {
                AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    .build([needle])
            })
            .expect("one needle of at most MAX_TEXT_BYTES bytes always compiles");
        Ok(Self { automaton })
    }

    /// Whether `hay` contains the needle, ignoring ASCII case.
    pub fn found_in(&self, hay: &[u8]) -> bool {
        self.automaton.is_match(hay)
    }

    /// Whether the needle is in the request's path, query, a header name or value, or its body.
    pub fn matches(&self, r: &CapturedRequest) -> bool {
        self.found_in(r.path().as_bytes())
            || r.query().is_some_and(|q| self.found_in(q.as_bytes()))
            || r.headers()
                .any(|(name, value)| self.found_in(name) || self.found_in(value))
            || self.found_in(r.body())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::request;
    use super::*;

    fn search(n: &str) -> TextSearch {
        TextSearch::new(n).unwrap()
    }

    #[test]
    fn ignores_ascii_case_both_ways() {
        assert!(search("Hello").found_in(b"say hELLO there"));
        assert!(search("hello").found_in(b"HELLO"));
        assert!(!search("hello").found_in(b"help"));
        // Only ASCII is folded, as documented: no Unicode case mapping of hostile bytes.
        assert!(!search("é").found_in("É".as_bytes()));
        assert!(search("é").found_in("café".as_bytes()));
    }

    #[test]
    fn finds_the_needle_at_the_edges_of_the_haystack() {
        let s = search("abc");
        assert!(s.found_in(b"abc"));
        assert!(s.found_in(b"abcxxxx"));
        assert!(s.found_in(b"xxxxabc"));
        assert!(!s.found_in(b"ab"));
        assert!(!s.found_in(b""));
    }

    #[test]
    fn finds_a_needle_straddling_any_offset_of_a_large_body() {
        // Wherever the needle lies (across any block or word boundary an implementation might
        // use internally), it is found, and a near miss is not.
        let needle = "Needle-42";
        let s = search(needle);
        for at in [
            0,
            1,
            7,
            8,
            15,
            16,
            63,
            64,
            4095,
            4096 - 4,
            65_536 - 3,
            100_000 - 9,
        ] {
            let mut body = vec![b'n'; 100_000];
            body[at..at + needle.len()].copy_from_slice(b"nEEDLE-42");
            assert!(s.found_in(&body), "needle at {at}");
            body[at + needle.len() - 1] = b'3';
            assert!(!s.found_in(&body), "near miss at {at}");
        }
    }

    #[test]
    fn non_utf8_bodies_are_searched_as_bytes() {
        let body = [0xff, 0xfe, b'T', b'o', b'K', b'e', b'N', 0x00, 0x80];
        assert!(search("token").found_in(&body));
        assert!(!search("tokens").found_in(&body));
        let r = request("/p", None, &[], &body);
        assert!(search("TOKEN").matches(&r));
    }

    #[test]
    fn an_empty_needle_matches_everything() {
        let s = search("");
        assert!(s.found_in(b""));
        assert!(s.matches(&request("/", None, &[], b"")));
    }

    #[test]
    fn every_field_is_searched_and_fields_do_not_join() {
        let r = request(
            "/orders/7",
            Some("page=2"),
            &[("X-Signature", "sha256=ABC")],
            b"{\"amount\":10}",
        );
        for hit in [
            "ORDERS",
            "page=2",
            "x-signature",
            "SHA256=abc",
            "\"AMOUNT\"",
        ] {
            assert!(search(hit).matches(&r), "{hit}");
        }
        // Path then query, header name then value: no match across the seam.
        for miss in ["7page", "/7?page", "signaturesha256", "x-signature: sha"] {
            assert!(!search(miss).matches(&r), "{miss}");
        }
    }

    #[test]
    fn needles_longer_than_the_limit_are_refused() {
        assert!(TextSearch::new(&"a".repeat(MAX_TEXT_BYTES)).is_ok());
        assert_eq!(
            TextSearch::new(&"a".repeat(MAX_TEXT_BYTES + 1)).unwrap_err(),
            TextTooLong(MAX_TEXT_BYTES + 1)
        );
    }

    #[test]
    fn the_needle_that_made_the_old_search_quadratic_is_found() {
        // `aaa…ab` in `aaa…a…ab`: a naive search compares almost the whole needle at every
        // offset; the automaton reads each byte once.
        let needle = format!("{}b", "a".repeat(MAX_TEXT_BYTES - 1));
        let mut body = vec![b'A'; 1 << 20];
        assert!(!search(&needle).found_in(&body));
        let n = body.len();
        body[n - 1] = b'B';
        assert!(search(&needle).found_in(&body));
    }
}
