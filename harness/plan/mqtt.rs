//! MQTT session options (`[mqtt]`): [`MqttOptions`].

use std::time::Duration;

use super::error::{Check, PlanError};
use crate::scenario::MqttSection;

/// MQTT session options.
#[derive(Debug, Clone)]
pub struct MqttOptions {
    /// Template with `{n}` (connection number) and optionally `{worker}`.
    pub client_id: String,
    /// PINGREQ interval during holds; zero disables pings.
    pub keep_alive: Duration,
    pub clean_session: bool,
    pub username: Option<String>,
    pub password: Option<String>,
}

pub(super) fn mqtt_options(check: &Check, m: Option<&MqttSection>) -> Result<MqttOptions, PlanError> {
    let client_id = m.and_then(|m| m.client_id.clone()).unwrap_or_else(|| "sockcap-{worker}-{n}".into());
    if !client_id.contains("{n}") {
        return Err(check.err(
            "mqtt.client_id",
            format!("`{client_id}` has no `{{n}}`: every client would use the same id and the broker would drop all but one; add {{n}}"),
        ));
    }
    let stripped = client_id.replace("{n}", "").replace("{worker}", "");
    if stripped.contains('{') || stripped.contains('}') {
        return Err(check.err("mqtt.client_id", "only `{n}` and `{worker}` may appear in braces"));
    }
    let keep_alive = match m.and_then(|m| m.keep_alive.as_deref()) {
        None => Duration::from_secs(30),
        Some(t) => check.duration("mqtt.keep_alive", t)?,
    };
    if keep_alive.as_secs() > u64::from(u16::MAX) {
        return Err(check.err("mqtt.keep_alive", "MQTT keep-alive is at most 65535s (18h12m15s)"));
    }
    Ok(MqttOptions {
        client_id,
        keep_alive,
        clean_session: m.and_then(|m| m.clean_session).unwrap_or(true),
        username: m.and_then(|m| m.username.clone()),
        password: m.and_then(|m| m.password.clone()),
    })
}
