//! One connection of the embedded target, as a stack:
//!
//! - `session`: the connection's life over TCP, whatever it speaks: the one
//!   task per connection, reading and writing without blocking, and the
//!   misbehaviours of [`ServeOptions`](super::ServeOptions) (`read: false`,
//!   `shutdown_after`, `on_eof`).
//! - `protocol`: the server side of the protocol it speaks, chosen by
//!   [`Protocol`](crate::protocol::Protocol) — `tcp` (nothing to answer),
//!   `mqtt` (MQTT 3.1.1) — each in its own file.
//! - `tls`: the session over TLS (the handshake, then the same exchange).
//! - `ws`: the session over WebSocket, plain or over TLS (the upgrade, then the same
//!   exchange in binary messages).
//! - `exchange`: what a protocol hands back to the session on each read:
//!   replies and the next step.
//!
//! A new protocol is a new file beside `tcp.rs` and `mqtt.rs` and a variant of
//! `ServerProtocol`; the session does not change.

mod exchange;
mod mqtt;
mod protocol;
mod router;
mod session;
mod tcp;
mod tls;
mod ws;

#[doc(hidden)]
pub use session::replies_to_reads;
pub(super) use session::run;
pub(super) use tls::run as run_tls;
pub(super) use ws::run as run_ws;
