//! The report reader behind `compare` and `merge`: a JSON report, or a log with framed
//! reports (`--emit-report`); each report read is then compared with itself, rendered,
//! and merged as its shard (and with a copy as the next shard).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockcap::report::compare::{compare, RegressionLimits};
use sockcap::report::merge::shards::{shards, ShardReport};
use sockcap::report::{frame, json, text, RunReport};

/// Shard counts past this are not merged here: `--expect-shards` is the user's, and a
/// merge lists every missing shard.
const MAX_SHARDS: u32 = 64;

fn reports(text: &str) -> Vec<RunReport> {
    if text.trim_start().starts_with('{') {
        return json::parse(text, "fuzz.json").into_iter().collect();
    }
    let Ok(framed) = frame::unframe_all(text) else { return Vec::new() };
    framed.iter().filter_map(|json| json::parse(&String::from_utf8_lossy(json), "fuzz.log").ok()).collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else { return };
    for report in reports(input) {
        let _ = compare(&report, &report, &RegressionLimits::defaults());
        let _ = text::render(&report);
        let Some(shard) = report.shard.clone().filter(|s| s.count <= MAX_SHARDS) else { continue };
        let part = |index| {
            let mut copy = report.clone();
            copy.shard.as_mut().expect("a shard").index = index;
            ShardReport { file: format!("shard{index}.json"), report: copy }
        };
        if let Ok(merged) = shards(vec![part(shard.index)], shard.count) {
            let _ = text::render(&merged);
        }
        if shard.count > 1 {
            let next = (shard.index + 1) % shard.count;
            let _ = shards(vec![part(shard.index), part(next)], shard.count);
        }
    }
});
