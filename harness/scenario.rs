//! Scenario files as written: the raw TOML shape, read with serde and
//! `deny_unknown_fields`. Nothing here is validated beyond types; [`crate::plan`]
//! turns a [`Scenario`] into a checked plan and names the field at fault.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A human name, shown in reports.
    pub name: String,
    /// `"HOST:PORT"`, or `"embedded"` to start sockcap's own target on a free port.
    pub target: String,
    /// `"tcp"` or `"mqtt"`.
    pub protocol: String,
    /// Source addresses for the client sockets (`"127.0.0.2"` or a range
    /// `"127.0.0.2-127.0.0.9"`); by default the kernel's choice, or several
    /// 127.x addresses for a loopback target.
    pub sources: Option<Vec<String>>,
    /// How often the census is sampled during a phase (default `"1s"`).
    pub sample_every: Option<String>,
    /// MQTT options.
    pub mqtt: Option<MqttSection>,
    /// Options of the embedded target (with `target = "embedded"`).
    pub embedded: Option<EmbeddedSection>,
    /// Client behaviour.
    pub client: Option<ClientSection>,
    /// Run client and embedded target in a private network namespace.
    pub netns: Option<NetnsSection>,
    /// When the run is invalid: the generator was the bottleneck.
    pub validity: Option<ValiditySection>,
    /// The phases, run in order.
    #[serde(default, rename = "phase")]
    pub phases: Vec<PhaseSection>,
}

/// `[validity]`: past these, sockcap itself was the bottleneck and the run is invalid.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValiditySection {
    /// The schedule's lateness p99 limit, e.g. `"100ms"`.
    pub lateness_p99: Option<String>,
    /// sockcap's CPU share limit, e.g. `"90%"` of the cores it may use.
    pub cpu: Option<String>,
}

/// `[mqtt]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSection {
    /// Client id template: `{n}` is the connection number, `{worker}` the worker index.
    pub client_id: Option<String>,
    /// Keep-alive interval, e.g. `"30s"`: PINGREQ is sent at this interval during holds.
    pub keep_alive: Option<String>,
    pub clean_session: Option<bool>,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// `[embedded]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddedSection {
    /// `"close"` (default) or `"hold"`: what the target does when a client half-closes.
    pub on_eof: Option<String>,
    /// Listen backlog (default 65535, clamped by net.core.somaxconn).
    pub backlog: Option<i64>,
    /// `false`: listen but never accept (SYN_SENT on clients once the queue is full).
    pub accept: Option<bool>,
    /// TCP_DEFER_ACCEPT, e.g. `"30s"`: silent clients stay SYN_RECV on the server.
    pub defer_accept: Option<String>,
    /// `false`: never read, so the clients' data fills the window.
    pub read: Option<bool>,
    /// Send FIN (shutdown write) this long after accepting, e.g. `"2s"`.
    pub shutdown_after: Option<String>,
    /// Processes sharing the port with SO_REUSEPORT (default 1; a run starts more
    /// when the peak needs them to stay under each one's descriptor limit).
    pub workers: Option<i64>,
}

/// `[client]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSection {
    /// `"close"` (default): a connection the target closes is closed and counted as lost;
    /// `"hold"`: it is kept open (CLOSE_WAIT) until a close phase or the end of the run.
    pub on_eof: Option<String>,
    /// Reconnect lost connections: `{ backoff = "100ms..10s", jitter = "full", max_attempts = 20, timeout = "10s" }`;
    /// absent: a lost connection stays lost.
    pub reconnect: Option<ReconnectSection>,
}

/// `[client] reconnect = { backoff, jitter, max_attempts, timeout }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconnectSection {
    /// `"FLOOR..CEILING"`, e.g. `"100ms..10s"`: the first wait, doubled each attempt up to the ceiling.
    pub backoff: String,
    /// `"none"`, `"full"` (default) or `"equal"`.
    pub jitter: Option<String>,
    /// Attempts per loss before the connection is given up (default: no limit).
    pub max_attempts: Option<i64>,
    /// Time allowed to one attempt, from its dial to its CONNACK (default `"10s"`).
    pub timeout: Option<String>,
}

/// `[netns]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetnsSection {
    /// Per-namespace sysctls set before the run: `ip_local_port_range = "40000 40499"`,
    /// `tcp_tw_reuse = 0`, ... (net.* only).
    #[serde(default)]
    pub sysctl: BTreeMap<String, toml::Value>,
}

/// One `[[phase]]`: a name, exactly one action, and expectations.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseSection {
    pub name: Option<String>,
    pub connect: Option<ConnectSection>,
    /// Hold duration, e.g. `"30s"`.
    pub hold: Option<String>,
    pub close: Option<CloseSection>,
    /// Sleep duration, e.g. `"5s"`.
    pub sleep: Option<String>,
    pub churn: Option<ChurnSection>,
    /// Source addresses for this phase's new connections (overrides the scenario's).
    pub sources: Option<Vec<String>>,
    /// Sysctls set when the phase starts (only with `[netns]`).
    pub sysctl: Option<BTreeMap<String, toml::Value>>,
    /// Expectations: metric → `"OP VALUE"` (e.g. `established = ">= 5000"`).
    #[serde(default)]
    pub expect: BTreeMap<String, toml::Value>,
}

/// `connect = { count, rate, timeout, max_inflight }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectSection {
    pub count: i64,
    pub rate: f64,
    /// Time allowed from the scheduled instant to a finished handshake (default `"10s"`).
    pub timeout: Option<String>,
    /// Handshakes in flight at once (default 2000).
    pub max_inflight: Option<i64>,
    /// `false`: the phase ends once every connect has started, without waiting for
    /// outcomes (for connections that never complete, e.g. SYN_SENT).
    pub wait: Option<bool>,
}

/// `churn = { rate, duration | count, how, timeout }`: connect and close at once, in a loop.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChurnSection {
    pub rate: f64,
    pub duration: Option<String>,
    pub count: Option<i64>,
    /// Close mode of each connection (default `"fin"`).
    pub how: Option<String>,
    /// Handshake timeout from the scheduled instant (default `"10s"`).
    pub timeout: Option<String>,
}

/// `close = { how, rate, count | fraction, timeout }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloseSection {
    pub how: String,
    pub rate: f64,
    pub count: Option<i64>,
    pub fraction: Option<f64>,
    /// Time to wait for the peer's FIN where the mode waits for one (default `"5s"`).
    pub timeout: Option<String>,
    /// Write until the socket's send buffer is full before closing (with a target that
    /// does not read: the FIN stays queued behind data, FIN_WAIT_1 / CLOSING / LAST_ACK).
    pub fill: Option<bool>,
}
