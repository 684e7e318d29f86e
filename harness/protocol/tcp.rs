//! Raw TCP, the client side: a session is open once connected, has no keep-alive ping
//! and no goodbye, and what the target sends is bytes to take and ignore.

use std::io;

use tokio::net::TcpStream;

use super::session::{Answer, Hello, Readout};

/// No hello: nothing to append.
pub fn hello(_: &Hello, _: &mut Vec<u8>) {}

/// There is no answer to wait for: any bytes are the target's business.
pub fn answer(_: &[u8]) -> Answer {
    Answer::Accepted { server_keep_alive_s: None }
}

/// Take what was received, up to a small stack buffer's worth, and ignore it. Also how
/// every protocol drains a connection it is closing: nothing said then matters.
pub fn receive(stream: &TcpStream) -> Readout {
    let mut buf = [0u8; 64];
    match stream.try_read(&mut buf) {
        Ok(0) => Readout::Eof,
        Ok(_) => Readout::Data { pong: false },
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Readout::Nothing,
        Err(e) => Readout::Failed(e),
    }
}
