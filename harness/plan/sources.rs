//! Client source addresses as a scenario or `--sources` gives them: [`parse_sources`],
//! and the check that they are of the target's address family.

use std::net::{IpAddr, Ipv4Addr};

use super::caps::MAX_SOURCES;

// The messages below write the cap out.
const _: () = assert!(MAX_SOURCES == 65_536);
use super::target::TargetSpec;

/// `["127.0.0.2", "127.0.0.10-127.0.0.20", "::1"]` → addresses.
pub fn parse_sources(list: &[String]) -> Result<Vec<IpAddr>, String> {
    let too_many = || {
        format!("the addresses, ranges expanded, are more than the 65,536 sockcap accepts; give fewer: each address has a port range of its own")
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
}
