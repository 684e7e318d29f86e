//! What passes between a connection's session and the server side of its protocol
//! on each read: the protocol's replies ([`Replies`]) and what the connection does
//! next ([`Step`]).

/// Reply bytes gathered on the stack per read before they spill into a `Vec`.
const REPLY_STACK: usize = 64;

/// What the connection does after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    Continue,
    /// Close the socket (return from the session).
    Close,
    /// The peer's FIN arrived: close or hold, as [`OnEof`](crate::protocol::OnEof) says.
    Eof,
}

/// The replies to one read: on the stack, spilling into a `Vec` only for a
/// long burst of pipelined requests.
pub(super) struct Replies {
    stack: [u8; REPLY_STACK],
    len: usize,
    spill: Vec<u8>,
    /// Filters (and QoS) the client subscribed to in this read: the session registers
    /// them with the router before the SUBACK goes out.
    pub subscriptions: Vec<(String, u8)>,
    /// The client speaks MQTT 5 (how messages to it are encoded).
    pub v5: bool,
}

impl Replies {
    pub fn new() -> Self {
        Replies { stack: [0; REPLY_STACK], len: 0, spill: Vec::new(), subscriptions: Vec::new(), v5: false }
    }

    pub fn push(&mut self, reply: &[u8]) {
        if self.spill.is_empty() && self.len + reply.len() <= REPLY_STACK {
            self.stack[self.len..self.len + reply.len()].copy_from_slice(reply);
            self.len += reply.len();
            return;
        }
        if self.spill.is_empty() {
            self.spill.extend_from_slice(&self.stack[..self.len]);
        }
        self.spill.extend_from_slice(reply);
    }

    pub fn as_slice(&self) -> &[u8] {
        if self.spill.is_empty() {
            &self.stack[..self.len]
        } else {
            &self.spill
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_spill_past_the_stack_buffer_in_order() {
        let mut replies = Replies::new();
        for i in 0..REPLY_STACK {
            replies.push(&[i as u8, 0xFF]);
        }
        let bytes = replies.as_slice();
        assert_eq!(bytes.len(), REPLY_STACK * 2);
        assert!(bytes.chunks(2).enumerate().all(|(i, c)| c == [i as u8, 0xFF]));
    }
}
