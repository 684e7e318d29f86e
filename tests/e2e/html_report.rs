//! `--html`: 300 MQTT clients against the embedded target (ramp, hold, close); the
//! page must be well-formed, load nothing from the network, and carry every phase of
//! the JSON report, samples included, in its data block; and its script must draw the
//! charts in a real headless chromium (a runner without chromium fails that test: `.ci/run`
//! installs it).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::{assert_exit, report, run, wait_with_timeout, TempDir};

const CLIENTS: u64 = 300;

/// Run the scenario with `--json` and `--html`; returns (JSON report, page).
fn run_with_html(dir: &TempDir) -> (Value, String) {
    let scenario = dir.file(
        "s.toml",
        &format!(
            r#"
name = "html </script> <b>report</b> & co"
target = "embedded"
protocol = "mqtt"
[[phase]]
name = "ramp"
connect = {{ count = {CLIENTS}, rate = 200 }}
expect = {{ established = "== {CLIENTS}" }}
[[phase]]
name = "hold"
hold = "2s"
[[phase]]
name = "close"
close = {{ how = "fin", rate = 1000 }}
expect = {{ time_wait = ">= 297" }}
"#
        ),
    );
    let (json, html) = (dir.path("out.json"), dir.path("out.html"));
    let out = run(&[
        "run",
        scenario.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
        "--quiet",
    ]);
    assert_exit(&out, 0);
    let page = std::fs::read_to_string(&html).expect("the --html file was written");
    (report(&json), page)
}

/// The text of the data block.
fn data_block(page: &str) -> &str {
    let open = r#"<script type="application/json" id="sockcap-data">"#;
    let start = page.find(open).expect("data block") + open.len();
    &page[start..start + page[start..].find("</script>").expect("data block ends")]
}

#[test]
fn html_page_is_self_contained_and_carries_every_phase() {
    let dir = TempDir::new("html");
    let (report, page) = run_with_html(&dir);
    assert!(page.len() < 200_000, "the page is {} bytes", page.len());

    // Well-formed: the markup parses as XML once the code script (which holds `<` and `&&`) is taken out.
    let code = page.rfind("<script>").expect("code script") + "<script>".len();
    let code_end = code + page[code..].find("</script>").expect("code script ends");
    let markup = format!("{}{}", &page[..code], &page[code_end..]);
    let options = roxmltree::ParsingOptions { allow_dtd: true, ..Default::default() };
    let doc =
        roxmltree::Document::parse_with_options(&markup, options).unwrap_or_else(|e| panic!("not well-formed: {e}"));
    let title = doc.descendants().find(|n| n.has_tag_name("title")).and_then(|n| n.text()).unwrap_or_default();
    assert!(title.contains("html </script> <b>report</b> & co"), "title: {title}");
    assert_eq!(page.matches("</script>").count(), 2, "the scenario name broke out of a script element");

    // Nothing to fetch: no src/href attributes, no CSS urls; the one URL is the SVG namespace name.
    for node in doc.descendants().filter(|n| n.is_element()) {
        for attr in ["src", "href", "srcset", "data", "action"] {
            assert!(node.attribute(attr).is_none(), "<{} {attr}=...> in the page", node.tag_name().name());
        }
    }
    assert!(!page.contains("url(") && !page.contains("@import"));
    for (i, _) in page.match_indices("http") {
        assert!(page[i..].starts_with("http://www.w3.org/2000/svg"), "a URL in the page: {}", &page[i..i + 40]);
    }

    // The data block: every phase of the JSON report with its samples and end census.
    let data: Value = serde_json::from_str(data_block(&page)).expect("the data block is JSON");
    assert_eq!(data["schema"], "sockcap.html-data/1");
    assert_eq!(data["scenario"], report["scenario"]["name"]);
    let phases = data["phases"].as_array().expect("phases");
    let want = report["phases"].as_array().unwrap();
    assert_eq!(phases.len(), want.len());
    for (p, r) in phases.iter().zip(want) {
        assert_eq!(p["name"], r["name"]);
        assert_eq!(p["kind"], r["kind"]);
        let samples = p["samples"].as_array().unwrap();
        assert_eq!(samples.len(), r["samples"].as_array().unwrap().len(), "samples of {}", r["name"]);
        for (s, rs) in samples.iter().zip(r["samples"].as_array().unwrap()) {
            assert_eq!(s["t_ms"], rs["t_ms"]);
            assert_eq!(s["succeeded"], rs["succeeded"]);
            assert_eq!(s["open"], rs["open"]);
            let est = rs["client"]["established"].as_u64().unwrap();
            assert_eq!(s["client"]["established"].as_u64().unwrap_or(0), est);
        }
        let end = &p["end"];
        assert_eq!(end["t_ms"].as_u64(), Some(r["started_ms"].as_u64().unwrap() + r["duration_ms"].as_u64().unwrap()));
        for state in ["established", "time_wait"] {
            assert_eq!(end["client"][state].as_u64().unwrap_or(0), r["census"]["client"][state].as_u64().unwrap());
            assert_eq!(end["server"][state].as_u64().unwrap_or(0), r["census"]["server"][state].as_u64().unwrap());
        }
        // The rate steps add up to the phase's successes.
        let done: f64 = p["rate"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let secs = (s["to_ms"].as_u64().unwrap() - s["from_ms"].as_u64().unwrap()) as f64 / 1000.0;
                s["succeeded_per_s"].as_f64().unwrap() * secs
            })
            .sum();
        let succeeded = r["succeeded"].as_u64().unwrap() as f64;
        assert!((done - succeeded).abs() <= 1.0, "{}: rates add up to {done}, not {succeeded}", r["name"]);
    }
    let (ramp, hold, close) = (&phases[0], &phases[1], &phases[2]);
    assert!(!ramp["samples"].as_array().unwrap().is_empty(), "a 1.5 s ramp has a census sample");
    assert_eq!(ramp["end"]["client"]["established"], CLIENTS);
    // (1% of TIME_WAIT may die of an RST at close time, see close_modes.rs)
    assert_eq!(close["end"]["client"]["time_wait"], report["phases"][2]["census"]["client"]["time_wait"]);
    let curves = |p: &Value| -> Vec<String> {
        p["latency"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(curves(ramp), ["connect", "handshake"]);
    assert!(curves(hold).is_empty());
    assert_eq!(curves(close), ["close"]);
    for c in ramp["latency"].as_array().unwrap() {
        assert_eq!(c["count"], CLIENTS);
        let points = c["points"].as_array().unwrap();
        assert!(points.len() >= 10, "percentile curve of {}: {points:?}", c["name"]);
        let max = points.last().unwrap()[1].as_u64().unwrap();
        assert_eq!(max, report["phases"][0]["latency_us"][c["name"].as_str().unwrap()]["max"].as_u64().unwrap());
    }
    // Verdicts are shown, styled.
    assert!(page.contains("<span class=\"verdict pass\">PASSED</span>"));
    assert!(page.contains("<span class=\"badge pass\">PASS</span></td><td><code>time_wait &gt;= 297</code>"));
}

#[test]
fn html_page_draws_its_charts_in_headless_chromium() {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("this test draws the page in headless chromium, which is not installed: apt-get install -y chromium");
    let dir = TempDir::new("html-chromium");
    let (_, _) = run_with_html(&dir);
    let dom = dir.path("dom.html");
    let profile = dir.path("profile");
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", dir.path("out.html").display()))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&dom).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    let status = wait_with_timeout(&mut child, Duration::from_secs(90));
    assert!(status.success(), "chromium --dump-dom failed: {status}");
    let dom = std::fs::read_to_string(&dom).unwrap();
    let body = &dom[dom.find("<body").expect("a body element")..];
    let body = &body[..body.find('>').unwrap()];
    assert!(!body.contains("data-sockcap-error"), "the page's script failed: {body}");
    let ready = body
        .split("data-sockcap-ready=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("the page's script did not finish: {body}"));
    // client and server census, rate, open connections, latency of the ramp and of the close
    assert_eq!(ready, "6", "charts drawn");
    assert!(dom.matches("<svg").count() >= 6);
}
