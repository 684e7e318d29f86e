//! The names of CONNACK return codes (MQTT 3.1.1 §3.2.2.3) and of MQTT 5 reason
//! codes (§2.4), as the keys under which reports count them
//! (`connack_refused.quota_exceeded`). The two sets do not overlap: 3.1.1 refuses
//! with 1 to 5, MQTT 5 with 0x80 and up, so a code alone names itself.

/// The report name of a CONNACK code or a DISCONNECT reason code, `code_0xNN` for
/// one the specifications do not define.
pub fn reason_name(code: u8) -> std::borrow::Cow<'static, str> {
    let name = match code {
        0x00 => "normal_disconnection",
        // MQTT 3.1.1 CONNACK return codes.
        0x01 => "unacceptable_protocol_version",
        0x02 => "identifier_rejected",
        0x03 => "server_unavailable",
        0x04 => "bad_user_name_or_password",
        0x05 => "not_authorized",
        // MQTT 5 reason codes (CONNACK and DISCONNECT).
        0x80 => "unspecified_error",
        0x81 => "malformed_packet",
        0x82 => "protocol_error",
        0x83 => "implementation_specific_error",
        0x84 => "unsupported_protocol_version",
        0x85 => "client_identifier_not_valid",
        0x86 => "bad_user_name_or_password",
        0x87 => "not_authorized",
        0x88 => "server_unavailable",
        0x89 => "server_busy",
        0x8A => "banned",
        0x8B => "server_shutting_down",
        0x8C => "bad_authentication_method",
        0x8D => "keep_alive_timeout",
        0x8E => "session_taken_over",
        0x8F => "topic_filter_invalid",
        0x90 => "topic_name_invalid",
        0x93 => "receive_maximum_exceeded",
        0x94 => "topic_alias_invalid",
        0x95 => "packet_too_large",
        0x96 => "message_rate_too_high",
        0x97 => "quota_exceeded",
        0x98 => "administrative_action",
        0x99 => "payload_format_invalid",
        0x9A => "retain_not_supported",
        0x9B => "qos_not_supported",
        0x9C => "use_another_server",
        0x9D => "server_moved",
        0x9E => "shared_subscriptions_not_supported",
        0x9F => "connection_rate_exceeded",
        0xA0 => "maximum_connect_time",
        0xA1 => "subscription_identifiers_not_supported",
        0xA2 => "wildcard_subscriptions_not_supported",
        other => return format!("code_0x{other:02x}").into(),
    };
    name.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_codes_of_both_versions() {
        assert_eq!(reason_name(5), "not_authorized");
        assert_eq!(reason_name(0x87), "not_authorized");
        assert_eq!(reason_name(0x97), "quota_exceeded");
        assert_eq!(reason_name(0x89), "server_busy");
        assert_eq!(reason_name(0x8E), "session_taken_over");
        assert_eq!(reason_name(0x42), "code_0x42");
    }
}
