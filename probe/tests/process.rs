//! The process behind a listening port: this test process, found by its own listener.

use std::net::{Ipv4Addr, TcpListener};

use probe::{listeners_for, listeners_of, ProcessFds};

/// Descriptors this process has open, counted as the test sees them.
fn own_fds() -> u64 {
    // read_dir holds one descriptor of its own while it lists
    std::fs::read_dir("/proc/self/fd").unwrap().count() as u64 - 1
}

#[test]
fn a_listener_leads_to_this_process() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let found = listeners_of(addr.port()).unwrap();
    let me = std::process::id();
    assert_eq!(found.len(), 1, "{found:?}");
    let fds = &found[0];
    assert_eq!(fds.pid, me);
    let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
    assert_eq!(fds.name, comm.trim_end());
    assert_eq!((fds.limit_soft, fds.limit_hard), probe::limits::nofile().unwrap());
    // other tests of this binary may open a few descriptors meanwhile
    assert!(fds.open.abs_diff(own_fds()) <= 4, "{} open, {} seen here", fds.open, own_fds());

    // the count follows what the process opens
    let before = ProcessFds::read(me).unwrap().open;
    let files: Vec<std::fs::File> = (0..50).map(|_| std::fs::File::open("/dev/null").unwrap()).collect();
    let during = ProcessFds::read(me).unwrap().open;
    assert!((50..=54).contains(&(during - before)), "{before} then {during}");
    drop(files);

    // by address: the listener's own address serves it, another loopback address does not
    let by_addr = listeners_for(addr).unwrap();
    assert_eq!(by_addr.processes.iter().map(|p| p.pid).collect::<Vec<_>>(), [me]);
    assert!(by_addr.unowned.is_empty());
    let elsewhere = listeners_for((Ipv4Addr::new(127, 0, 0, 2), addr.port()).into()).unwrap();
    assert!(elsewhere.sockets.is_empty() && elsewhere.processes.is_empty(), "{elsewhere:?}");
}

#[test]
fn a_port_nobody_listens_on_has_no_process() {
    let port = {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        l.local_addr().unwrap().port()
    };
    assert!(listeners_of(port).unwrap().is_empty());
}

#[test]
fn a_process_that_is_gone_is_an_error() {
    // pid_max is at most 2^22
    assert!(ProcessFds::read(u32::MAX).is_err());
}
