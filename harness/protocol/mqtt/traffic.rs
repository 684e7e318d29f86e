//! MQTT 3.1.1 and 5 messages, the client side of traffic over held connections:
//! SUBSCRIBE and PUBLISH out, SUBACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP in, the
//! acknowledgements a subscriber owes (PUBACK, PUBREC, PUBCOMP), and sockcap's payload
//! header ([`Stamp`]): who published a message, its sequence number and when it was due.
//! Pure: bytes in, bytes or [`Incoming`] out. The embedded target's side shares
//! [`encode_publish`].

use super::decode::{packet_bounds, DecodeError};
use super::encode::encode_remaining_length;

/// Bytes of the payload header: publisher (8), sequence number (8), send instant (8,
/// µs since the UNIX epoch), all big-endian.
pub const STAMP_LEN: usize = 24;

/// What a message's payload starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The publishing connection's number.
    pub publisher: u64,
    /// The message's sequence number at its publisher, from 0.
    pub seq: u64,
    /// Its scheduled send instant, µs since the UNIX epoch.
    pub sent_unix_us: u64,
}

impl Stamp {
    pub fn write(&self, out: &mut [u8]) {
        out[..8].copy_from_slice(&self.publisher.to_be_bytes());
        out[8..16].copy_from_slice(&self.seq.to_be_bytes());
        out[16..24].copy_from_slice(&self.sent_unix_us.to_be_bytes());
    }

    /// The stamp a payload starts with; `None` when it is shorter than one.
    pub fn read(payload: &[u8]) -> Option<Stamp> {
        let word = |at: usize| Some(u64::from_be_bytes(payload.get(at..at + 8)?.try_into().ok()?));
        Some(Stamp { publisher: word(0)?, seq: word(8)?, sent_unix_us: word(16)? })
    }
}

/// A packet from the broker that traffic acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// SUBACK: its first return (3.1.1) or reason (5) code: 0..=2 granted, 0x80 and up refused.
    SubAck {
        id: u16,
        code: u8,
    },
    Publish {
        qos: u8,
        id: u16,
        topic: &'a [u8],
        payload: &'a [u8],
    },
    /// PUBACK (QoS 1), with MQTT 5's reason code (0 when absent).
    PubAck {
        id: u16,
        code: u8,
    },
    PubRec {
        id: u16,
        code: u8,
    },
    PubRel {
        id: u16,
    },
    PubComp {
        id: u16,
        code: u8,
    },
    PingResp,
    /// MQTT 5's DISCONNECT from the server, with its reason.
    Disconnect {
        reason: u8,
    },
    /// A client's SUBSCRIBE (the embedded target's side): its filters and QoS.
    Subscribe {
        id: u16,
        filters: Vec<(&'a [u8], u8)>,
    },
    /// Anything else, skipped whole.
    Other,
}

/// The first packet in `buf`: `Ok(None)` until it is whole; else the packet and its length.
/// `v5`: the session's version (PUBLISH and acknowledgements carry properties in MQTT 5).
pub fn decode_incoming(buf: &[u8], v5: bool) -> Result<Option<(Incoming<'_>, usize)>, DecodeError> {
    let Some((at, total)) = packet_bounds(buf)? else { return Ok(None) };
    let Some(body) = buf.get(at..total) else { return Ok(None) };
    let short = || DecodeError::LengthOverflow { field: "packet identifier" };
    let id = || body.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])).ok_or_else(short);
    let code = || body.get(2).copied().unwrap_or(0);
    let packet = match buf[0] >> 4 {
        3 => {
            let qos = (buf[0] >> 1) & 3;
            let len = body.get(..2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]]))).ok_or_else(short)?;
            let topic = body.get(2..2 + len).ok_or(DecodeError::LengthOverflow { field: "topic" })?;
            let mut rest = &body[2 + len..];
            let mut id = 0;
            if qos > 0 {
                id = rest.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])).ok_or_else(short)?;
                rest = &rest[2..];
            }
            if v5 {
                let (props, used) = var_int(rest).ok_or(DecodeError::LengthOverflow { field: "properties" })?;
                rest = rest.get(used + props..).ok_or(DecodeError::LengthOverflow { field: "properties" })?;
            }
            Incoming::Publish { qos, id, topic, payload: rest }
        }
        4 => Incoming::PubAck { id: id()?, code: code() },
        5 => Incoming::PubRec { id: id()?, code: code() },
        6 => Incoming::PubRel { id: id()? },
        7 => Incoming::PubComp { id: id()?, code: code() },
        9 => {
            let id = id()?;
            let mut rest = &body[2..];
            if v5 {
                let (props, used) = var_int(rest).ok_or(DecodeError::LengthOverflow { field: "properties" })?;
                rest = rest.get(used + props..).ok_or(DecodeError::LengthOverflow { field: "properties" })?;
            }
            Incoming::SubAck { id, code: *rest.first().ok_or(DecodeError::LengthOverflow { field: "return code" })? }
        }
        8 => {
            let id = id()?;
            let mut rest = &body[2..];
            if v5 {
                let (props, used) = var_int(rest).ok_or(DecodeError::LengthOverflow { field: "properties" })?;
                rest = rest.get(used + props..).ok_or(DecodeError::LengthOverflow { field: "properties" })?;
            }
            let mut filters = Vec::new();
            while !rest.is_empty() {
                let bad = DecodeError::LengthOverflow { field: "topic filter" };
                let len = rest.get(..2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]]))).ok_or(bad.clone())?;
                let filter = rest.get(2..2 + len).ok_or(bad.clone())?;
                let options = *rest.get(2 + len).ok_or(bad)?;
                filters.push((filter, options & 3));
                rest = &rest[3 + len..];
            }
            if filters.is_empty() {
                return Err(DecodeError::LengthOverflow { field: "topic filter" });
            }
            Incoming::Subscribe { id, filters }
        }
        13 => Incoming::PingResp,
        14 => Incoming::Disconnect { reason: body.first().copied().unwrap_or(0) },
        _ => Incoming::Other,
    };
    Ok(Some((packet, total)))
}

/// A variable byte integer and its length in bytes.
fn var_int(buf: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for (i, b) in buf.iter().take(4).enumerate() {
        value |= usize::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// Appends a SUBSCRIBE of one filter at `qos`.
pub fn encode_subscribe(id: u16, filter: &str, qos: u8, v5: bool, out: &mut Vec<u8>) {
    out.push(0x82);
    encode_remaining_length(2 + usize::from(v5) + 2 + filter.len() + 1, out);
    out.extend_from_slice(&id.to_be_bytes());
    if v5 {
        out.push(0);
    }
    out.extend_from_slice(&(filter.len() as u16).to_be_bytes());
    out.extend_from_slice(filter.as_bytes());
    out.push(qos);
}

/// Appends a PUBLISH of `payload_len` bytes whose payload starts with `stamp` (the rest zeros).
pub fn encode_publish(topic: &str, qos: u8, id: u16, v5: bool, stamp: &Stamp, payload_len: usize, out: &mut Vec<u8>) {
    publish_header(topic, qos, id, v5, payload_len, out);
    let at = out.len();
    out.resize(at + payload_len.max(STAMP_LEN), 0);
    stamp.write(&mut out[at..]);
    out.truncate(at + payload_len);
}

/// Appends a PUBLISH of `payload` as it is (a broker forwarding a message).
pub fn encode_forward(topic: &str, qos: u8, id: u16, v5: bool, payload: &[u8], out: &mut Vec<u8>) {
    publish_header(topic, qos, id, v5, payload.len(), out);
    out.extend_from_slice(payload);
}

/// A PUBLISH up to its payload of `payload_len` bytes: fixed header, topic, the packet
/// identifier (QoS 1 and 2), and an empty property list (MQTT 5).
fn publish_header(topic: &str, qos: u8, id: u16, v5: bool, payload_len: usize, out: &mut Vec<u8>) {
    let id_len = if qos > 0 { 2 } else { 0 };
    out.push(0x30 | (qos << 1));
    encode_remaining_length(2 + topic.len() + id_len + usize::from(v5) + payload_len, out);
    out.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    out.extend_from_slice(topic.as_bytes());
    if qos > 0 {
        out.extend_from_slice(&id.to_be_bytes());
    }
    if v5 {
        out.push(0);
    }
}

/// An acknowledgement of two bytes' identifier: PUBACK (4), PUBREC (5), PUBREL (6), PUBCOMP (7).
pub fn ack(packet_type: u8, id: u16) -> [u8; 4] {
    let flags = if packet_type == 6 { 2 } else { 0 };
    let [hi, lo] = id.to_be_bytes();
    [packet_type << 4 | flags, 2, hi, lo]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_round_trips_and_a_short_payload_has_none() {
        let stamp = Stamp { publisher: 5001, seq: 7, sent_unix_us: 1_780_000_000_000_000 };
        let mut buf = [0u8; 40];
        stamp.write(&mut buf);
        assert_eq!(Stamp::read(&buf), Some(stamp));
        assert_eq!(Stamp::read(&buf[..23]), None);
    }

    #[test]
    fn publish_round_trips_in_both_versions() {
        let stamp = Stamp { publisher: 1, seq: 2, sent_unix_us: 3 };
        for (v5, qos) in [(false, 0), (false, 1), (true, 2), (true, 0)] {
            let mut out = Vec::new();
            encode_publish("bench/1", qos, 9, v5, &stamp, 64, &mut out);
            let (packet, used) = decode_incoming(&out, v5).unwrap().unwrap();
            assert_eq!(used, out.len());
            let Incoming::Publish { qos: q, id, topic, payload } = packet else { panic!("{packet:?}") };
            assert_eq!((q, topic, payload.len()), (qos, &b"bench/1"[..], 64));
            assert_eq!(id, if qos > 0 { 9 } else { 0 });
            assert_eq!(Stamp::read(payload), Some(stamp));
            assert_eq!(decode_incoming(&out[..out.len() - 1], v5).unwrap(), None, "not whole yet");
        }
    }

    /// Golden bytes: MQTT 3.1.1 §3.8 and MQTT 5 §3.8 SUBSCRIBE, §3.9 SUBACK.
    #[test]
    fn subscribe_and_suback_golden_bytes() {
        let mut out = Vec::new();
        encode_subscribe(10, "a/b", 1, false, &mut out);
        assert_eq!(out, [0x82, 8, 0, 10, 0, 3, b'a', b'/', b'b', 1]);
        out.clear();
        encode_subscribe(10, "a/b", 2, true, &mut out);
        assert_eq!(out, [0x82, 9, 0, 10, 0, 0, 3, b'a', b'/', b'b', 2]);
        assert_eq!(
            decode_incoming(&[0x90, 3, 0, 10, 1], false).unwrap(),
            Some((Incoming::SubAck { id: 10, code: 1 }, 5))
        );
        assert_eq!(
            decode_incoming(&[0x90, 4, 0, 10, 0, 0x87], true).unwrap(),
            Some((Incoming::SubAck { id: 10, code: 0x87 }, 6))
        );
        assert_eq!(ack(6, 258), [0x62, 2, 1, 2]);
        assert_eq!(decode_incoming(&ack(4, 258), false).unwrap(), Some((Incoming::PubAck { id: 258, code: 0 }, 4)));
    }

    #[test]
    fn subscribe_decodes_on_the_server_side() {
        for v5 in [false, true] {
            let mut out = Vec::new();
            encode_subscribe(7, "bench/+", 1, v5, &mut out);
            let (packet, used) = decode_incoming(&out, v5).unwrap().unwrap();
            assert_eq!((packet, used), (Incoming::Subscribe { id: 7, filters: vec![(&b"bench/+"[..], 1)] }, out.len()));
        }
        assert!(decode_incoming(&[0x82, 2, 0, 1], false).is_err(), "no filter");
    }

    #[test]
    fn malformed_traffic_is_an_error_not_a_panic() {
        for bad in [&[0x90u8, 1, 0][..], &[0x30, 1, 0], &[0x32, 4, 0, 1, b'a', 0], &[0x40, 1, 0]] {
            assert!(decode_incoming(bad, false).is_err(), "{bad:?}");
        }
        assert!(decode_incoming(&[0x30, 3, 0, 1, b'a'], true).is_err(), "v5 PUBLISH without properties");
    }
}
