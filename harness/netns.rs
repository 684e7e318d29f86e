//! A private network namespace for a run (`[netns]`, `--netns`): client and embedded
//! target see only their own loopback, ports and sysctls, and the host's are never
//! touched. The namespace is made with `unshare(CLONE_NEWNET)` before any thread or
//! child process exists, so everything the run starts inherits it, and the kernel
//! removes it when the run's processes exit — also after a failure, Ctrl-C or a crash:
//! there is nothing to clean up by hand.

use std::io;

use crate::plan::Sysctl;

/// The namespace could not be made or set up.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error(
        "a private network namespace needs root or CAP_SYS_ADMIN (unshare(CLONE_NEWNET): {0}); \
         run sockcap as root, or remove [netns] / --netns from the run"
    )]
    Unshare(io::Error),
    #[error("bringing up the loopback interface in the new namespace: {0}")]
    Loopback(io::Error),
    #[error(transparent)]
    Sysctl(#[from] SysctlError),
}

/// A sysctl could not be set.
#[derive(Debug, thiserror::Error)]
#[error("setting {name} = {value} ({path}): {source}")]
pub struct SysctlError {
    pub name: String,
    pub value: String,
    pub path: String,
    pub source: io::Error,
}

/// Move this process into a new network namespace, bring `lo` up and set `sysctls`.
/// Call it before the async runtime starts: threads made later inherit the namespace.
pub fn enter(sysctls: &[Sysctl]) -> Result<(), NetnsError> {
    // SAFETY: unshare takes flags only; it changes this thread's namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(NetnsError::Unshare(io::Error::last_os_error()));
    }
    loopback_up().map_err(NetnsError::Loopback)?;
    for sysctl in sysctls {
        write_sysctl(sysctl)?;
    }
    Ok(())
}

/// Write one sysctl of the current network namespace.
pub fn write_sysctl(sysctl: &Sysctl) -> Result<(), SysctlError> {
    let path = sysctl.path();
    std::fs::write(&path, format!("{}\n", sysctl.value)).map_err(|source| SysctlError {
        name: sysctl.name.clone(),
        value: sysctl.value.clone(),
        path: path.display().to_string(),
        source,
    })
}

/// `ip link set lo up`, with the SIOCGIFFLAGS / SIOCSIFFLAGS ioctls.
fn loopback_up() -> io::Result<()> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    use std::os::fd::AsRawFd;
    // SAFETY: ifreq is plain old data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: the descriptor is open and `req` is a valid ifreq for both calls.
    unsafe {
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) != 0 {
            return Err(io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &req) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
