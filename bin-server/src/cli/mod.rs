//! # The client subcommands: `new`, `wait`, `forward`, `export`
//!
//! What CI jobs and developers run against a bin-server (`--server URL`, or `HOOKBIN_SERVER`,
//! default `http://127.0.0.1:8080`). Each prints its result on stdout and, on failure, one line
//! on stderr. Exit codes: [`EXIT_OK`] 0, [`EXIT_VIOLATION`] 1 (`wait`: a matching request failed
//! the schema or signature check), [`EXIT_TIMEOUT`] 2 (`wait`: time ran out), [`EXIT_ERROR`] 3
//! (usage, connection or server error; also what `main` uses for bad flags).
//!
//! Layout: [`client`] (HTTP and SSE), [`wait`], [`forward`]; `new` and `export` are small
//! enough to live here.

pub mod client;
pub mod forward;
pub mod wait;

use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::checks::SchemaCheck;
use client::{Client, ClientError};
use wait::{WaitOptions, WaitOutcome};

pub const EXIT_OK: i32 = 0;
pub const EXIT_VIOLATION: i32 = 1;
pub const EXIT_TIMEOUT: i32 = 2;
pub const EXIT_ERROR: i32 = 3;

/// The server the subcommands talk to, and the credential they send.
#[derive(Debug, Clone, Args)]
pub struct ServerArg {
    /// Base URL of the bin-server.
    #[arg(long, env = "HOOKBIN_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// Sent as `Authorization: Bearer TOKEN`: the server's --auth-token, or the bin's own token
    /// (printed by `new` on a server with auth).
    #[arg(long, env = "HOOKBIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl ServerArg {
    /// A client of this server, sending the token when one is given.
    pub fn client(&self) -> Result<Client, ClientError> {
        let client = Client::new(&self.server)?;
        match &self.token {
            Some(token) => client.with_token(token),
            None => Ok(client),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Create a bin (or update a named one) and print its capture URL (and, on a line of its
    /// own, the bin's token when the server issued one).
    New(NewArgs),
    /// Block until matching requests arrive in a bin; print them as JSON, one per line.
    ///
    /// Exit codes: 0 matched (and passed the checks); 1 a matching request failed the bin's
    /// schema or signature check, or --schema; 2 timeout; 3 usage, connection or server error.
    Wait(WaitArgs),
    /// Replay each new request of a bin, byte-exact, to a URL (Ctrl-C to stop).
    Forward(ForwardArgs),
    /// Download a bin's requests as HAR 1.2 or NDJSON, oldest first.
    Export(ExportArgs),
}

#[derive(Debug, Clone, Args)]
pub struct NewArgs {
    #[command(flatten)]
    pub server: ServerArg,
    /// A fixed name (a-z, 0-9, '-', '_'; up to 64). The bin is created or, if it exists,
    /// updated with these settings (its requests are kept). Default: a random UUID.
    #[arg(long)]
    pub name: Option<String>,
    /// A JSON Schema file (draft 2020-12) every captured body is checked against.
    #[arg(long, value_name = "FILE")]
    pub schema: Option<PathBuf>,
    /// The secret signatures are checked with (for `standard`: whsec_...).
    #[arg(long, env = "HOOKBIN_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// How requests are signed: standard (Standard Webhooks), github (X-Hub-Signature-256),
    /// stripe (Stripe-Signature). Default with --secret: standard.
    #[arg(long, value_parser = ["standard", "github", "stripe"])]
    pub scheme: Option<String>,
    /// Print the whole bin as JSON instead of its capture URL.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct WaitArgs {
    #[command(flatten)]
    pub server: ServerArg,
    /// The bin's name or id (or its capture URL).
    pub bin: String,
    /// How long to wait in all (ms, s, m, h suffixes; a bare number is seconds).
    #[arg(long, default_value = "30s", value_parser = api::units::parse_duration)]
    pub timeout: Duration,
    /// Only requests with this method.
    #[arg(long)]
    pub method: Option<String>,
    /// Only requests to this path below the bin: exact, or a glob with * and ?.
    #[arg(long)]
    pub path: Option<String>,
    /// Only requests with this header ('Name: value', value exact or a glob; 'Name' alone:
    /// present). Repeatable.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Only requests whose JSON body has this value at the pointer ('/order/id=42';
    /// '/pointer' alone: present). The value is read as JSON, else as a string. Repeatable.
    #[arg(long = "json", value_name = "/POINTER=VALUE")]
    pub json: Vec<String>,
    /// A JSON Schema file the matching requests must satisfy (on top of the bin's own schema).
    #[arg(long, value_name = "FILE")]
    pub schema: Option<PathBuf>,
    /// Only requests after this one (a sequence number or request id). Without it, matching
    /// requests already in the bin count.
    #[arg(long, value_name = "ID")]
    pub after: Option<String>,
    /// How many matching requests to wait for.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub count: u32,
}

#[derive(Debug, Clone, Args)]
pub struct ForwardArgs {
    #[command(flatten)]
    pub server: ServerArg,
    /// The bin's name or id (or its capture URL).
    pub bin: String,
    /// Where to send each request; the path below the bin and the query are appended.
    #[arg(long, value_name = "URL")]
    pub to: String,
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub server: ServerArg,
    /// The bin's name or id (or its capture URL).
    pub bin: String,
    #[arg(long, value_parser = ["har", "ndjson"], default_value = "ndjson")]
    pub format: String,
    /// Write to this file instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// A bin given as a name, or as a capture URL (`http://host/b/NAME[/...]`).
pub fn bin_name(arg: &str) -> Result<String, ClientError> {
    let name = match arg.split_once("/b/") {
        Some((_, rest)) => rest.split(['/', '?']).next().unwrap_or(""),
        None => arg,
    };
    crate::store::BinName::parse(name)
        .map(|n| n.to_string())
        .map_err(|e| ClientError::Other(e.to_string()))
}

fn read_schema(path: &PathBuf) -> Result<serde_json::Value, ClientError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ClientError::Other(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| ClientError::Other(format!("{} is not JSON: {e}", path.display())))
}

/// Runs a subcommand and returns the process exit code. `shutdown` (Ctrl-C) ends `forward`.
pub async fn run(command: ClientCommand, shutdown: impl Future<Output = ()>) -> i32 {
    match execute(command, &mut std::io::stdout(), shutdown).await {
        Ok(code) => code,
        Err(ClientError::OutputClosed) => EXIT_OK,
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_ERROR
        }
    }
}

/// [`run`] with the output given: what tests call.
pub async fn execute(
    command: ClientCommand,
    out: &mut (dyn Write + Send),
    shutdown: impl Future<Output = ()>,
) -> Result<i32, ClientError> {
    let io = |e: std::io::Error| ClientError::output(&e);
    match command {
        ClientCommand::New(a) => {
            let client = a.server.client()?;
            let schema = a.schema.as_ref().map(read_schema).transpose()?;
            if let Some(s) = &schema {
                // Say what is wrong with the file before the server is asked.
                SchemaCheck::compile(s).map_err(|e| {
                    ClientError::Other(format!("{}: {e}", a.schema.as_ref().unwrap().display()))
                })?;
            }
            let input = api::BinIn {
                name: a.name.as_deref().map(bin_name).transpose()?,
                schema,
                secret: a.secret,
                signature_scheme: a.scheme,
                ..Default::default()
            };
            let bin = client.create_bin(&input).await?;
            if a.json {
                serde_json::to_writer_pretty(&mut *out, &bin)
                    .map_err(|e| ClientError::Other(e.to_string()))?;
                writeln!(out).map_err(io)?;
            } else {
                writeln!(out, "{}", bin.url).map_err(io)?;
                // The bin's own token, when the server issued one: shown this once.
                if let Some(token) = &bin.token {
                    writeln!(out, "{token}").map_err(io)?;
                }
            }
            Ok(EXIT_OK)
        }
        ClientCommand::Wait(a) => {
            let client = a.server.client()?;
            let schema = match &a.schema {
                Some(path) => Some(
                    SchemaCheck::compile(&read_schema(path)?)
                        .map_err(|e| ClientError::Other(format!("{}: {e}", path.display())))?,
                ),
                None => None,
            };
            let opts = WaitOptions {
                bin: bin_name(&a.bin)?,
                timeout: a.timeout,
                query: api::WaitQuery {
                    method: a.method,
                    path: a.path,
                    headers: a
                        .headers
                        .iter()
                        .map(|h| api::WaitQuery::header_filter(h))
                        .collect(),
                    json: a
                        .json
                        .iter()
                        .map(|j| api::WaitQuery::json_filter(j))
                        .collect(),
                    after: a.after,
                    ..Default::default()
                },
                schema,
                count: a.count,
            };
            let mut write_err = None;
            let outcome = wait::wait(&client, &opts, |r| {
                let line = serde_json::to_string(r).expect("wire types serialize");
                if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
                    write_err.get_or_insert(e);
                }
            })
            .await?;
            if let Some(e) = write_err {
                return Err(io(e));
            }
            Ok(match outcome {
                WaitOutcome::Matched(_) => EXIT_OK,
                WaitOutcome::Violation { message, .. } => {
                    eprintln!("{message}");
                    EXIT_VIOLATION
                }
                WaitOutcome::Timeout { message, .. } => {
                    eprintln!("{message}");
                    EXIT_TIMEOUT
                }
            })
        }
        ClientCommand::Forward(a) => {
            let client = a.server.client()?;
            let bin = bin_name(&a.bin)?;
            eprintln!(
                "forwarding requests of bin {bin:?} to {} (Ctrl-C to stop)",
                a.to
            );
            let mut write_err = None;
            forward::forward(&client, &bin, &a.to, shutdown, |ev| match ev {
                forward::ForwardEvent::Forwarded { .. } => {
                    if let Err(e) = writeln!(out, "{ev}").and_then(|()| out.flush()) {
                        write_err.get_or_insert(e);
                    }
                }
                other => eprintln!("{other}"),
            })
            .await?;
            if let Some(e) = write_err {
                return Err(io(e));
            }
            eprintln!("stopped");
            Ok(EXIT_OK)
        }
        ClientCommand::Export(a) => {
            let client = a.server.client()?;
            let bin = bin_name(&a.bin)?;
            match &a.output {
                Some(path) => {
                    let file = std::fs::File::create(path).map_err(|e| {
                        ClientError::Other(format!("cannot create {}: {e}", path.display()))
                    })?;
                    let mut file = std::io::BufWriter::new(file);
                    let n = client.export(&bin, &a.format, &mut file).await?;
                    eprintln!("wrote {n} bytes to {}", path.display());
                }
                None => {
                    client.export(&bin, &a.format, out).await?;
                }
            }
            Ok(EXIT_OK)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_by_name_or_url() {
        assert_eq!(bin_name("ci-run").unwrap(), "ci-run");
        assert_eq!(bin_name("http://h:1/b/ci-run/x?y").unwrap(), "ci-run");
        assert!(bin_name("Bad Name").is_err());
    }
}
