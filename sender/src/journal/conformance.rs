//! The journal's contract as tests: the same functions run against SQLite and Redis
//! ([`suite!`] makes one `#[tokio::test]` per function for a backend's fixture).
//!
//! Writes that do not wait (`put_webhook_later`, message states, attempts, evictions) are
//! ordered before any later call, so a `load` after them sees them.

use std::sync::Arc;

use bytes::Bytes;

use super::{Journal, MessageRecord, MessageStateRecord};

/// A journal under test, and whatever must live as long as it (a directory, a redis-server).
pub(crate) struct Fixture {
    pub journal: Arc<dyn Journal>,
    _guard: Box<dyn std::any::Any + Send>,
}

impl Fixture {
    pub fn with_guard(journal: impl Journal, guard: impl std::any::Any + Send) -> Self {
        Self {
            journal: Arc::new(journal),
            _guard: Box::new(guard),
        }
    }
}

pub(crate) fn webhook(id: &str, name: &str) -> api::WebhookOut {
    api::WebhookOut {
        id: id.into(),
        name: name.into(),
        url: "http://127.0.0.1:9/hook".into(),
        events: vec!["payment_received".into()],
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
        active: true,
        envelope: api::Envelope::Flat,
        created_at: "2026-01-01T00:00:00Z".into(),
        event_count: 0,
        consecutive_failures: 0,
        last_failure: None,
        disabled_reason: None,
        previous_secret: None,
        previous_secret_expires_at: None,
    }
}

pub(crate) fn message(id: &str, webhook_id: &str, body: &'static [u8]) -> MessageRecord {
    MessageRecord {
        id: id.into(),
        webhook_id: webhook_id.into(),
        event: "payment_received".into(),
        body: Bytes::from_static(body),
        created_at_ms: 1_700_000_000_000,
        state: MessageStateRecord {
            state: api::MessageState::Pending,
            attempts: 0,
            next_attempt_at_ms: None,
            error: None,
        },
    }
}

pub(crate) fn attempt(id: &str, message_id: &str, webhook_id: &str, n: u32) -> api::AttemptOut {
    api::AttemptOut {
        id: id.into(),
        message_id: message_id.into(),
        webhook_id: webhook_id.into(),
        event: "payment_received".into(),
        attempt: n,
        trigger: api::AttemptTrigger::Scheduled,
        started_at: "2026-01-01T00:00:01Z".into(),
        scheduled_at: None,
        url: "http://127.0.0.1:9/hook".into(),
        request_headers: Vec::new(),
        request_body_size: 2,
        request_body: Some("{}".into()),
        request_body_truncated: false,
        delivered: n > 1,
        status: Some(if n > 1 { 200 } else { 500 }),
        duration_ms: 3,
        response_headers: Vec::new(),
        response_body: None,
        response_body_truncated: false,
        error: (n == 1).then(|| "HTTP 500".to_owned()),
        next_attempt_at: None,
    }
}

fn load(j: &Arc<dyn Journal>) -> super::Snapshot {
    j.load().unwrap()
}

pub(crate) async fn an_empty_journal_loads_empty(f: Fixture) {
    let snap = load(&f.journal);
    assert!(snap.webhooks.is_empty() && snap.messages.is_empty() && snap.attempts.is_empty());
    assert!(snap.evicted.is_empty());
}

pub(crate) async fn webhooks_come_back_in_creation_order_with_their_changes(f: Fixture) {
    let j = f.journal;
    j.put_webhook(&webhook("wh_b", "first")).unwrap();
    j.put_webhook(&webhook("wh_a", "second")).unwrap();
    let mut edited = webhook("wh_b", "first-renamed");
    edited.active = false;
    edited.disabled_reason = Some("switched off".into());
    // A rotation's grace period is part of the record: it survives a restart.
    edited.secret = "whsec_dGhpcnR5LXR3by1ieXRlcy1vZi1rZXktbWF0ZXJpYWwh".into();
    edited.previous_secret = Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into());
    edited.previous_secret_expires_at = Some("2026-01-02T00:00:00.000Z".into());
    j.put_webhook(&edited).unwrap();
    let mut counted = webhook("wh_a", "second");
    counted.event_count = 7;
    j.put_webhook_later(&counted);
    let snap = load(&j);
    assert_eq!(snap.webhooks, [edited, counted]);
}

/// Counters writes (one per delivery, not waited for) mixed with writes of the whole webhook
/// and a deletion: the file ends with the last value given, and a deleted webhook stays gone.
pub(crate) async fn the_last_webhook_write_wins_whatever_its_kind(f: Fixture) {
    let j = f.journal;
    j.put_webhook(&webhook("wh_a", "counted")).unwrap();
    j.put_webhook(&webhook("wh_gone", "deleted")).unwrap();
    let counted = |n: u64, name: &str| {
        let mut w = webhook("wh_a", name);
        w.event_count = n;
        w
    };
    for n in 1..=50 {
        j.put_webhook_later(&counted(n, "counted"));
    }
    // An edit after counters writes that may still be waiting: theirs must not come after it.
    j.put_webhook(&counted(50, "renamed")).unwrap();
    assert_eq!(load(&j).webhooks[0], counted(50, "renamed"));
    for n in 51..=60 {
        j.put_webhook_later(&counted(n, "renamed"));
    }
    let mut gone = webhook("wh_gone", "deleted");
    gone.event_count = 3;
    j.put_webhook_later(&gone);
    j.delete_webhook("wh_gone").unwrap();
    let snap = load(&j);
    assert_eq!(snap.webhooks, [counted(60, "renamed")]);
}

pub(crate) async fn messages_keep_their_exact_bytes_and_latest_state(f: Fixture) {
    let j = f.journal;
    j.put_webhook(&webhook("wh_a", "a")).unwrap();
    // Key order and number spelling as given, and bytes that are not UTF-8.
    let exact = message("msg_1", "wh_a", br#"{"z":1,"a":2,"n":1.50}"#);
    let binary = message("msg_2", "wh_a", b"\xff\x00{\"x\":1}\xfe");
    j.insert_message(&exact).unwrap();
    j.insert_message(&binary).unwrap();
    let scheduled = MessageStateRecord {
        state: api::MessageState::Scheduled,
        attempts: 1,
        next_attempt_at_ms: Some(1_700_000_001_000),
        error: Some("HTTP 500".into()),
    };
    j.update_message("msg_1", &scheduled).unwrap();
    let snap = load(&j);
    assert_eq!(snap.messages.len(), 2);
    assert_eq!(snap.messages[0].body, exact.body);
    assert_eq!(snap.messages[0].state, scheduled);
    assert_eq!(snap.messages[0].event, "payment_received");
    assert_eq!(snap.messages[0].created_at_ms, 1_700_000_000_000);
    assert_eq!(snap.messages[1], binary);
    let delivered = MessageStateRecord {
        state: api::MessageState::Delivered,
        attempts: 2,
        next_attempt_at_ms: None,
        error: None,
    };
    j.update_message("msg_1", &delivered).unwrap();
    assert_eq!(load(&j).messages[0].state, delivered);
}

pub(crate) async fn insert_messages_writes_each_in_the_order_given(f: Fixture) {
    let j = f.journal;
    j.put_webhook(&webhook("wh_a", "a")).unwrap();
    j.put_webhook(&webhook("wh_b", "b")).unwrap();
    j.insert_messages(&[]).unwrap();
    let first = message("msg_1", "wh_a", b"{\"n\":1}");
    j.insert_message(&first).unwrap();
    let mut full = message("msg_3", "wh_a", b"{\"n\":3}");
    full.state = MessageStateRecord {
        state: api::MessageState::Failed,
        attempts: 0,
        next_attempt_at_ms: None,
        error: Some("queue full".into()),
    };
    let batch = [
        message("msg_4", "wh_b", br#"{"z":1,"a":2}"#),
        full,
        message("msg_2", "wh_a", b"\xff\x00"),
    ];
    j.insert_messages(&batch).unwrap();
    let snap = load(&j);
    let mut expected = vec![first];
    expected.extend(batch);
    assert_eq!(snap.messages, expected);
}

pub(crate) async fn attempts_come_back_in_order(f: Fixture) {
    let j = f.journal;
    j.put_webhook(&webhook("wh_a", "a")).unwrap();
    j.insert_message(&message("msg_1", "wh_a", b"{}")).unwrap();
    let first = attempt("att_1", "msg_1", "wh_a", 1);
    let second = attempt("att_2", "msg_1", "wh_a", 2);
    j.insert_attempt(&first).unwrap();
    j.insert_attempt(&second).unwrap();
    assert_eq!(load(&j).attempts, [first, second]);
}

pub(crate) async fn evictions_drop_entries_and_add_up(f: Fixture) {
    let j = f.journal;
    j.put_webhook(&webhook("wh_a", "a")).unwrap();
    for i in 0..3 {
        j.insert_message(&message(&format!("msg_{i}"), "wh_a", b"{}"))
            .unwrap();
        j.insert_attempt(&attempt(
            &format!("att_{i}"),
            &format!("msg_{i}"),
            "wh_a",
            1,
        ))
        .unwrap();
    }
    j.evict("wh_a", &["msg_0".into()], &["att_0".into(), "att_1".into()])
        .unwrap();
    j.evict("wh_a", &["msg_1".into()], &[]).unwrap();
    j.evict("wh_a", &[], &[]).unwrap();
    let snap = load(&j);
    let ids: Vec<&str> = snap.messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["msg_2"]);
    let ids: Vec<&str> = snap.attempts.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["att_2"]);
    assert_eq!(snap.evicted.get("wh_a"), Some(&(2, 2)));
}

pub(crate) async fn deleting_a_webhook_drops_its_log_and_only_its(f: Fixture) {
    let j = f.journal;
    j.put_webhook(&webhook("wh_a", "a")).unwrap();
    j.put_webhook(&webhook("wh_b", "b")).unwrap();
    for wh in ["wh_a", "wh_b"] {
        j.insert_message(&message(&format!("msg_{wh}"), wh, b"{}"))
            .unwrap();
        j.insert_attempt(&attempt(&format!("att_{wh}"), &format!("msg_{wh}"), wh, 1))
            .unwrap();
        j.evict(wh, &[], &[format!("att_old_{wh}")]).unwrap();
    }
    j.delete_webhook("wh_a").unwrap();
    let snap = load(&j);
    assert_eq!(snap.webhooks, [webhook("wh_b", "b")]);
    let ids: Vec<&str> = snap.messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["msg_wh_b"]);
    let ids: Vec<&str> = snap.attempts.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["att_wh_b"]);
    assert_eq!(snap.evicted.len(), 1);
    assert_eq!(snap.evicted.get("wh_b"), Some(&(1, 0)));
}

/// One `#[tokio::test]` per conformance function, each on a fresh fixture made by `$make`
/// (an async block giving a [`Fixture`]).
macro_rules! suite {
    ($make:expr) => {
        $crate::journal::conformance::suite!(@tests $make;
            an_empty_journal_loads_empty,
            webhooks_come_back_in_creation_order_with_their_changes,
            the_last_webhook_write_wins_whatever_its_kind,
            messages_keep_their_exact_bytes_and_latest_state,
            insert_messages_writes_each_in_the_order_given,
            attempts_come_back_in_order,
            evictions_drop_entries_and_add_up,
            deleting_a_webhook_drops_its_log_and_only_its,
        );
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let fixture: $crate::journal::conformance::Fixture = $make.await;
                $crate::journal::conformance::$name(fixture).await;
            }
        )*
    };
}
pub(crate) use suite;
