//! The source ports sockcap chooses itself (`sources`): a port already held by a socket
//! that does not share it, or a 4-tuple already connected, gives way to the kernel's
//! choice, counted in the report; the ports a churn phase left in TIME_WAIT do not refuse
//! a later connect phase's. A source address that is not this machine's is refused
//! before any connect.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::support::{assert_exit, census, free_port, phase, run, run_scenario, TempDir};

/// The first port of ip_local_port_range: connection g of a run with one source address
/// binds `lo + g`.
fn range_start() -> u16 {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    range.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn a_taken_source_port_gives_way_to_the_kernels_choice_and_is_counted() {
    const TAKEN: u16 = 5;
    let source = Ipv4Addr::new(127, 0, 77, 7);
    let lo = range_start();
    // Another program's listeners on the ports connections 0-4 would bind.
    let _held: Vec<TcpListener> = (lo..lo + TAKEN)
        .map(|port| {
            TcpListener::bind(SocketAddrV4::new(source, port))
                .unwrap_or_else(|e| panic!("the test holds {source}:{port}: {e}"))
        })
        .collect();
    let toml = format!(
        "name = \"taken\"\ntarget = \"embedded\"\nprotocol = \"tcp\"\nsources = [\"{source}\"]\n\
         [[phase]]\nname = \"ramp\"\nconnect = {{ count = 50, rate = 1000 }}\n"
    );
    let (out, report) = run_scenario("ports-taken", &toml, &[]);
    assert_exit(&out, 0);
    let ramp = phase(&report, "ramp");
    assert_eq!(ramp["succeeded"], 50, "{}", ramp["errors"]);
    assert_eq!(ramp["ports_taken"], u64::from(TAKEN));
    assert_eq!(census(ramp, "client", "established"), 50);
    assert!(
        report["notes"].to_string().contains("5 of the source ports sockcap chose were in use"),
        "{}",
        report["notes"]
    );
}

/// Another program connected from the source address and port connection 0 would bind,
/// to the same target, with SO_REUSEADDR: the bind succeeds and the connect finds the
/// 4-tuple in use (EADDRNOTAVAIL). The connection takes the kernel's port instead.
#[test]
fn a_source_port_whose_4_tuple_is_connected_gives_way_too() {
    let source = Ipv4Addr::new(127, 0, 77, 9);
    let target = TcpListener::bind(("127.0.0.1", free_port())).unwrap();
    let target_addr = target.local_addr().unwrap();
    let other = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    other.set_reuse_address(true).unwrap();
    other.bind(&SocketAddr::from(SocketAddrV4::new(source, range_start())).into()).unwrap();
    other.connect(&target_addr.into()).unwrap();
    let _other: TcpStream = other.into();
    let toml = format!(
        "name = \"tuple\"\ntarget = \"{target_addr}\"\nprotocol = \"tcp\"\nsources = [\"{source}\"]\n\
         [[phase]]\nname = \"ramp\"\nconnect = {{ count = 20, rate = 1000 }}\n"
    );
    let (out, report) = run_scenario("tuple-taken", &toml, &[]);
    assert_exit(&out, 0);
    let ramp = phase(&report, "ramp");
    assert_eq!(ramp["succeeded"], 20, "{} {}", ramp["errors"], ramp["other_errnos"]);
    assert_eq!(ramp["ports_taken"], 1);
    // Ours and the other program's (same address toward the same target), all waiting
    // in the listener's backlog.
    assert_eq!(census(ramp, "client", "established"), 21);
}

/// A churn phase's ports are chosen at connect; a connect phase after it binds ports of
/// its own on the same address. In a namespace with 1,000 ephemeral ports, about half of
/// the 900 the connect phase binds are in TIME_WAIT from the churn's 500: before, each
/// was refused with EADDRINUSE (with the fallback alone, each was counted taken).
#[test]
fn a_connect_phase_after_a_churn_phase_binds_over_its_time_wait() {
    let toml = "name = \"churn then connect\"\ntarget = \"embedded\"\nprotocol = \"tcp\"\n\
                sources = [\"127.0.0.2\"]\n\
                [netns]\nsysctl = { ip_local_port_range = \"40000 40999\" }\n\
                [[phase]]\nname = \"churn\"\nchurn = { rate = 2000, duration = \"250ms\", how = \"fin\" }\n\
                [[phase]]\nname = \"ramp\"\nconnect = { count = 900, rate = 5000 }\n";
    let (out, report) = run_scenario("churn-then-connect", toml, &[]);
    assert_exit(&out, 0);
    let churn = phase(&report, "churn");
    assert_eq!(churn["succeeded"], 500);
    assert!(census(churn, "client", "time_wait") > 400, "{}", churn["census"]);
    let ramp = phase(&report, "ramp");
    assert_eq!(ramp["succeeded"], 900, "{} {}", ramp["errors"], ramp["other_errnos"]);
    assert_eq!(ramp["ports_taken"], 0, "the churn's TIME_WAIT ports are shared, not taken");
    assert_eq!(census(ramp, "client", "established"), 900);
}

/// A source address on none of this machine's interfaces (192.0.2.1, TEST-NET-1) is
/// refused with exit 2 before anything connects: by `run` (the scenario's `sources`, a
/// phase's, and `--sources`) and by `preflight`, naming the address and the fix; inside
/// a private namespace, where only loopback exists, too. The target listening here sees
/// no connection.
#[test]
fn a_source_address_not_on_this_machine_is_refused_before_any_connect() {
    let target = TcpListener::bind(("127.0.0.1", free_port())).unwrap();
    target.set_nonblocking(true).unwrap();
    let addr = target.local_addr().unwrap();
    let dir = TempDir::new("foreign-source");
    let scenario = |name: &str, sources: &str, phase_sources: &str| {
        dir.file(
            name,
            &format!(
                "name = \"foreign\"\ntarget = \"{addr}\"\nprotocol = \"tcp\"\n{sources}\n\
                 [[phase]]\nname = \"ramp\"\nconnect = {{ count = 20, rate = 1000 }}\n{phase_sources}\n"
            ),
        )
    };
    let whole = scenario("whole.toml", "sources = [\"127.0.0.2\", \"192.0.2.1\"]", "");
    let phase = scenario("phase.toml", "", "sources = [\"192.0.2.1\"]");
    let plain = scenario("plain.toml", "", "");
    let runs: [(&[&str], &str); 4] = [
        (&["run", whole.to_str().unwrap(), "--quiet"], "field `sources`"),
        (&["run", phase.to_str().unwrap(), "--quiet"], "field `phase[0].sources`"),
        (&["run", plain.to_str().unwrap(), "--quiet", "--sources", "192.0.2.1"], "field `--sources`"),
        (&["preflight", whole.to_str().unwrap()], "field `sources`"),
    ];
    for (args, field) in runs {
        let started = Instant::now();
        let out = run(args);
        assert_exit(&out, 2);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(field), "{args:?}: {stderr}");
        assert!(stderr.contains("`192.0.2.1` is not an address of this machine"), "{args:?}: {stderr}");
        assert!(stderr.contains("ip address add 192.0.2.1/32 dev lo"), "{args:?}: {stderr}");
        assert!(!stderr.contains("TIME_WAIT") && !stderr.contains("ephemeral"), "{args:?}: {stderr}");
        assert!(started.elapsed() < Duration::from_secs(10), "{args:?} took {:?}", started.elapsed());
    }
    let netns = dir.file(
        "netns.toml",
        "name = \"ns\"\ntarget = \"embedded\"\nprotocol = \"tcp\"\nsources = [\"192.0.2.1\"]\n[netns]\n\
         [[phase]]\nconnect = { count = 5, rate = 100 }\n",
    );
    let out = run(&["run", netns.to_str().unwrap(), "--quiet"]);
    assert_exit(&out, 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("`192.0.2.1` is not an address inside the run's private network namespace"), "{stderr}");
    // Nothing reached the target.
    match target.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the target was connected to: {other:?}"),
    }
}
