//! The SQLite-backed sender across a restart: webhooks, secrets, messages, attempt logs and the
//! retry schedule come back from the file, and a retry due while it was closed goes out late.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use sender::{Hooks, HooksConfig};

#[derive(Clone, Default)]
struct Receiver {
    status: Arc<Mutex<u16>>,
    ids: Arc<Mutex<Vec<String>>>,
}

async fn answer(State(r): State<Receiver>, headers: HeaderMap) -> StatusCode {
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    r.ids.lock().unwrap().push(id);
    StatusCode::from_u16(*r.status.lock().unwrap()).unwrap()
}

async fn receiver(status: u16) -> (String, Receiver) {
    let r = Receiver::default();
    *r.status.lock().unwrap() = status;
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(answer))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, r)
}

fn config() -> HooksConfig {
    let mut config = HooksConfig::default();
    config.delivery.retry_schedule = api::units::parse_duration_list("1s,1s,2s").unwrap();
    config
}

async fn wait_for(hooks: &Hooks, id: &str, state: api::MessageState) -> api::MessageOut {
    let poll = async {
        loop {
            if let Some(m) = hooks.delivery().message(id)
                && m.state == state
            {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), poll)
        .await
        .unwrap_or_else(|_| panic!("{id} never became {state:?}"))
}

#[tokio::test]
async fn a_scheduled_retry_survives_a_restart_and_goes_out_late() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookbin.sender.db");
    let (url, rx) = receiver(500).await;

    let hooks = Hooks::open_sqlite(config(), &path).await.unwrap();
    hooks.start();
    let wh = hooks
        .create_webhook(api::WebhookIn {
            name: "billing".into(),
            url: url.clone(),
            event: Some("payment_received".into()),
            ..Default::default()
        })
        .unwrap();
    let id = hooks
        .emit("payment_received", None)
        .await
        .unwrap()
        .message_ids[0]
        .clone();
    let m = wait_for(&hooks, &id, api::MessageState::Scheduled).await;
    assert_eq!(m.attempts, 1);
    // The server stops before the retry is due (1 s).
    let report = hooks.shutdown(Duration::from_secs(1)).await;
    assert_eq!(report.unfinished.len(), 1);
    drop(hooks);

    // Down for longer than the retry's delay.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    *rx.status.lock().unwrap() = 200;

    // A second server on the same file while the first holds it would be refused; the first
    // is gone, so this one opens it.
    let hooks = Hooks::open_sqlite(config(), &path).await.unwrap();
    let again = hooks.get_webhook("billing").unwrap();
    assert_eq!(
        (again.id.as_str(), again.secret.as_str()),
        (wh.id.as_str(), wh.secret.as_str())
    );
    assert_eq!(
        hooks.delivery().message(&id).unwrap().state,
        api::MessageState::Scheduled
    );
    hooks.start();
    let m = wait_for(&hooks, &id, api::MessageState::Delivered).await;
    assert_eq!(m.attempts, 2);
    assert_eq!(*rx.ids.lock().unwrap(), [id.clone(), id.clone()]);

    let log = hooks.deliveries(&wh.id, 10).unwrap();
    let attempts: Vec<_> = log.attempts.iter().map(|a| (a.attempt, a.status)).collect();
    assert_eq!(attempts, [(2, Some(200)), (1, Some(500))]);
    let retry = &log.attempts[0];
    let scheduled = retry
        .scheduled_at
        .as_deref()
        .expect("the retry says when it was due");
    assert!(
        retry.started_at.as_str() > scheduled,
        "went late: due {scheduled}, sent {}",
        retry.started_at
    );
    assert_eq!(log.attempts[1].next_attempt_at.as_deref(), Some(scheduled));
    assert_eq!(hooks.get_webhook(&wh.id).unwrap().event_count, 1);
    hooks.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn one_server_per_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let first = Hooks::open_sqlite(config(), &path).await.unwrap();
    let err = Hooks::open_sqlite(config(), &path).await.err().unwrap();
    assert!(
        err.to_string()
            .contains("another bin-server has this file open"),
        "{err}"
    );
    drop(first);
}
