//! Runs spread over hosts, in the multi-host lab (`netlab`): namespaces for three client
//! hosts and a target, joined by a bridge. A plain run from each host counts what `ss`
//! sees there; three shards of one run meet at a rendezvous, and their merged report
//! counts what `ss` sees in every host and in the target, with client ids unique at the
//! broker; a missing shard makes the merge partial; a shard of another scenario, another
//! N or a taken index is refused, and one whose peers never come gives up. Every lab is
//! removed afterwards.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::netlab::{Lab, LabMosquitto, LabServe, Spawned, PORT_RANGE};
use crate::support::{output_within, phase, report, sockcap, TempDir};

const MQTT_PORT: u16 = 1883;
const RENDEZVOUS_PORT: u16 = 7411;
/// Bound on every sockcap run and merge below.
const PATIENCE: Duration = Duration::from_secs(40);

/// What `ss` saw once the hold had settled: per host, its client sockets toward the
/// target by state, and their established count per source address; in the target
/// namespace, the sockets of the target's address by state.
#[derive(Debug, PartialEq)]
struct Held {
    hosts: Vec<BTreeMap<String, u64>>,
    by_source: Vec<BTreeMap<Ipv4Addr, u64>>,
    server: BTreeMap<String, u64>,
}

/// Poll `ss` in every namespace until three readings 150 ms apart agree, with sockets
/// established from every host: the hold. Every run must still be running afterwards,
/// or the reading could be of the close. One reading runs `ss` 13 times in namespaces:
/// on a loaded runner (load 12 on 2 cores) three took longer than a 4 s hold, so the
/// lab's holds last 8 s.
fn settled_hold(lab: &Lab, target: SocketAddrV4, runs: &mut [Spawned]) -> Held {
    let read = || Held {
        hosts: lab.hosts.iter().map(|h| lab.client_states(h, target)).collect(),
        by_source: lab.hosts.iter().map(|h| lab.established_by_source(h, target)).collect(),
        server: lab.server_states(target),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = read();
    let mut agreeing = 1;
    while agreeing < 3 || last.hosts.iter().any(|h| !h.contains_key("established")) {
        assert!(Instant::now() < deadline, "the hold never settled; last reading {last:?}");
        assert_running(runs, &format!("before the hold settled; last reading {last:?}"));
        std::thread::sleep(Duration::from_millis(150));
        let next = read();
        agreeing = if next == last { agreeing + 1 } else { 1 };
        last = next;
    }
    assert_running(runs, &format!("while ss read the hold: {last:?}"));
    last
}

/// Panic, with its exit status and stderr, if one of `runs` has ended.
fn assert_running(runs: &mut [Spawned], when: &str) {
    for (i, run) in runs.iter_mut().enumerate() {
        if !run.running() {
            let (status, stderr) = run.wait(Duration::ZERO);
            panic!("run {i} ended ({status}) {when}\n--- stderr\n{stderr}");
        }
    }
}

/// The non-zero entries of a report's `census.client`, comparable with `ss` readings.
fn client_census(phase: &Value) -> BTreeMap<String, u64> {
    let census = phase["census"]["client"].as_object().unwrap_or_else(|| panic!("census.client in {phase}"));
    census.iter().map(|(k, v)| (k.clone(), v.as_u64().expect("count"))).filter(|(_, v)| *v > 0).collect()
}

fn sum(maps: &[BTreeMap<String, u64>]) -> BTreeMap<String, u64> {
    let mut total = BTreeMap::new();
    for (k, v) in maps.iter().flatten() {
        *total.entry(k.clone()).or_insert(0) += v;
    }
    total
}

fn established(states: &BTreeMap<String, u64>) -> u64 {
    states.get("established").copied().unwrap_or(0)
}

/// `sockcap merge` over `files`, bounded; its output and the merged report.
fn merge(dir: &TempDir, name: &str, expect: usize, files: &[&std::path::Path]) -> (std::process::Output, Value) {
    let json = dir.path(name);
    let out = output_within(
        sockcap().args(["merge", "--expect-shards", &expect.to_string()]).args(files).arg("--json").arg(&json),
        PATIENCE,
    );
    (out, report(&json))
}

/// The shard indices of `merge.shards` (one object per shard merged).
fn indices(shards: &Value) -> Vec<u64> {
    shards.as_array().expect("merge.shards").iter().map(|s| s["index"].as_u64().expect("shard index")).collect()
}

fn sha256(path: &std::path::Path) -> String {
    let out = output_within(Command::new("sha256sum").arg(path), Duration::from_secs(10));
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().expect("sha256sum prints the digest").to_string()
}

/// `sockcap run SCENARIO ARGS --json JSON --quiet` in `netns`, stderr captured.
fn run_command(lab: &Lab, netns: &str, scenario: &std::path::Path, json: &std::path::Path, args: &[&str]) -> Command {
    let mut command = lab.command(netns, env!("CARGO_BIN_EXE_sockcap"));
    command.arg("run").arg(scenario).args(args).arg("--json").arg(json).arg("--quiet");
    command.stdout(Stdio::null()).stderr(Stdio::piped());
    command
}

/// [`run_command`], started.
fn start_run(lab: &Lab, netns: &str, scenario: &std::path::Path, json: &std::path::Path, args: &[&str]) -> Spawned {
    Spawned::start(&mut run_command(lab, netns, scenario, json, args))
}

fn assert_exit_code(what: &str, (status, stderr): &(std::process::ExitStatus, String), want: i32) {
    assert_eq!(status.code(), Some(want), "{what} exit code\n--- stderr\n{stderr}");
}

/// Today's CLI, without shards: each host runs 300 clients from its own three
/// addresses against the embedded target in the target namespace. Each run's census
/// is what `ss` sees in its host, and the target namespace holds the sum.
#[test]
#[cfg_attr(sockcap_not_root, ignore = "needs root to make network namespaces")]
fn runs_from_three_hosts_count_what_ss_sees_in_each_and_the_target_holds_the_sum() {
    let lab = Lab::new(3, 2);
    let serve = LabServe::start(&lab, MQTT_PORT);
    let dir = TempDir::new("lab-hosts");
    let scenario = dir.file(
        "hosts.toml",
        &format!(
            "name = \"one of three hosts\"\ntarget = \"{}\"\nprotocol = \"mqtt\"\n\
             [[phase]]\nname = \"ramp\"\nconnect = {{ count = 300, rate = 1000 }}\n\
             [[phase]]\nname = \"hold\"\nhold = \"8s\"\nexpect = {{ established = \"== 300\" }}\n\
             [[phase]]\nname = \"close\"\nclose = {{ how = \"rst\", rate = 5000 }}\n",
            serve.addr
        ),
    );
    let jsons: Vec<_> = (0..3).map(|i| dir.path(&format!("host{i}.json"))).collect();
    let target = serve.addr.to_string();
    let mut runs: Vec<Spawned> = lab
        .hosts
        .iter()
        .zip(&jsons)
        .map(|(host, json)| {
            start_run(&lab, &host.netns, &scenario, json, &["--target", &target, "--sources", &host.sources()])
        })
        .collect();
    let held = settled_hold(&lab, serve.addr, &mut runs);
    for (i, run) in runs.iter_mut().enumerate() {
        assert_exit_code(&format!("host {i}"), &run.wait(PATIENCE), 0);
    }

    for (i, json) in jsons.iter().enumerate() {
        let report = report(json);
        let hold = client_census(phase(&report, "hold"));
        assert_eq!(hold, held.hosts[i], "host {i}: the report's hold census against ss in its namespace");
        assert_eq!(hold, BTreeMap::from([("established".to_string(), 300)]), "host {i}");
        // Round-robin over the host's three addresses.
        assert!(held.by_source[i].values().all(|n| *n == 100), "host {i} by source: {:?}", held.by_source[i]);
    }
    assert_eq!(established(&held.server), 900, "the target namespace: {:?}", held.server);
    assert_eq!(established(&sum(&held.hosts)), established(&held.server));
    // The host's own ephemeral range is not the lab's: the namespaces' sysctls are their own.
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    assert_ne!(range.split_whitespace().collect::<Vec<_>>(), [PORT_RANGE.0.to_string(), PORT_RANGE.1.to_string()]);
}

/// The sharded run: one shard per host (`--shard i/3`, host 2 `--shard auto`), meeting at
/// host 0, against one mosquitto; the merged report counts what `ss` sees in every
/// namespace, and every client id is used once. Then the same reports with one left out:
/// the merge is partial.
#[test]
#[cfg_attr(sockcap_not_root, ignore = "needs root to make network namespaces")]
fn three_shards_merge_into_what_ss_sees_on_every_host_and_at_the_target() {
    const TOTAL: u64 = 1200;
    let lab = Lab::new(3, 2);
    let broker = LabMosquitto::start(&lab, "shards", MQTT_PORT);
    let dir = TempDir::new("lab-shards");
    let scenario = dir.file(
        "sharded.toml",
        &format!(
            "name = \"three hosts, one broker\"\ntarget = \"{}\"\nprotocol = \"mqtt\"\n\
             [mqtt]\nclient_id = \"sockcap-{{worker}}-{{n}}\"\nkeep_alive = \"30s\"\n\
             [[phase]]\nname = \"ramp\"\nconnect = {{ count = {TOTAL}, rate = 600 }}\n\
             expect = {{ established = \"== {TOTAL}\" }}\n\
             [[phase]]\nname = \"hold\"\nhold = \"8s\"\nexpect = {{ established = \"== {TOTAL}\", drops = \"== 0\" }}\n\
             [[phase]]\nname = \"close\"\nclose = {{ how = \"mqtt-disconnect\", rate = 3000, timeout = \"30s\" }}\n\
             expect = {{ established = \"== 0\" }}\n",
            broker.addr
        ),
    );
    let rendezvous = SocketAddrV4::new(lab.hosts[0].addr(), RENDEZVOUS_PORT).to_string();
    // The shards prove a shared token across the hosts.
    const TOKEN: &str = "lab-token-7d3e9b2c5a10f486";
    let token = dir.file("rendezvous-token", &format!("{TOKEN}\n"));
    let token = token.to_str().unwrap();
    let jsons: Vec<_> = (0..3).map(|i| dir.path(&format!("shard{i}.json"))).collect();
    let mut shards: Vec<Spawned> = lab
        .hosts
        .iter()
        .enumerate()
        .map(|(i, host)| {
            // Host 2 finds its place as a Kubernetes indexed Job's pod would: `--shard auto`.
            let shard = if i == 2 { "auto".to_string() } else { format!("{i}/3") };
            let sources = host.sources();
            let args = [
                "--shard",
                &shard,
                "--rendezvous",
                &rendezvous,
                "--rendezvous-timeout",
                "30s",
                "--sources",
                &sources,
                "--rendezvous-token-file",
                token,
            ];
            let mut command = run_command(&lab, &host.netns, &scenario, &jsons[i], &args);
            if i == 2 {
                command.env("JOB_COMPLETION_INDEX", "2").env("SOCKCAP_SHARDS", "3");
            }
            Spawned::start(&mut command)
        })
        .collect();
    let held = settled_hold(&lab, broker.addr, &mut shards);
    for (i, shard) in shards.iter_mut().enumerate() {
        let result = shard.wait(PATIENCE);
        assert_exit_code(&format!("shard {i}"), &result, 0);
        assert!(!result.1.contains("no token") && !result.1.contains(TOKEN), "shard {i}: {}", result.1);
    }
    let after = lab.server_states(broker.addr);
    let log = broker.stop();

    // Each shard's report: its place in the run, the scenario's digest, its own census.
    let digest = sha256(&scenario);
    let shard_reports: Vec<Value> = jsons.iter().map(|j| report(j)).collect();
    for (i, r) in shard_reports.iter().enumerate() {
        assert_eq!((&r["shard"]["index"], &r["shard"]["count"]), (&Value::from(i), &Value::from(3)), "{}", r["shard"]);
        assert_eq!(r["shard"]["scenario_sha256"], digest.as_str());
        assert_eq!(client_census(phase(r, "hold")), held.hosts[i], "shard {i}: its hold census against ss on host {i}");
        for p in r["phases"].as_array().unwrap() {
            for e in p["expectations"].as_array().unwrap().iter().filter(|e| e["implicit"] != true) {
                assert_eq!(e["deferred"], true, "shard {i}, phase {}: {e}", p["name"]);
            }
        }
    }

    let files: Vec<&std::path::Path> = jsons.iter().map(|p| p.as_path()).collect();
    let (out, merged) = merge(&dir, "merged.json", 3, &files);
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let errnos: Vec<String> = shard_reports.iter().map(|r| r["phases"][0]["other_errnos"].to_string()).collect();
    assert_eq!(out.status.code(), Some(0), "merge\n{said}\nramp errnos by shard: {errnos:?}");
    assert_eq!(merged["merge"]["expected_shards"], 3);
    assert_eq!(indices(&merged["merge"]["shards"]), [0, 1, 2]);
    assert_eq!(merged["merge"]["missing"], serde_json::json!([]));
    assert_eq!(merged["merge"]["partial"], false);

    // The census: merged = the sum of the hosts' ss = the broker's ss.
    let hold = client_census(phase(&merged, "hold"));
    assert_eq!(hold, sum(&held.hosts), "merged hold census against the sum of ss on the hosts");
    assert_eq!(established(&hold), TOTAL);
    assert_eq!(established(&held.server), TOTAL, "ss in the target namespace: {:?}", held.server);
    // Connection g belongs to shard g mod 3: 400 per host, dealt round-robin over the
    // host's own three addresses (134, 133, 133), not all from the one that g mod 3 picks.
    for (i, states) in held.hosts.iter().enumerate() {
        assert_eq!(established(states), TOTAL / 3, "host {i}: {states:?}");
        let spread: Vec<u64> = held.by_source[i].values().copied().collect();
        assert!(spread.iter().max().unwrap() - spread.iter().min().unwrap() <= 1, "host {i} by source: {spread:?}");
    }
    // The shards' figures add up, phase by phase.
    for p in merged["phases"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        let of_shards = |f: &dyn Fn(&Value) -> &Value| -> u64 {
            shard_reports.iter().map(|r| f(phase(r, name)).as_u64().unwrap_or(0)).sum()
        };
        assert_eq!(p["succeeded"].as_u64(), Some(of_shards(&|p| &p["succeeded"])), "phase {name} succeeded");
        for h in ["connect", "handshake", "close"] {
            let want = of_shards(&|p| &p["latency_us"][h]["count"]);
            assert_eq!(p["latency_us"][h]["count"].as_u64().unwrap_or(0), want, "phase {name}: {h} count");
        }
    }
    assert_eq!(phase(&merged, "ramp")["latency_us"]["handshake"]["count"], TOTAL);
    // mqtt-disconnect: the broker closed first, so each connection left TIME_WAIT in the
    // target namespace (tcp_rfc1337 = 1 there: exactly one each).
    assert_eq!(phase(&merged, "close")["succeeded"], TOTAL);
    assert_eq!(after.get("time_wait").copied(), Some(TOTAL), "the target namespace after the run: {after:?}");

    // Client ids, as the broker saw them: each once, n = 0..1200, n from host n mod 3.
    let connected: Vec<(Ipv4Addr, String)> = log
        .lines()
        .filter_map(|l| {
            let rest = l.split_once("New client connected from ")?.1;
            let (from, rest) = rest.split_once(" as ")?;
            let ip = from.rsplit_once(':')?.0.parse().ok()?;
            Some((ip, rest.split_whitespace().next()?.to_string()))
        })
        .collect();
    assert_eq!(connected.len() as u64, TOTAL, "connections the broker logged");
    let ids: BTreeSet<&str> = connected.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids.len() as u64, TOTAL, "distinct client ids");
    assert!(!log.contains("already connected"), "a client id was taken over");
    let mut numbers = BTreeSet::new();
    for (ip, id) in &connected {
        let n: u64 = id.rsplit_once('-').and_then(|(_, n)| n.parse().ok()).unwrap_or_else(|| panic!("client id {id}"));
        let host = &lab.hosts[(n % 3) as usize];
        assert!(host.addrs.contains(ip), "{id} came from {ip}, not from host {} {:?}", n % 3, host.addrs);
        numbers.insert(n);
    }
    assert_eq!(numbers, (0..TOTAL).collect(), "client ids use the global connection numbers");

    // The same reports with shard 1 left out: partial, and it says which.
    let (out, partial) = merge(&dir, "partial.json", 3, &[files[0], files[2]]);
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "merge of 2 of 3\n{said}");
    assert_eq!(partial["merge"]["partial"], true);
    assert_eq!(partial["merge"]["missing"], serde_json::json!([1]));
    assert_eq!(indices(&partial["merge"]["shards"]), [0, 2]);
    assert_eq!(established(&client_census(phase(&partial, "hold"))), 2 * TOTAL / 3);
}

/// At the rendezvous, a shard whose scenario file differs by one byte, one given another
/// N and one whose index is taken are each refused at once (exit 2, long before the
/// timeout), and the rendezvous waits on: the right shard 2 then starts the run.
#[test]
#[cfg_attr(sockcap_not_root, ignore = "needs root to make network namespaces")]
fn a_shard_of_another_scenario_n_or_taken_index_is_refused_at_once() {
    let lab = Lab::new(3, 0);
    let serve = LabServe::start(&lab, MQTT_PORT);
    let dir = TempDir::new("lab-refused");
    let toml = |name: &str| {
        format!(
            "name = \"{name}\"\ntarget = \"{}\"\nprotocol = \"mqtt\"\n\
             [[phase]]\nname = \"ramp\"\nconnect = {{ count = 30, rate = 300 }}\n\
             [[phase]]\nname = \"close\"\nclose = {{ how = \"rst\", rate = 1000 }}\n",
            serve.addr
        )
    };
    let ours = dir.file("ours.toml", &toml("shard a"));
    let other = dir.file("other.toml", &toml("shard b"));
    let rendezvous = SocketAddrV4::new(lab.hosts[0].addr(), RENDEZVOUS_PORT).to_string();
    let shard_args =
        |shard: &str| ["--shard", shard, "--rendezvous", &rendezvous, "--rendezvous-timeout", "30s"].map(String::from);
    let start = |host: usize, scenario: &std::path::Path, shard: &str| {
        let args = shard_args(shard);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        start_run(
            &lab,
            &lab.hosts[host].netns,
            scenario,
            &dir.path(&format!("{}.json", shard.replace('/', "of"))),
            &args,
        )
    };
    let mut waiting = vec![start(0, &ours, "0/3")];
    lab.wait_listening(
        &lab.hosts[0].netns,
        SocketAddrV4::new(lab.hosts[0].addr(), RENDEZVOUS_PORT),
        Duration::from_secs(10),
    );
    waiting.push(start(1, &ours, "1/3"));
    // Shard 1 is registered once shard 0 holds its connection.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !crate::support::ss_states_in(&lab.hosts[1].netns, &format!("( dport = :{RENDEZVOUS_PORT} )"))
        .contains_key("established")
    {
        assert!(Instant::now() < deadline, "shard 1 never reached the rendezvous");
        std::thread::sleep(Duration::from_millis(20));
    }

    for (scenario, shard, says) in
        [(&other, "2/3", "another scenario"), (&ours, "3/4", "same N"), (&ours, "1/3", "already registered")]
    {
        let started = Instant::now();
        let mut command = lab.command(&lab.hosts[2].netns, env!("CARGO_BIN_EXE_sockcap"));
        command.arg("run").arg(scenario).args(shard_args(shard)).arg("--quiet");
        let out = output_within(&mut command, PATIENCE);
        let took = started.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "shard {shard} ({says})\n{stderr}");
        assert!(took < Duration::from_secs(5), "shard {shard} refused after {took:?}, with a 30 s timeout");
        assert!(stderr.contains("refused") && stderr.contains(says), "shard {shard}: {stderr}");
    }
    assert_running(&mut waiting, "after the refusals");

    waiting.push(start(2, &ours, "2/3"));
    for (i, shard) in waiting.iter_mut().enumerate() {
        assert_exit_code(&format!("shard {i}"), &shard.wait(PATIENCE), 0);
    }
}

/// A shard whose peers never arrive gives up at its rendezvous timeout with exit 3:
/// shard 0 listening alone, and shard 1 with nobody listening. Neither has a token, and
/// each warns once that anyone can join.
#[test]
#[cfg_attr(sockcap_not_root, ignore = "needs root to make network namespaces")]
fn a_shard_whose_peers_never_come_exits_3_at_the_timeout() {
    let lab = Lab::new(2, 0);
    let dir = TempDir::new("lab-alone");
    let scenario = dir.file(
        "alone.toml",
        &format!(
            "name = \"alone\"\ntarget = \"{}:{MQTT_PORT}\"\nprotocol = \"tcp\"\n\
             [[phase]]\nconnect = {{ count = 10, rate = 100 }}\n",
            lab.target.addr()
        ),
    );
    let host0 = lab.hosts[0].addr();
    // Shard 1 is sent where nobody listens, so the two never meet.
    let places = [(0, RENDEZVOUS_PORT), (1, RENDEZVOUS_PORT + 1)];
    let started = Instant::now();
    let mut shards: Vec<Spawned> = places
        .iter()
        .map(|&(i, port)| {
            let (shard, rendezvous) = (format!("{i}/2"), SocketAddrV4::new(host0, port).to_string());
            let args = ["--shard", &shard, "--rendezvous", &rendezvous, "--rendezvous-timeout", "2s"];
            start_run(&lab, &lab.hosts[i].netns, &scenario, &dir.path(&format!("{i}.json")), &args)
        })
        .collect();
    for (i, shard) in shards.iter_mut().enumerate() {
        let result = shard.wait(Duration::from_secs(15));
        assert_exit_code(&format!("shard {i} alone"), &result, 3);
        // Without a token, each shard says anyone can join.
        let warning = "no token (--rendezvous-token-file or $SOCKCAP_RENDEZVOUS_TOKEN): anyone who reaches";
        assert_eq!(result.1.matches(warning).count(), 1, "shard {i}: {}", result.1);
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(10), "gave up after {took:?}");
}

/// The lab's namespaces have their own sysctls, and dropping the lab, in a panic too,
/// kills what runs inside and removes every namespace.
#[test]
#[cfg_attr(sockcap_not_root, ignore = "needs root to make network namespaces")]
fn a_lab_is_removed_with_its_processes_when_its_test_panics() {
    let host_before = ["ipv4/tcp_rfc1337", "ipv4/ip_local_port_range"]
        .map(|k| std::fs::read_to_string(format!("/proc/sys/net/{k}")).unwrap());
    let mut seen: Option<(Vec<String>, u32)> = None;
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let lab = Lab::new(2, 1);
        for node in lab.hosts.iter().chain([&lab.target]) {
            assert_eq!(lab.sysctl(&node.netns, "ipv4/tcp_rfc1337"), "1");
            assert_eq!(
                lab.sysctl(&node.netns, "ipv4/ip_local_port_range"),
                format!("{} {}", PORT_RANGE.0, PORT_RANGE.1)
            );
        }
        // A process the test does not hold: started in the background by a shell that exits.
        let out = output_within(
            lab.command(&lab.hosts[1].netns, "sh").args(["-c", "sleep 60 >/dev/null 2>&1 & echo $!"]),
            Duration::from_secs(10),
        );
        let orphan: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().expect("the shell prints the pid");
        seen = Some((lab.namespaces(), orphan));
        panic!("the test fails with its lab up");
    }));
    assert!(panicked.is_err());
    let (namespaces, orphan) = seen.expect("the lab was built");
    assert_eq!(namespaces.len(), 4, "switch, two hosts, target: {namespaces:?}");
    let listed =
        String::from_utf8_lossy(&Command::new("ip").args(["netns", "list"]).output().unwrap().stdout).into_owned();
    for netns in &namespaces {
        assert!(!listed.lines().any(|l| l.split_whitespace().next() == Some(netns)), "{netns} is left: {listed}");
    }
    crate::support::assert_gone(&[orphan], Duration::from_secs(5));
    let host_after = ["ipv4/tcp_rfc1337", "ipv4/ip_local_port_range"]
        .map(|k| std::fs::read_to_string(format!("/proc/sys/net/{k}")).unwrap());
    assert_eq!(host_before, host_after, "the host's sysctls are untouched");
}
