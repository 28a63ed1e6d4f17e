//! One conformance suite for the store seam: the same test functions run against every backend
//! (`memory::`, `sqlite::`, `redis::`; the last starts its own `redis-server`). A backend passes when it keeps every promise the API
//! makes about bins and requests: exact per-bin caps and eviction counters, the byte budget,
//! `--max-bins`, TTL, named bins, settings, cursors and filters, live events, byte-exact
//! requests, and unique increasing sequence numbers under concurrent captures.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bin_server::store::{
    BinName, BinSettings, CapturedRequest, LiveEvent, NewCapture, PageQuery, RawHeaders,
    RequestFilter, Store, StoreError, StoreLimits, TextSearch,
};

mod backends;

use backends::Backend;

/// Limits of most tests: small enough to reach, a TTL long enough not to interfere.
fn limits(max_requests: u32, max_bytes: u64) -> StoreLimits {
    StoreLimits {
        max_requests_per_bin: max_requests,
        max_body_bytes: 1024,
        max_bytes,
        max_bins: 3,
        bin_ttl: Some(Duration::from_secs(3600)),
    }
}

fn addr() -> SocketAddr {
    "127.0.0.1:1".parse().unwrap()
}

fn req(body: &[u8]) -> NewCapture {
    let mut h = RawHeaders::new();
    h.push(b"Content-Type", b"text/plain");
    let mut c = NewCapture::new("POST", "/p", None, &h, body.len(), addr());
    c.push_body(body);
    c
}

async fn named(s: &dyn Store, n: &str) {
    s.create_bin(Some(BinName::parse(n).unwrap()), BinSettings::default())
        .await
        .unwrap();
}

fn all() -> PageQuery {
    PageQuery {
        limit: 10_000,
        before: None,
        after: None,
        filter: RequestFilter::default(),
    }
}

async fn seqs(s: &dyn Store, bin: &str) -> Vec<u64> {
    s.requests(bin, &all())
        .await
        .unwrap()
        .requests
        .iter()
        .map(|r| r.seq)
        .collect()
}

/// The next live event, waiting at most 5 s (a backend that hears its events from a server
/// delivers them a little later).
async fn next_event(rx: &mut tokio::sync::broadcast::Receiver<LiveEvent>) -> LiveEvent {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a live event within 5 s")
        .expect("the feed is open")
}

/// What one request of a 100-byte body weighs in this backend's byte budget, measured on a
/// store of its own.
async fn weight_of_one(b: &mut dyn Backend) -> u64 {
    let probe = b.open(limits(100, 1 << 20)).await;
    named(&*probe, "p").await;
    probe
        .capture("p", req(&[0; 100]))
        .await
        .unwrap()
        .stored_bytes()
}

pub async fn per_bin_cap_evicts_oldest_first_and_counts(b: &mut dyn Backend) {
    let s = b.open(limits(3, 1 << 20)).await;
    named(&*s, "a").await;
    for i in 0..5u8 {
        s.capture("a", req(&[i])).await.unwrap();
    }
    assert_eq!(seqs(&*s, "a").await, vec![5, 4, 3]);
    let bin = s.get_bin("a").await.unwrap();
    assert_eq!(bin.request_count, 3);
    assert_eq!(bin.total_captured, 5);
    assert_eq!(bin.evicted.by_bin_limit, 2);
    assert_eq!(bin.evicted.by_byte_budget, 0);
    assert_eq!(bin.evicted.total, 2);
    let st = s.stats().await.unwrap();
    assert_eq!(st.requests_stored, 3);
    assert_eq!(st.captures_total, 5);
    assert_eq!(st.evicted_by_bin_limit, 2);
    assert_eq!(st.bytes_stored, bin.bytes_stored);
    assert_eq!(st.bins, 1);
    // The bodies that remain are the newest three.
    let bodies: Vec<Vec<u8>> = s
        .requests("a", &all())
        .await
        .unwrap()
        .requests
        .iter()
        .map(|r| r.body().to_vec())
        .collect();
    assert_eq!(bodies, vec![vec![4], vec![3], vec![2]]);
}

pub async fn byte_budget_evicts_oldest_across_bins(b: &mut dyn Backend) {
    let one = weight_of_one(b).await;
    // Room for exactly four requests.
    let s = b.open(limits(100, one * 4)).await;
    named(&*s, "a").await;
    named(&*s, "b").await;
    s.capture("a", req(&[0; 100])).await.unwrap(); // a1
    s.capture("b", req(&[0; 100])).await.unwrap(); // b1
    s.capture("a", req(&[0; 100])).await.unwrap(); // a2
    s.capture("b", req(&[0; 100])).await.unwrap(); // b2
    assert_eq!(s.stats().await.unwrap().evicted_by_byte_budget, 0);
    s.capture("b", req(&[0; 100])).await.unwrap(); // b3 evicts a1
    assert_eq!(seqs(&*s, "a").await, vec![2]);
    s.capture("a", req(&[0; 100])).await.unwrap(); // a3 evicts b1
    assert_eq!(seqs(&*s, "b").await, vec![3, 2]);
    assert_eq!(s.get_bin("a").await.unwrap().evicted.by_byte_budget, 1);
    assert_eq!(s.get_bin("b").await.unwrap().evicted.by_byte_budget, 1);
    let st = s.stats().await.unwrap();
    assert_eq!(st.bytes_stored, one * 4);
    assert_eq!(st.requests_stored, 4);
    assert_eq!(st.evicted_by_byte_budget, 2);
}

pub async fn budget_skips_requests_already_gone(b: &mut dyn Backend) {
    let one = weight_of_one(b).await;
    let s = b.open(limits(100, one * 2)).await;
    named(&*s, "a").await;
    named(&*s, "b").await;
    let a1 = s.capture("a", req(&[0; 100])).await.unwrap();
    s.capture("b", req(&[0; 100])).await.unwrap();
    s.delete_request("a", &a1.id.to_string()).await.unwrap();
    s.capture("a", req(&[0; 100])).await.unwrap();
    // a1 was deleted by hand: nothing was evicted for the budget.
    assert_eq!(s.stats().await.unwrap().evicted_by_byte_budget, 0);
    s.capture("a", req(&[0; 100])).await.unwrap(); // evicts b1, the oldest still stored
    assert_eq!(seqs(&*s, "b").await, Vec::<u64>::new());
    assert_eq!(seqs(&*s, "a").await, vec![3, 2]);
    assert_eq!(s.stats().await.unwrap().evicted_by_byte_budget, 1);
}

pub async fn bin_limit_is_refused_clearly_and_nothing_is_lost(b: &mut dyn Backend) {
    let s = b.open(limits(10, 1 << 20)).await;
    named(&*s, "a").await;
    s.capture("a", req(b"keep")).await.unwrap();
    named(&*s, "b").await;
    named(&*s, "c").await;
    let err = s
        .create_bin(None, BinSettings::default())
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::TooManyBins(3));
    let put = s
        .put_bin(BinName::parse("d").unwrap(), BinSettings::default())
        .await;
    assert_eq!(put.unwrap_err(), StoreError::TooManyBins(3));
    assert_eq!(seqs(&*s, "a").await, vec![1]);
    assert!(matches!(
        s.create_bin(Some(BinName::parse("a").unwrap()), BinSettings::default())
            .await,
        Err(StoreError::BinExists(_))
    ));
    // Room again once one goes.
    s.delete_bin("c").await.unwrap();
    s.create_bin(None, BinSettings::default()).await.unwrap();
    assert_eq!(s.stats().await.unwrap().bins, 3);
}

pub async fn put_updates_settings_keeps_requests_and_applies_lower_cap(b: &mut dyn Backend) {
    let s = b.open(limits(10, 1 << 20)).await;
    let name = BinName::parse("ci").unwrap();
    let first = BinSettings {
        token_hash: Some([7; 32]),
        ..Default::default()
    };
    let (_, created) = s.put_bin(name.clone(), first).await.unwrap();
    assert!(created);
    for _ in 0..4 {
        s.capture("ci", req(b"x")).await.unwrap();
    }
    let settings = BinSettings {
        max_requests: Some(2),
        token_hash: Some([9; 32]),
        ..Default::default()
    };
    let (snap, created) = s.put_bin(name, settings).await.unwrap();
    assert!(!created);
    assert_eq!(snap.request_count, 2);
    assert_eq!(snap.evicted.by_bin_limit, 2);
    assert_eq!(snap.max_requests, 2);
    assert_eq!(
        snap.settings.token_hash,
        Some([7; 32]),
        "a bin keeps the token it was created with"
    );
    assert_eq!(seqs(&*s, "ci").await, vec![4, 3]);
    let st = s.stats().await.unwrap();
    assert_eq!(st.requests_stored, 2);
    assert_eq!(st.evicted_by_bin_limit, 2);
    // The next capture continues the sequence and the lowered cap holds.
    s.capture("ci", req(b"y")).await.unwrap();
    assert_eq!(seqs(&*s, "ci").await, vec![5, 4]);
}

pub async fn limits_are_capped_by_the_server(b: &mut dyn Backend) {
    let s = b.open(limits(10, 1 << 20)).await;
    let settings = BinSettings {
        max_requests: Some(1_000_000),
        max_body_bytes: Some(1 << 40),
        ..Default::default()
    };
    let bin = s.create_bin(None, settings).await.unwrap();
    assert_eq!(bin.max_requests, 10);
    assert_eq!(bin.max_body_bytes, 1024);
    let cs = s.capture_settings(bin.name.as_str()).await.unwrap();
    assert_eq!(cs.max_body_bytes, 1024);
}

pub async fn settings_round_trip_and_capture_settings_follow_changes(b: &mut dyn Backend) {
    let s = b.open(limits(10, 1 << 20)).await;
    let settings = BinSettings {
        response: api::BinResponse {
            status: 418,
            headers: vec![api::Header {
                name: "X-Teapot".into(),
                value: "yes".into(),
            }],
            body: Some("short and stout".into()),
            delay_ms: 3,
        },
        max_requests: Some(5),
        max_body_bytes: Some(512),
        schema: Some(serde_json::json!({"type": "object", "required": ["a"]})),
        signature: Some((
            "standard".into(),
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
        )),
        token_hash: Some([1; 32]),
    };
    let name = BinName::parse("set").unwrap();
    let created = s
        .create_bin(Some(name.clone()), settings.clone())
        .await
        .unwrap();
    assert_eq!(created.settings, settings);
    assert_eq!(s.get_bin("set").await.unwrap().settings, settings);
    let cs = s.capture_settings("set").await.unwrap();
    assert_eq!(cs.response, settings.response);
    assert_eq!(cs.max_body_bytes, 512);
    assert_eq!(cs.schema, settings.schema);
    assert_eq!(cs.signature, settings.signature);
    let again = s.capture_settings("set").await.unwrap();
    assert!(
        Arc::ptr_eq(&cs, &again),
        "unchanged settings are served from the cache, compiled checks and all"
    );
    let changed = BinSettings {
        response: api::BinResponse {
            status: 202,
            ..Default::default()
        },
        ..Default::default()
    };
    s.put_bin(name, changed).await.unwrap();
    let cs = s.capture_settings("set").await.unwrap();
    assert_eq!(cs.response.status, 202);
    assert_eq!(cs.schema, None);
    assert_eq!(cs.max_body_bytes, 1024);
    assert!(matches!(
        s.capture_settings("nope").await,
        Err(StoreError::NoSuchBin(_))
    ));
}

pub async fn requests_are_stored_byte_exact(b: &mut dyn Backend) {
    let s = b.open(limits(10, 1 << 20)).await;
    named(&*s, "x").await;
    let headers =
        RawHeaders::from_wire(b"Host: h\r\nX-Dup: 1\r\nx-dup:  2 \r\nContent-Type: a/b\r\n");
    let peer: SocketAddr = "[2001:db8::7]:5555".parse().unwrap();
    let mut c = NewCapture::new("PATCH", "/a/%20b", Some("q=1&q=2&"), &headers, 5, peer);
    c.push_body(&[0, 255, b'\r', b'\n', 7]);
    c.truncated = true;
    c.validation = Some(Box::new(api::Validation {
        valid: false,
        errors: vec![api::ValidationError {
            path: "".into(),
            message: "not JSON".into(),
        }],
    }));
    c.signature = Some(Box::new(api::SignatureCheck {
        status: "missing".into(),
        reason: Some("no webhook-signature header".into()),
    }));
    let stored = s.capture("x", c).await.unwrap();
    let check = |r: &CapturedRequest| {
        assert_eq!(r.id, stored.id);
        assert_eq!(r.seq, 1);
        assert_eq!(r.method(), "PATCH");
        assert_eq!(r.path(), "/a/%20b");
        assert_eq!(r.query(), Some("q=1&q=2&"));
        assert_eq!(r.body(), &[0, 255, b'\r', b'\n', 7]);
        assert!(r.truncated());
        assert!(r.headers_exact());
        assert_eq!(r.remote_addr, peer);
        let hs: Vec<_> = r.headers().collect();
        assert_eq!(
            hs,
            vec![
                (&b"Host"[..], &b"h"[..]),
                (&b"X-Dup"[..], &b"1"[..]),
                (&b"x-dup"[..], &b"2"[..]),
                (&b"Content-Type"[..], &b"a/b"[..]),
            ]
        );
        assert_eq!(r.validation, stored.validation);
        assert_eq!(r.signature, stored.signature);
        assert_eq!(
            r.received_at.timestamp_micros(),
            stored.received_at.timestamp_micros()
        );
        assert_eq!(r.stored_bytes(), stored.stored_bytes());
    };
    check(&s.request("x", &stored.id.to_string()).await.unwrap());
    check(&s.request("x", "1").await.unwrap());
    check(&s.read_after("x", 0, 10).await.unwrap()[0]);
    check(&s.requests("x", &all()).await.unwrap().requests[0]);
    assert_eq!(s.stats().await.unwrap().truncated_total, 1);
    // No query differs from an empty one.
    let r = s
        .capture(
            "x",
            NewCapture::new("GET", "/", None, &RawHeaders::new(), 0, addr()),
        )
        .await
        .unwrap();
    let back = s.request("x", &r.id.to_string()).await.unwrap();
    assert_eq!(back.query(), None);
    assert!(!back.headers_exact() && !back.truncated());
    assert_eq!(back.validation, None);
}

pub async fn delete_and_clear_release_bytes(b: &mut dyn Backend) {
    let s = b.open(limits(10, 1 << 20)).await;
    named(&*s, "a").await;
    named(&*s, "b").await;
    s.capture("a", req(b"1")).await.unwrap();
    s.capture("a", req(b"11")).await.unwrap();
    s.capture("b", req(b"2")).await.unwrap();
    assert_eq!(s.clear_requests("a").await.unwrap(), 2);
    s.delete_bin("b").await.unwrap();
    let st = s.stats().await.unwrap();
    assert_eq!((st.bytes_stored, st.requests_stored, st.bins), (0, 0, 1));
    assert_eq!(
        s.capture("b", req(b"3")).await.unwrap_err(),
        StoreError::NoSuchBin("b".into())
    );
    assert!(matches!(
        s.delete_bin("b").await,
        Err(StoreError::NoSuchBin(_))
    ));
    let a = s.get_bin("a").await.unwrap();
    assert_eq!(
        (a.total_captured, a.request_count, a.bytes_stored),
        (2, 0, 0)
    );
    // Clearing keeps the sequence going.
    assert_eq!(s.capture("a", req(b"4")).await.unwrap().seq, 3);
    // A deleted request is gone by id and by number.
    let r = s.capture("a", req(b"5")).await.unwrap();
    s.delete_request("a", &r.id.to_string()).await.unwrap();
    assert!(matches!(
        s.request("a", "4").await,
        Err(StoreError::NoSuchRequest(_))
    ));
    assert!(matches!(
        s.delete_request("a", &r.id.to_string()).await,
        Err(StoreError::NoSuchRequest(_))
    ));
    assert_eq!(seqs(&*s, "a").await, vec![3]);
}

pub async fn paging_cursors_and_filters(b: &mut dyn Backend) {
    let s = b.open(limits(100, 1 << 20)).await;
    named(&*s, "a").await;
    for i in 0..10 {
        let mut h = RawHeaders::new();
        h.push(b"X-N", i.to_string().as_bytes());
        let method = if i % 2 == 0 { "GET" } else { "POST" };
        let path = format!("/p/{i}");
        let mut c = NewCapture::new(method, &path, None, &h, 0, addr());
        c.push_body(format!("Body number {i}").as_bytes());
        s.capture("a", c).await.unwrap();
    }
    let q = |limit, before, after, filter| PageQuery {
        limit,
        before,
        after,
        filter,
    };
    let ids = |p: &bin_server::store::Page| p.requests.iter().map(|r| r.seq).collect::<Vec<_>>();
    let p = s
        .requests("a", &q(3, None, None, RequestFilter::default()))
        .await
        .unwrap();
    assert_eq!(ids(&p), vec![10, 9, 8]);
    assert_eq!((p.total, p.matched, p.next_before), (10, 10, Some(8)));
    let p = s
        .requests("a", &q(3, Some(8), None, RequestFilter::default()))
        .await
        .unwrap();
    assert_eq!(ids(&p), vec![7, 6, 5]);
    let p = s
        .requests("a", &q(100, None, Some(8), RequestFilter::default()))
        .await
        .unwrap();
    assert_eq!(ids(&p), vec![10, 9]);
    assert_eq!(p.next_before, None);
    let f = RequestFilter {
        method: Some("post".into()),
        ..Default::default()
    };
    let p = s.requests("a", &q(2, None, None, f)).await.unwrap();
    assert_eq!((p.matched, p.total), (5, 10));
    assert_eq!(ids(&p), vec![10, 8]);
    let f = RequestFilter {
        path: Some("/p/1*".into()),
        ..Default::default()
    };
    assert_eq!(
        s.requests("a", &q(100, None, None, f))
            .await
            .unwrap()
            .matched,
        1
    );
    let f = RequestFilter {
        path: Some("/p/3".into()),
        ..Default::default()
    };
    assert_eq!(
        ids(&s.requests("a", &q(100, None, None, f)).await.unwrap()),
        vec![4]
    );
    let f = RequestFilter {
        text: Some(TextSearch::new("NUMBER 7").unwrap()),
        ..Default::default()
    };
    assert_eq!(
        ids(&s.requests("a", &q(100, None, None, f)).await.unwrap()),
        vec![8]
    );
    // The cursor read: oldest first, after a sequence number, at most `limit`.
    let after: Vec<u64> = s
        .read_after("a", 4, 3)
        .await
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(after, vec![5, 6, 7]);
    assert!(s.read_after("a", 10, 5).await.unwrap().is_empty());
    assert!(matches!(
        s.read_after("nope", 0, 5).await,
        Err(StoreError::NoSuchBin(_))
    ));
    // By id and by sequence number.
    let r = s.request("a", "3").await.unwrap();
    assert_eq!(s.request("a", &r.id.to_string()).await.unwrap().seq, 3);
    assert!(matches!(
        s.request("a", "nope").await,
        Err(StoreError::NoSuchRequest(_))
    ));
    assert!(matches!(
        s.request("a", "99").await,
        Err(StoreError::NoSuchRequest(_))
    ));
}

pub async fn bins_are_listed_most_recently_active_first(b: &mut dyn Backend) {
    let s = b.open(limits(10, 1 << 20)).await;
    named(&*s, "old").await;
    named(&*s, "new").await;
    // Activity timestamps are at least microseconds apart only if time moves: make sure it does.
    tokio::time::sleep(Duration::from_millis(5)).await;
    s.capture("old", req(b"x")).await.unwrap();
    let names: Vec<String> = s
        .list_bins()
        .await
        .unwrap()
        .iter()
        .map(|b| b.name.to_string())
        .collect();
    assert_eq!(names, vec!["old", "new"]);
    let old = s.get_bin("old").await.unwrap();
    assert!(old.last_activity > old.created_at);
}

pub async fn idle_bins_expire(b: &mut dyn Backend) {
    let s = b
        .open(StoreLimits {
            bin_ttl: Some(Duration::from_secs(1)),
            ..limits(10, 1 << 20)
        })
        .await;
    named(&*s, "a").await;
    s.capture("a", req(b"x")).await.unwrap();
    assert_eq!(s.expire_idle(chrono::Utc::now()).await.unwrap(), 0);
    assert!(s.get_bin("a").await.is_ok());
    // Gone once idle for longer than the TTL: by the sweeper (memory, SQLite) or by the
    // backend's own expiry (Redis). Bounded: 1 s of TTL, at most 5 s of waiting.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        s.expire_idle(chrono::Utc::now()).await.unwrap();
        if matches!(s.get_bin("a").await, Err(StoreError::NoSuchBin(_))) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "an idle bin outlived its 1 s TTL by 4 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let st = s.stats().await.unwrap();
    assert_eq!((st.bins, st.requests_stored, st.bytes_stored), (0, 0, 0));
    assert!(s.list_bins().await.unwrap().is_empty());
    // The name is free again.
    named(&*s, "a").await;
}

pub async fn the_live_feed_carries_every_change(b: &mut dyn Backend) {
    let s = b.open(limits(10, 1 << 20)).await;
    named(&*s, "a").await;
    named(&*s, "b").await;
    let a = BinName::parse("a").unwrap();
    let mut rx = s.live().subscribe(&a);
    let mut all = s.live().subscribe_all();
    let r = s.capture("a", req(b"hi")).await.unwrap();
    s.capture("b", req(b"other")).await.unwrap();
    match next_event(&mut rx).await {
        LiveEvent::Captured { bin, request, .. } => {
            assert_eq!(bin.as_str(), "a");
            assert_eq!(request.id, r.id);
            assert_eq!(request.body(), b"hi");
        }
        other => panic!("expected a's capture, got {other:?}"),
    }
    for want in ["a", "b"] {
        match next_event(&mut all).await {
            LiveEvent::Captured { bin, .. } => assert_eq!(bin.as_str(), want),
            other => panic!("expected {want}'s capture, got {other:?}"),
        }
    }
    s.delete_request("a", &r.id.to_string()).await.unwrap();
    assert!(matches!(next_event(&mut rx).await, LiveEvent::Deleted { id, .. } if id == r.id));
    s.capture("a", req(b"again")).await.unwrap();
    assert!(
        matches!(next_event(&mut rx).await, LiveEvent::Captured { request, .. } if request.seq == 2)
    );
    s.clear_requests("a").await.unwrap();
    assert!(matches!(
        next_event(&mut rx).await,
        LiveEvent::Cleared { .. }
    ));
    s.delete_bin("a").await.unwrap();
    assert!(matches!(
        next_event(&mut rx).await,
        LiveEvent::BinDeleted { .. }
    ));
}

pub async fn concurrent_captures_get_unique_increasing_seqs(b: &mut dyn Backend) {
    let s = b.open(limits(1000, 1 << 24)).await;
    named(&*s, "busy").await;
    let mut tasks = Vec::new();
    for t in 0..8u8 {
        let s = Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in 0..50u8 {
                let r = s.capture("busy", req(&[t, i])).await.unwrap();
                mine.push(r.seq);
            }
            mine
        }));
    }
    let mut every = Vec::new();
    for t in tasks {
        let mine = t.await.unwrap();
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "one task's captures are numbered in its order: {mine:?}"
        );
        every.extend(mine);
    }
    every.sort_unstable();
    assert_eq!(
        every,
        (1..=400).collect::<Vec<u64>>(),
        "no seq lost or repeated"
    );
    let bin = s.get_bin("busy").await.unwrap();
    assert_eq!((bin.total_captured, bin.request_count), (400, 400));
    let stored: Vec<u64> = s
        .read_after("busy", 0, 1000)
        .await
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(stored, (1..=400).collect::<Vec<u64>>());
}

/// Many captures at once into full bins (the SQLite and Redis stores then store them in
/// batches, trimming each bin once per batch): the caps and the byte budget hold exactly, every
/// eviction is counted, and what stays is the newest of each bin.
pub async fn concurrent_captures_into_full_bins_evict_exactly(b: &mut dyn Backend) {
    let one = weight_of_one(b).await;
    // Caps of 10 per bin; a budget of 15 requests across the two bins.
    let s = b.open(limits(10, one * 15)).await;
    named(&*s, "a").await;
    named(&*s, "b").await;
    let mut tasks = Vec::new();
    for t in 0..8u8 {
        let s = Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            for i in 0..25u8 {
                let bin = if (t + i) % 2 == 0 { "a" } else { "b" };
                s.capture(bin, req(&[t; 100])).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (a, b2) = (s.get_bin("a").await.unwrap(), s.get_bin("b").await.unwrap());
    assert_eq!(a.total_captured + b2.total_captured, 200);
    let st = s.stats().await.unwrap();
    assert_eq!(st.captures_total, 200);
    assert!(
        a.request_count <= 10 && b2.request_count <= 10,
        "{a:?} {b2:?}"
    );
    assert_eq!(st.requests_stored, a.request_count + b2.request_count);
    assert_eq!(st.requests_stored, 15, "the budget holds exactly 15");
    assert_eq!(st.bytes_stored, one * 15);
    assert_eq!(
        st.evicted_by_bin_limit + st.evicted_by_byte_budget,
        200 - 15,
        "every eviction counted once"
    );
    for bin in [&a, &b2] {
        assert_eq!(
            bin.evicted.by_bin_limit + bin.evicted.by_byte_budget + bin.request_count,
            bin.total_captured,
            "{bin:?}"
        );
        // What stays is the newest of the bin, without a gap.
        let kept = seqs(&*s, bin.name.as_str()).await;
        let newest: Vec<u64> = (0..bin.request_count)
            .map(|k| bin.total_captured - k)
            .collect();
        assert_eq!(kept, newest, "{}", bin.name);
    }
}

pub async fn a_capture_racing_a_delete_leaves_nothing_behind(b: &mut dyn Backend) {
    let s = b.open(limits(1000, 1 << 24)).await;
    for round in 0..5 {
        named(&*s, "race").await;
        let writer = {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                let mut ok = 0;
                for _ in 0..100 {
                    match s.capture("race", req(b"x")).await {
                        Ok(_) => ok += 1,
                        Err(StoreError::NoSuchBin(_)) => break,
                        Err(e) => panic!("round {round}: {e}"),
                    }
                    tokio::task::yield_now().await;
                }
                ok
            })
        };
        tokio::task::yield_now().await;
        s.delete_bin("race").await.unwrap();
        writer.await.unwrap();
        assert!(matches!(
            s.get_bin("race").await,
            Err(StoreError::NoSuchBin(_))
        ));
        let st = s.stats().await.unwrap();
        assert_eq!(
            (st.bins, st.requests_stored, st.bytes_stored),
            (0, 0, 0),
            "round {round}: a capture that raced the delete left something stored"
        );
    }
}

pub async fn max_bins_holds_under_concurrent_creation(b: &mut dyn Backend) {
    let s = b.open(limits(10, 1 << 20)).await;
    // 3 bins at most; 20 tasks race to create one each (random names and named, POST and PUT).
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                if i % 2 == 0 {
                    s.create_bin(None, BinSettings::default()).await.map(|_| ())
                } else {
                    let name = BinName::parse(&format!("n{i}")).unwrap();
                    s.put_bin(name, BinSettings::default()).await.map(|_| ())
                }
            })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => created += 1,
            Err(StoreError::TooManyBins(3)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(created, 3, "exactly the limit was created");
    assert_eq!(s.stats().await.unwrap().bins, 3);
    assert_eq!(s.list_bins().await.unwrap().len(), 3);
}

pub async fn a_put_racing_a_delete_leaves_a_whole_bin_or_none(b: &mut dyn Backend) {
    let s = b.open(limits(1000, 1 << 24)).await;
    let name = BinName::parse("contested").unwrap();
    for round in 0..20u32 {
        s.put_bin(name.clone(), BinSettings::default())
            .await
            .unwrap();
        s.capture("contested", req(b"x")).await.unwrap();
        let settings = BinSettings {
            max_requests: Some(round + 1),
            ..Default::default()
        };
        let put = {
            let (s, name) = (Arc::clone(&s), name.clone());
            tokio::spawn(async move { s.put_bin(name, settings).await })
        };
        let delete = {
            let s = Arc::clone(&s);
            tokio::spawn(async move { s.delete_bin("contested").await })
        };
        let put = put.await.unwrap();
        let deleted = delete.await.unwrap();
        match s.get_bin("contested").await {
            // The put came last (re-creating the bin, or updating it before a delete that then
            // found nothing): a whole bin with the put's settings.
            Ok(bin) => {
                assert!(
                    put.is_ok(),
                    "round {round}: a bin exists but the put failed"
                );
                assert_eq!(bin.max_requests, round + 1, "round {round}");
                assert_eq!(bin.settings.max_requests, Some(round + 1));
                let st = s.stats().await.unwrap();
                assert_eq!(st.bins, 1);
                assert_eq!(
                    st.requests_stored, bin.request_count,
                    "round {round}: counters agree with the bin"
                );
                s.delete_bin("contested").await.unwrap();
            }
            // The delete came last: nothing of the bin is left.
            Err(StoreError::NoSuchBin(_)) => {
                assert!(
                    deleted.is_ok(),
                    "round {round}: the bin is gone but the delete failed"
                );
                let st = s.stats().await.unwrap();
                assert_eq!(
                    (st.bins, st.requests_stored, st.bytes_stored),
                    (0, 0, 0),
                    "round {round}"
                );
            }
            Err(e) => panic!("round {round}: {e}"),
        }
    }
}

pub async fn the_backend_names_itself_and_is_healthy(b: &mut dyn Backend) {
    let s = b.open(limits(10, 1 << 20)).await;
    assert_eq!(s.backend(), b.name());
    s.health().await.unwrap();
}

/// Runs every test function of the suite against one backend, each as its own `#[tokio::test]`.
macro_rules! conformance {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;
            conformance!(@tests $make;
                per_bin_cap_evicts_oldest_first_and_counts,
                byte_budget_evicts_oldest_across_bins,
                budget_skips_requests_already_gone,
                bin_limit_is_refused_clearly_and_nothing_is_lost,
                put_updates_settings_keeps_requests_and_applies_lower_cap,
                limits_are_capped_by_the_server,
                settings_round_trip_and_capture_settings_follow_changes,
                requests_are_stored_byte_exact,
                delete_and_clear_release_bytes,
                paging_cursors_and_filters,
                bins_are_listed_most_recently_active_first,
                idle_bins_expire,
                the_live_feed_carries_every_change,
                concurrent_captures_get_unique_increasing_seqs,
                concurrent_captures_into_full_bins_evict_exactly,
                a_capture_racing_a_delete_leaves_nothing_behind,
                max_bins_holds_under_concurrent_creation,
                a_put_racing_a_delete_leaves_a_whole_bin_or_none,
                the_backend_names_itself_and_is_healthy,
            );
        }
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let mut backend = $make;
                super::$name(&mut backend).await;
            }
        )*
    };
}

conformance!(memory, backends::Memory);
conformance!(sqlite, backends::Sqlite::new());
conformance!(redis, backends::Redis::new());
