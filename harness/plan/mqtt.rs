//! MQTT session options (`[mqtt]`): [`MqttOptions`], the version (3.1.1 or 5) and
//! MQTT 5's CONNECT properties among them.

use std::time::Duration;

use super::error::{Check, PlanError};
use crate::protocol::mqtt::{ConnectProperties, MAX_FIELD_LEN};
use crate::scenario::MqttSection;

/// MQTT session options.
#[derive(Debug, Clone)]
pub struct MqttOptions {
    /// Template with `{n}` (connection number) and optionally `{worker}`; empty with
    /// MQTT 5: the broker assigns each client its id.
    pub client_id: String,
    /// PINGREQ interval during holds; zero disables pings.
    pub keep_alive: Duration,
    pub clean_session: bool,
    pub username: Option<String>,
    pub password: Option<String>,
    /// `None`: MQTT 3.1.1; `Some`: MQTT 5 with these CONNECT properties.
    pub v5: Option<ConnectProperties>,
}

impl MqttOptions {
    /// The protocol level: 4 (MQTT 3.1.1) or 5.
    pub fn version(&self) -> u8 {
        if self.v5.is_some() {
            5
        } else {
            4
        }
    }
}

const VERSION_FIX: &str = "use version = 4 (MQTT 3.1.1, the default) or version = 5 (MQTT 5)";

/// Whether `[mqtt] version` asks for MQTT 5.
fn wants_v5(check: &Check, m: Option<&MqttSection>) -> Result<bool, PlanError> {
    let Some(v) = m.and_then(|m| m.version.as_ref()) else {
        return Ok(false);
    };
    match v {
        toml::Value::Integer(4) => Ok(false),
        toml::Value::Integer(5) => Ok(true),
        toml::Value::String(s) if matches!(s.as_str(), "4" | "3.1.1") => Ok(false),
        toml::Value::String(s) if matches!(s.as_str(), "5" | "5.0") => Ok(true),
        other => Err(check.err("mqtt.version", format!("`{other}` is not an MQTT version: {VERSION_FIX}"))),
    }
}

/// MQTT 5's CONNECT properties from `[mqtt]`; `None` for 3.1.1, which has none
/// (a property key with 3.1.1 is an error that says so).
fn connect_properties(check: &Check, m: Option<&MqttSection>) -> Result<Option<ConnectProperties>, PlanError> {
    let v5 = wants_v5(check, m)?;
    let Some(m) = m else { return Ok(v5.then(ConnectProperties::default)) };
    if !v5 {
        let given = [
            ("session_expiry", m.session_expiry.is_some()),
            ("receive_maximum", m.receive_maximum.is_some()),
            ("maximum_packet_size", m.maximum_packet_size.is_some()),
            ("user_properties", m.user_properties.is_some()),
        ];
        if let Some((key, _)) = given.iter().find(|(_, set)| *set) {
            let field = format!("mqtt.{key}");
            return Err(check.err(field, "is an MQTT 5 property: add version = 5 to [mqtt], or remove it"));
        }
        return Ok(None);
    }
    let session_expiry_s = match m.session_expiry.as_deref() {
        None => None,
        Some(t) => {
            let d = check.duration("mqtt.session_expiry", t)?;
            Some(u32::try_from(d.as_secs()).map_err(|_| {
                check.err("mqtt.session_expiry", "is at most 4294967295s (u32 seconds; that value means never)")
            })?)
        }
    };
    let receive_maximum = match m.receive_maximum {
        None => None,
        Some(n) => Some(
            u16::try_from(n)
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| check.err("mqtt.receive_maximum", format!("{n} is out of range: use 1..=65535")))?,
        ),
    };
    let maximum_packet_size = match m.maximum_packet_size {
        None => None,
        Some(n) => Some(u32::try_from(n).ok().filter(|n| *n > 0).ok_or_else(|| {
            check.err("mqtt.maximum_packet_size", format!("{n} is out of range: use 1..=4294967295 bytes"))
        })?),
    };
    let user_properties: Vec<(String, String)> = m.user_properties.clone().unwrap_or_default().into_iter().collect();
    if let Some((k, v)) = user_properties.iter().find(|(k, v)| k.len() > MAX_FIELD_LEN || v.len() > MAX_FIELD_LEN) {
        let long = if k.len() > MAX_FIELD_LEN { k.len() } else { v.len() };
        return Err(check.err(
            "mqtt.user_properties",
            format!("a name or value of {long} bytes exceeds MQTT's {MAX_FIELD_LEN}-byte strings; shorten it"),
        ));
    }
    let total: usize = user_properties.iter().map(|(k, v)| 5 + k.len() + v.len()).sum();
    if total > 60_000 {
        return Err(check.err(
            "mqtt.user_properties",
            format!("{total} bytes of user properties make a CONNECT too large; keep them under 60,000 bytes"),
        ));
    }
    Ok(Some(ConnectProperties { session_expiry_s, receive_maximum, maximum_packet_size, user_properties }))
}

pub(super) fn mqtt_options(check: &Check, m: Option<&MqttSection>) -> Result<MqttOptions, PlanError> {
    let v5 = connect_properties(check, m)?;
    let client_id = m.and_then(|m| m.client_id.clone()).unwrap_or_else(|| "sockcap-{worker}-{n}".into());
    // MQTT 5: an empty id asks the broker to assign one (its CONNACK's Assigned Client
    // Identifier), different for every client.
    let assigned = client_id.is_empty() && v5.is_some();
    if !client_id.contains("{n}") && !assigned {
        return Err(check.err(
            "mqtt.client_id",
            format!("`{client_id}` has no `{{n}}`: every client would use the same id and the broker would drop all but one; add {{n}} (or, with version = 5, use \"\" to let the broker assign ids)"),
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
        v5,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::Plan;
    use super::*;

    fn load(mqtt: &str) -> Result<Plan, PlanError> {
        let text = format!(
            "name = \"t\"\ntarget = \"127.0.0.1:1883\"\nprotocol = \"mqtt\"\n[mqtt]\n{mqtt}\n[[phase]]\nhold = \"1s\"\n"
        );
        Plan::from_toml(Path::new("s.toml"), &text)
    }

    #[test]
    fn the_version_is_3_1_1_unless_told_5() {
        assert_eq!(load("").unwrap().mqtt.version(), 4);
        for v in ["4", "\"3.1.1\"", "\"4\""] {
            assert_eq!(load(&format!("version = {v}")).unwrap().mqtt.version(), 4, "{v}");
        }
        for v in ["5", "\"5\""] {
            assert_eq!(load(&format!("version = {v}")).unwrap().mqtt.version(), 5, "{v}");
        }
        for v in ["3", "6", "\"5.1\"", "true"] {
            let err = load(&format!("version = {v}")).unwrap_err();
            assert_eq!(err.field, "mqtt.version", "{v}");
            assert!(err.to_string().contains("version = 5"), "{err}");
        }
    }

    #[test]
    fn v5_properties_are_read_and_checked() {
        let text = "version = 5\nsession_expiry = \"1h\"\nreceive_maximum = 20\nmaximum_packet_size = 65536\n\
                    user_properties = { site = \"lab\", run = \"7\" }";
        let p = load(text).unwrap().mqtt.v5.unwrap();
        assert_eq!(p.session_expiry_s, Some(3600));
        assert_eq!(p.receive_maximum, Some(20));
        assert_eq!(p.maximum_packet_size, Some(65536));
        assert_eq!(p.user_properties, [("run".into(), "7".into()), ("site".into(), "lab".into())]);
        assert_eq!(load("receive_maximum = 5").unwrap_err().field, "mqtt.receive_maximum");
        assert_eq!(load("version = 5\nreceive_maximum = 0").unwrap_err().field, "mqtt.receive_maximum");
        assert_eq!(load("version = 5\nmaximum_packet_size = -1").unwrap_err().field, "mqtt.maximum_packet_size");
        assert_eq!(load("version = 5\nsession_expiry = \"soon\"").unwrap_err().field, "mqtt.session_expiry");
        // An empty client id: the broker assigns one, in MQTT 5 only.
        assert_eq!(load("version = 5\nclient_id = \"\"").unwrap().mqtt.client_id, "");
        assert_eq!(load("client_id = \"\"").unwrap_err().field, "mqtt.client_id");
    }
}
