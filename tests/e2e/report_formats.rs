//! The report formats, checked against one real run (200 TCP connections to the embedded
//! target, one expectation failing on purpose): `--json` validates against the committed
//! schema `docs/report.schema.json`, `--junit` is well-formed XML whose failures are
//! exactly the failed expectations, and `sockcap compare` passes an unchanged copy of the
//! report and fails (naming the figure) on copies with a planted regression.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use serde_json::Value;
use sockcap::latency::Latency;

use crate::support::{assert_exit, assert_matches_schema, phase, report, report_schema, run};

const SCENARIO: &str = r#"
name = "report formats"
target = "embedded"
protocol = "tcp"

[[phase]]
name = "ramp"
connect = { count = 200, rate = 2000 }
expect = { established = "== 999999", "server.established" = "== 200", connect_p99 = "< 5s", errors = "== 0" }

[[phase]]
name = "hold"
hold = "300ms"
expect = { established = "== 200" }

[[phase]]
name = "close"
close = { how = "fin", rate = 2000 }
expect = { established = "== 0", errors = "== 0" }
"#;

/// One run shared by every test here: its directory, report files and output.
struct Run {
    dir: PathBuf,
    json: PathBuf,
    junit: PathBuf,
    out: Output,
}

fn the_run() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-formats");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        let scenario = dir.join("formats.toml");
        std::fs::write(&scenario, SCENARIO).expect("write scenario");
        let json = dir.join("report.json");
        let junit = dir.join("report.xml");
        let out = run(&[
            "run",
            scenario.to_str().unwrap(),
            "--quiet",
            "--json",
            json.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
        ]);
        Run { dir, json, junit, out }
    })
}

/// The run failed exactly its planted expectation, so its exit code is 1.
fn failed_run() -> &'static Run {
    let r = the_run();
    assert_exit(&r.out, 1);
    r
}

#[test]
fn json_report_matches_the_committed_schema() {
    let r = failed_run();
    let validator = report_schema();
    let report = report(&r.json);
    assert_matches_schema(&report);

    // The schema is closed and complete: a stray field or a missing one is caught.
    let mut extra = report.clone();
    extra["phases"][0]["surprise"] = Value::from(1);
    assert!(!validator.is_valid(&extra), "an unknown phase field must not validate");
    let mut missing = report.clone();
    missing["phases"][0]["latency_us"]["connect"].as_object_mut().unwrap().remove("hdr");
    assert!(!validator.is_valid(&missing), "a latency without its histogram must not validate");
}

#[test]
fn junit_failures_are_exactly_the_failed_expectations() {
    let r = failed_run();
    let report = report(&r.json);
    let xml = std::fs::read_to_string(&r.junit).expect("the --junit file was written");
    let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("JUnit file is not XML: {e}\n{xml}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");

    let phases = report["phases"].as_array().unwrap();
    let expected_failures: BTreeSet<(String, String)> = phases
        .iter()
        .flat_map(|p| {
            p["expectations"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["passed"] == false)
                .map(move |e| (p["name"].as_str().unwrap().to_string(), e["expr"].as_str().unwrap().to_string()))
        })
        .collect();
    assert_eq!(
        expected_failures,
        BTreeSet::from([("ramp".to_string(), "established == 999999".to_string())]),
        "the run failed something besides the planted expectation"
    );
    let total: usize = phases.iter().map(|p| p["expectations"].as_array().unwrap().len()).sum();
    assert_eq!(root.attribute("tests"), Some(total.to_string().as_str()));
    assert_eq!(root.attribute("failures"), Some("1"));
    assert_eq!(root.attribute("errors"), Some("0"));

    let suites: Vec<_> = root.children().filter(|n| n.has_tag_name("testsuite")).collect();
    let suite_names: Vec<&str> = suites.iter().map(|s| s.attribute("name").unwrap()).collect();
    assert_eq!(suite_names, ["ramp", "hold", "close"]);
    let mut failures = BTreeSet::new();
    let mut implicit = BTreeSet::new();
    for (suite, phase_json) in suites.iter().zip(phases) {
        let cases: Vec<_> = suite.children().filter(|n| n.has_tag_name("testcase")).collect();
        assert_eq!(cases.len(), phase_json["expectations"].as_array().unwrap().len());
        let suite_name = suite.attribute("name").unwrap();
        for case in cases {
            assert_eq!(case.attribute("classname"), Some(format!("sockcap.report formats.{suite_name}").as_str()));
            let name = case.attribute("name").unwrap();
            let property = |key: &str| {
                case.descendants()
                    .find(|n| n.has_tag_name("property") && n.attribute("name") == Some(key))
                    .and_then(|n| n.attribute("value"))
                    .map(str::to_string)
            };
            if property("implicit").as_deref() == Some("true") {
                assert!(name.ends_with(" (default)"), "{name}");
                implicit.insert((suite_name.to_string(), name.to_string()));
            }
            if let Some(failure) = case.children().find(|n| n.has_tag_name("failure")) {
                let message = failure.attribute("message").unwrap();
                assert_eq!(message, "expected established == 999999, actual 200", "{xml}");
                assert_eq!(property("actual").as_deref(), Some("200"));
                failures.insert((suite_name.to_string(), name.to_string()));
            }
        }
    }
    assert_eq!(failures, expected_failures);
    // Only the hold phase names no `errors` expectation, so only it gets the default one.
    assert_eq!(implicit, BTreeSet::from([("hold".to_string(), "errors == 0 (default)".to_string())]));
}

/// `sockcap compare BASELINE CURRENT [extra...]`.
fn compare(baseline: &Path, current: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["compare", baseline.to_str().unwrap(), current.to_str().unwrap()];
    args.extend_from_slice(extra);
    run(&args)
}

/// Write a modified copy of the run's report.
fn planted(name: &str, change: impl FnOnce(&mut Value)) -> PathBuf {
    let r = failed_run();
    let mut value = report(&r.json);
    change(&mut value);
    let path = r.dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(&value).unwrap()).expect("write planted copy");
    path
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The table row of `figure` in `phase`'s block of compare's output.
fn row<'a>(text: &'a str, phase: &str, figure: &str) -> &'a str {
    let block = text.split("\nphase ").find(|b| b.starts_with(&format!("{phase} ("))).unwrap_or_else(|| {
        panic!("no phase {phase} in\n{text}");
    });
    block
        .lines()
        .find(|l| l.split_whitespace().next() == Some(figure))
        .unwrap_or_else(|| panic!("no {figure} row in phase {phase}:\n{text}"))
}

#[test]
fn compare_passes_an_unchanged_copy_and_prints_every_figure() {
    let r = failed_run();
    let copy = planted("unchanged.json", |_| {});
    let out = compare(&r.json, &copy, &[]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("PASSED"), "{text}");
    // Limited figures get a verdict; the others are shown too, unchanged.
    for (phase, figure) in
        [("ramp", "connected"), ("ramp", "connect_p99"), ("hold", "established"), ("close", "errors")]
    {
        let line = row(&text, phase, figure);
        assert!(line.trim_end().ends_with(" ok"), "{line}");
    }
    for (phase, figure) in [("ramp", "connect_p50"), ("ramp", "server.established"), ("close", "close_max")] {
        let cells: Vec<&str> = row(&text, phase, figure).split_whitespace().collect();
        assert_eq!(cells[1], cells[2], "baseline and current differ: {cells:?}");
        assert_eq!(cells[3], "0", "{cells:?}");
    }
}

#[test]
fn compare_catches_a_latency_regression_in_the_histogram() {
    let r = failed_run();
    let mut rounded_p99 = 0;
    let slower = planted("slower.json", |report| {
        let ramp = report["phases"].as_array_mut().unwrap().iter_mut().find(|p| p["name"] == "ramp").unwrap();
        let connect = &mut ramp["latency_us"]["connect"];
        rounded_p99 = connect["p99"].as_u64().unwrap();
        let base = Latency::from_hdr(connect["hdr"].as_str().unwrap()).expect("the report's histogram decodes");
        let base = base.summary();
        // Every connect 50 ms slower than the slowest one was; the rounded `p99` field
        // beside it is left as it was, so only the histogram tells.
        let mut slow = Latency::new();
        for i in 0..base.count {
            slow.record_us(base.max + 50_000 + i);
        }
        connect["hdr"] = Value::from(slow.summary().hdr);
    });
    let out = compare(&r.json, &slower, &[]);
    assert_exit(&out, 1);
    let text = stdout(&out);
    let line = row(&text, "ramp", "connect_p99");
    assert!(line.trim_end().ends_with("REGRESSED"), "{line}");
    assert!(text.contains("REGRESSED: 1 of"), "{text}");
    assert!(text.contains("\n  phase ramp: connect_p99 "), "{text}");
    assert_eq!(report(&slower)["phases"][0]["latency_us"]["connect"]["p99"].as_u64(), Some(rounded_p99));
    // A looser limit lets the same change through.
    let out = compare(&r.json, &slower, &["--max-regression", "connect_p99=60s"]);
    assert_exit(&out, 0);
}

#[test]
fn compare_catches_fewer_established_connections() {
    let r = failed_run();
    let fewer = planted("fewer.json", |report| {
        let hold = report["phases"].as_array_mut().unwrap().iter_mut().find(|p| p["name"] == "hold").unwrap();
        let n = hold["census"]["client"]["established"].as_u64().unwrap();
        hold["census"]["client"]["established"] = Value::from(n - 1);
    });
    let out = compare(&r.json, &fewer, &[]);
    assert_exit(&out, 1);
    let text = stdout(&out);
    assert!(row(&text, "hold", "established").trim_end().ends_with("REGRESSED"), "{text}");
    assert!(text.contains("\n  phase hold: established 200 → 199"), "{text}");
    // One fewer of 200 is 0.5%: within a 1% limit.
    let out = compare(&r.json, &fewer, &["--max-regression", "established=1%"]);
    assert_exit(&out, 0);
    assert_eq!(phase(&report(&fewer), "hold")["census"]["client"]["established"], 199);
}

#[test]
fn compare_refuses_bad_input_with_exit_2() {
    let r = failed_run();
    let out = compare(&r.json, &r.json, &["--max-regression", "conect_p99=10%"]);
    assert_exit(&out, 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--max-regression") && stderr.contains("unknown metric `conect_p99`"), "{stderr}");

    let other = planted("other-schema.json", |report| report["schema"] = Value::from("sockcap.report/0"));
    let out = compare(&r.json, &other, &[]);
    assert_exit(&out, 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("other-schema.json") && stderr.contains("sockcap.report/1"), "{stderr}");

    let missing = r.dir.join("no-such-report.json");
    let out = compare(&missing, &r.json, &[]);
    assert_exit(&out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-report.json"));
}
