//! Fuzzes the connection tap's tracker (`bin_server::conn`): arbitrary bytes, cut into reads at
//! arbitrary points. Checks that it never panics, that its buffer and queue stay within their
//! limits after every read, and that it queues the same heads however the bytes are split.

#![no_main]

use bin_server::conn::fuzzing::{Head, MAX_HEAD, MAX_QUEUED_HEADS, MAX_TRAILERS, Tracker};
use libfuzzer_sys::fuzz_target;

/// Feeds `reads` in order, checking the bounds after each, and returns the heads.
fn run<'a>(reads: impl Iterator<Item = &'a [u8]>) -> Vec<Head> {
    let mut t = Tracker::default();
    for r in reads {
        t.feed(r);
        assert!(
            t.buffered() < MAX_HEAD.max(MAX_TRAILERS),
            "buffer {}",
            t.buffered()
        );
        assert!(t.queued() <= MAX_QUEUED_HEADS, "queue {}", t.queued());
    }
    t.take_heads()
}

fuzz_target!(|data: &[u8]| {
    // The first byte says how many of the next bytes are read lengths; the rest is the wire.
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 16).min(rest.len());
    let (lens, wire) = rest.split_at(n);

    let whole = run(std::iter::once(wire));

    let mut reads = Vec::new();
    let mut left = wire;
    for &len in lens
        .iter()
        .cycle()
        .take(if lens.is_empty() { 0 } else { 1 << 16 })
    {
        if left.is_empty() {
            break;
        }
        let (a, b) = left.split_at(usize::from(len.max(1)).min(left.len()));
        reads.push(a);
        left = b;
    }
    reads.push(left);
    assert_eq!(run(reads.into_iter()), whole, "split by {lens:?}");

    assert_eq!(run(wire.chunks(1)), whole, "byte by byte");
});
