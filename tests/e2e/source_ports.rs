//! The source ports sockcap chooses itself (`sources`): a port already held by a socket
//! that does not share it, or a 4-tuple already connected, gives way to the kernel's
//! choice, counted in the report; the ports a churn phase left in TIME_WAIT do not refuse
//! a later connect phase's.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};

use crate::support::{assert_exit, census, free_port, phase, run_scenario};

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
