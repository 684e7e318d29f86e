//! /proc/slabinfo: the size of the kernel's objects by cache, for the memory of sockets
//! that their buffers do not show (an idle connection's `struct tcp_sock` is a `TCP` or
//! `TCPv6` slab object of about 2.4 KiB). Reading it takes root on most systems.

use std::collections::BTreeMap;
use std::io;

use crate::parse_error::ParseError;

/// Object size in bytes by slab cache name.
pub fn read_object_sizes() -> io::Result<BTreeMap<String, u64>> {
    Ok(parse_object_sizes(&std::fs::read_to_string("/proc/slabinfo")?)?)
}

/// `name active num objsize ...` lines of slabinfo 2.x, headers skipped.
pub fn parse_object_sizes(text: &str) -> Result<BTreeMap<String, u64>, ParseError> {
    let mut sizes = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with("slabinfo") && !l.starts_with('#')) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let size =
            fields.get(3).and_then(|s| s.parse().ok()).ok_or_else(|| ParseError::new("a slabinfo line", line))?;
        sizes.insert(fields[0].to_string(), size);
    }
    Ok(sizes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_sizes_by_cache() {
        let text = "slabinfo - version: 2.1\n\
                    # name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables\n\
                    TCPv6                 78     78   2496   13    8 : tunables    0    0    0 : slabdata      6      6      0\n\
                    TCP                   67    130   2368   13    8 : tunables    0    0    0 : slabdata     10     10      0\n";
        let sizes = parse_object_sizes(text).unwrap();
        assert_eq!((sizes["TCP"], sizes["TCPv6"], sizes.len()), (2368, 2496, 2));
        assert!(parse_object_sizes("TCP 1 2\n").is_err());
    }
}
