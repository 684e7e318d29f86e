//! Where the clients connect: [`TargetSpec`], read by [`parse_target`].

use std::net::{Ipv4Addr, SocketAddr};

/// Where the clients connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetSpec {
    /// sockcap starts its own target as a child process on a free loopback port.
    Embedded,
    Addr(SocketAddr),
}

/// `embedded`, `HOST:PORT` with an IP address, or `localhost:PORT`.
pub fn parse_target(text: &str) -> Result<TargetSpec, String> {
    let text = text.trim();
    if text == "embedded" {
        return Ok(TargetSpec::Embedded);
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        if addr.port() == 0 {
            return Err(format!("`{text}` has port 0; name the port the target listens on"));
        }
        return Ok(TargetSpec::Addr(addr));
    }
    if let Some(port) = text.strip_prefix("localhost:") {
        if let Ok(port) = port.parse::<u16>() {
            return Ok(TargetSpec::Addr(SocketAddr::from((Ipv4Addr::LOCALHOST, port))));
        }
    }
    // A host name (a Kubernetes Service, say): resolved once, here; IPv4 first.
    let bad =
        || format!("`{text}` is not a target; write \"embedded\", \"127.0.0.1:1883\", \"[::1]:1883\" or \"HOST:PORT\"");
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0).ok_or_else(bad)?;
    if host.is_empty() || !host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
        return Err(bad());
    }
    let addrs: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .map_err(|e| format!("`{text}`: the host name does not resolve here ({e}); check it, or give an address"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .map(|a| TargetSpec::Addr(*a))
        .ok_or_else(|| format!("`{text}`: the host name resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_resolve_once() {
        // From /etc/hosts (no DNS query): any case of `localhost` is the loopback.
        let TargetSpec::Addr(addr) = parse_target("LocalHost:1883").unwrap() else { panic!("not an address") };
        assert!(addr.ip().is_loopback() && addr.port() == 1883, "{addr}");
        for bad in ["bro ker:1883", "broker:0", "broker:port", ":1883"] {
            assert!(parse_target(bad).unwrap_err().contains("HOST:PORT"), "{bad}");
        }
    }
}
