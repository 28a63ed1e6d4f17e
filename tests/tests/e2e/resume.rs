//! Live streams resumed with `Last-Event-ID` (issue 9): a browser or `EventSource` that
//! reconnects with an id higher than anything the bin holds (the bin was re-created, or a memory
//! store restarted) gets `resync` and then every new capture, instead of silence until the bin's
//! numbers pass its stale id.

use bin_server::store::{BinName, BinSettings, StoreLimits};
use bin_server::{AppState, ServerConfig};
use serde_json::json;

use crate::support::{SseReader, TestServer, within};

/// Re-creates `bin` after two captures, so its numbering starts again at 1.
async fn recreated(s: &TestServer, bin: &str) {
    s.put_bin(bin, json!({})).await;
    for body in ["one", "two"] {
        let r = s
            .client
            .post(s.url(&format!("/b/{bin}")))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = s
        .client
        .delete(s.url(&format!("/api/bins/{bin}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    s.put_bin(bin, json!({})).await;
}

#[tokio::test]
async fn a_stale_last_event_id_gets_resync_then_every_new_capture() {
    let s = TestServer::start().await;
    recreated(&s, "again").await;
    // The client saw request 2 of the old bin.
    let mut sse = SseReader::open(&s.client, &s.url("/api/bins/again/stream"), Some("2")).await;
    assert_eq!(sse.next().await.unwrap().event, "ready");
    let resync = sse.next().await.unwrap();
    assert_eq!(resync.event, "resync", "{:?}", resync.data);
    assert_eq!(resync.json()["reason"], "last_event_id_ahead");
    let r = s
        .client
        .post(s.url("/b/again"))
        .body("fresh")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let e = sse.next_named("request").await;
    assert_eq!(e.json()["body"], "fresh");
    assert_eq!(e.id.as_deref(), Some("1"), "the new bin's first request");

    // An id the bin does hold still resumes after it, with no resync.
    let mut sse = SseReader::open(&s.client, &s.url("/api/bins/again/stream"), Some("0")).await;
    assert_eq!(sse.next().await.unwrap().event, "ready");
    let e = sse.next().await.unwrap();
    assert_eq!((e.event.as_str(), e.id.as_deref()), ("request", Some("1")));
}

#[tokio::test]
async fn the_smee_stream_sends_new_captures_after_a_stale_id() {
    let s = TestServer::start().await;
    recreated(&s, "smee-again").await;
    let mut sse = SseReader::open(&s.client, &s.url("/api/bins/smee-again/smee"), Some("2")).await;
    assert_eq!(sse.next().await.unwrap().event, "ready");
    let r = s
        .client
        .post(s.url("/b/smee-again"))
        .body("{\"fresh\":true}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let e = sse.next_named("message").await;
    assert_eq!(e.id.as_deref(), Some("1"));
    assert_eq!(e.json()["body"]["fresh"], true);
}

#[tokio::test]
async fn forward_follows_a_bin_across_a_restart_of_a_memory_server() {
    let target = TestServer::start().await;
    target.put_bin("local", json!({})).await;
    let s = TestServer::start().await;
    s.put_bin("live", json!({})).await;
    for body in ["1", "2", "3"] {
        let r = s
            .client
            .post(s.url("/b/live"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let client = bin_server::cli::client::Client::new(&s.base).unwrap();
    let to = target.url("/b/local");
    let (lines, mut printed) = tokio::sync::mpsc::unbounded_channel();
    let forwarding = tokio::spawn(async move {
        bin_server::cli::forward::forward(&client, "live", &to, std::future::pending(), move |ev| {
            let _ = lines.send(ev.to_string());
        })
        .await
    });
    let line = within("forward connects", printed.recv()).await.unwrap();
    assert!(line.starts_with("connected"), "{line}");

    // The memory server restarts on the same port: the bin is back, numbered from 1 again,
    // below the 3 that forward saw last.
    let addr = s.addr;
    s.shutdown().await.unwrap();
    let state = AppState::new(StoreLimits::default(), ServerConfig::default());
    state
        .store
        .create_bin(
            Some(BinName::parse("live").unwrap()),
            BinSettings::default(),
        )
        .await
        .unwrap();
    let s = TestServer::with_state_at(state, addr).await;
    let r = s
        .client
        .post(s.url("/b/live"))
        .body("after the restart")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let forwarded = within("the new capture to be forwarded", async {
        loop {
            let line = printed.recv().await.expect("forward is running");
            if line.starts_with('#') {
                return line;
            }
        }
    })
    .await;
    assert!(forwarded.starts_with("#1 POST / -> 200"), "{forwarded}");
    let (_, page) = target.get_json("/api/bins/local/requests").await;
    assert_eq!(page["requests"][0]["body"], "after the restart");
    forwarding.abort();
}
