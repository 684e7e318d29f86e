//! The WebSocket transport, the client side (tokio-tungstenite): the HTTP upgrade on a
//! connected TCP or TLS stream (`ws`, `wss`), to `[ws] path` with the subprotocol
//! `mqtt` and the scenario's extra headers ([`WsClient`]); the protocol's bytes then
//! travel as binary messages. Failed upgrades count `ws_upgrade` ([`classify`]).
//!
//! Memory: tungstenite's read buffer is allocated eagerly per connection (128 KiB by
//! default); a held MQTT connection reads a 2-byte PINGRESP now and then, so
//! [`config`] asks for [`READ_BUFFER`] bytes and no write buffering.

use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::WebSocketStream;

use super::stream::Stream;
use super::tls::TlsConfigError;
use crate::failure::ErrorKind;

/// tungstenite's read buffer per connection.
pub const READ_BUFFER: usize = 512;

/// The subprotocol MQTT over WebSocket asks for (MQTT 3.1.1, section 6).
pub const SUBPROTOCOL: &str = "mqtt";

/// The scenario's `[ws]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsSettings {
    /// The request path (default `/mqtt`).
    pub path: String,
    /// Extra request headers, in order.
    pub headers: Vec<(String, String)>,
}

/// A worker's WebSocket client: what every upgrade request carries.
#[derive(Debug, Clone)]
pub struct WsClient {
    /// `ws://HOST/PATH` or `wss://HOST/PATH`.
    uri: String,
    headers: Vec<(HeaderName, HeaderValue)>,
}

/// The WebSocket settings both sides use: a small read buffer, no write buffering.
pub fn config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(READ_BUFFER).write_buffer_size(0)
}

impl WsClient {
    /// `host` is the `Host` header's value (the target's host and port).
    pub fn new(settings: &WsSettings, host: &str, secure: bool) -> Result<WsClient, TlsConfigError> {
        if !settings.path.starts_with('/') || settings.path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(TlsConfigError {
                field: "ws.path",
                message: format!("`{}` is not a request path; write e.g. \"/mqtt\"", settings.path),
            });
        }
        let mut headers = Vec::new();
        for (name, value) in &settings.headers {
            let bad = |what: &str| TlsConfigError {
                field: "ws.headers",
                message: format!("`{name}`: {what}; write e.g. headers = {{ Authorization = \"Bearer x\" }}"),
            };
            let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad("not a header name"))?;
            let value = HeaderValue::from_str(value).map_err(|_| bad("its value is not a header value"))?;
            headers.push((header, value));
        }
        let scheme = if secure { "wss" } else { "ws" };
        Ok(WsClient { uri: format!("{scheme}://{host}{}", settings.path), headers })
    }

    /// The upgrade on a connected stream; the target must choose the `mqtt` subprotocol.
    pub async fn upgrade(&self, stream: Stream) -> Result<WebSocketStream<Stream>, WsError> {
        let mut request = self.uri.as_str().into_client_request()?;
        let fields = request.headers_mut();
        fields.insert("Sec-WebSocket-Protocol", HeaderValue::from_static(SUBPROTOCOL));
        for (name, value) in &self.headers {
            fields.append(name.clone(), value.clone());
        }
        let (ws, _response) = tokio_tungstenite::client_async_with_config(request, stream, Some(config())).await?;
        Ok(ws)
    }
}

/// The failure kind of an upgrade's error: every one is `ws_upgrade` (an HTTP refusal,
/// no `mqtt` subprotocol, EOF, or a reset: a target that does not speak WebSocket, such
/// as a plain MQTT listener, closes on the request it cannot read, which unread bytes
/// turn into an RST).
pub fn classify(_: &WsError) -> (ErrorKind, Option<i32>) {
    (ErrorKind::WsUpgrade, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_paths_and_headers_name_the_field() {
        let settings = |path: &str, headers: &[(&str, &str)]| WsSettings {
            path: path.into(),
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
        };
        assert_eq!(WsClient::new(&settings("mqtt", &[]), "h:1", false).unwrap_err().field, "ws.path");
        assert_eq!(
            WsClient::new(&settings("/mqtt", &[("bad name", "x")]), "h:1", false).unwrap_err().field,
            "ws.headers"
        );
        let ok = WsClient::new(&settings("/mqtt", &[("X-Token", "abc")]), "127.0.0.1:80", true).unwrap();
        assert_eq!(ok.uri, "wss://127.0.0.1:80/mqtt");
    }
}
