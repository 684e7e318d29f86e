//! `--emit-report`: the JSON report printed on stdout between two marker lines, base64
//! in short lines with its length and SHA-256, so that it survives collection from
//! logs (`kubectl logs` of a shard's pod, possibly with timestamps in front of every
//! line, several pods' logs in one file) and a cut or altered copy is caught.
//!
//! ```text
//! -----BEGIN SOCKCAP REPORT-----
//! shard: 1/3
//! bytes: 48213
//! sha256: 9f2c…
//!
//! eyJzY2hlbWEiOiJzb2NrY2FwLnJlcG9ydC8xIiwi…
//! -----END SOCKCAP REPORT-----
//! ```

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::RunReport;

const BEGIN: &str = "-----BEGIN SOCKCAP REPORT-----";
const END: &str = "-----END SOCKCAP REPORT-----";
/// Base64 characters per line.
const LINE: usize = 76;

/// The framed report, ending in a newline.
pub fn frame(report: &RunReport) -> String {
    let json = serde_json::to_vec(report).expect("a report serializes");
    let encoded = base64::engine::general_purpose::STANDARD.encode(&json);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / LINE + 200);
    out.push_str(BEGIN);
    out.push('\n');
    if let Some(shard) = &report.shard {
        out.push_str(&format!("shard: {}/{}\n", shard.index, shard.count));
    }
    out.push_str(&format!("bytes: {}\nsha256: {}\n\n", json.len(), hex_sha256(&json)));
    for chunk in encoded.as_bytes().chunks(LINE) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(END);
    out.push('\n');
    out
}

/// A framed report that cannot be taken back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("report {0}: no END line (the log was cut short)")]
    Unterminated(usize),
    #[error("report {0}: no `bytes:` or `sha256:` line")]
    NoHeader(usize),
    #[error("report {0}: the base64 text is damaged: {1}")]
    Base64(usize, String),
    #[error("report {0}: {1} bytes where the frame says {2} (the log lost or gained lines)")]
    Length(usize, usize, usize),
    #[error("report {0}: its SHA-256 does not match the frame's (the log was altered)")]
    Checksum(usize),
}

/// Every framed report in `text` (a log), checked, as JSON bytes, in order.
pub fn unframe_all(text: &str) -> Result<Vec<Vec<u8>>, FrameError> {
    let mut reports = Vec::new();
    let mut lines = text.lines();
    while let Some(begin) = lines.by_ref().find(|l| l.trim_end().ends_with(BEGIN)) {
        let number = reports.len() + 1;
        // A log collector may put a timestamp before every line: as many words as it
        // put before the BEGIN line are skipped on every line.
        let skip = begin[..begin.rfind(BEGIN).unwrap_or(0)].split_whitespace().count();
        let (mut bytes, mut sha, mut encoded, mut ended) = (None, None, String::new(), false);
        for line in lines.by_ref() {
            let content = line.split_whitespace().skip(skip).collect::<Vec<_>>().join(" ");
            if content == END {
                ended = true;
                break;
            }
            match content.split_once(": ") {
                Some(("bytes", value)) => bytes = value.parse::<usize>().ok(),
                Some(("sha256", value)) => sha = Some(value.to_string()),
                Some(("shard", _)) => {}
                _ => encoded.push_str(&content),
            }
        }
        if !ended {
            return Err(FrameError::Unterminated(number));
        }
        let (Some(bytes), Some(sha)) = (bytes, sha) else { return Err(FrameError::NoHeader(number)) };
        let json = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_bytes())
            .map_err(|e| FrameError::Base64(number, e.to_string()))?;
        if json.len() != bytes {
            return Err(FrameError::Length(number, json.len(), bytes));
        }
        if hex_sha256(&json) != sha {
            return Err(FrameError::Checksum(number));
        }
        reports.push(json);
    }
    Ok(reports)
}

/// SHA-256 of `bytes`, in lowercase hex.
pub fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::test_support::sample_report;

    #[test]
    fn reports_survive_a_log_with_timestamps_and_other_lines() {
        let report = sample_report();
        let framed = frame(&report);
        assert!(framed.lines().all(|l| l.len() <= LINE.max(BEGIN.len())));
        let log = format!(
            "sockcap 0.1.0 — some text\nphase 1/2 ...\n{}",
            framed.lines().map(|l| format!("2026-11-27T10:00:00.000000000Z {l}\n")).collect::<String>()
        );
        let twice = format!("{log}another pod's noise\n{framed}");
        let found = unframe_all(&twice).unwrap();
        assert_eq!(found.len(), 2);
        let back: RunReport = serde_json::from_slice(&found[0]).unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), serde_json::to_value(&report).unwrap());
        assert_eq!(found[0], found[1]);
        assert!(unframe_all("no report here\n").unwrap().is_empty());
    }

    #[test]
    fn damage_is_caught() {
        let framed = frame(&sample_report());
        let cut: String = framed.lines().take(8).map(|l| format!("{l}\n")).collect();
        assert_eq!(unframe_all(&cut), Err(FrameError::Unterminated(1)));
        let lines: Vec<&str> = framed.lines().collect();
        let dropped: String =
            lines.iter().enumerate().filter(|(i, _)| *i != 6).map(|(_, l)| format!("{l}\n")).collect();
        assert!(matches!(unframe_all(&dropped), Err(FrameError::Length(1, ..) | FrameError::Base64(1, _))));
        let mut altered = lines.iter().map(|l| l.to_string()).collect::<Vec<_>>();
        let body = &mut altered[6];
        let flipped = if body.starts_with('A') { "B" } else { "A" };
        body.replace_range(0..1, flipped);
        assert_eq!(unframe_all(&(altered.join("\n") + "\n")), Err(FrameError::Checksum(1)));
    }
}
