//! What the client engine and a protocol's client side say to each other about one
//! session: the [`Hello`] that opens it, the target's [`Answer`], and what a read of a
//! held connection found ([`Readout`]). Each protocol's file turns them into its own
//! packets; the hello is in the terms of MQTT, the one protocol that greets today.

use std::io;

use super::mqtt::Connect;

/// What a client introduces itself with when a protocol opens a session with a hello:
/// client id, keep-alive, clean session, credentials. These are MQTT's terms, and MQTT's
/// CONNECT fields serve as they are; a protocol that greets with more (MQTT 5's
/// properties) adds them in its own file.
pub type Hello<'a> = Connect<'a>;

/// What the bytes received since a hello say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Not the whole answer yet: read more.
    Incomplete,
    /// The target accepted the session.
    Accepted,
    /// The target refused it.
    Refused,
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
    /// Nothing to take yet (the socket's readiness is cleared).
    Nothing,
    Failed(io::Error),
}
