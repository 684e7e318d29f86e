//! What the client engine and a protocol's client side say to each other about one
//! session: the [`Hello`] that opens it, the target's [`Answer`], and what a read of a
//! held connection found ([`Readout`]). Each protocol's file turns them into its own
//! packets; the hello is in the terms of MQTT, the one protocol that greets today.

use std::io;

use super::mqtt::Connect;

/// What a client introduces itself with when a protocol opens a session with a hello:
/// client id, keep-alive, clean session, credentials. These are MQTT's terms, and MQTT's
/// CONNECT fields serve as they are (MQTT 5's properties among them).
pub type Hello<'a> = Connect<'a>;

/// What the bytes received since a hello say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Not the whole answer yet: read more.
    Incomplete,
    /// The target accepted the session; `server_keep_alive_s`: the keep-alive it told
    /// the client to use instead of its own (MQTT 5's Server Keep Alive).
    Accepted { server_keep_alive_s: Option<u16> },
    /// The target refused it with this code (MQTT: the CONNACK's return or reason code).
    Refused { code: u8 },
    /// Not the answer the protocol expects (another packet, or bytes that are not the protocol).
    Unexpected,
}

/// What a read while holding found.
#[derive(Debug)]
pub enum Readout {
    /// Bytes came (and were taken); `pong`: the answer to a keep-alive ping among them.
    Data {
        pong: bool,
    },
    /// The target closed its end.
    Eof,
    /// The target said goodbye with this reason code (MQTT 5's DISCONNECT from a server).
    Disconnected {
        reason: u8,
    },
    /// The target began an authentication exchange the client never asked for (MQTT 5's AUTH).
    Auth {
        reason: u8,
    },
    /// Nothing to take yet (the socket's readiness is cleared).
    Nothing,
    Failed(io::Error),
}
