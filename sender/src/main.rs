//! `sender`: list events, send a signed event straight to a URL, and manage webhooks, test and
//! emit through a running bin-server (`--server` or `HOOKBIN_SERVER`; `--token` or `HOOKBIN_TOKEN`
//! for one started with `--auth-token`).
//!
//! Exit codes: 0 delivered (or done), 1 a delivery failed, 2 a usage or connection error.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use sender::catalog::Catalog;
use sender::client::ServerClient;
use sender::delivery::{self, Verdict};
use sender::signing::Secret;

#[derive(Parser)]
#[command(
    name = "sender",
    version,
    about = "Send signed webhook events (Standard Webhooks)"
)]
struct Cli {
    /// A running bin-server, for `webhooks`, `test` and `emit`.
    #[arg(long, env = "HOOKBIN_SERVER", global = true)]
    server: Option<String>,
    /// The server's --auth-token, sent as `Authorization: Bearer TOKEN`.
    #[arg(long, env = "HOOKBIN_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the event catalog (built in, or `--catalog FILE`).
    Events(EventsArgs),
    /// Send an event straight to a URL, signed, with no server.
    Send(SendArgs),
    /// Add, list or remove webhooks on the server.
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
    /// Send a webhook its event's example now and report the true outcome.
    Test(TestArgs),
    /// Emit an event through the server to every active webhook subscribed to it.
    Emit(EmitArgs),
}

#[derive(Args)]
struct EventsArgs {
    /// A catalog file replacing the built-in one.
    #[arg(long)]
    catalog: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum EnvelopeArg {
    Flat,
    Standard,
}

impl From<EnvelopeArg> for api::Envelope {
    fn from(e: EnvelopeArg) -> Self {
        match e {
            EnvelopeArg::Flat => api::Envelope::Flat,
            EnvelopeArg::Standard => api::Envelope::Standard,
        }
    }
}

#[derive(Args)]
struct SendArgs {
    #[arg(long)]
    url: String,
    /// The event slug; its catalog example is sent unless `--data` is given.
    #[arg(long)]
    event: String,
    /// The payload: a JSON file, or `-` for standard input.
    #[arg(long)]
    data: Option<String>,
    /// `whsec_...`; a fresh one is generated (and printed) when absent.
    #[arg(long, env = "HOOKBIN_SECRET")]
    secret: Option<String>,
    #[arg(long, value_enum, default_value = "flat")]
    envelope: EnvelopeArg,
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// Retry network errors, timeouts, 408, 429 and 5xx per `--retry-schedule`.
    #[arg(long)]
    retry: bool,
    /// Delays between tries with `--retry`, comma-separated, e.g. `1s,5s,30s` (short by
    /// default: the command waits for them). Durations: a whole number with ms, s, m, h or d;
    /// a bare number is seconds.
    #[arg(long, default_value = "1s,5s,30s", value_parser = sender::config::RetrySchedule::parse)]
    retry_schedule: sender::config::RetrySchedule,
    /// Whole-request timeout, e.g. `15s` or `1500ms` (a bare number is seconds).
    #[arg(long, default_value = "15s", value_parser = api::units::parse_duration)]
    timeout: Duration,
    /// Connect timeout, e.g. `5s` (a bare number is seconds).
    #[arg(long, default_value = "5s", value_parser = api::units::parse_duration)]
    connect_timeout: Duration,
    /// Send the event this many times (each a new message id), for load.
    #[arg(long, default_value_t = 1)]
    count: u64,
    /// Requests in flight at once with `--count`.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum WebhooksCommand {
    /// Add a webhook.
    Add(AddArgs),
    /// List webhooks.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a webhook (by id or name).
    Rm { webhook: String },
}

#[derive(Args)]
struct AddArgs {
    #[arg(long)]
    name: String,
    #[arg(long)]
    url: String,
    /// An event slug; repeat the flag or separate with commas for several.
    #[arg(long, required = true, value_delimiter = ',')]
    event: Vec<String>,
    #[arg(long)]
    secret: Option<String>,
    #[arg(long, value_enum)]
    envelope: Option<EnvelopeArg>,
    /// Add it switched off.
    #[arg(long)]
    inactive: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct TestArgs {
    /// Webhook id or name.
    webhook: String,
    /// Which of its events (default: its first).
    #[arg(long)]
    event: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct EmitArgs {
    slug: String,
    /// The payload: a JSON file, or `-` for standard input; default: the event's example.
    #[arg(long)]
    data: Option<String>,
    #[arg(long)]
    json: bool,
}

/// A failed delivery (exit 1), as opposed to any other error (exit 2).
struct DeliveryFailed;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SENDER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(DeliveryFailed)) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<Result<(), DeliveryFailed>> {
    let server = || -> anyhow::Result<ServerClient> {
        let url = cli
            .server
            .as_deref()
            .ok_or_else(|| anyhow!("this command needs --server URL (or HOOKBIN_SERVER)"))?;
        // Above the server's 15 s delivery timeout, so a test send can finish.
        let client = ServerClient::new(url, Duration::from_secs(60))?;
        Ok(match cli.token.as_deref() {
            Some(token) => client.with_token(token)?,
            None => client,
        })
    };
    match cli.command {
        Command::Events(args) => events(args).map(Ok),
        Command::Send(args) => send(args).await,
        Command::Webhooks(WebhooksCommand::Add(args)) => {
            let input = api::WebhookIn {
                name: args.name,
                url: args.url,
                event: None,
                events: Some(args.event),
                secret: args.secret,
                active: args.inactive.then_some(false),
                envelope: args.envelope.map(Into::into),
            };
            let w = server()?.create_webhook(&input).await?;
            if args.json {
                print_json(&w)?;
            } else {
                println!("added webhook {} ({})", w.id, w.name);
                println!("  url:    {}", w.url);
                println!("  events: {}", w.events.join(", "));
                println!("  secret: {}", w.secret);
            }
            Ok(Ok(()))
        }
        Command::Webhooks(WebhooksCommand::List { json }) => {
            let list = server()?.list_webhooks().await?;
            if json {
                print_json(&list)?;
            } else {
                print_webhooks(&list.webhooks);
            }
            Ok(Ok(()))
        }
        Command::Webhooks(WebhooksCommand::Rm { webhook }) => {
            let w = server()?.delete_webhook(&webhook).await?;
            println!("removed webhook {} ({})", w.id, w.name);
            Ok(Ok(()))
        }
        Command::Test(args) => {
            let outcome = server()?
                .test_webhook(&args.webhook, args.event.as_deref())
                .await?;
            if args.json {
                print_json(&outcome)?;
            } else {
                print_outcome(&outcome, false);
            }
            Ok(if outcome.delivered {
                Ok(())
            } else {
                Err(DeliveryFailed)
            })
        }
        Command::Emit(args) => {
            let payload = args.data.as_deref().map(read_json).transpose()?;
            let out = server()?.emit(&args.slug, payload).await?;
            if args.json {
                print_json(&out)?;
            } else if out.messages.is_empty() {
                println!("{}: no active webhook is subscribed", out.event);
            } else {
                println!("{}: queued {} messages", out.event, out.messages.len());
                for m in &out.messages {
                    println!("  {} -> {}", m.message_id, m.webhook_id);
                }
            }
            Ok(Ok(()))
        }
    }
}

fn load_catalog(path: Option<&PathBuf>) -> anyhow::Result<Catalog> {
    Ok(match path {
        Some(p) => Catalog::from_file(p)?,
        None => Catalog::builtin(),
    })
}

fn events(args: EventsArgs) -> anyhow::Result<()> {
    let catalog = load_catalog(args.catalog.as_ref())?;
    if args.json {
        return print_json(&catalog.to_out());
    }
    let width = catalog
        .events()
        .iter()
        .map(|e| e.slug.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let name_width = catalog
        .events()
        .iter()
        .map(|e| e.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!("{:width$}  {:name_width$}  DESCRIPTION", "SLUG", "NAME");
    for e in catalog.events() {
        let first_sentence = e.description.split(". ").next().unwrap_or("");
        println!(
            "{:width$}  {:name_width$}  {}",
            e.slug,
            e.name,
            first_sentence.trim_end_matches('.')
        );
    }
    Ok(())
}

/// Reads a JSON document as its exact text (checked to be JSON, not re-serialised: keys keep
/// their order and numbers their spelling; whitespace around the document is dropped).
fn read_json(source: &str) -> anyhow::Result<Box<serde_json::value::RawValue>> {
    let text = if source == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading standard input")?;
        s
    } else {
        std::fs::read_to_string(source).with_context(|| format!("reading {source}"))?
    };
    serde_json::from_str(&text).with_context(|| format!("{source}: not JSON"))
}

async fn send(args: SendArgs) -> anyhow::Result<Result<(), DeliveryFailed>> {
    let (timeout, connect_timeout) = (args.timeout, args.connect_timeout);
    let schedule = if args.retry {
        args.retry_schedule.0.clone()
    } else {
        Vec::new()
    };
    if args.count == 0 || args.concurrency == 0 {
        bail!("--count and --concurrency must be at least 1");
    }
    let payload = match &args.data {
        Some(source) => read_json(source)?,
        None => {
            let catalog = load_catalog(args.catalog.as_ref())?;
            let event = catalog.get(&args.event).ok_or_else(|| {
                anyhow!(
                    "no event `{}` in the catalog (`sender events` lists them; or give --data)",
                    args.event
                )
            })?;
            event.example_json.clone()
        }
    };
    let url = reqwest::Url::parse(&args.url).context("--url")?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!("--url must start with http:// or https://");
    }
    let secret = match &args.secret {
        Some(s) => Secret::parse(s).map_err(|e| anyhow!("--secret {e}"))?,
        None => {
            let s = Secret::generate();
            if !args.json {
                eprintln!("secret (generated): {}", s.as_str());
            }
            s
        }
    };
    let client = delivery::http_client(
        connect_timeout,
        concat!("hookbin-sender/", env!("CARGO_PKG_VERSION")),
    );
    let job = Arc::new(Job {
        client,
        url: args.url.clone(),
        secret,
        event: args.event.clone(),
        envelope: args.envelope.into(),
        payload,
        timeout,
        schedule,
        verbose: args.count == 1 && !args.json,
    });
    if args.count == 1 {
        let outcome = job.deliver().await;
        if args.json {
            print_json(&outcome)?;
        } else {
            print_outcome(&outcome, true);
        }
        return Ok(if outcome.delivered {
            Ok(())
        } else {
            Err(DeliveryFailed)
        });
    }
    load(job, args.count, args.concurrency, args.json).await
}

/// One `sender send` job: the same event to one URL, once or `--count` times.
struct Job {
    client: reqwest::Client,
    url: String,
    secret: Secret,
    event: String,
    envelope: api::Envelope,
    payload: Box<serde_json::value::RawValue>,
    timeout: Duration,
    schedule: Vec<Duration>,
    /// Print each failed try before retrying.
    verbose: bool,
}

impl Job {
    /// Sends one message, retrying per the schedule; returns the last attempt's outcome.
    async fn deliver(&self) -> api::TestOutcome {
        let id = sender::new_message_id();
        let body = delivery::message_body(
            self.envelope,
            &self.event,
            &self.payload,
            chrono::Utc::now(),
        );
        let mut failed = 0u32;
        loop {
            let result = delivery::send_attempt(
                &self.client,
                self.timeout,
                &self.url,
                &self.secret,
                &id,
                body.clone(),
            )
            .await;
            if result.verdict == Verdict::Retry {
                failed += 1;
                let next = delivery::retry_delay(
                    &self.schedule,
                    failed,
                    result.retry_after,
                    Duration::from_secs(3600),
                    &mut rand::thread_rng(),
                );
                if let Some(delay) = next {
                    if self.verbose {
                        eprintln!(
                            "attempt {failed}: {}; retrying in {} ms",
                            result.error.as_deref().unwrap_or("failed"),
                            delay.as_millis()
                        );
                    }
                    tokio::time::sleep(delay).await;
                    continue;
                }
            }
            return api::TestOutcome {
                delivered: result.verdict == Verdict::Delivered,
                status: result.status,
                duration_ms: u64::try_from(result.duration.as_millis()).unwrap_or(u64::MAX),
                response_body: result.response_body,
                error: result.error,
                message_id: id,
                event: self.event.clone(),
                webhook_id: None,
                request_headers: result.request_headers,
            };
        }
    }
}

/// `--count N`: N messages with `concurrency` in flight, a progress bar on a terminal.
async fn load(
    job: Arc<Job>,
    count: u64,
    concurrency: usize,
    json: bool,
) -> anyhow::Result<Result<(), DeliveryFailed>> {
    let bar = if std::io::stderr().is_terminal() && !json {
        indicatif::ProgressBar::new(count).with_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} sent, {per_sec}, {msg} [{elapsed_precise} / eta {eta}]",
            )
            .expect("valid template"),
        )
    } else {
        indicatif::ProgressBar::hidden()
    };
    let start = Instant::now();
    // Bounds requests in flight: the user's `--concurrency`.
    let slots = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    let (mut delivered, mut failed) = (0u64, 0u64);
    let mut first_error: Option<String> = None;
    let mut record = |outcome: api::TestOutcome, bar: &indicatif::ProgressBar| {
        if outcome.delivered {
            delivered += 1;
        } else {
            failed += 1;
            if first_error.is_none() {
                first_error = outcome.error;
            }
            bar.set_message(format!("{failed} failed"));
        }
        bar.inc(1);
    };
    for _ in 0..count {
        let slot = slots.clone().acquire_owned().await.expect("never closed");
        let job = job.clone();
        tasks.spawn(async move {
            let outcome = job.deliver().await;
            drop(slot);
            outcome
        });
        // Reap finished sends as we go so the set stays as small as the concurrency.
        while let Some(done) = tasks.try_join_next() {
            record(done.context("a send task panicked")?, &bar);
        }
    }
    while let Some(done) = tasks.join_next().await {
        record(done.context("a send task panicked")?, &bar);
    }
    bar.finish_and_clear();
    let elapsed = start.elapsed();
    let rate = count as f64 / elapsed.as_secs_f64().max(1e-9);
    if json {
        print_json(&serde_json::json!({
            "count": count, "delivered": delivered, "failed": failed,
            "elapsed_ms": elapsed.as_millis() as u64, "per_second": rate,
            "first_error": first_error,
        }))?;
    } else {
        println!(
            "{delivered}/{count} delivered, {failed} failed in {:.2} s ({rate:.0}/s)",
            elapsed.as_secs_f64()
        );
        if let Some(e) = first_error {
            println!("first error: {e}");
        }
    }
    Ok(if failed == 0 {
        Ok(())
    } else {
        Err(DeliveryFailed)
    })
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn print_outcome(o: &api::TestOutcome, with_headers: bool) {
    if with_headers {
        for h in &o.request_headers {
            println!("{}: {}", h.name, h.value);
        }
    } else {
        println!("message: {}", o.message_id);
    }
    match (o.delivered, o.status) {
        (true, Some(status)) => println!("delivered: {status} in {} ms", o.duration_ms),
        (false, Some(status)) => println!("FAILED: {status} in {} ms", o.duration_ms),
        (_, None) => println!("FAILED after {} ms", o.duration_ms),
    }
    if let Some(e) = &o.error {
        println!("error: {e}");
    }
    if let Some(body) = o.response_body.as_deref().filter(|b| !b.is_empty()) {
        println!("response:\n{body}");
    }
}

fn print_webhooks(list: &[api::WebhookOut]) {
    if list.is_empty() {
        println!("no webhooks");
        return;
    }
    println!(
        "{:28}  {:20}  {:8}  {:>6}  {:30}  URL",
        "ID", "NAME", "ACTIVE", "SENT", "EVENTS"
    );
    for w in list {
        let active = if w.active { "yes" } else { "no" };
        println!(
            "{:28}  {:20}  {:8}  {:>6}  {:30}  {}",
            w.id,
            w.name,
            active,
            w.event_count,
            w.events.join(","),
            w.url
        );
        if let Some(reason) = &w.disabled_reason {
            println!("    disabled: {reason}");
        } else if let Some(f) = &w.last_failure {
            println!("    last failure {}: {}", f.at, f.reason);
        }
    }
}
