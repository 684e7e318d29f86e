//! Client source addresses as a scenario or `--sources` gives them: [`parse_sources`],
//! the check that they are of the target's address family, and that they are this
//! machine's ([`first_foreign`]).

use std::net::{IpAddr, Ipv4Addr};

use super::caps::MAX_SOURCES;
use super::target::TargetSpec;

// The messages below write the cap out.
const _: () = assert!(MAX_SOURCES == 65_536);

/// `["127.0.0.2", "127.0.0.10-127.0.0.20", "::1"]` → addresses.
pub fn parse_sources(list: &[String]) -> Result<Vec<IpAddr>, String> {
    let too_many = || {
        "the addresses, ranges expanded, are more than the 65,536 sockcap accepts; give fewer: each address has a port range of its own".to_string()
    };
    let mut out = Vec::new();
    for item in list {
        let bad = || format!("`{item}` is not an address or an IPv4 range like \"127.0.0.2-127.0.0.40\"");
        match item.split_once('-') {
            None if out.len() >= MAX_SOURCES => return Err(too_many()),
            None => out.push(item.trim().parse::<IpAddr>().map_err(|_| bad())?),
            Some((a, b)) => {
                let a: Ipv4Addr = a.trim().parse().map_err(|_| bad())?;
                let b: Ipv4Addr = b.trim().parse().map_err(|_| bad())?;
                let (a, b) = (u32::from(a), u32::from(b));
                if b < a || b - a >= 65_536 {
                    return Err(format!("`{item}`: the range must go upward and hold at most 65,536 addresses"));
                }
                if out.len() + (b - a) as usize >= MAX_SOURCES {
                    return Err(too_many());
                }
                out.extend((a..=b).map(|n| IpAddr::V4(Ipv4Addr::from(n))));
            }
        }
    }
    if out.is_empty() {
        return Err("the list is empty; remove `sources` to let sockcap choose".into());
    }
    Ok(out)
}

/// Source addresses must be of the target's family (an embedded target is IPv4 loopback).
pub(super) fn check_family(target: TargetSpec, sources: &[IpAddr]) -> Result<(), String> {
    let v4 = match target {
        TargetSpec::Embedded => true,
        TargetSpec::Addr(a) => a.is_ipv4(),
    };
    match sources.iter().find(|s| s.is_ipv4() != v4) {
        Some(s) => Err(format!(
            "`{s}` is an {} address but the target is {}; use {} source addresses",
            if s.is_ipv4() { "IPv4" } else { "IPv6" },
            if v4 { "IPv4" } else { "IPv6" },
            if v4 { "IPv4" } else { "IPv6" }
        )),
        None => Ok(()),
    }
}

/// The first of `list` that is not this machine's: not on its network namespace's
/// interfaces, or, `in_netns`, not loopback (a private namespace has nothing else).
pub(super) fn first_foreign(list: &[IpAddr], in_netns: bool) -> Option<IpAddr> {
    let here = |ip: &IpAddr| if in_netns { ip.is_loopback() } else { crate::socket::is_local(*ip) };
    list.iter().find(|ip| !here(ip)).copied()
}

/// Why `ip` cannot be a source address, and the fix.
pub(super) fn foreign(ip: IpAddr, in_netns: bool) -> String {
    if in_netns {
        return format!(
            "`{ip}` is not an address inside the run's private network namespace ([netns] or --netns), which has \
             only loopback: use 127.x.y.z (IPv4) or ::1 (IPv6) source addresses, or run without a namespace"
        );
    }
    format!(
        "`{ip}` is not an address of this machine (no interface has it; see `ip -brief address`), so no connection \
         can be made from it: use this machine's addresses (any 127.x.y.z toward a loopback target), or add it to \
         an interface first (`ip address add {ip}/{} dev lo`)",
        if ip.is_ipv4() { 32 } else { 128 }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_and_ranges() {
        let list = vec!["127.0.0.2-127.0.0.4".to_string(), "::1".to_string()];
        let got = parse_sources(&list).unwrap();
        assert_eq!(got.len(), 4);
        assert!(parse_sources(&["127.0.0.9-127.0.0.2".to_string()]).is_err());
    }

    #[test]
    fn sources_not_on_this_machine_are_refused_before_any_connect() {
        let scenario = |sources: &str, netns: &str| {
            let target = if netns.is_empty() { "127.0.0.1:1883" } else { "embedded" };
            let text = format!(
                "name = \"t\"\ntarget = \"{target}\"\nprotocol = \"tcp\"\nsources = [{sources}]\n{netns}\n\
                 [[phase]]\nhold = \"1s\"\n[[phase]]\nconnect = {{ count = 1, rate = 1 }}\nsources = [\"127.0.0.9\"]\n"
            );
            super::super::Plan::from_toml(std::path::Path::new("s.toml"), &text).map_err(|e| e.to_string()).unwrap()
        };
        assert!(scenario("\"127.0.0.2-127.0.0.4\"", "").check_sources_here(false).is_ok());
        let err = scenario("\"127.0.0.2\", \"192.0.2.1\"", "").check_sources_here(false).unwrap_err();
        assert_eq!(err.field, "sources");
        assert!(err.message.contains("`192.0.2.1` is not an address of this machine"), "{err}");
        assert!(err.message.contains("ip address add 192.0.2.1/32 dev lo"), "{err}");
        assert_eq!(scenario("\"192.0.2.1\"", "").check_sources_here(true).unwrap_err().field, "--sources");
        // Inside a private namespace only loopback exists, whatever this machine has.
        let here = crate::socket::interface_addresses().unwrap();
        if let Some(ip) = here.iter().find(|ip| ip.is_ipv4() && !ip.is_loopback()) {
            let err = scenario(&format!("\"{ip}\""), "[netns]").check_sources_here(false).unwrap_err();
            assert!(err.message.contains("private network namespace"), "{err}");
        }
        assert!(scenario("\"127.0.0.2\"", "[netns]").check_sources_here(false).is_ok());
    }
}
