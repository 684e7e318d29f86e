//! What the client engine and a protocol's client side say to each other about one
//! session: the [`Hello`] that opens it, the target's [`Answer`], and what a read of a
//! held connection found ([`Readout`]). Protocol-neutral: each protocol's file turns
//! them into its own packets.

use std::io;

/// What a client introduces itself with when a protocol opens a session with a hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello<'a> {
    /// The client identifier, its template already filled.
    pub client_id: &'a str,
    /// Keep-alive interval in seconds; 0 disables keep-alive.
    pub keep_alive_s: u16,
    /// Ask the target to discard any previous session state.
    pub clean_session: bool,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
}

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
    Data { pong: bool },
    /// The target closed its end.
    Eof,
    /// Nothing to take yet (the socket's readiness is cleared).
    Nothing,
    Failed(io::Error),
}
