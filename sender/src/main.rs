//! `sender`: list events, send a signed event straight to a URL, and manage webhooks, test,
//! emit, read the delivery log and resend through a running bin-server (`--server` or
//! `HOOKBIN_SERVER`, default `http://127.0.0.1:8080`; `--token` or `HOOKBIN_TOKEN` for one
//! started with `--auth-token`).
//!
//! Exit codes, the same as bin-server's CLI: 0 done (delivered), 1 a delivery failed (the
//! outcome is printed), 3 any error (bad flags, the server unreachable or refusing, a bad file).
//! 2 is bin-server's "timed out waiting"; no sender command waits, so none exits 2. A reader
//! that stops early (`sender events --json | head -1`) is not an error: exit 0, quietly.

use std::io::{IsTerminal, Read, Write};
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

/// Done.
const EXIT_OK: u8 = 0;
/// A delivery failed (`send`, `test`): the outcome says why.
const EXIT_FAILED: u8 = 1;
/// Any error: bad flags, the server unreachable or refusing, an unreadable file.
const EXIT_ERROR: u8 = 3;

/// Writes one line to standard output; an error (a closed pipe) goes up with `?`.
macro_rules! out {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*)
    };
}

#[derive(Parser)]
#[command(
    name = "sender",
    version,
    about = "Send signed webhook events (Standard Webhooks)",
    after_help = "Exit codes: 0 done, 1 a delivery failed, 3 any error (the same as bin-server's CLI).\n\
                  Durations: a whole number with ms, s, m, h or d (500ms, 30s, 5m); a bare number is seconds."
)]
struct Cli {
    /// A running bin-server, for every command but `events` and `send`, e.g.
    /// `http://127.0.0.1:8080`.
    #[arg(
        long,
        env = "HOOKBIN_SERVER",
        global = true,
        default_value = "http://127.0.0.1:8080"
    )]
    server: String,
    /// The server's --auth-token, sent as `Authorization: Bearer TOKEN`, e.g.
    /// `--token tok-0123456789abcdef`.
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
    /// Change some of a webhook's settings (the others are kept).
    Edit(EditArgs),
    /// Switch a webhook on (clears a disabled reason and its count of failures).
    Enable(ToggleArgs),
    /// Switch a webhook off: emitted events skip it until it is enabled.
    Disable(ToggleArgs),
    /// Give a webhook a new signing secret; the old one keeps signing beside it for a grace
    /// period (deliveries carry both `v1,` signatures), so receivers switch without a gap.
    RotateSecret(RotateSecretArgs),
    /// Send a webhook its event's example now and report the true outcome.
    Test(TestArgs),
    /// Emit an event through the server to every active webhook subscribed to it.
    Emit(EmitArgs),
    /// A webhook's delivery log: its messages and their attempts, newest first.
    Deliveries(DeliveriesArgs),
    /// Send a message again (same message id, so receivers can drop duplicates).
    Resend(ResendArgs),
}

#[derive(Args)]
struct EventsArgs {
    /// A catalog file replacing the built-in one, e.g. `--catalog events.json`.
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// Print JSON (as `GET /api/events` answers) instead of a table, e.g. `--json`.
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
    /// Where to send it, e.g. `--url http://127.0.0.1:3000/webhooks`.
    #[arg(long)]
    url: String,
    /// The event slug; its catalog example is sent unless `--data` is given, e.g.
    /// `--event payment_received`.
    #[arg(long)]
    event: String,
    /// The payload: a JSON file, or `-` for standard input, e.g. `--data payload.json`.
    #[arg(long)]
    data: Option<String>,
    /// The signing secret; a fresh one is generated (and printed) when absent, e.g.
    /// `--secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw`.
    #[arg(long, env = "HOOKBIN_SECRET")]
    secret: Option<String>,
    /// How the body wraps the payload: `flat` (the payload alone) or `standard`
    /// (`{"type", "timestamp", "data"}`), e.g. `--envelope standard`.
    #[arg(long, value_enum, default_value = "flat")]
    envelope: EnvelopeArg,
    /// A catalog file replacing the built-in one, e.g. `--catalog events.json`.
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// Retry network errors, timeouts, 408, 429 and 5xx per `--retry-schedule`, e.g. `--retry`.
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
    /// Send the event this many times (each a new message id), for load, e.g. `--count 1000`.
    #[arg(long, default_value_t = 1)]
    count: u64,
    /// Requests in flight at once with `--count`, e.g. `--concurrency 16`.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Print the outcome as JSON, e.g. `--json`.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum WebhooksCommand {
    /// Add a webhook.
    Add(AddArgs),
    /// List webhooks.
    List {
        /// Print JSON (as `GET /api/webhooks` answers) instead of a table, e.g. `--json`.
        #[arg(long)]
        json: bool,
    },
    /// Remove a webhook (by id or name).
    Rm {
        /// The webhook's id or name, e.g. `billing` or `wh_2Qk...`.
        webhook: String,
        /// Print the removed webhook as JSON, e.g. `--json`.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct AddArgs {
    /// A name, unique on the server (at least 2 characters), e.g. `--name billing`.
    #[arg(long)]
    name: String,
    /// Where deliveries go, e.g. `--url https://example.com/webhooks`.
    #[arg(long)]
    url: String,
    /// An event slug; repeat the flag or separate with commas for several, e.g.
    /// `--event payment_received,invoice_sent`.
    #[arg(long, required = true, value_delimiter = ',')]
    event: Vec<String>,
    /// The signing secret (generated when absent), e.g.
    /// `--secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw`.
    #[arg(long)]
    secret: Option<String>,
    /// How the body wraps the payload (default `flat`), e.g. `--envelope standard`.
    #[arg(long, value_enum)]
    envelope: Option<EnvelopeArg>,
    /// Add it switched off, e.g. `--inactive`.
    #[arg(long)]
    inactive: bool,
    /// Print the webhook as JSON, e.g. `--json`.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct EditArgs {
    /// The webhook's id or name, e.g. `billing`.
    webhook: String,
    /// A new name, e.g. `--name billing-v2`.
    #[arg(long)]
    name: Option<String>,
    /// A new URL, e.g. `--url https://example.com/v2/webhooks`.
    #[arg(long)]
    url: Option<String>,
    /// Replace the subscribed events; repeat or separate with commas, e.g.
    /// `--event payment_received,invoice_sent`.
    #[arg(long, value_delimiter = ',')]
    event: Vec<String>,
    /// A new signing secret, e.g. `--secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw`.
    #[arg(long)]
    secret: Option<String>,
    /// A new envelope, e.g. `--envelope standard`.
    #[arg(long, value_enum)]
    envelope: Option<EnvelopeArg>,
    /// Print the webhook as JSON, e.g. `--json`.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ToggleArgs {
    /// The webhook's id or name, e.g. `billing`.
    webhook: String,
    /// Print the webhook as JSON, e.g. `--json`.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct RotateSecretArgs {
    /// The webhook's id or name, e.g. `billing`.
    webhook: String,
    /// How long the old secret keeps signing beside the new one (default 24h, at most 7d, `0`
    /// for none), e.g. `--grace 1h`.
    #[arg(long)]
    grace: Option<String>,
    /// The new secret (`whsec_` + base64 of 24 to 64 bytes; default: generated), e.g.
    /// `--secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw`.
    #[arg(long)]
    secret: Option<String>,
    /// Print the webhook as JSON, e.g. `--json`.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct TestArgs {
    /// The webhook's id or name, e.g. `billing`.
    webhook: String,
    /// Which of its events (default: its first), e.g. `--event invoice_sent`.
    #[arg(long)]
    event: Option<String>,
    /// Print the outcome as JSON, e.g. `--json`.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct EmitArgs {
    /// The event's slug, e.g. `payment_received`.
    slug: String,
    /// The payload: a JSON file, or `-` for standard input; default: the event's example, e.g.
    /// `--data payload.json`.
    #[arg(long)]
    data: Option<String>,
    /// Print the queued messages as JSON, e.g. `--json`.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct DeliveriesArgs {
    /// The webhook's id or name, e.g. `billing`.
    webhook: String,
    /// The most messages and attempts to show (the server allows up to 1000), e.g. `--limit 20`.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Print the log as JSON (as `GET /api/webhooks/{id}/deliveries` answers), e.g. `--json`.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ResendArgs {
    /// The message's id (`sender deliveries` lists them), e.g. `msg_2Qk...`.
    message: String,
    /// Print the queued message as JSON, e.g. `--json`.
    #[arg(long)]
    json: bool,
}

/// A failed delivery (exit 1), as opposed to any other error (exit 3).
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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Bad flags exit 3 like any error (clap's own 2 is bin-server's "timed out").
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_ERROR } else { EXIT_OK });
        }
    };
    match run(cli).await {
        Ok(Ok(())) => ExitCode::from(EXIT_OK),
        Ok(Err(DeliveryFailed)) => ExitCode::from(EXIT_FAILED),
        Err(e) if output_closed(&e) => ExitCode::from(EXIT_OK),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// The reader of standard output went away (`| head`): not an error of ours.
fn output_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

async fn run(cli: Cli) -> anyhow::Result<Result<(), DeliveryFailed>> {
    let server = || -> anyhow::Result<ServerClient> {
        // Above the server's 15 s delivery timeout, so a test send can finish.
        let client = ServerClient::new(&cli.server, Duration::from_secs(60))?;
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
            print_webhook("added", &w, args.json)?;
            Ok(Ok(()))
        }
        Command::Webhooks(WebhooksCommand::List { json }) => {
            let list = server()?.list_webhooks().await?;
            if json {
                print_json(&list)?;
            } else {
                print_webhooks(&list.webhooks)?;
            }
            Ok(Ok(()))
        }
        Command::Webhooks(WebhooksCommand::Rm { webhook, json }) => {
            let w = server()?.delete_webhook(&webhook).await?;
            if json {
                print_json(&w)?;
            } else {
                out!("removed webhook {} ({})", w.id, w.name)?;
            }
            Ok(Ok(()))
        }
        Command::Edit(args) => {
            let patch = api::WebhookPatch {
                name: args.name,
                url: args.url,
                event: None,
                events: (!args.event.is_empty()).then_some(args.event),
                secret: args.secret,
                active: None,
                envelope: args.envelope.map(Into::into),
            };
            if patch == api::WebhookPatch::default() {
                bail!(
                    "nothing to change: give --name, --url, --event, --secret or --envelope \
                     (`sender enable`/`disable` switch it on and off)"
                );
            }
            let w = server()?.update_webhook(&args.webhook, &patch).await?;
            print_webhook("updated", &w, args.json)?;
            Ok(Ok(()))
        }
        Command::Enable(ToggleArgs { webhook, json }) => {
            toggle(&server()?, &webhook, true, json).await
        }
        Command::Disable(ToggleArgs { webhook, json }) => {
            toggle(&server()?, &webhook, false, json).await
        }
        Command::RotateSecret(args) => {
            let input = api::RotateSecretIn {
                grace: args.grace,
                secret: args.secret,
            };
            let w = server()?.rotate_secret(&args.webhook, &input).await?;
            print_webhook("rotated the secret of", &w, args.json)?;
            Ok(Ok(()))
        }
        Command::Test(args) => {
            let outcome = server()?
                .test_webhook(&args.webhook, args.event.as_deref())
                .await?;
            if args.json {
                print_json(&outcome)?;
            } else {
                print_outcome(&outcome, false)?;
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
                out!("{}: no active webhook is subscribed", out.event)?;
            } else {
                out!("{}: queued {} messages", out.event, out.messages.len())?;
                let rows = out
                    .messages
                    .iter()
                    .map(|m| vec![m.message_id.clone(), m.webhook_id.clone()])
                    .collect::<Vec<_>>();
                print_table(&["MESSAGE", "WEBHOOK"], &rows)?;
            }
            Ok(Ok(()))
        }
        Command::Deliveries(args) => {
            let log = server()?
                .deliveries(&args.webhook, Some(args.limit))
                .await?;
            if args.json {
                print_json(&log)?;
            } else {
                print_log(&log)?;
            }
            Ok(Ok(()))
        }
        Command::Resend(args) => {
            let m = server()?.resend(&args.message).await?;
            if args.json {
                print_json(&m)?;
            } else {
                out!("queued {} again for webhook {}", m.message_id, m.webhook_id)?;
            }
            Ok(Ok(()))
        }
    }
}

/// `sender enable` / `sender disable`.
async fn toggle(
    server: &ServerClient,
    webhook: &str,
    enable: bool,
    json: bool,
) -> anyhow::Result<Result<(), DeliveryFailed>> {
    let patch = api::WebhookPatch {
        active: Some(enable),
        ..Default::default()
    };
    let w = server.update_webhook(webhook, &patch).await?;
    print_webhook(if enable { "enabled" } else { "disabled" }, &w, json)?;
    Ok(Ok(()))
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
    let rows = catalog
        .events()
        .iter()
        .map(|e| {
            let first_sentence = e.description.split(". ").next().unwrap_or("");
            vec![
                e.slug.clone(),
                e.name.clone(),
                first_sentence.trim_end_matches('.').to_owned(),
            ]
        })
        .collect::<Vec<_>>();
    print_table(&["SLUG", "NAME", "DESCRIPTION"], &rows)
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
            print_outcome(&outcome, true)?;
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
                &[&self.secret],
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
                response_body: result.response_text(),
                error: result.error,
                message_id: id,
                event: self.event.clone(),
                webhook_id: None,
                request_headers: result.request_headers.to_api(),
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
        out!(
            "{delivered}/{count} delivered, {failed} failed in {:.2} s ({rate:.0}/s)",
            elapsed.as_secs_f64()
        )?;
        if let Some(e) = first_error {
            out!("first error: {e}")?;
        }
    }
    Ok(if failed == 0 {
        Ok(())
    } else {
        Err(DeliveryFailed)
    })
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    out!("{}", serde_json::to_string_pretty(value)?)?;
    Ok(())
}

/// Columns as wide as their widest cell (counted in characters), two spaces apart; the last
/// column is not padded.
fn table_lines(header: &[&str], rows: &[Vec<String>]) -> Vec<String> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            text.push_str(cell);
            let pad = width.saturating_sub(cell.chars().count());
            text.extend(std::iter::repeat_n(' ', pad));
        }
        text.trim_end().to_owned()
    };
    let mut lines = vec![line(&mut header.iter().copied())];
    lines.extend(
        rows.iter()
            .map(|row| line(&mut row.iter().map(String::as_str))),
    );
    lines
}

fn print_table(header: &[&str], rows: &[Vec<String>]) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    for line in table_lines(header, rows) {
        writeln!(stdout, "{line}")?;
    }
    Ok(())
}

fn print_outcome(o: &api::TestOutcome, with_headers: bool) -> anyhow::Result<()> {
    if with_headers {
        for h in &o.request_headers {
            out!("{}: {}", h.name, h.value)?;
        }
    } else {
        out!("message: {}", o.message_id)?;
    }
    match (o.delivered, o.status) {
        (true, Some(status)) => out!("delivered: {status} in {} ms", o.duration_ms)?,
        (false, Some(status)) => out!("FAILED: {status} in {} ms", o.duration_ms)?,
        (_, None) => out!("FAILED after {} ms", o.duration_ms)?,
    }
    if let Some(e) = &o.error {
        out!("error: {e}")?;
    }
    if let Some(body) = o.response_body.as_deref().filter(|b| !b.is_empty()) {
        out!("response:\n{body}")?;
    }
    Ok(())
}

/// One webhook after a change: JSON, or what was done and its settings.
fn print_webhook(done: &str, w: &api::WebhookOut, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(w);
    }
    out!("{done} webhook {} ({})", w.id, w.name)?;
    out!("  url:      {}", w.url)?;
    out!("  events:   {}", w.events.join(", "))?;
    out!("  active:   {}", if w.active { "yes" } else { "no" })?;
    out!("  envelope: {}", w.envelope.as_str())?;
    out!("  secret:   {}", w.secret)?;
    if let (Some(previous), Some(until)) = (&w.previous_secret, &w.previous_secret_expires_at) {
        out!("  previous: {previous} (still signing until {until})")?;
    }
    Ok(())
}

fn print_webhooks(list: &[api::WebhookOut]) -> anyhow::Result<()> {
    if list.is_empty() {
        out!("no webhooks")?;
        return Ok(());
    }
    let rows = list
        .iter()
        .map(|w| {
            let note = match (&w.disabled_reason, &w.last_failure) {
                (Some(reason), _) => format!("disabled: {reason}"),
                (None, Some(f)) => format!("last failure {}: {}", f.at, f.reason),
                (None, None) => String::new(),
            };
            vec![
                w.id.clone(),
                w.name.clone(),
                if w.active { "yes" } else { "no" }.to_owned(),
                w.event_count.to_string(),
                w.events.join(","),
                w.url.clone(),
                note,
            ]
        })
        .collect::<Vec<_>>();
    print_table(
        &["ID", "NAME", "ACTIVE", "SENT", "EVENTS", "URL", "NOTE"],
        &rows,
    )
}

fn print_log(log: &api::DeliveryLog) -> anyhow::Result<()> {
    if log.messages.is_empty() {
        out!("no messages for webhook {}", log.webhook_id)?;
    } else {
        let rows = log
            .messages
            .iter()
            .map(|m| {
                let note = match (&m.next_attempt_at, &m.error) {
                    (Some(next), _) => format!("next attempt {next}"),
                    (None, Some(e)) => e.clone(),
                    (None, None) => String::new(),
                };
                vec![
                    m.id.clone(),
                    m.event.clone(),
                    format!("{:?}", m.state).to_lowercase(),
                    m.attempts.to_string(),
                    m.created_at.clone(),
                    note,
                ]
            })
            .collect::<Vec<_>>();
        print_table(
            &["MESSAGE", "EVENT", "STATE", "ATTEMPTS", "CREATED", "NOTE"],
            &rows,
        )?;
    }
    if !log.attempts.is_empty() {
        out!()?;
        let rows = log
            .attempts
            .iter()
            .map(|a| {
                vec![
                    a.started_at.clone(),
                    a.message_id.clone(),
                    a.attempt.to_string(),
                    format!("{:?}", a.trigger).to_lowercase(),
                    a.status.map_or_else(|| "-".to_owned(), |s| s.to_string()),
                    a.duration_ms.to_string(),
                    a.error.clone().unwrap_or_default(),
                ]
            })
            .collect::<Vec<_>>();
        print_table(
            &[
                "STARTED", "MESSAGE", "#", "TRIGGER", "STATUS", "MS", "ERROR",
            ],
            &rows,
        )?;
    }
    if log.evicted_attempts > 0 || log.evicted_messages > 0 {
        out!(
            "({} older attempts and {} older messages dropped from the log)",
            log.evicted_attempts,
            log.evicted_messages
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_whatever_the_lengths() {
        let rows = vec![
            vec!["a".to_owned(), "é-long-name".to_owned(), "x".to_owned()],
            vec!["much-longer-id".to_owned(), "b".to_owned(), "y".to_owned()],
        ];
        let lines = table_lines(&["ID", "NAME", "LAST"], &rows);
        assert_eq!(
            lines,
            [
                "ID              NAME         LAST",
                "a               é-long-name  x",
                "much-longer-id  b            y",
            ]
        );
    }
}
