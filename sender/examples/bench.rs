//! Delivery throughput of the engine: signed deliveries per second to a local receiver.
//!
//! Two roles, run as two processes by `bench/sender/run.sh` (each pinned to its own core):
//!
//! ```text
//! bench receive --port P --hole-port H   # answers every POST 200; H accepts and never answers
//! bench send --url http://127.0.0.1:P --webhooks 100 --rounds 300 [--hole http://127.0.0.1:H]
//!            [--sqlite PATH]                # the sender's SQLite store instead of memory
//!            [--redis URL]                  # the sender on Redis (keys under a fresh prefix)
//! ```
//!
//! `send` registers the webhooks with the real engine ([`sender::Hooks`], default settings but
//! for the pending bound), emits `rounds` events with a 1 KiB payload (each fans out to every
//! webhook), and reports healthy deliveries per second from the first emit to the last 2xx. With
//! `--hole` one more webhook points at the black hole; its attempts hang until the 15 s timeout
//! and its messages are not counted.

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // One worker thread per role: the script pins each process to one core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    match args.get(1).map(String::as_str) {
        Some("receive") => runtime.block_on(receive(&args)),
        Some("send") => runtime.block_on(send(&args)),
        _ => {
            eprintln!("usage: bench receive --port P --hole-port H | bench send --url URL ...");
            std::process::exit(2);
        }
    }
}

async fn receive(args: &[String]) {
    let port: u16 = arg(args, "--port").unwrap().parse().unwrap();
    let hole_port: u16 = arg(args, "--hole-port").unwrap().parse().unwrap();
    let app = Router::new().route(
        "/hook/{n}",
        post(|body: bytes::Bytes| async move {
            // Touch the body so it is really read.
            std::hint::black_box(body.len());
            ""
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let hole = tokio::net::TcpListener::bind(("127.0.0.1", hole_port))
        .await
        .unwrap();
    tokio::spawn(async move {
        // Accepts and holds connections without answering (bounded: 60 s each).
        while let Ok((socket, _)) = hole.accept().await {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(60)).await;
                drop(socket);
            });
        }
    });
    // The script stops this process when the run is over.
    axum::serve(listener, app).await.unwrap();
}

async fn send(args: &[String]) {
    let url = arg(args, "--url").unwrap();
    let webhooks: usize = arg(args, "--webhooks").map_or(100, |v| v.parse().unwrap());
    let rounds: usize = arg(args, "--rounds").map_or(300, |v| v.parse().unwrap());
    let hole = arg(args, "--hole");

    let mut config = sender::HooksConfig::default();
    // Every message of the run is queued up front; the default bound (1,000) would fail the rest
    // as "queue full" by design.
    config.delivery.max_pending_per_webhook = rounds + 10;
    // `--sqlite PATH`: the sender's SQLite store (a fresh file) instead of memory.
    let hooks = match arg(args, "--sqlite") {
        Some(path) => {
            let _ = std::fs::remove_file(&path);
            sender::Hooks::open_sqlite(config, std::path::Path::new(&path))
                .await
                .unwrap()
        }
        None => match arg(args, "--redis") {
            // A prefix of its own per run: a fresh, empty store on that server.
            Some(url) => {
                let prefix = format!("bench-{}:", std::process::id());
                sender::Hooks::open_redis(config, &url, &prefix)
                    .await
                    .unwrap()
            }
            None => sender::Hooks::new(config).unwrap(),
        },
    };
    hooks.start();
    let add = |name: String, url: String| {
        hooks
            .create_webhook(api::WebhookIn {
                name,
                url,
                event: Some("payment_received".into()),
                ..Default::default()
            })
            .unwrap()
            .id
    };
    let healthy: Vec<String> = (0..webhooks)
        .map(|i| add(format!("healthy-{i}"), format!("{url}/hook/{i}")))
        .collect();
    if let Some(hole) = &hole {
        add("black-hole".into(), format!("{hole}/hook/0"));
    }

    // 1 KiB of JSON: the example's first fields, padded to exactly 1,024 bytes.
    let example = &hooks.catalog().get("payment_received").unwrap().example;
    let mut payload = serde_json::Map::new();
    for (key, value) in example.as_object().unwrap() {
        payload.insert(key.clone(), value.clone());
        if serde_json::to_vec(&payload).unwrap().len() > 700 {
            break;
        }
    }
    let size = serde_json::to_vec(&payload).unwrap().len();
    // `,"padding":""` adds 13 bytes around the padding itself.
    payload.insert(
        "padding".into(),
        serde_json::json!("x".repeat(1024 - size - 13)),
    );
    let payload = serde_json::value::to_raw_value(&serde_json::Value::Object(payload)).unwrap();
    let size = payload.get().len();
    assert_eq!(size, 1024);

    let delivered = |hooks: &sender::Hooks| -> u64 {
        healthy
            .iter()
            // Read in place: copying 100 webhooks every 5 ms would load the core it measures.
            .map(|id| hooks.registry().with(id, |w| w.event_count).unwrap_or(0))
            .sum()
    };
    // Warm-up: connections opened, code paths hot.
    hooks
        .emit("payment_received", Some(payload.clone()))
        .await
        .unwrap();
    wait_until(&hooks, webhooks as u64, &delivered).await;

    let before = delivered(&hooks);
    let expected = before + (webhooks * rounds) as u64;
    let start = Instant::now();
    for _ in 0..rounds {
        hooks
            .emit("payment_received", Some(payload.clone()))
            .await
            .unwrap();
    }
    let emitted = start.elapsed();
    wait_until(&hooks, expected, &delivered).await;
    let elapsed = start.elapsed();
    let count = expected - before;
    let rate = count as f64 / elapsed.as_secs_f64();
    let report = hooks.shutdown(Duration::from_millis(100)).await;
    println!(
        "webhooks={webhooks} black_hole={} payload_bytes={size} deliveries={count} \
         emit_s={:.3} total_s={:.3} per_second={rate:.0} unfinished_at_end={}",
        hole.is_some(),
        emitted.as_secs_f64(),
        elapsed.as_secs_f64(),
        report.unfinished.len()
    );
}

/// Polls until `delivered` reaches `expected` (bounded: 120 s).
async fn wait_until(
    hooks: &sender::Hooks,
    expected: u64,
    delivered: &impl Fn(&sender::Hooks) -> u64,
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while delivered(hooks) < expected {
        assert!(
            Instant::now() < deadline,
            "deliveries stalled at {} of {expected}",
            delivered(hooks)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
