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
    /// `"tcp"` (default) or `"tls"`: what the protocol runs over.
    pub transport: Option<String>,
    /// TLS options (with `transport = "tls"` or `"wss"`).
    pub tls: Option<TlsSection>,
    /// WebSocket options (with `transport = "ws"` or `"wss"`).
    pub ws: Option<WsSection>,
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
    /// `sockcap search`: what to step and the objectives (ignored by `sockcap run`).
    pub search: Option<SearchSection>,
}

/// `[search]`: the limit `sockcap search` looks for, how it steps, and the objectives
/// (checked in `search/spec.rs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchSection {
    /// `"rate"` (connects per second) or `"concurrency"` (connections held).
    pub mode: String,
    /// The first step's level.
    pub from: f64,
    /// The highest level tried.
    pub to: f64,
    /// Added to the level at each climbing step (or `factor`).
    pub step: Option<f64>,
    /// The level multiplied by this at each climbing step (or `step`).
    pub factor: Option<f64>,
    /// Stop bisecting when the last good and first bad levels are this close:
    /// `"2%"` of the good level, or a number in the level's unit (default `"5%"`).
    pub resolution: Option<toml::Value>,
    /// Rate mode: connections in each step's ramp (default 2000).
    pub ramp: Option<i64>,
    /// Concurrency mode: how long each step's connections are held (default `"5s"`).
    pub hold: Option<String>,
    /// Concurrency mode: the connect rate of each step's climb (default 1000/s).
    pub rate: Option<f64>,
    /// Pause between steps, after their connections are closed (default `"2s"`).
    pub cool_down: Option<String>,
    /// Handshake timeout of each step's connects (default `"10s"`).
    pub timeout: Option<String>,
    /// Steps at most, climbing and bisecting (default 30).
    pub max_steps: Option<i64>,
    /// Objectives judged on each step: metric → `"OP VALUE"`, the grammar of a phase's `expect`.
    #[serde(default)]
    pub objectives: BTreeMap<String, toml::Value>,
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
    /// `4` (MQTT 3.1.1, the default) or `5`; also `"3.1.1"` and `"5"`.
    pub version: Option<toml::Value>,
    /// MQTT 5: Session Expiry Interval, e.g. `"0s"`, `"1h"`.
    pub session_expiry: Option<String>,
    /// MQTT 5: Receive Maximum (1..=65535).
    pub receive_maximum: Option<i64>,
    /// MQTT 5: Maximum Packet Size the client accepts (1..=4294967295).
    pub maximum_packet_size: Option<i64>,
    /// MQTT 5: User Properties sent with CONNECT, `{ name = "value" }`.
    pub user_properties: Option<BTreeMap<String, String>>,
}

/// `[ws]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WsSection {
    /// The request path (default `"/mqtt"`).
    pub path: Option<String>,
    /// Extra request headers, e.g. `{ Authorization = "Bearer x" }`.
    pub headers: Option<BTreeMap<String, String>>,
}

/// `[tls]`. Paths are relative to the scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM file of the certificates to trust; absent: the system's roots (or, against
    /// the embedded target, its own self-signed certificate).
    pub ca: Option<String>,
    /// SNI and the name checked in the certificate; default: the target's host.
    pub server_name: Option<String>,
    /// Client certificate chain (PEM), for mTLS; with `key`.
    pub cert: Option<String>,
    /// The client certificate's private key (PEM).
    pub key: Option<String>,
    /// ALPN protocols to offer, e.g. `["mqtt"]`.
    pub alpn: Option<Vec<String>>,
    /// Session resumption across a worker's connections (default true).
    pub resumption: Option<bool>,
    /// Skip verifying the target's certificate (said in the report).
    pub insecure: Option<bool>,
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
    /// Network emulation on the namespace's loopback for the whole run:
    /// `netem = { delay = "50ms", jitter = "10ms", loss = "1%" }`.
    pub netem: Option<NetemSection>,
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
    /// Subscribe held MQTT connections: `{ topic = "bench/{n}", qos, clients = "0..5000" }`.
    pub subscribe: Option<SubscribeSection>,
    /// Publish from held MQTT connections: `{ topic, qos, clients, rate, size, duration | count, max_inflight }`.
    pub publish: Option<PublishSection>,
    /// Source addresses for this phase's new connections (overrides the scenario's).
    pub sources: Option<Vec<String>>,
    /// Sysctls set when the phase starts (only with `[netns]`).
    pub sysctl: Option<BTreeMap<String, toml::Value>>,
    /// Event: run a command when the phase starts, `{ command = ["prog", "arg"], timeout = "30s" }`.
    pub exec: Option<ExecSection>,
    /// Event: a fault on purpose when the phase starts, `{ restart_target = "2s" }` (embedded target).
    pub fault: Option<FaultSection>,
    /// Event: change the namespace's network emulation when the phase starts (with `[netns]`);
    /// `netem = {}` heals.
    pub netem: Option<NetemSection>,
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

/// `exec = { command, timeout }`: a command run (without a shell) when the phase starts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecSection {
    /// The program and its arguments.
    pub command: Vec<String>,
    /// How long it may run before it is killed (default `"30s"`).
    pub timeout: Option<String>,
}

/// `fault = { restart_target }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSection {
    /// Kill the embedded target's processes at once and start them again on the same port
    /// after this pause, e.g. `"2s"`.
    pub restart_target: Option<String>,
}

/// `netem = { delay, jitter, loss }`: `tc qdisc replace dev lo root netem ...` in the
/// run's namespace; every key absent (`{}`) takes the emulation away.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetemSection {
    /// Added to every packet, e.g. `"50ms"`.
    pub delay: Option<String>,
    /// Variation of the delay, e.g. `"10ms"` (needs `delay`).
    pub jitter: Option<String>,
    /// Packets dropped, e.g. `"1%"`; `"100%"` is a partition.
    pub loss: Option<String>,
}

/// `subscribe = { topic, qos, clients, timeout }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscribeSection {
    /// Topic filter with `{n}` placeholders (`{n}`, `{n - K}`, `{n + K}`, `{n % K}`).
    pub topic: String,
    pub qos: Option<i64>,
    /// Connection numbers `"a..b"` (default: every held connection).
    pub clients: Option<String>,
    /// From SUBSCRIBE to SUBACK (default `"10s"`).
    pub timeout: Option<String>,
}

/// `publish = { topic, qos, clients, rate, size, duration | count, max_inflight, timeout, drain }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishSection {
    pub topic: String,
    pub qos: Option<i64>,
    pub clients: Option<String>,
    /// Messages per second, all publishers together.
    pub rate: f64,
    /// Payload bytes (default and least: 24, the header).
    pub size: Option<i64>,
    pub duration: Option<String>,
    pub count: Option<i64>,
    /// Unacknowledged messages per publisher (default 16).
    pub max_inflight: Option<i64>,
    /// From a message's scheduled instant to its PUBACK / PUBCOMP (default `"10s"`).
    pub timeout: Option<String>,
    /// Wait for deliveries after the last scheduled message (default `"2s"`).
    pub drain: Option<String>,
}
