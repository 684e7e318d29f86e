//! Report files (`--json`, `--junit`, `--html`) are written to what their path names,
//! never over it. [`Destination::of`] looks at the path first:
//!
//! - a symlink is followed to its target (the link stays a link);
//! - a regular file, or a path where nothing is yet, is written atomically: the content
//!   goes to a temporary file in the target's directory, is synced, then renamed over
//!   the target, so a reader (a CI step, a browser) never sees half a file;
//! - a FIFO or a character device (`/dev/null`, `/dev/stdout`, a terminal) is opened
//!   and written in place: no temporary file, no rename, so the node stays what it was
//!   (a FIFO once a reader has opened it, waited for at most [`FIFO_READER_WAIT`]);
//! - a directory, a block device or a socket is refused: a report over one would
//!   destroy it or make no sense.
//!
//! [`FileId`] and [`Identity`] say when two paths name the same file, so the command
//! line can refuse two outputs sharing a file, or an output over an input.

use std::fs::{self, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A report file could not be written, or its path names something that must not be
/// written over.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{} is not a file name; give a path such as report.json", .0.display())]
    NotAFile(PathBuf),
    #[error("{} is {what}; sockcap does not write a report over one: give a file name such as report.json", .path.display())]
    Refused { path: PathBuf, what: &'static str },
    #[error("the directory {} of {} does not exist; create it first", .dir.display(), .path.display())]
    NoDirectory { path: PathBuf, dir: PathBuf },
    #[error("{} cannot be looked at", .path.display())]
    Inspect { path: PathBuf, source: io::Error },
    #[error("{} is a symlink that leads through more than {MAX_LINKS} links", .0.display())]
    TooManyLinks(PathBuf),
    #[error("writing {} (is the directory there and writable?)", .path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("writing {}", .path.display())]
    InPlace { path: PathBuf, source: io::Error },
    #[error("no process opened the FIFO {} for reading within {} s; start its reader first", .path.display(), .waited.as_secs())]
    NoReader { path: PathBuf, waited: Duration },
    #[error("renaming {} to {}", .from.display(), .to.display())]
    Rename { from: PathBuf, to: PathBuf, source: io::Error },
}

/// The most symlinks followed from a report path, as the kernel's own limit (ELOOP).
const MAX_LINKS: usize = 40;

/// Write `fill`'s content to `path` as [`Destination::of`] decides.
pub fn to_path(path: &Path, fill: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> Result<(), WriteError> {
    Destination::of(path)?.write(fill)
}

/// How a report path is written, symlinks already followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A regular file, or nothing yet: written atomically (temporary file, rename).
    Replace(PathBuf),
    /// A FIFO: written in place once a reader has opened it (waited for [`FIFO_READER_WAIT`]).
    Fifo(PathBuf),
    /// A character device (`/dev/null`, a terminal): opened and written in place, never replaced.
    Device(PathBuf),
}

impl Destination {
    /// What `path` names, and so how to write it; refuses a directory, a block device,
    /// a socket, a path with no file name and one whose directory does not exist.
    pub fn of(path: &Path) -> Result<Destination, WriteError> {
        let target = follow_links(path)?;
        let meta = match fs::metadata(&target) {
            Ok(meta) => Some(meta),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(source) => return Err(WriteError::Inspect { path: path.to_path_buf(), source }),
        };
        let Some(meta) = meta else {
            target.file_name().ok_or_else(|| WriteError::NotAFile(path.to_path_buf()))?;
            let dir = parent(&target);
            if !dir.is_dir() {
                return Err(WriteError::NoDirectory { path: path.to_path_buf(), dir: dir.to_path_buf() });
            }
            return Ok(Destination::Replace(target));
        };
        let kind = meta.file_type();
        let refused = |what| Err(WriteError::Refused { path: path.to_path_buf(), what });
        if kind.is_file() {
            target.file_name().ok_or_else(|| WriteError::NotAFile(path.to_path_buf()))?;
            Ok(Destination::Replace(target))
        } else if kind.is_fifo() {
            Ok(Destination::Fifo(target))
        } else if kind.is_char_device() {
            Ok(Destination::Device(target))
        } else if kind.is_dir() {
            refused("a directory")
        } else if kind.is_block_device() {
            refused("a block device")
        } else if kind.is_socket() {
            refused("a socket")
        } else {
            refused("neither a file, a FIFO nor a character device")
        }
    }

    /// The path written: the given one with its symlinks followed.
    pub fn path(&self) -> &Path {
        match self {
            Destination::Replace(p) | Destination::Fifo(p) | Destination::Device(p) => p,
        }
    }

    /// Write `fill`'s content: atomically to a file, in place to a FIFO or a device.
    pub fn write(&self, fill: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> Result<(), WriteError> {
        match self {
            Destination::Replace(path) => atomically(path, fill),
            Destination::Fifo(path) => {
                let file = open_fifo(path, FIFO_READER_WAIT)?;
                in_place(path, file, fill)
            }
            Destination::Device(path) => {
                let file = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|source| WriteError::InPlace { path: path.to_path_buf(), source })?;
                in_place(path, file, fill)
            }
        }
    }
}

/// Where `path` leads: its symlinks followed (a relative link from the link's own
/// directory); a dangling link leads to the path it names, where the file will be.
fn follow_links(path: &Path) -> Result<PathBuf, WriteError> {
    let mut at = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match fs::symlink_metadata(&at) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let to = fs::read_link(&at).map_err(|source| WriteError::Inspect { path: at.clone(), source })?;
                at = parent(&at).join(to);
            }
            Ok(_) => return Ok(at),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(at),
            Err(source) => return Err(WriteError::Inspect { path: path.to_path_buf(), source }),
        }
    }
    Err(WriteError::TooManyLinks(path.to_path_buf()))
}

/// The directory holding `path` (`.` for a bare name).
fn parent(path: &Path) -> &Path {
    path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Write `path` atomically: `fill` writes the content into a temporary file beside
/// it (`.NAME.PID.tmp`), which is flushed, synced and renamed over `path`. On failure
/// the temporary file is removed and `path` is left as it was.
fn atomically(path: &Path, fill: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> Result<(), WriteError> {
    let name = path.file_name().ok_or_else(|| WriteError::NotAFile(path.to_path_buf()))?;
    let tmp = parent(path).join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let write_tmp = || -> io::Result<()> {
        let mut out = BufWriter::new(fs::File::create(&tmp)?);
        fill(&mut out)?;
        let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.sync_all()
    };
    if let Err(source) = write_tmp() {
        let _ = fs::remove_file(&tmp);
        return Err(WriteError::Write { path: path.to_path_buf(), source });
    }
    fs::rename(&tmp, path).map_err(|source| {
        let _ = fs::remove_file(&tmp);
        WriteError::Rename { from: tmp.clone(), to: path.to_path_buf(), source }
    })
}

/// How long a report waits for a process to open its FIFO for reading. Opening a FIFO
/// blocks until a reader comes, and after the run Ctrl-C no longer stops sockcap (its
/// handler is installed for good), so the wait is bounded.
pub const FIFO_READER_WAIT: Duration = Duration::from_secs(30);

/// Open the FIFO `path` for writing once a reader has it open, polling (a non-blocking
/// open fails with ENXIO while there is none) for at most `wait`; then writes block as
/// usual.
fn open_fifo(path: &Path, wait: Duration) -> Result<fs::File, WriteError> {
    let deadline = Instant::now() + wait;
    let mut told = false;
    loop {
        match OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(path) {
            Ok(file) => {
                clear_nonblocking(&file).map_err(|source| WriteError::InPlace { path: path.to_path_buf(), source })?;
                return Ok(file);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) && Instant::now() < deadline => {
                if !told {
                    crate::stderr::line(format_args!(
                        "sockcap: waiting up to {} s for a reader of the FIFO {}",
                        wait.as_secs(),
                        path.display()
                    ));
                    told = true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                return Err(WriteError::NoReader { path: path.to_path_buf(), waited: wait })
            }
            Err(source) => return Err(WriteError::InPlace { path: path.to_path_buf(), source }),
        }
    }
}

/// Make writes to `file` block again (a slow reader slows the writer, as with `>`).
fn clear_nonblocking(file: &fs::File) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: F_GETFL on a descriptor `file` owns; no pointer is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: F_SETFL on the same descriptor, with integer flags.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Write into `file`, opened from `path` (a FIFO or a device); an error of the write or
/// the final flush (`/dev/full`: ENOSPC) names the path.
fn in_place(
    path: &Path,
    file: fs::File,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), WriteError> {
    let mut out = BufWriter::new(file);
    fill(&mut out).and_then(|()| out.flush()).map_err(|source| WriteError::InPlace { path: path.to_path_buf(), source })
}

/// A file by its device and inode: two paths name the same file exactly when their
/// `FileId`s are equal (hard links, symlinks, `./a` and `a` included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    /// The file `path` leads to (symlinks followed).
    pub fn of(path: &Path) -> io::Result<FileId> {
        let meta = fs::metadata(path)?;
        Ok(FileId { dev: meta.dev(), ino: meta.ino() })
    }
}

/// What a path names, for comparing paths before anything is written: an existing file
/// by its [`FileId`], a path where nothing is yet by its canonical form (its directory
/// canonicalized, its symlinks followed).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    File(FileId),
    Path(PathBuf),
}

impl Identity {
    pub fn of(path: &Path) -> Identity {
        if let Ok(id) = FileId::of(path) {
            return Identity::File(id);
        }
        let target = follow_links(path).unwrap_or_else(|_| path.to_path_buf());
        let canonical = match (fs::canonicalize(parent(&target)), target.file_name()) {
            (Ok(dir), Some(name)) => dir.join(name),
            _ => target,
        };
        Identity::Path(canonical)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sockcap-write-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let dir = scratch("ok");
        let path = dir.join("out.txt");
        fs::write(&path, "old").unwrap();
        to_path(&path, |w| w.write_all(b"new")).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "only out.txt remains");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_fill_keeps_the_old_file() {
        let dir = scratch("fail");
        let path = dir.join("out.txt");
        fs::write(&path, "old").unwrap();
        let err = to_path(&path, |w| {
            w.write_all(b"half")?;
            Err(io::Error::other("boom"))
        })
        .unwrap_err();
        assert!(matches!(err, WriteError::Write { .. }), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "the temporary file was removed");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_directory_is_named() {
        let err = to_path(Path::new("/nonexistent-sockcap-dir/out.json"), |_| Ok(())).unwrap_err();
        assert!(err.to_string().contains("/nonexistent-sockcap-dir"), "{err}");
        assert!(matches!(err, WriteError::NoDirectory { .. }), "{err}");
    }

    #[test]
    fn a_symlink_chain_is_followed_and_stays_links() {
        let dir = scratch("links");
        std::os::unix::fs::symlink("second", dir.join("first")).unwrap();
        std::os::unix::fs::symlink(dir.join("target.json"), dir.join("second")).unwrap();
        // Dangling: the target is created where the last link points.
        assert_eq!(Destination::of(&dir.join("first")).unwrap(), Destination::Replace(dir.join("target.json")));
        to_path(&dir.join("first"), |w| w.write_all(b"one")).unwrap();
        to_path(&dir.join("first"), |w| w.write_all(b"two")).unwrap();
        for link in ["first", "second"] {
            assert!(fs::symlink_metadata(dir.join(link)).unwrap().file_type().is_symlink(), "{link} is still a link");
        }
        assert_eq!(fs::read_to_string(dir.join("target.json")).unwrap(), "two");
        assert_eq!(Identity::of(&dir.join("first")), Identity::of(&dir.join("target.json")));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_symlink_loop_is_refused() {
        let dir = scratch("loop");
        std::os::unix::fs::symlink("b", dir.join("a")).unwrap();
        std::os::unix::fs::symlink("a", dir.join("b")).unwrap();
        let err = Destination::of(&dir.join("a")).unwrap_err();
        assert!(matches!(err, WriteError::TooManyLinks(_)), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn devices_are_written_in_place_and_directories_refused() {
        let null = Path::new("/dev/null");
        assert_eq!(Destination::of(null).unwrap(), Destination::Device(null.to_path_buf()));
        let err = Destination::of(Path::new("/tmp")).unwrap_err();
        assert!(err.to_string().contains("/tmp is a directory"), "{err}");
        let full = Path::new("/dev/full");
        let err = to_path(full, |w| w.write_all(&[b'x'; 64 * 1024])).unwrap_err();
        assert!(matches!(&err, WriteError::InPlace { source, .. } if source.raw_os_error() == Some(libc::ENOSPC)));
        assert!(err.to_string().contains("/dev/full"), "{err}");
    }

    #[test]
    fn a_fifo_is_written_in_place() {
        let dir = scratch("fifo");
        let fifo = dir.join("pipe");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || fs::read_to_string(fifo).unwrap())
        };
        to_path(&fifo, |w| w.write_all(b"through the pipe")).unwrap();
        assert_eq!(reader.join().unwrap(), "through the pipe");
        assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "still a FIFO");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_fifo_nobody_reads_is_an_error_after_the_wait() {
        let dir = scratch("fifo-alone");
        let fifo = dir.join("pipe");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        let started = Instant::now();
        let err = open_fifo(&fifo, Duration::from_millis(200)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5), "the wait is bounded");
        assert!(matches!(err, WriteError::NoReader { .. }), "{err}");
        assert!(err.to_string().contains("pipe") && err.to_string().contains("start its reader"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
