//! Sharded runs on one machine: three `sockcap run --shard i/3` processes meet at a
//! rendezvous, run the scenario's single schedule between them against one mosquitto,
//! and `sockcap merge` adds their reports up exactly; a peer without the run's
//! rendezvous token is refused meanwhile. (The multi-host lab, with a network namespace
//! per host, is in `distributed.rs`.)

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Stdio};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::support::*;

const CLIENTS: u64 = 900;

fn scenario(target: &str) -> String {
    format!(
        r#"name = "three shards"
target = "{target}"
protocol = "mqtt"

[mqtt]
client_id = "sockcap-{{worker}}-{{n}}"
keep_alive = "10s"

[[phase]]
name = "ramp"
connect = {{ count = {CLIENTS}, rate = 900 }}
expect = {{ connected = "== {CLIENTS}", established = "== {CLIENTS}" }}

[[phase]]
name = "hold"
hold = "3s"
expect = {{ established = "== {CLIENTS}", drops = "== 0" }}

[[phase]]
name = "close"
close = {{ how = "mqtt-disconnect", rate = 3000 }}
"#
    )
}

/// The run's rendezvous token, in `token.txt` beside the scenario.
const TOKEN: &str = "e2e-token-4f9c2a7d1b6e8035";

/// Shard `index` of 3; it is given [`TOKEN`] in a file (`--rendezvous-token-file`), shard 2
/// in `$SOCKCAP_RENDEZVOUS_TOKEN`.
fn shard(dir: &TempDir, scenario: &str, index: u32, rendezvous: &str, emit: bool) -> Child {
    let json = dir.path(&format!("shard-{index}.json"));
    let stdout = if emit {
        Stdio::from(std::fs::File::create(dir.path(&format!("shard-{index}.log"))).expect("log file"))
    } else {
        Stdio::null()
    };
    sockcap()
        .args(["run", scenario, "--shard", &format!("{index}/3"), "--rendezvous", rendezvous])
        .args(["--rendezvous-timeout", "30s", "--quiet", "--json", json.to_str().unwrap()])
        .args(if emit { &["--emit-report"][..] } else { &[] })
        // Shard 1 splits its share over two worker processes: connection g is worker
        // w's of shard 1 when g mod 6 = 1 + 3w.
        .args(if index == 1 { &["--workers", "2"][..] } else { &[] })
        .args(if index == 2 { vec![] } else { vec!["--rendezvous-token-file".into(), dir.file("token.txt", TOKEN)] })
        .env_remove("SOCKCAP_RENDEZVOUS_TOKEN")
        .envs(if index == 2 { vec![("SOCKCAP_RENDEZVOUS_TOKEN", TOKEN)] } else { vec![] })
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("sockcap run --shard starts")
}

/// `sockcap merge --expect-shards 3 FILES... EXTRA...`.
fn merge(files: &[&std::path::Path], extra: &[&str]) -> std::process::Output {
    let mut args = vec!["merge", "--expect-shards", "3"];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    args.extend_from_slice(extra);
    run(&args)
}

fn count(report: &Value, phase_name: &str, path: &[&str]) -> u64 {
    let mut v = phase(report, phase_name);
    for key in path {
        v = &v[key];
    }
    v.as_u64().unwrap_or_else(|| panic!("{path:?} in {phase_name}: {v}"))
}

#[test]
fn three_shards_with_a_rendezvous_run_one_schedule_and_merge_exactly() {
    let broker = Mosquitto::start("shards", "");
    let dir = TempDir::new("shards");
    let file = dir.file("s.toml", &scenario(&broker.addr()));
    let file = file.to_str().unwrap();
    let rendezvous = format!("127.0.0.1:{}", free_port());
    let mut shards: Vec<Child> = vec![shard(&dir, file, 0, &rendezvous, false)];
    // A peer without the token registers first: refused, and logged by its address.
    let intruder = register_without_the_token(&rendezvous);
    shards.extend((1..3).map(|i| shard(&dir, file, i, &rendezvous, i == 2)));

    // During the hold, `ss` sees the three shards' connections together: the whole
    // scenario's, once.
    wait_for_established(broker.port, CLIENTS, Duration::from_secs(30));
    let filter = format!("( dst 127.0.0.1:{} )", broker.port);
    assert_agree("ss during the hold", || (ss_states(&filter).get("established").copied(), Some(CLIENTS)));

    let mut stderrs = Vec::new();
    for (i, child) in shards.iter_mut().enumerate() {
        let status = wait_with_timeout(child, Duration::from_secs(60));
        let mut stderr = String::new();
        child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        assert!(status.success(), "shard {i} exited with {status}: {stderr}");
        stderrs.push(stderr);
    }
    let refused = format!("refused {intruder}: it did not answer with the rendezvous token");
    assert!(stderrs[0].contains(&refused), "shard 0's stderr: {}", stderrs[0]);
    assert!(stderrs.iter().all(|e| !e.contains("no token")), "{stderrs:?}");
    let parts: Vec<Value> = (0..3).map(|i| report(&dir.path(&format!("shard-{i}.json")))).collect();
    for (i, part) in parts.iter().enumerate() {
        assert_matches_schema(part);
        assert_eq!(part["shard"]["index"], i as u64);
        assert_eq!(part["shard"]["start"], "rendezvous");
        assert_eq!(count(part, "ramp", &["succeeded"]), CLIENTS / 3, "shard {i} ran its third");
        assert_eq!(part["scenario"]["workers"], if i == 1 { 2 } else { 1 });
        let deferred = phase(part, "ramp")["expectations"].as_array().unwrap().iter().all(|e| e["deferred"] == true);
        assert!(deferred, "a shard's expectations wait for the merge");
    }
    let starts: Vec<u64> = parts.iter().map(|p| p["shard"]["start_unix_us"].as_u64().unwrap()).collect();
    let spread = starts.iter().max().unwrap() - starts.iter().min().unwrap();
    assert!(spread < 50_000, "the shards started {spread} µs apart");

    // MQTT client ids never collide across shards: the broker saw each once.
    let log = broker.log();
    let ids: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split(" as ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter(|id| id.starts_with("sockcap-"))
        .collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!((ids.len(), unique.len()), (CLIENTS as usize, CLIENTS as usize), "client ids seen by the broker");
    let numbers: BTreeSet<u64> = unique.iter().filter_map(|id| id.rsplit('-').next()?.parse().ok()).collect();
    assert_eq!(numbers, (0..CLIENTS).collect(), "the shards ran connections 0..{CLIENTS} between them");
    // `{worker}` is the process's place among all hosts' workers: shard 1's two are 1 and 4.
    for id in &unique {
        let (worker, n) = id.trim_start_matches("sockcap-").split_once('-').expect("sockcap-W-N");
        let (worker, n): (u64, u64) = (worker.parse().unwrap(), n.parse().unwrap());
        let expected = if n % 3 == 1 { n % 6 } else { n % 3 };
        assert_eq!(worker, expected, "client {id}");
    }

    // Merge two JSON files and one log holding a framed report.
    let merged_json = dir.path("merged.json");
    let junit = dir.path("merged.xml");
    let (a, b, log) = (dir.path("shard-0.json"), dir.path("shard-1.json"), dir.path("shard-2.log"));
    let out = merge(&[&a, &b, &log], &["--json", merged_json.to_str().unwrap(), "--junit", junit.to_str().unwrap()]);
    assert_exit(&out, 0);
    let merged = report(&merged_json);
    assert_matches_schema(&merged);
    for (phase_name, path) in [
        ("ramp", &["succeeded"][..]),
        ("ramp", &["latency_us", "connect", "count"]),
        ("ramp", &["latency_us", "handshake", "count"]),
        ("close", &["succeeded"]),
        ("close", &["latency_us", "close", "count"]),
    ] {
        let sum: u64 = parts.iter().map(|p| count(p, phase_name, path)).sum();
        assert_eq!(count(&merged, phase_name, path), sum, "{phase_name}.{path:?}: merged against the shards' sum");
    }
    assert_eq!(count(&merged, "ramp", &["succeeded"]), CLIENTS);
    // One machine, one namespace, one target: the shards' censuses saw the same
    // sockets, and the merge counts them once.
    assert_eq!(census(phase(&merged, "hold"), "client", "established"), CLIENTS);
    let expectations = phase(&merged, "hold")["expectations"].as_array().unwrap();
    assert!(expectations.iter().all(|e| e["passed"] == true && e["deferred"] == false), "{expectations:?}");
    assert_eq!(merged["merge"]["partial"], false);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("failures=\"0\" errors=\"0\" skipped=\"0\""), "{xml:.400}");

    // Without shard 1 the merge is partial and fails.
    let partial_json = dir.path("partial.json");
    let out = merge(&[&a, &log], &["--json", partial_json.to_str().unwrap()]);
    assert_exit(&out, 1);
    let partial = report(&partial_json);
    assert_matches_schema(&partial);
    assert_eq!(
        (partial["merge"]["partial"].clone(), partial["merge"]["missing"].clone()),
        (true.into(), vec![1].into())
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("PARTIAL: no report from shard 1"));

    // The token is in no output and no report.
    let mut outputs = stderrs;
    for name in ["shard-0.json", "shard-1.json", "shard-2.json", "shard-2.log", "merged.json", "merged.xml"] {
        outputs.push(std::fs::read_to_string(dir.path(name)).unwrap());
    }
    assert!(outputs.iter().all(|o| !o.contains(TOKEN)), "the token was printed or reported");

    // The same shard twice cannot be merged.
    let out = merge(&[&a, &a], &[]);
    assert_exit(&out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("both are shard 0"));
}

/// Connect to shard 0's rendezvous at `addr` (retrying until it listens), answer its
/// challenge with a wrong HMAC and check the refusal; returns this peer's address.
fn register_without_the_token(addr: &str) -> std::net::SocketAddr {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let stream = loop {
        match std::net::TcpStream::connect(addr) {
            Ok(stream) => break stream,
            Err(e) => assert!(std::time::Instant::now() < deadline, "shard 0 never listened on {addr}: {e}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut lines = BufReader::new(stream.try_clone().unwrap()).lines();
    let challenge = lines.next().unwrap().unwrap();
    assert!(challenge.starts_with(r#"{"msg":"challenge""#), "{challenge}");
    let register = format!(
        r#"{{"msg":"register","index":1,"count":3,"scenario_sha256":"0","version":"0","host":"intruder","answer":"{}"}}"#,
        "ab".repeat(32)
    );
    (&stream).write_all(format!("{register}\n").as_bytes()).unwrap();
    let answer = lines.next().unwrap().unwrap();
    assert!(answer.contains(r#""msg":"refused""#) && answer.contains("rendezvous token"), "{answer}");
    stream.local_addr().unwrap()
}

#[test]
fn shard_options_are_checked_before_anything_runs() {
    let dir = TempDir::new("shard-options");
    let file = dir.file("s.toml", &scenario("127.0.0.1:1"));
    let file = file.to_str().unwrap();
    let stderr_of = |args: &[&str], env: &[(&str, &str)]| {
        let out = sockcap()
            .args(["run", file])
            .args(args)
            .env_remove("JOB_COMPLETION_INDEX")
            .env_remove("SOCKCAP_SHARDS")
            .env_remove("SOCKCAP_RENDEZVOUS_TOKEN")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .expect("sockcap runs");
        assert_exit(&out, 2);
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(stderr_of(&["--rendezvous", "127.0.0.1:9"], &[]).contains("give this run its --shard"));
    assert!(stderr_of(&["--shard", "auto"], &[]).contains("JOB_COMPLETION_INDEX is not set"));
    let err = stderr_of(&["--shard", "auto"], &[("JOB_COMPLETION_INDEX", "3"), ("SOCKCAP_SHARDS", "3")]);
    assert!(err.contains("INDEX < COUNT"), "{err}");
    let err = stderr_of(&["--shard", "0/2", "--start-at", "2020-01-01T00:00:00Z"], &[]);
    assert!(err.contains("has passed"), "{err}");
    assert!(stderr_of(&["--shard", "2/2"], &[]).contains("INDEX < COUNT"));
    let err = stderr_of(&["--target", "embedded", "--netns", "--shard", "0/2", "--rendezvous", "127.0.0.1:9"], &[]);
    assert!(err.contains("private network namespace"), "{err}");
    // A rendezvous token shorter than 16 bytes, from the file or the environment.
    let short = dir.file("short-token", "fifteen bytes!!\n");
    let rendezvous = ["--shard", "1/2", "--rendezvous", "127.0.0.1:9"];
    let err = stderr_of(&[&rendezvous[..], &["--rendezvous-token-file", short.to_str().unwrap()]].concat(), &[]);
    assert!(err.contains("--rendezvous-token-file") && err.contains("15 bytes"), "{err}");
    let err = stderr_of(&rendezvous, &[("SOCKCAP_RENDEZVOUS_TOKEN", "too short")]);
    assert!(err.contains("$SOCKCAP_RENDEZVOUS_TOKEN") && err.contains("9 bytes"), "{err}");
    let missing = dir.path("missing-token");
    let err = stderr_of(&[&rendezvous[..], &["--rendezvous-token-file", missing.to_str().unwrap()]].concat(), &[]);
    assert!(err.contains("cannot read the token"), "{err}");
    let err = stderr_of(&["--shard", "1/2", "--rendezvous-token-file", short.to_str().unwrap()], &[]);
    assert!(err.contains("--rendezvous <HOST:PORT>"), "a token without a rendezvous: {err}");
}

#[test]
fn start_at_starts_phase_one_at_the_instant_given() {
    let dir = TempDir::new("start-at");
    let toml = "name = \"start at\"\ntarget = \"embedded\"\nprotocol = \"tcp\"\n\n[[phase]]\nname = \"ramp\"\n\
                connect = { count = 20, rate = 200 }\n";
    let file = dir.file("s.toml", toml);
    let at = SystemTime::now() + Duration::from_secs(3);
    let at_text = humantime::format_rfc3339_millis(at).to_string();
    let json = dir.path("r.json");
    let out = sockcap()
        .args(["run", file.to_str().unwrap(), "--shard", "auto", "--start-at", &at_text, "--quiet"])
        .args(["--json", json.to_str().unwrap()])
        .env("JOB_COMPLETION_INDEX", "0")
        .env("SOCKCAP_SHARDS", "1")
        .stdin(Stdio::null())
        .output()
        .expect("sockcap runs");
    assert_exit(&out, 0);
    let r = report(&json);
    assert_eq!((r["shard"]["index"].clone(), r["shard"]["count"].clone()), (0.into(), 1.into()));
    assert_eq!(r["shard"]["start"], "start_at");
    let asked = at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_micros() as i64;
    let started = r["shard"]["start_unix_us"].as_i64().unwrap();
    assert!((started - asked).abs() < 50_000, "phase 1 started {} µs off the instant asked", started - asked);
    assert_eq!(phase(&r, "ramp")["succeeded"], 20);
}

/// Kubernetes stops a pod (its deadline, `kubectl delete`) with SIGTERM: a shard treats
/// it as Ctrl-C and still writes what it measured.
#[test]
fn sigterm_stops_a_shard_with_its_report() {
    let dir = TempDir::new("sigterm");
    let toml = "name = \"sigterm\"\ntarget = \"embedded\"\nprotocol = \"tcp\"\n\n[[phase]]\nname = \"ramp\"\n\
                connect = { count = 200, rate = 1000 }\n\n[[phase]]\nname = \"hold\"\nhold = \"60s\"\n";
    let (mut run, json) = start_run(&dir, toml, &["--shard", "1/2"]);
    let mut progress = Progress::of(&mut run);
    // From its first line, the progress counts this shard's share.
    let ramp = progress.wait_for_phase("ramp", Duration::from_secs(30));
    assert!(ramp.contains("/100 connected"), "{ramp}");
    progress.wait_for_phase("hold", Duration::from_secs(30));
    let pid = run.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = wait_with_timeout(&mut run, Duration::from_secs(20));
    assert_eq!(status.code(), Some(130));
    let r = report(&json);
    assert_eq!(r["outcome"], "interrupted");
    assert_eq!(phase(&r, "ramp")["succeeded"], 100);
    assert_eq!(r["shard"]["index"], 1);
}
