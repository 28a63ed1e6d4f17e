//! # Outbound requests: where the server may connect
//!
//! Deliveries, test events and replays are requests the *server* makes to URLs its users give,
//! so without a check they reach whatever the server can reach: a cloud metadata service
//! (`169.254.169.254`), the private network, other services on the host, and the server's own
//! API. This module owns that check.
//!
//! - [`OutboundPolicy`] (`--outbound-policy all|public-only`): `public-only` refuses every
//!   address [`classify`] puts in a non-public [`Range`] (loopback, private, link-local, CGNAT,
//!   multicast, documentation, ... and the IPv4-mapped, IPv4-compatible, NAT64 and 6to4 forms
//!   of those).
//! - [`OwnServer`]: how a URL or an address names *this* server. Its bins (`/b/...`) are always
//!   allowed, and such requests are sent straight to the server's own bound address (never
//!   through DNS, so a rebinding name cannot turn them elsewhere); anything else on this server
//!   (its API, the UI) is refused whatever the policy.
//! - [`OutboundClient`]: the HTTP clients that enforce both. The check runs on the address
//!   actually connected to: a host name goes through a DNS resolver of ours that drops refused
//!   addresses (and fails, naming them, when none is left), so a name that resolves to a public
//!   address when a webhook is saved and to `127.0.0.1` at delivery time is still refused. IP
//!   literals never reach a resolver, so they are checked in [`OutboundClient::prepare`] (the
//!   `url` crate has already normalised `2130706433`, `0x7f.1` and the other IPv4 forms into
//!   an IPv4 host). Proxies are off (the check must be on the real peer) and redirects are not
//!   followed.
//! - [`Outbound::check_url`]: the same rules on a URL alone, when a webhook is saved, so a
//!   refusal shows at once (a literal address, `localhost`, this server's API).
//!
//! The sender CLI's `sender send URL` and `bin-server forward` run on the user's machine toward
//! their own apps and do not use this module: they are unrestricted.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// `--outbound-policy`: which addresses deliveries, test events and replays may connect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutboundPolicy {
    /// Any address (this server's API excepted).
    #[default]
    All,
    /// Public addresses only (this server's bins excepted).
    PublicOnly,
}

impl OutboundPolicy {
    /// The default for a server bound to `bind`: `all` on a loopback address (a local tool
    /// sending to local apps), `public-only` on any other (reachable by others, who must not
    /// reach the host's network through it).
    pub fn for_bind(bind: IpAddr) -> Self {
        if bind.to_canonical().is_loopback() {
            OutboundPolicy::All
        } else {
            OutboundPolicy::PublicOnly
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OutboundPolicy::All => "all",
            OutboundPolicy::PublicOnly => "public-only",
        }
    }

    /// Why this policy refuses `ip`, or `None` when it allows it.
    pub fn refuses(self, ip: IpAddr) -> Option<Range> {
        match self {
            OutboundPolicy::All => None,
            OutboundPolicy::PublicOnly => classify(ip),
        }
    }
}

impl fmt::Display for OutboundPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The non-public address ranges (IANA's special-purpose registries, RFC 6890 and later).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// `0.0.0.0`, `::` (connecting there reaches the local host).
    Unspecified,
    /// `0.0.0.0/8` ("this network").
    ThisNetwork,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918: `10/8`, `172.16/12`, `192.168/16`.
    Private,
    /// `100.64.0.0/10`, carrier-grade NAT.
    SharedCgnat,
    /// `169.254.0.0/16` (cloud metadata lives here), `fe80::/10`.
    LinkLocal,
    /// `fc00::/7`, and the deprecated site-local `fec0::/10`.
    UniqueLocal,
    /// `192.0.0.0/24`: IETF protocol assignments.
    ProtocolAssignments,
    /// `192.0.2/24`, `198.51.100/24`, `203.0.113/24`, `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// `198.18.0.0/15`, `2001:2::/48`.
    Benchmarking,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `240.0.0.0/4` and the IPv6 blocks nobody routes (`100::/64` discard, Teredo
    /// `2001::/32`, the local-use NAT64 prefix `64:ff9b:1::/48`).
    Reserved,
}

impl Range {
    /// "a loopback address", for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Range::Unspecified => "the unspecified address (this host)",
            Range::ThisNetwork => "a \"this network\" address (0.0.0.0/8)",
            Range::Loopback => "a loopback address",
            Range::Private => "a private address (RFC 1918)",
            Range::SharedCgnat => "a carrier-grade NAT address (100.64.0.0/10)",
            Range::LinkLocal => "a link-local address",
            Range::UniqueLocal => "a unique-local address (fc00::/7)",
            Range::ProtocolAssignments => "an IETF protocol address (192.0.0.0/24)",
            Range::Documentation => "a documentation address",
            Range::Benchmarking => "a benchmarking address",
            Range::Multicast => "a multicast address",
            Range::Broadcast => "the broadcast address",
            Range::Reserved => "a reserved address",
        }
    }
}

/// The range `ip` belongs to when it is not a public unicast address; `None` when it is
/// public. IPv6 addresses that carry an IPv4 address (see [`embedded_ipv4`]) are classified
/// by that IPv4 address: `::ffff:127.0.0.1` is loopback.
pub fn classify(ip: IpAddr) -> Option<Range> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Range> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_unspecified() => Range::Unspecified,
        (0, _, _) => Range::ThisNetwork,
        (127, _, _) => Range::Loopback,
        (10, _, _) => Range::Private,
        (172, 16..=31, _) => Range::Private,
        (192, 168, _) => Range::Private,
        (100, 64..=127, _) => Range::SharedCgnat,
        (169, 254, _) => Range::LinkLocal,
        (192, 0, 0) => Range::ProtocolAssignments,
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => Range::Documentation,
        (198, 18..=19, _) => Range::Benchmarking,
        (224..=239, _, _) => Range::Multicast,
        _ if ip.is_broadcast() => Range::Broadcast,
        (240..=255, _, _) => Range::Reserved,
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<Range> {
    if ip.is_unspecified() {
        return Some(Range::Unspecified);
    }
    if ip.is_loopback() {
        return Some(Range::Loopback);
    }
    if let Some((v4, _)) = embedded_ipv4(ip) {
        return classify_v4(v4);
    }
    let s = ip.segments();
    Some(match s {
        [0xfe80..=0xfebf, ..] => Range::LinkLocal,
        [0xfc00..=0xfdff, ..] | [0xfec0..=0xfeff, ..] => Range::UniqueLocal,
        [0xff00..=0xffff, ..] => Range::Multicast,
        [0x2001, 0x0db8, ..] | [0x3fff, 0x0000..=0x0fff, ..] => Range::Documentation,
        [0x2001, 0x0002, 0, ..] => Range::Benchmarking,
        [0x0100, 0, 0, 0, ..] => Range::Reserved,
        [0x2001, 0x0000, ..] => Range::Reserved,
        [0x0064, 0xff9b, 0x0001, ..] => Range::Reserved,
        // Not global unicast (2000::/3) and none of the above: nothing public lives there.
        [first, ..] if !(0x2000..=0x3fff).contains(&first) => Range::Reserved,
        _ => return None,
    })
}

/// The IPv4 address an IPv6 address stands for, and the form that carries it: IPv4-mapped
/// (`::ffff:a.b.c.d`), IPv4-translated (`::ffff:0:a.b.c.d`), IPv4-compatible (`::a.b.c.d`,
/// deprecated), NAT64 (`64:ff9b::a.b.c.d`) or 6to4 (`2002:aabb:ccdd::/48`). A connection to
/// any of these can end at that IPv4 address.
pub fn embedded_ipv4(ip: Ipv6Addr) -> Option<(Ipv4Addr, &'static str)> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some((low, "IPv4-mapped")),
        [0, 0, 0, 0, 0xffff, 0, _, _] => Some((low, "IPv4-translated")),
        // `::` and `::1` are themselves, not 0.0.0.0 and 0.0.0.1.
        [0, 0, 0, 0, 0, 0, 0, 0..=1] => None,
        [0, 0, 0, 0, 0, 0, _, _] => Some((low, "IPv4-compatible")),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some((low, "NAT64")),
        [0x2002, hi, lo, ..] => Some((
            Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8),
            "6to4",
        )),
        _ => None,
    }
}

/// `localhost` and `*.localhost`: names that always mean loopback (RFC 6761), whatever DNS says.
pub fn is_localhost_name(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost")
}

/// Whether a path on this server is a capture (`/b/...`): the only thing outbound requests
/// may reach on it.
pub fn is_capture_path(path: &str) -> bool {
    path.starts_with("/b/")
}

/// An IP-literal host of a parsed URL (`[::1]` without its brackets).
fn ip_host(url: &Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// How URLs and addresses name this server, and where to connect to reach it.
#[derive(Debug, Clone)]
pub struct OwnServer {
    bound: SocketAddr,
    /// `--public-url` (and any other base capture URLs are built from).
    bases: Vec<Base>,
}

#[derive(Debug, Clone)]
struct Base {
    /// As the `url` crate normalises it (lower case, IPv4 forms normalised).
    host: String,
    port: u16,
    /// The base URL's path without its trailing `/` (`""` at the root).
    prefix: String,
}

impl OwnServer {
    /// A server listening on `bound` (the listener's real address: port 0 already replaced).
    pub fn new(bound: SocketAddr) -> Self {
        Self {
            bound,
            bases: Vec::new(),
        }
    }

    /// Also recognise URLs under `base` (`--public-url`), which may be served through a proxy
    /// on another host name, scheme and port. A base that is not an http(s) URL is ignored.
    pub fn with_base_url(mut self, base: &str) -> Self {
        if let Ok(url) = Url::parse(base)
            && let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default())
        {
            self.bases.push(Base {
                host: host.trim_end_matches('.').to_owned(),
                port,
                prefix: url.path().trim_end_matches('/').to_owned(),
            });
        }
        self
    }

    pub fn port(&self) -> u16 {
        self.bound.port()
    }

    /// Where this server is reached: its bound address, or loopback when it is bound to every
    /// address.
    pub fn connect_addr(&self) -> SocketAddr {
        let ip = match self.bound.ip() {
            IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        SocketAddr::new(ip, self.bound.port())
    }

    /// Whether a connection to `ip` on this server's port reaches this server: its bound
    /// address; any loopback address when bound to loopback or to every address; and, bound
    /// to every address, the unspecified address and every address of this host (an address
    /// is this host's when a socket can be bound to it).
    pub fn is_own_ip(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        let bound = self.bound.ip().to_canonical();
        if ip == bound {
            return true;
        }
        let everywhere = bound.is_unspecified();
        if (everywhere || bound.is_loopback()) && (ip.is_loopback() || ip.is_unspecified()) {
            return true;
        }
        everywhere && std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
    }

    /// The path this server would see for `url`, when `url` names this server: by its address
    /// and port, by `localhost` and its port (when bound to loopback or every address), or
    /// under a base URL (the base's path removed). `None`: not this server, as far as the URL
    /// alone tells (the resolver checks host names at connect time).
    pub fn path_for<'u>(&self, url: &'u Url) -> Option<&'u str> {
        let host = url.host_str()?;
        let port = url.port_or_known_default()?;
        if port == self.port() {
            let names_us = match ip_host(url) {
                Some(ip) => self.is_own_ip(ip),
                None => {
                    let bound = self.bound.ip().to_canonical();
                    is_localhost_name(host) && (bound.is_loopback() || bound.is_unspecified())
                }
            };
            if names_us {
                return Some(url.path());
            }
        }
        let host = host.trim_end_matches('.');
        self.bases.iter().find_map(|base| {
            if base.port != port || !base.host.eq_ignore_ascii_case(host) {
                return None;
            }
            let rest = url.path().strip_prefix(base.prefix.as_str())?;
            (rest.is_empty() || rest.starts_with('/')).then_some(rest)
        })
    }
}

/// Why an outbound request was not sent. Every refusal names the address (or name) and the
/// policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// An IP-literal host the policy refuses.
    #[error("refused by --outbound-policy {policy}: {} is {}", show_ip(*address), range.describe())]
    Address {
        address: IpAddr,
        range: Range,
        policy: OutboundPolicy,
    },
    /// `localhost` or `*.localhost` under `public-only`.
    #[error("refused by --outbound-policy {policy}: {host} is a loopback name")]
    LoopbackName {
        host: String,
        policy: OutboundPolicy,
    },
    /// A host name whose every address was refused, at connect time.
    #[error(
        "refused by --outbound-policy {policy}: {host} resolved to {}",
        show_resolved(addresses, *own_port)
    )]
    Resolved {
        host: String,
        /// Each address with its range; `None`: this server's own address.
        addresses: Vec<(IpAddr, Option<Range>)>,
        /// The port of the request (that of this server, when an address is this server's).
        own_port: u16,
        policy: OutboundPolicy,
    },
    /// A URL that names this server outside its bins.
    #[error(
        "refused whatever the policy (--outbound-policy {policy}): {target} is this server, \
         which outbound requests may reach only at its bins (/b/...)"
    )]
    ThisServer {
        target: String,
        policy: OutboundPolicy,
    },
}

fn show_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => match embedded_ipv4(v6) {
            Some((v4, form)) => format!("{v6} ({form} {v4})"),
            None => v6.to_string(),
        },
        IpAddr::V4(v4) => v4.to_string(),
    }
}

fn show_resolved(addresses: &[(IpAddr, Option<Range>)], port: u16) -> String {
    let parts: Vec<String> = addresses
        .iter()
        .map(|(ip, range)| match range {
            Some(r) => format!("{} ({})", show_ip(*ip), r.describe()),
            None => format!(
                "{} (this server on port {port}: only its bins may be reached, whatever the \
                 policy)",
                show_ip(*ip)
            ),
        })
        .collect();
    parts.join(", ")
}

/// The refusal behind a failed request, if the failure was one (a resolver refusal reaches
/// the caller wrapped in reqwest's and hyper's errors).
pub fn refusal<'e>(error: &'e (dyn std::error::Error + 'static)) -> Option<&'e Refused> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(r) = e.downcast_ref::<Refused>() {
            return Some(r);
        }
        current = e.source();
    }
    None
}

/// Settings of an [`Outbound`].
#[derive(Debug, Clone, Default)]
pub struct OutboundConfig {
    pub policy: OutboundPolicy,
    /// Names answered without asking DNS, as curl's `--resolve` (lower case, no trailing dot).
    /// The answers are checked like any other; tests use this to play a rebinding DNS.
    pub hosts: HashMap<String, Vec<IpAddr>>,
}

/// The policy and what this server is; clones share it (the server fills in [`OwnServer`]
/// once it is bound, and every client built from it sees that).
#[derive(Clone)]
pub struct Outbound {
    shared: Arc<Shared>,
}

struct Shared {
    config: OutboundConfig,
    // std RwLock: read on every outbound request, written once when the server binds; never
    // held across `.await`.
    own: RwLock<Option<Arc<OwnServer>>>,
    /// Requests refused when sending (not when saving a webhook), for `/metrics`.
    refused: AtomicU64,
}

impl fmt::Debug for Outbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbound")
            .field("policy", &self.policy())
            .field("own", &self.own_server())
            .finish_non_exhaustive()
    }
}

impl Default for Outbound {
    fn default() -> Self {
        Self::new(OutboundConfig::default())
    }
}

impl Outbound {
    pub fn new(config: OutboundConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                config,
                own: RwLock::new(None),
                refused: AtomicU64::new(0),
            }),
        }
    }

    pub fn policy(&self) -> OutboundPolicy {
        self.shared.config.policy
    }

    /// Tells the check which server it runs in (bin-server calls this once it is bound).
    pub fn set_own_server(&self, own: OwnServer) {
        *self
            .shared
            .own
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(own));
    }

    /// Requests refused when sending (test events, delivery attempts, replays) so far.
    pub fn refused_total(&self) -> u64 {
        self.shared.refused.load(Ordering::Relaxed)
    }

    /// Counts a refusal made when sending.
    fn refused(&self, refused: Refused) -> Refused {
        self.shared.refused.fetch_add(1, Ordering::Relaxed);
        refused
    }

    pub fn own_server(&self) -> Option<Arc<OwnServer>> {
        self.shared
            .own
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The check of a URL alone, when a webhook is saved: this server outside its bins, an
    /// IP literal the policy refuses, `localhost` under `public-only`. Other host names are
    /// checked when connecting (what they resolve to now says nothing of later).
    pub fn check_url(&self, url: &Url) -> Result<(), Refused> {
        let policy = self.policy();
        if let Some(own) = self.own_server()
            && let Some(path) = own.path_for(url)
        {
            return if is_capture_path(path) {
                Ok(())
            } else {
                Err(this_server(url, policy))
            };
        }
        if let Some(ip) = ip_host(url) {
            if let Some(range) = policy.refuses(ip) {
                return Err(Refused::Address {
                    address: ip,
                    range,
                    policy,
                });
            }
        } else if policy == OutboundPolicy::PublicOnly
            && let Some(host) = url.host_str()
            && is_localhost_name(host)
        {
            return Err(Refused::LoopbackName {
                host: host.to_owned(),
                policy,
            });
        }
        Ok(())
    }

    /// Builds the clients that enforce this policy; `configure` adds timeouts, a user agent...
    /// (proxies, redirects and DNS are set here and must not be changed by it).
    pub fn client(
        &self,
        configure: impl Fn(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
    ) -> OutboundClient {
        let build = |own_port: bool| {
            let base = reqwest::Client::builder().tcp_nodelay(true);
            configure(base)
                // Proxies would make the check apply to the proxy, not to the real peer.
                .no_proxy()
                // A redirect is an answer to report, and following it would skip the check.
                .redirect(reqwest::redirect::Policy::none())
                .dns_resolver(Arc::new(CheckingResolver {
                    outbound: self.clone(),
                    own_port,
                }))
                .build()
                .expect("the TLS backend initialises")
        };
        OutboundClient {
            outbound: self.clone(),
            any_port: build(false),
            own_port: build(true),
        }
    }

    /// DNS, or the configured answer for `host`.
    async fn lookup(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        let key = host.trim_end_matches('.').to_ascii_lowercase();
        if let Some(addrs) = self.shared.config.hosts.get(&key) {
            return Ok(addrs.clone());
        }
        Ok(tokio::net::lookup_host((host, 0))
            .await?
            .map(|a| a.ip())
            .collect())
    }

    /// Keeps the addresses a connection may go to. `own_port`: the request is to this server's
    /// port, so this server's own addresses are dropped too (its bins never come through DNS,
    /// see [`OutboundClient::prepare`]).
    fn screen(
        &self,
        host: &str,
        addrs: Vec<IpAddr>,
        own_port: bool,
    ) -> Result<Vec<IpAddr>, Refused> {
        let policy = self.policy();
        let own = if own_port { self.own_server() } else { None };
        let mut kept = Vec::with_capacity(addrs.len());
        let mut refused = Vec::new();
        for ip in addrs {
            if own.as_ref().is_some_and(|o| o.is_own_ip(ip)) {
                refused.push((ip, None));
            } else if let Some(range) = policy.refuses(ip) {
                refused.push((ip, Some(range)));
            } else {
                kept.push(ip);
            }
        }
        if kept.is_empty() && !refused.is_empty() {
            return Err(self.refused(Refused::Resolved {
                host: host.to_owned(),
                addresses: refused,
                own_port: own.map_or(0, |o| o.port()),
                policy,
            }));
        }
        Ok(kept)
    }
}

fn this_server(url: &Url, policy: OutboundPolicy) -> Refused {
    let mut target = url.clone();
    target.set_query(None);
    target.set_fragment(None);
    Refused::ThisServer {
        target: target.to_string(),
        policy,
    }
}

/// The resolver of an [`OutboundClient`]: DNS (or the configured hosts), then
/// [`Outbound::screen`] on the answer, at connect time.
struct CheckingResolver {
    outbound: Outbound,
    own_port: bool,
}

impl Resolve for CheckingResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let outbound = self.outbound.clone();
        let own_port = self.own_port;
        Box::pin(async move {
            let host = name.as_str();
            let addrs = outbound.lookup(host).await?;
            let kept = outbound.screen(host, addrs, own_port)?;
            if kept.is_empty() {
                return Err(format!("{host}: no address found").into());
            }
            let addrs: Addrs = Box::new(kept.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// HTTP clients that obey an [`Outbound`]: one for requests to this server's port (its
/// resolver also drops this server's addresses) and one for any other port. Cheap to clone.
#[derive(Clone)]
pub struct OutboundClient {
    outbound: Outbound,
    any_port: reqwest::Client,
    own_port: reqwest::Client,
}

/// A request cleared to go: the client and URL to use, and the `Host` header to send when the
/// URL was rewritten to reach this server directly.
pub struct Prepared<'c> {
    pub client: &'c reqwest::Client,
    pub url: Url,
    pub host: Option<reqwest::header::HeaderValue>,
}

impl Prepared<'_> {
    pub fn request(&self, method: reqwest::Method) -> reqwest::RequestBuilder {
        let builder = self.client.request(method, self.url.clone());
        match &self.host {
            Some(host) => builder.header(reqwest::header::HOST, host.clone()),
            None => builder,
        }
    }
}

impl OutboundClient {
    pub fn outbound(&self) -> &Outbound {
        &self.outbound
    }

    /// Checks `url` before sending and picks how to send it:
    /// - a URL naming this server: at its bins, rewritten to `http://` + this server's own
    ///   address (same path and query, the original `Host`); anywhere else, refused;
    /// - a host name on this server's port, at a bin path, that resolves to this server: the
    ///   same (resolved once here; if it does not resolve to this server, the connect-time
    ///   check applies as for any name);
    /// - an IP literal: checked against the policy here (it never reaches the resolver);
    /// - any other host name: checked by the resolver when connecting.
    pub async fn prepare(&self, url: Url) -> Result<Prepared<'_>, Refused> {
        let policy = self.outbound.policy();
        let own = self.outbound.own_server();
        let port = url.port_or_known_default();
        if let Some(own) = &own {
            if let Some(path) = own.path_for(&url) {
                if !is_capture_path(path) {
                    return Err(self.outbound.refused(this_server(&url, policy)));
                }
                let path = path.to_owned();
                return Ok(self.to_own(own, &url, &path));
            }
            if port == Some(own.port())
                && ip_host(&url).is_none()
                && is_capture_path(url.path())
                && let Some(host) = url.host_str()
                && let Ok(addrs) = self.outbound.lookup(host).await
                && addrs.iter().any(|ip| own.is_own_ip(*ip))
            {
                return Ok(self.to_own(own, &url, url.path()));
            }
        }
        if let Some(ip) = ip_host(&url)
            && let Some(range) = policy.refuses(ip)
        {
            return Err(self.outbound.refused(Refused::Address {
                address: ip,
                range,
                policy,
            }));
        }
        let client = match (&own, port) {
            (Some(own), Some(port)) if own.port() == port => &self.own_port,
            _ => &self.any_port,
        };
        Ok(Prepared {
            client,
            url,
            host: None,
        })
    }

    /// `url` sent to this server's own address instead: no DNS, no TLS to a proxy in front.
    fn to_own(&self, own: &OwnServer, url: &Url, path: &str) -> Prepared<'_> {
        let mut direct =
            Url::parse(&format!("http://{}/", own.connect_addr())).expect("a socket address");
        direct.set_path(path);
        direct.set_query(url.query());
        let authority = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => own.connect_addr().to_string(),
        };
        Prepared {
            client: &self.any_port,
            url: direct,
            host: reqwest::header::HeaderValue::from_str(&authority).ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// The host a URL's text ends up with, as every client sees it.
    fn url_ip(url: &str) -> IpAddr {
        ip_host(&Url::parse(url).unwrap()).unwrap_or_else(|| panic!("{url}: not an IP host"))
    }

    #[test]
    fn classifies_every_non_public_form() {
        use Range::*;
        let table: &[(&str, Option<Range>)] = &[
            ("0.0.0.0", Some(Unspecified)),
            ("0.1.2.3", Some(ThisNetwork)),
            ("127.0.0.1", Some(Loopback)),
            ("127.255.255.254", Some(Loopback)),
            ("10.0.0.1", Some(Private)),
            ("172.16.0.1", Some(Private)),
            ("172.31.255.255", Some(Private)),
            ("192.168.1.1", Some(Private)),
            ("100.64.0.1", Some(SharedCgnat)),
            ("100.127.255.255", Some(SharedCgnat)),
            ("169.254.169.254", Some(LinkLocal)),
            ("192.0.0.8", Some(ProtocolAssignments)),
            ("192.0.2.1", Some(Documentation)),
            ("198.51.100.7", Some(Documentation)),
            ("203.0.113.9", Some(Documentation)),
            ("198.18.0.1", Some(Benchmarking)),
            ("198.19.255.255", Some(Benchmarking)),
            ("224.0.0.1", Some(Multicast)),
            ("239.255.255.250", Some(Multicast)),
            ("240.0.0.1", Some(Reserved)),
            ("255.255.255.255", Some(Broadcast)),
            // Public neighbours of the ranges above.
            ("8.8.8.8", None),
            ("1.1.1.1", None),
            ("172.32.0.1", None),
            ("172.15.255.255", None),
            ("100.128.0.1", None),
            ("100.63.255.255", None),
            ("169.255.0.1", None),
            ("198.20.0.1", None),
            ("11.0.0.1", None),
            ("223.255.255.255", None),
            // IPv6.
            ("::", Some(Unspecified)),
            ("::1", Some(Loopback)),
            ("fe80::1", Some(LinkLocal)),
            ("febf::1", Some(LinkLocal)),
            ("fc00::1", Some(UniqueLocal)),
            ("fd12:3456::1", Some(UniqueLocal)),
            ("fec0::1", Some(UniqueLocal)),
            ("ff02::1", Some(Multicast)),
            ("2001:db8::1", Some(Documentation)),
            ("3fff::1", Some(Documentation)),
            ("2001:2::1", Some(Benchmarking)),
            ("100::1", Some(Reserved)),
            ("2001::1", Some(Reserved)),
            ("64:ff9b:1::1", Some(Reserved)),
            ("4000::1", Some(Reserved)),
            ("2606:4700:4700::1111", None),
            ("2a00:1450:4001::200e", None),
            // IPv4 inside IPv6: classified by the IPv4 address.
            ("::ffff:127.0.0.1", Some(Loopback)),
            ("::ffff:7f00:1", Some(Loopback)),
            ("::ffff:a9fe:a9fe", Some(LinkLocal)),
            ("::ffff:10.0.0.1", Some(Private)),
            ("::ffff:0.0.0.0", Some(Unspecified)),
            ("::ffff:8.8.8.8", None),
            ("::ffff:0:127.0.0.1", Some(Loopback)),
            ("::127.0.0.1", Some(Loopback)),
            ("::10.0.0.1", Some(Private)),
            ("64:ff9b::a00:1", Some(Private)),
            ("64:ff9b::7f00:1", Some(Loopback)),
            ("64:ff9b::808:808", None),
            ("2002:7f00:1::1", Some(Loopback)),
            ("2002:a9fe:a9fe::", Some(LinkLocal)),
            ("2002:c0a8:101::1", Some(Private)),
            ("2002:808:808::1", None),
        ];
        for (addr, want) in table {
            assert_eq!(classify(ip(addr)), *want, "{addr}");
        }
    }

    #[test]
    fn url_hosts_in_any_ipv4_form_are_classified_as_the_address_they_reach() {
        use Range::*;
        let table: &[(&str, &str, Range)] = &[
            ("http://2130706433/", "127.0.0.1", Loopback),
            ("http://0x7f.1/", "127.0.0.1", Loopback),
            ("http://0177.0.0.1/", "127.0.0.1", Loopback),
            ("http://127.1/", "127.0.0.1", Loopback),
            ("http://0/", "0.0.0.0", Unspecified),
            ("http://0xa9fea9fe/", "169.254.169.254", LinkLocal),
            ("http://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1", Loopback),
            ("http://[::ffff:7f00:1]:8080/", "::ffff:127.0.0.1", Loopback),
            ("http://[64:ff9b::a00:1]/", "64:ff9b::a00:1", Private),
            ("http://[0:0:0:0:0:0:0:1]/", "::1", Loopback),
            ("http://127.0.0.1./", "127.0.0.1", Loopback),
        ];
        for (url, addr, range) in table {
            assert_eq!(url_ip(url), ip(addr), "{url}");
            assert_eq!(classify(url_ip(url)), Some(*range), "{url}");
        }
    }

    #[test]
    fn the_default_policy_follows_the_bind_address() {
        for (bind, want) in [
            ("127.0.0.1", OutboundPolicy::All),
            ("127.0.0.2", OutboundPolicy::All),
            ("::1", OutboundPolicy::All),
            ("::ffff:127.0.0.1", OutboundPolicy::All),
            ("0.0.0.0", OutboundPolicy::PublicOnly),
            ("::", OutboundPolicy::PublicOnly),
            ("192.168.1.10", OutboundPolicy::PublicOnly),
            ("203.0.113.5", OutboundPolicy::PublicOnly),
        ] {
            assert_eq!(OutboundPolicy::for_bind(ip(bind)), want, "{bind}");
        }
    }

    fn outbound(policy: OutboundPolicy, bound: &str) -> Outbound {
        let o = Outbound::new(OutboundConfig {
            policy,
            hosts: HashMap::from([("rebind.test".to_owned(), vec![ip("127.0.0.1")])]),
        });
        o.set_own_server(
            OwnServer::new(bound.parse().unwrap()).with_base_url("https://hooks.example.test"),
        );
        o
    }

    fn check(o: &Outbound, url: &str) -> Result<(), String> {
        o.check_url(&Url::parse(url).unwrap())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn saved_urls_are_checked_by_address_name_and_server() {
        let public = outbound(OutboundPolicy::PublicOnly, "0.0.0.0:8080");
        let e = check(&public, "http://2130706433/x").unwrap_err();
        assert_eq!(
            e,
            "refused by --outbound-policy public-only: 127.0.0.1 is a loopback address"
        );
        let e = check(&public, "http://[::ffff:7f00:1]:81/").unwrap_err();
        assert_eq!(
            e,
            "refused by --outbound-policy public-only: ::ffff:127.0.0.1 (IPv4-mapped \
             127.0.0.1) is a loopback address"
        );
        let e = check(&public, "http://LocalHost:3000/").unwrap_err();
        assert!(e.contains("localhost is a loopback name"), "{e}");
        // Names are for the resolver; public addresses pass.
        assert_eq!(check(&public, "http://rebind.test/"), Ok(()));
        assert_eq!(check(&public, "https://8.8.8.8/"), Ok(()));
        // This server: its bins always, its API never.
        assert_eq!(check(&public, "http://127.0.0.1:8080/b/inbox"), Ok(()));
        assert_eq!(check(&public, "http://localhost:8080/b/inbox?x=1"), Ok(()));
        assert_eq!(check(&public, "https://hooks.example.test/b/inbox"), Ok(()));
        let e = check(&public, "http://localhost:8080/api/bins/x?y=1").unwrap_err();
        assert_eq!(
            e,
            "refused whatever the policy (--outbound-policy public-only): \
             http://localhost:8080/api/bins/x is this server, which outbound requests may \
             reach only at its bins (/b/...)"
        );
        // Dot segments are resolved by the URL parser before the check.
        assert!(check(&public, "http://127.0.0.1:8080/b/x/../../api/bins").is_err());
        assert!(check(&public, "http://127.0.0.1:8080/b/%2e%2e/api/bins").is_err());
        assert!(check(&public, "https://hooks.example.test/").is_err());

        let all = outbound(OutboundPolicy::All, "127.0.0.1:8080");
        assert_eq!(check(&all, "http://10.0.0.1/"), Ok(()));
        assert_eq!(check(&all, "http://localhost:3000/hook"), Ok(()));
        assert_eq!(check(&all, "http://[::1]:3000/hook"), Ok(()));
        assert!(check(&all, "http://[::1]:8080/api/webhooks").is_err());
        assert!(check(&all, "http://0.0.0.0:8080/").is_err());
        // Another loopback port is another app.
        assert_eq!(check(&all, "http://127.0.0.1:8081/api/webhooks"), Ok(()));
    }

    #[test]
    fn own_addresses_follow_the_bind_address() {
        let loopback = OwnServer::new("127.0.0.1:8080".parse().unwrap());
        assert!(loopback.is_own_ip(ip("127.0.0.1")));
        assert!(loopback.is_own_ip(ip("::ffff:127.0.0.1")));
        assert!(loopback.is_own_ip(ip("::1")));
        assert!(!loopback.is_own_ip(ip("8.8.8.8")));
        assert_eq!(loopback.connect_addr(), "127.0.0.1:8080".parse().unwrap());
        let everywhere = OwnServer::new("[::]:8080".parse().unwrap());
        assert!(everywhere.is_own_ip(ip("0.0.0.0")));
        assert!(everywhere.is_own_ip(ip("127.0.0.5")));
        assert!(!everywhere.is_own_ip(ip("8.8.8.8")));
        assert_eq!(everywhere.connect_addr(), "[::1]:8080".parse().unwrap());
        let specific = OwnServer::new("192.0.2.10:8080".parse().unwrap());
        assert!(specific.is_own_ip(ip("192.0.2.10")));
        assert!(!specific.is_own_ip(ip("127.0.0.1")));
    }

    #[tokio::test]
    async fn prepare_sends_own_bins_to_this_server_and_checks_literals() {
        let o = outbound(OutboundPolicy::PublicOnly, "0.0.0.0:8080");
        let c = o.client(|b| b);
        let prep = |u: &str| c.prepare(Url::parse(u).unwrap());
        let p = prep("https://hooks.example.test/b/inbox/deep?a=1")
            .await
            .unwrap();
        assert_eq!(p.url.as_str(), "http://127.0.0.1:8080/b/inbox/deep?a=1");
        assert_eq!(p.host.unwrap(), "hooks.example.test");
        // A name on this server's port that resolves to it, at a bin: straight to it too.
        let p = prep("http://rebind.test:8080/b/inbox").await.unwrap();
        assert_eq!(p.url.as_str(), "http://127.0.0.1:8080/b/inbox");
        assert_eq!(p.host.unwrap(), "rebind.test:8080");
        assert!(prep("http://10.0.0.1/").await.is_err());
        assert!(prep("http://localhost:8080/api/bins").await.is_err());
        // Names go on to the resolver (checked when connecting).
        let p = prep("http://rebind.test:9/").await.unwrap();
        assert!(p.host.is_none());
    }

    #[tokio::test]
    async fn the_resolver_drops_refused_addresses_and_names_them() {
        let o = outbound(OutboundPolicy::PublicOnly, "127.0.0.1:8080");
        let e = o
            .screen("rebind.test", vec![ip("127.0.0.1"), ip("10.1.2.3")], false)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "refused by --outbound-policy public-only: rebind.test resolved to 127.0.0.1 (a \
             loopback address), 10.1.2.3 (a private address (RFC 1918))"
        );
        assert_eq!(
            o.screen("mixed.test", vec![ip("10.1.2.3"), ip("8.8.8.8")], false),
            Ok(vec![ip("8.8.8.8")])
        );
        // Under `all`, only this server's own address on its own port is dropped.
        let all = outbound(OutboundPolicy::All, "127.0.0.1:8080");
        assert_eq!(
            all.screen("rebind.test", vec![ip("127.0.0.1")], false),
            Ok(vec![ip("127.0.0.1")])
        );
        let e = all
            .screen("rebind.test", vec![ip("127.0.0.1")], true)
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("127.0.0.1 (this server on port 8080"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_refusal_at_connect_time_is_found_in_the_error_and_nothing_connects() {
        // A real listener on loopback: the request must never reach it.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let o = outbound(OutboundPolicy::PublicOnly, "127.0.0.1:1");
        let c = o.client(|b| b.timeout(std::time::Duration::from_secs(5)));
        // `localhost` through the system resolver, `rebind.test` through the configured hosts.
        for host in ["localhost", "rebind.test"] {
            let url = Url::parse(&format!("http://{host}:{port}/hook")).unwrap();
            let p = c.prepare(url).await.unwrap();
            let e = p
                .request(reqwest::Method::POST)
                .send()
                .await
                .expect_err("refused");
            let r = refusal(&e).unwrap_or_else(|| panic!("no refusal in {e:?}"));
            assert!(
                matches!(r, Refused::Resolved { host: h, .. } if h == host),
                "{r}"
            );
            let text = r.to_string();
            assert!(text.contains("127.0.0.1") || text.contains("::1"), "{text}");
            assert!(text.contains("public-only"), "{text}");
        }
        assert_eq!(
            listener.accept().unwrap_err().kind(),
            std::io::ErrorKind::WouldBlock,
            "a refused request connected"
        );
        assert_eq!(o.refused_total(), 2);
    }
}
