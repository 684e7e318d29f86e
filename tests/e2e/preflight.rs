//! `sockcap preflight`: the budget of a run before it runs. Exit 0 when it fits (naming
//! the worker processes), 3 when a check blocks (naming the first bottleneck and its
//! fix), 2 for bad input; the scenario files are written to a temporary directory.

use serde_json::Value;
pub use sockcap::report::thousands;

use crate::support::{assert_exit, run, run_with_nofile, Mosquitto, TempDir};

/// The descriptor limit `sockcap preflight` runs under in these tests, whatever the
/// runner's: the worker counts they expect follow from it.
const NOFILE: u64 = 4_096;

fn scenario(target: &str, head: &str, count: u64) -> String {
    format!(
        "name = \"preflight\"\ntarget = \"{target}\"\nprotocol = \"mqtt\"\n{head}\n\
         [[phase]]\nname = \"ramp\"\nconnect = {{ count = {count}, rate = 5000 }}\n\
         [[phase]]\nname = \"close\"\nclose = {{ how = \"rst\", rate = 10000 }}\n"
    )
}

/// Run `sockcap preflight` on `toml` (written as a file) with `extra` arguments, under a
/// descriptor limit of [`NOFILE`].
fn preflight(tag: &str, toml: &str, extra: &[&str]) -> std::process::Output {
    let dir = TempDir::new(&format!("preflight-{tag}"));
    let file = dir.file("scenario.toml", toml);
    let mut args = vec!["preflight", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    run_with_nofile(&args, NOFILE)
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
}

fn check<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["checks"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no {name}: {doc}"))
}

#[test]
fn a_scenario_that_fits_exits_0_and_names_the_workers() {
    let out = preflight("fits", &scenario("embedded", "", 1_000), &[]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("verdict: fits with 1 worker process"), "{text}");
    assert!(text.contains("descriptors (client)") && text.contains("ports (client)"), "{text}");

    // Past one process's descriptors: as many workers as the hard limit needs (8).
    let count = 30_000;
    let out = preflight("workers", &scenario("embedded", "", count), &["--json"]);
    assert_exit(&out, 0);
    let doc = json(&out);
    assert_eq!(doc["fits"], true);
    assert_eq!(doc["workers"], count.div_ceil(NOFILE - 100));
    // the embedded target covers an eighth more, for SO_REUSEPORT's uneven spread (9)
    assert_eq!(doc["target_workers"], (count + count / 8).div_ceil(NOFILE - 100));
    assert_eq!(check(&doc, "descriptors")["figures"]["workers_needed"], doc["workers"]);
    // a loopback target is spread over enough 127.0.0.x sources by itself: no pair holds
    // more than half the ephemeral range
    let ports = check(&doc, "ports");
    assert_eq!(ports["verdict"], "fits");
    let figure = |name: &str| ports["figures"][name].as_u64().unwrap();
    assert!(figure("source_addresses") >= 2 && figure("connections_per_pair") <= range_size() / 2, "{ports}");
}

/// Ports per source address: the size of this machine's ip_local_port_range.
fn range_size() -> u64 {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    let ports: Vec<u64> = text.split_whitespace().map(|p| p.parse().unwrap()).collect();
    ports[1] - ports[0] + 1
}

#[test]
fn too_many_connections_for_the_ports_exit_3_with_the_fix() {
    let range = range_size();
    let count = range * 3 / 2;
    let toml = scenario("embedded", "sources = [\"127.0.0.2\"]", count);
    let out = preflight("ports", &toml, &[]);
    assert_exit(&out, 3);
    let text = stdout(&out);
    let at = format!("first bottleneck: ports (this machine) at {} connections", thousands(range));
    assert!(text.contains(&at), "{text}");
    assert!(text.contains("fix: give at least 2 source addresses"), "{text}");
    assert!(text.contains("`sockcap run` refuses it (ports)"), "{text}");

    // --sources on the command line replaces the scenario's, and fixes it
    let out = preflight("ports-fixed", &toml, &["--sources", "127.0.0.2-127.0.0.3", "--json"]);
    assert_exit(&out, 0);
    assert_eq!(check(&json(&out), "ports")["figures"]["capacity"], 2 * range);
}

#[test]
fn forced_too_few_workers_exit_3() {
    let count = NOFILE + 1_000;
    let out = preflight("workers-forced", &scenario("embedded", "", count), &["--workers", "1", "--json"]);
    assert_exit(&out, 3);
    let doc = json(&out);
    assert_eq!(doc["first_bottleneck"], "descriptors");
    assert_eq!(doc["client_blocker"], "descriptors");
    assert_eq!(check(&doc, "descriptors")["gives_at"], NOFILE - 100);
}

/// mosquitto started with 1,024 descriptors can take about a thousand clients: 2,000 is
/// past its limit, which preflight finds from the port through the process.
#[test]
fn a_local_target_short_of_descriptors_exits_3_naming_its_limit() {
    let broker = Mosquitto::start_with_nofile("preflight", "", 1024);
    let toml = scenario(&broker.addr(), "", 2_000);
    let out = preflight("mosquitto", &toml, &[]);
    assert_exit(&out, 3);
    let text = stdout(&out);
    assert!(text.contains("first bottleneck: target_descriptors (the target)"), "{text}");
    assert!(text.contains(&format!("mosquitto (pid {}):", broker.pid())), "{text}");
    assert!(text.contains("open of 1,024"), "{text}");
    assert!(text.contains("LimitNOFILE="), "{text}");
    assert!(text.contains("`sockcap run` still runs it"), "{text}");

    let doc = json(&preflight("mosquitto-json", &toml, &["--json"]));
    assert_eq!(doc["first_bottleneck"], "target_descriptors");
    assert_eq!(doc["client_blocker"], Value::Null);
    let process = &doc["target_processes"][0];
    assert_eq!(process["pid"], broker.pid());
    assert_eq!((process["limit_soft"].as_u64(), process["limit_hard"].as_u64()), (Some(1024), Some(1024)));
    let gives_at = check(&doc, "target_descriptors")["gives_at"].as_u64().unwrap();
    assert!((900..1024).contains(&gives_at), "{gives_at}");
    // mosquitto listens with a backlog of 100: 5,000 connects/s fit in it
    assert_eq!(check(&doc, "accept_queue")["figures"]["backlog"], 100);

    // within its limit, the same broker fits
    let out = preflight("mosquitto-fits", &scenario(&broker.addr(), "", 500), &[]);
    assert_exit(&out, 0);
}

#[test]
fn nothing_listening_is_a_warning() {
    let port = crate::support::free_port();
    let out = preflight("nobody", &scenario(&format!("127.0.0.1:{port}"), "", 100), &[]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(text.contains(&format!("nothing listens at 127.0.0.1:{port}")), "{text}");
}

#[test]
fn bad_input_exits_2() {
    let out = run(&["preflight", "/nonexistent/scenario.toml"]);
    assert_exit(&out, 2);
    let out = preflight("bad-sources", &scenario("embedded", "", 10), &["--sources", "::1"]);
    assert_exit(&out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--sources"));
}

/// In a container or a pod the memory that counts is its cgroup's limit less its use,
/// not the machine's MemAvailable: preflight run inside a 100 MB memory cgroup (v1 or v2,
/// whichever the runner has) blocks a run that fits the machine many times over.
#[test]
fn a_memory_cgroup_limit_is_the_memory_that_counts() {
    let (dir, limit_file) = memory_cgroup(&format!("sockcap-e2e-{}", std::process::id()));
    struct Remove(String);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let _remove = Remove(dir.clone());
    std::fs::write(format!("{dir}/{limit_file}"), "100000000").expect("set the cgroup's limit");

    let tmp = TempDir::new("preflight-cgroup");
    let file = tmp.file("scenario.toml", &scenario("embedded", "", 20_000));
    let inside = |args: &str| {
        // The shell joins the cgroup, then becomes sockcap: only this process is limited.
        let script = format!("echo $$ > {dir}/cgroup.procs && exec {} {args}", env!("CARGO_BIN_EXE_sockcap"));
        std::process::Command::new("sh").args(["-c", &script]).output().expect("sh runs")
    };
    let out = inside(&format!("preflight {} --json", file.display()));
    assert_exit(&out, 3);
    let doc = json(&out);
    let memory = check(&doc, "memory");
    assert_eq!(memory["verdict"], "blocks", "{memory}");
    let available = memory["figures"]["mem_available_bytes"].as_u64().unwrap();
    assert!(available <= 100_000_000, "available {available}: the cgroup's headroom, not MemAvailable");
    // Outside the cgroup the same scenario fits.
    let out = preflight("cgroup-outside", &scenario("embedded", "", 20_000), &["--json"]);
    assert_eq!(check(&json(&out), "memory")["verdict"], "fits");
}

/// A new memory cgroup `name`, made where this process's memory controller is: under its
/// own v1 memory cgroup, or (v2) under the root, where the memory controller is on and no
/// process rule stands in the way. Its directory and the file that sets its limit.
fn memory_cgroup(name: &str) -> (String, &'static str) {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
    let (dir, limit_file) = match cgroups.lines().find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_string())) {
        Some(v1) => (format!("/sys/fs/cgroup/memory{}/{name}", v1.trim_end_matches('/')), "memory.limit_in_bytes"),
        None => {
            let controllers = std::fs::read_to_string("/sys/fs/cgroup/cgroup.subtree_control").unwrap_or_default();
            assert!(
                controllers.split_whitespace().any(|c| c == "memory"),
                "this test needs a memory cgroup it can make: no v1 memory controller in /proc/self/cgroup \
                 ({cgroups}) and no v2 memory controller in /sys/fs/cgroup/cgroup.subtree_control ({controllers})"
            );
            (format!("/sys/fs/cgroup/{name}"), "memory.max")
        }
    };
    std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("creating the memory cgroup {dir} (needs root): {e}"));
    (dir, limit_file)
}

/// A scenario written for a cluster names its broker (`mqtt-broker:1883`); with
/// `--target` the name is never looked up, so the scenario still checks and runs here.
#[test]
fn target_overrides_leave_the_scenarios_host_name_unresolved() {
    let toml = scenario("mqtt-broker.sockcap-test.invalid:1883", "", 100);
    let out = preflight("override", &toml, &["--target", "embedded"]);
    assert_exit(&out, 0);
}

/// `--shard I/N` sizes one host's share: a third of 60,000 loopback connections, and
/// the worker processes those need under the descriptor limit (16 and 6 under 4,096).
#[test]
fn a_shard_is_sized_on_its_share() {
    let toml = scenario("embedded", "", 60_000);
    let whole = json(&preflight("whole", &toml, &["--json"]));
    let third = json(&preflight("third", &toml, &["--json", "--shard", "1/3"]));
    assert_eq!((whole["peak_connections"].clone(), third["peak_connections"].clone()), (60_000.into(), 20_000.into()));
    let workers = |n: u64| n.div_ceil(NOFILE - 100).max(1);
    assert_eq!((whole["workers"].clone(), third["workers"].clone()), (workers(60_000).into(), workers(20_000).into()));
}

/// A target given by host name is resolved once, at the start, and connected to.
#[test]
fn a_host_name_target_is_resolved_and_reached() {
    let broker = Mosquitto::start("host-name", "");
    // Not the `localhost:` shortcut: any case of the name goes through the resolver
    // (/etc/hosts, no DNS query).
    let toml = scenario(&format!("LocalHost:{}", broker.port), "", 50).replace("rate = 5000", "rate = 500");
    let dir = TempDir::new("host-name-run");
    let file = dir.file("s.toml", &toml);
    let json_path = dir.path("r.json");
    let out = run(&["run", file.to_str().unwrap(), "--quiet", "--json", json_path.to_str().unwrap()]);
    assert_exit(&out, 0);
    let report = crate::support::report(&json_path);
    assert_eq!(report["scenario"]["target"], format!("127.0.0.1:{}", broker.port));
    assert_eq!(crate::support::phase(&report, "ramp")["succeeded"], 50);
}
