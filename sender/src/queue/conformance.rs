//! The queue's contract as tests: the same functions run against every backend
//! ([`suite!`] makes one `#[tokio::test]` per function for a backend's fixture).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::{DeliveryQueue, QueueError, Task};

/// A queue under test, and whatever must live as long as it (a temporary directory).
pub(crate) struct Fixture {
    pub queue: Arc<dyn DeliveryQueue>,
    _guard: Box<dyn std::any::Any + Send>,
}

impl Fixture {
    pub fn new(queue: impl DeliveryQueue) -> Self {
        Self::with_guard(queue, ())
    }

    pub fn with_guard(queue: impl DeliveryQueue, guard: impl std::any::Any + Send) -> Self {
        Self {
            queue: Arc::new(queue),
            _guard: Box::new(guard),
        }
    }
}

const LEASE: Duration = Duration::from_secs(30);
const T0: i64 = 1_700_000_000_000;

fn task(id: &str, webhook: &str) -> Task {
    Task {
        id: id.into(),
        webhook_id: webhook.into(),
        failed: 0,
        trigger: api::AttemptTrigger::Scheduled,
    }
}

fn none() -> HashSet<String> {
    HashSet::new()
}

fn ids(leased: &[super::Leased]) -> Vec<&str> {
    leased.iter().map(|l| l.task.id.as_str()).collect()
}

pub(crate) async fn delayed_send_is_not_claimable_before_it_is_due(f: Fixture) {
    let q = f.queue;
    q.send(task("msg_later", "wh_a"), T0 + 5_000).await.unwrap();
    assert_eq!(q.next_due().await.unwrap(), Some(T0 + 5_000));
    assert!(q.claim(T0, LEASE, 10, &none()).await.unwrap().is_empty());
    assert!(
        q.claim(T0 + 4_999, LEASE, 10, &none())
            .await
            .unwrap()
            .is_empty()
    );
    let got = q.claim(T0 + 5_000, LEASE, 10, &none()).await.unwrap();
    assert_eq!(ids(&got), ["msg_later"]);
    assert_eq!(got[0].due_ms, T0 + 5_000);
    assert_eq!(got[0].lease_until_ms, T0 + 5_000 + 30_000);
    assert_eq!(got[0].task, task("msg_later", "wh_a"));
}

pub(crate) async fn claims_earliest_due_first_then_send_order(f: Fixture) {
    let q = f.queue;
    q.send(task("msg_c", "wh_a"), T0 + 20).await.unwrap();
    q.send(task("msg_a", "wh_b"), T0 + 10).await.unwrap();
    q.send(task("msg_b", "wh_a"), T0 + 10).await.unwrap();
    q.send(task("msg_d", "wh_a"), T0 + 99_999).await.unwrap();
    assert_eq!(q.next_due().await.unwrap(), Some(T0 + 10));
    let first = q.claim(T0 + 100, LEASE, 2, &none()).await.unwrap();
    assert_eq!(ids(&first), ["msg_a", "msg_b"]);
    let second = q.claim(T0 + 100, LEASE, 10, &none()).await.unwrap();
    assert_eq!(ids(&second), ["msg_c"]);
    assert!(
        q.claim(T0 + 100, LEASE, 0, &none())
            .await
            .unwrap()
            .is_empty()
    );
    // Leased and future tasks are all still listed.
    let all: Vec<String> = q
        .tasks()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.0.id)
        .collect();
    assert_eq!(all, ["msg_a", "msg_b", "msg_c", "msg_d"]);
}

pub(crate) async fn an_expired_lease_is_claimed_again_and_the_old_holder_loses_it(f: Fixture) {
    let q = f.queue;
    q.send(task("msg_1", "wh_a"), T0).await.unwrap();
    let old = q.claim(T0, LEASE, 10, &none()).await.unwrap().remove(0);
    // While the lease runs nobody else gets it; its end is the next time something is due.
    assert!(
        q.claim(T0 + 29_999, LEASE, 10, &none())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(q.next_due().await.unwrap(), Some(T0 + 30_000));
    let new = q.claim(T0 + 30_000, LEASE, 10, &none()).await.unwrap();
    assert_eq!(ids(&new), ["msg_1"]);
    assert_ne!(new[0].token, old.token);
    // It keeps its place: due when it was due.
    assert_eq!(new[0].due_ms, T0);
    assert_eq!(
        q.ack(&old).await.unwrap_err(),
        QueueError::LeaseLost("msg_1".into())
    );
    assert_eq!(
        q.retry(&old, T0 + 99, 1).await.unwrap_err(),
        QueueError::LeaseLost("msg_1".into())
    );
    q.ack(&new[0]).await.unwrap();
    assert!(q.tasks().await.unwrap().is_empty());
}

pub(crate) async fn ack_removes_the_task(f: Fixture) {
    let q = f.queue;
    q.send(task("msg_1", "wh_a"), T0).await.unwrap();
    q.send(task("msg_2", "wh_a"), T0).await.unwrap();
    let got = q.claim(T0, LEASE, 1, &none()).await.unwrap();
    q.ack(&got[0]).await.unwrap();
    // Acked twice: the second finds no lease.
    assert!(matches!(
        q.ack(&got[0]).await,
        Err(QueueError::LeaseLost(_))
    ));
    let later = q.claim(T0 + 3_600_000, LEASE, 10, &none()).await.unwrap();
    assert_eq!(ids(&later), ["msg_2"]);
    q.ack(&later[0]).await.unwrap();
    assert_eq!(q.next_due().await.unwrap(), None);
    assert!(q.tasks().await.unwrap().is_empty());
}

pub(crate) async fn retry_puts_it_back_due_later_with_its_failures(f: Fixture) {
    let q = f.queue;
    q.send(task("msg_1", "wh_a"), T0).await.unwrap();
    let got = q.claim(T0, LEASE, 10, &none()).await.unwrap().remove(0);
    q.retry(&got, T0 + 1_000, 1).await.unwrap();
    assert_eq!(q.next_due().await.unwrap(), Some(T0 + 1_000));
    assert!(
        q.claim(T0 + 999, LEASE, 10, &none())
            .await
            .unwrap()
            .is_empty()
    );
    let again = q.claim(T0 + 1_000, LEASE, 10, &none()).await.unwrap();
    assert_eq!(again[0].task.failed, 1);
    assert_eq!(again[0].due_ms, T0 + 1_000);
    // The old lease is spent.
    assert!(matches!(q.ack(&got).await, Err(QueueError::LeaseLost(_))));
}

pub(crate) async fn skipped_webhooks_wait_and_others_pass(f: Fixture) {
    let q = f.queue;
    q.send(task("msg_a1", "wh_a"), T0).await.unwrap();
    q.send(task("msg_a2", "wh_a"), T0).await.unwrap();
    q.send(task("msg_b1", "wh_b"), T0 + 1).await.unwrap();
    let skip: HashSet<String> = ["wh_a".to_owned()].into();
    let got = q.claim(T0 + 10, LEASE, 10, &skip).await.unwrap();
    assert_eq!(ids(&got), ["msg_b1"]);
    let got = q.claim(T0 + 10, LEASE, 10, &none()).await.unwrap();
    assert_eq!(ids(&got), ["msg_a1", "msg_a2"]);
}

pub(crate) async fn a_skipped_webhook_with_a_long_line_holds_nobody_back(f: Fixture) {
    let q = f.queue;
    // A black hole's backlog first, then two webhooks interleaved.
    let hole: Vec<_> = (0..300)
        .map(|i| (task(&format!("msg_h{i:03}"), "wh_hole"), T0))
        .collect();
    q.send_many(hole).await.unwrap();
    q.send(task("msg_a1", "wh_a"), T0 + 1).await.unwrap();
    q.send(task("msg_b1", "wh_b"), T0 + 1).await.unwrap();
    q.send(task("msg_a2", "wh_a"), T0 + 2).await.unwrap();
    q.send(task("msg_b2", "wh_b"), T0 + 3).await.unwrap();
    q.send(task("msg_a3", "wh_a"), T0 + 3).await.unwrap();
    let skip: HashSet<String> = ["wh_hole".to_owned()].into();
    let got = q.claim(T0 + 10, LEASE, 3, &skip).await.unwrap();
    assert_eq!(ids(&got), ["msg_a1", "msg_b1", "msg_a2"]);
    let skip: HashSet<String> = ["wh_hole".to_owned(), "wh_a".to_owned()].into();
    let got = q.claim(T0 + 10, LEASE, 10, &skip).await.unwrap();
    assert_eq!(ids(&got), ["msg_b2"]);
    // Skipped, not lost: the hole's line and wh_a's rest are still first in line.
    assert_eq!(q.next_due().await.unwrap(), Some(T0));
    let got = q.claim(T0 + 10, LEASE, 2, &none()).await.unwrap();
    assert_eq!(ids(&got), ["msg_h000", "msg_h001"]);
    let skip: HashSet<String> = ["wh_hole".to_owned()].into();
    let got = q.claim(T0 + 10, LEASE, 10, &skip).await.unwrap();
    assert_eq!(ids(&got), ["msg_a3"]);
    assert_eq!(q.tasks().await.unwrap().len(), 305);
}

pub(crate) async fn sending_an_id_again_replaces_it(f: Fixture) {
    let q = f.queue;
    q.send(task("msg_1", "wh_a"), T0).await.unwrap();
    let old = q.claim(T0, LEASE, 10, &none()).await.unwrap().remove(0);
    let mut resend = task("msg_1", "wh_a");
    resend.trigger = api::AttemptTrigger::Resend;
    q.send(resend.clone(), T0 + 50).await.unwrap();
    assert_eq!(q.tasks().await.unwrap(), [(resend.clone(), T0 + 50)]);
    assert!(matches!(q.ack(&old).await, Err(QueueError::LeaseLost(_))));
    let got = q.claim(T0 + 50, LEASE, 10, &none()).await.unwrap();
    assert_eq!(got[0].task, resend);
}

pub(crate) async fn send_many_queues_each_in_the_order_given(f: Fixture) {
    let q = f.queue;
    q.send(task("msg_2", "wh_b"), T0).await.unwrap();
    let old = q.claim(T0, LEASE, 10, &none()).await.unwrap().remove(0);
    q.send_many(Vec::new()).await.unwrap();
    let mut resend = task("msg_2", "wh_b");
    resend.trigger = api::AttemptTrigger::Resend;
    q.send_many(vec![
        (task("msg_3", "wh_a"), T0 + 10),
        (task("msg_1", "wh_c"), T0 + 10),
        (resend.clone(), T0 + 10),
        (task("msg_4", "wh_a"), T0 + 5_000),
    ])
    .await
    .unwrap();
    // An id already queued is replaced, as with `send`: its old holder has lost it.
    assert!(matches!(q.ack(&old).await, Err(QueueError::LeaseLost(_))));
    assert_eq!(q.next_due().await.unwrap(), Some(T0 + 10));
    // Same due time: the order given.
    let got = q.claim(T0 + 10, LEASE, 10, &none()).await.unwrap();
    assert_eq!(ids(&got), ["msg_3", "msg_1", "msg_2"]);
    assert_eq!(got[2].task, resend);
    let later = q.claim(T0 + 5_000, LEASE, 10, &none()).await.unwrap();
    assert_eq!(ids(&later), ["msg_4"]);
}

pub(crate) async fn removing_a_webhook_ends_its_tasks(f: Fixture) {
    let q = f.queue;
    q.send(task("msg_a1", "wh_a"), T0).await.unwrap();
    q.send(task("msg_a2", "wh_a"), T0 + 60_000).await.unwrap();
    q.send(task("msg_b1", "wh_b"), T0).await.unwrap();
    let leased = q.claim(T0, LEASE, 1, &none()).await.unwrap().remove(0);
    assert_eq!(leased.task.id, "msg_a1");
    let mut gone = q.remove_webhook("wh_a").await.unwrap();
    gone.sort();
    assert_eq!(gone, ["msg_a1", "msg_a2"]);
    assert!(matches!(
        q.ack(&leased).await,
        Err(QueueError::LeaseLost(_))
    ));
    let rest = q.claim(T0 + 3_600_000, LEASE, 10, &none()).await.unwrap();
    assert_eq!(ids(&rest), ["msg_b1"]);
    assert!(q.remove_webhook("wh_none").await.unwrap().is_empty());
}

pub(crate) async fn concurrent_claimers_never_get_the_same_task(f: Fixture) {
    const TASKS: usize = 300;
    let q = f.queue;
    for i in 0..TASKS {
        q.send(task(&format!("msg_{i:04}"), &format!("wh_{}", i % 7)), T0)
            .await
            .unwrap();
    }
    let mut claimers = Vec::new();
    for _ in 0..8 {
        let q = Arc::clone(&q);
        claimers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = q.claim(T0 + 1, LEASE, 7, &none()).await.unwrap();
                if got.is_empty() {
                    return mine;
                }
                for l in got {
                    q.ack(&l).await.unwrap();
                    mine.push(l.task.id);
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    let mut seen = HashSet::new();
    let mut total = 0;
    for c in claimers {
        for id in c.await.unwrap() {
            total += 1;
            assert!(seen.insert(id.clone()), "{id} was claimed twice");
        }
    }
    assert_eq!((total, seen.len()), (TASKS, TASKS));
    assert!(q.tasks().await.unwrap().is_empty());
}

pub(crate) async fn due_now_hurries_a_waiting_task_but_not_a_leased_one(f: Fixture) {
    let q = f.queue;
    q.send(task("msg_wait", "wh_a"), T0 + 60_000).await.unwrap();
    q.send(task("msg_soon", "wh_a"), T0 + 10).await.unwrap();
    // Not queued: nothing to hurry.
    assert!(!q.due_now("msg_nope", T0).await.unwrap());
    // Waiting: due now, claimable at once, its failures kept.
    let leased = q.claim(T0 + 10, LEASE, 1, &none()).await.unwrap();
    assert_eq!(ids(&leased), ["msg_soon"]);
    q.retry(&leased[0], T0 + 60_000, 3).await.unwrap();
    assert!(q.due_now("msg_soon", T0 + 100).await.unwrap());
    assert_eq!(q.next_due().await.unwrap(), Some(T0 + 100));
    let got = q.claim(T0 + 100, LEASE, 10, &none()).await.unwrap();
    assert_eq!(ids(&got), ["msg_soon"]);
    assert_eq!((got[0].due_ms, got[0].task.failed), (T0 + 100, 3));
    // Leased (being sent): left alone; the holder still finishes it.
    assert!(!q.due_now("msg_soon", T0 + 200).await.unwrap());
    q.ack(&got[0]).await.unwrap();
    // Already due: stays due when it was (not moved later).
    assert!(q.due_now("msg_wait", T0 + 60_500).await.unwrap());
    let got = q.claim(T0 + 60_500, LEASE, 10, &none()).await.unwrap();
    assert_eq!((ids(&got), got[0].due_ms), (vec!["msg_wait"], T0 + 60_000));
    // An expired lease is claimable again: due_now says so.
    let after = T0 + 60_500 + 30_000;
    assert!(q.due_now("msg_wait", after).await.unwrap());
    assert_eq!(
        ids(&q.claim(after, LEASE, 10, &none()).await.unwrap()),
        ["msg_wait"]
    );
}

/// One `#[tokio::test]` per conformance function, each on a fresh fixture made by `$make`
/// (an async block giving a [`Fixture`]).
macro_rules! suite {
    ($make:expr) => {
        $crate::queue::conformance::suite!(@tests $make;
            delayed_send_is_not_claimable_before_it_is_due,
            claims_earliest_due_first_then_send_order,
            an_expired_lease_is_claimed_again_and_the_old_holder_loses_it,
            ack_removes_the_task,
            retry_puts_it_back_due_later_with_its_failures,
            skipped_webhooks_wait_and_others_pass,
            a_skipped_webhook_with_a_long_line_holds_nobody_back,
            sending_an_id_again_replaces_it,
            send_many_queues_each_in_the_order_given,
            removing_a_webhook_ends_its_tasks,
            concurrent_claimers_never_get_the_same_task,
            due_now_hurries_a_waiting_task_but_not_a_leased_one,
        );
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let fixture: $crate::queue::conformance::Fixture = $make.await;
                $crate::queue::conformance::$name(fixture).await;
            }
        )*
    };
}
pub(crate) use suite;
