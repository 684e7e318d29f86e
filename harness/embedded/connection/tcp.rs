//! Raw TCP, the server side: nothing to answer. The connection is held and what
//! arrives is discarded; the session closes it on the peer's FIN, or holds it
//! (`on_eof`).

use super::exchange::Step;

/// A raw TCP connection: no handshake, no state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RawTcp;

impl RawTcp {
    /// Discards `data`: every byte is used, nothing is answered.
    pub fn on_packets(&mut self, data: &[u8]) -> (usize, Step) {
        (data.len(), Step::Continue)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use crate::embedded::testing::{assert_closed_by_server, assert_still_open, TestServer as Server};
    use crate::protocol::Protocol;

    #[tokio::test]
    async fn tcp_holds_discards_and_closes_on_peer_eof() {
        let server = Server::start(Protocol::Tcp).await;
        let mut client = server.connect().await;
        client.write_all(&[0xAB; 10_000]).await.unwrap();
        assert_still_open(&mut client).await;
        client.shutdown().await.unwrap();
        assert_closed_by_server(&mut client).await;
        let summary = server.stop().await;
        assert_eq!((summary.accepted, summary.connects), (1, 0));
    }
}
