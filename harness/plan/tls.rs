//! The transport (`transport`, default `"tcp"`), `[tls]` and `[ws]`: paths resolved
//! against the scenario's directory, the client's TLS config built once here so that a
//! bad file is bad input (exit 2) before anything runs, and kept in the plan for every
//! worker; likewise the WebSocket client (path, headers).

use std::path::{Path, PathBuf};

use super::error::{Check, PlanError};
use super::target::TargetSpec;
use crate::scenario::{TlsSection, WsSection};
use crate::transport::{TlsClient, TlsSettings, Transport, WsClient, WsSettings};

/// The scenario's transport and, for TLS, its settings and the client built from them.
/// Against the embedded target with no `ca` (and not `insecure`), the client waits for
/// the target's own CA file ([`TransportPlan::trust_embedded_ca`]).
#[derive(Debug, Clone)]
pub struct TransportPlan {
    pub transport: Transport,
    /// `[tls]` as given (paths resolved), for TLS.
    pub tls: Option<TlsSettings>,
    /// The one client config every connection of a worker shares; `None` for TCP, and
    /// for TLS against the embedded target until its CA is known.
    pub client: Option<TlsClient>,
    /// The WebSocket client, for `ws` and `wss`.
    pub ws: Option<WsClient>,
    /// The name the embedded target's certificate is checked against (SNI).
    host: String,
}

/// The transport with its `[ws]` client, for `ws` and `wss`.
pub(super) fn transport_plan(
    check: &Check,
    transport: Option<&str>,
    tls: Option<&TlsSection>,
    ws: Option<&WsSection>,
    target_text: &str,
    target: TargetSpec,
) -> Result<TransportPlan, PlanError> {
    let mut plan = tls_plan(check, transport, tls, target_text, target)?;
    if !plan.transport.uses_ws() {
        if ws.is_some() {
            return Err(check.err("ws", "a [ws] section needs transport = \"ws\" or \"wss\"; add it or remove [ws]"));
        }
        return Ok(plan);
    }
    let settings = WsSettings {
        path: ws.and_then(|w| w.path.clone()).unwrap_or_else(|| "/mqtt".to_string()),
        headers: ws.and_then(|w| w.headers.clone()).unwrap_or_default().into_iter().collect(),
    };
    let host = match target {
        TargetSpec::Embedded => "127.0.0.1".to_string(),
        TargetSpec::Addr(_) => target_text.trim().to_string(),
    };
    let client =
        WsClient::new(&settings, &host, plan.transport.uses_tls()).map_err(|e| check.err(e.field, e.message))?;
    plan.ws = Some(client);
    Ok(plan)
}

fn tls_plan(
    check: &Check,
    transport: Option<&str>,
    tls: Option<&TlsSection>,
    target_text: &str,
    target: TargetSpec,
) -> Result<TransportPlan, PlanError> {
    let transport = match transport {
        None => Transport::Tcp,
        Some(name) => Transport::parse(name).ok_or_else(|| {
            check.err(
                "transport",
                format!("`{name}` is not a transport sockcap speaks; use \"tcp\", \"tls\", \"ws\" or \"wss\""),
            )
        })?,
    };
    let host = match target {
        TargetSpec::Embedded => "127.0.0.1".to_string(),
        TargetSpec::Addr(addr) => host_of(target_text).unwrap_or_else(|| addr.ip().to_string()),
    };
    let Some(section) = tls else {
        if transport.uses_tls() {
            let settings = TlsSettings { resumption: true, ..TlsSettings::default() };
            return build(check, transport, settings, host, target);
        }
        return Ok(TransportPlan { transport, tls: None, client: None, ws: None, host });
    };
    if !transport.uses_tls() {
        return Err(check.err("tls", "a [tls] section needs transport = \"tls\" or \"wss\"; add it or remove [tls]"));
    }
    let dir = check.file.parent().unwrap_or(Path::new("."));
    let resolve = |p: &Option<String>| p.as_ref().map(|p| dir.join(p));
    let settings = TlsSettings {
        ca: resolve(&section.ca),
        server_name: section.server_name.clone(),
        cert: resolve(&section.cert),
        key: resolve(&section.key),
        alpn: section.alpn.clone().unwrap_or_default(),
        resumption: section.resumption.unwrap_or(true),
        insecure: section.insecure.unwrap_or(false),
    };
    if settings.insecure && settings.ca.is_some() {
        return Err(
            check.err("tls.insecure", "insecure = true verifies nothing, so `ca` would not be used; remove one")
        );
    }
    build(check, transport, settings, host, target)
}

fn build(
    check: &Check,
    transport: Transport,
    settings: TlsSettings,
    host: String,
    target: TargetSpec,
) -> Result<TransportPlan, PlanError> {
    let waits = target == TargetSpec::Embedded && settings.ca.is_none() && !settings.insecure;
    let client =
        if waits { None } else { Some(TlsClient::new(&settings, &host).map_err(|e| check.err(e.field, e.message))?) };
    Ok(TransportPlan { transport, tls: Some(settings), client, ws: None, host })
}

/// The host part of `HOST:PORT` when it is a name (not an address).
fn host_of(target: &str) -> Option<String> {
    let (host, _) = target.trim().rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| host.to_string())
}

impl TransportPlan {
    /// Whether connections are TLS whose client still waits for the embedded target's CA.
    pub fn needs_embedded_ca(&self) -> bool {
        self.transport.uses_tls() && self.client.is_none()
    }

    /// Trust the CA file the embedded target wrote (its self-signed certificate), when
    /// the scenario gives no `ca` of its own.
    pub fn trust_embedded_ca(&mut self, ca: &Path) -> Result<(), PlanError> {
        let Some(settings) = self.tls.as_mut().filter(|_| self.client.is_none()) else { return Ok(()) };
        settings.ca = Some(PathBuf::from(ca));
        let client = TlsClient::new(settings, &self.host).map_err(|e| PlanError {
            file: ca.to_path_buf(),
            field: e.field.to_string(),
            message: format!("the embedded target's CA: {}", e.message),
        })?;
        self.client = Some(client);
        Ok(())
    }

    /// `insecure = true`: the target's certificate is not verified.
    pub fn insecure(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.insecure)
    }
}
