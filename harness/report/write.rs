//! Atomic file output shared by the report writers (`--json`, `--junit`, `--html`):
//! the content goes to a temporary file in the target's directory, is synced, then
//! renamed over the target, so a reader (a CI step, a browser) never sees half a file.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// A report file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{} is not a file name; give a path such as report.json", .0.display())]
    NotAFile(PathBuf),
    #[error("writing {} (is the directory there and writable?)", .path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("renaming {} to {}", .from.display(), .to.display())]
    Rename { from: PathBuf, to: PathBuf, source: io::Error },
}

/// Write `path` atomically: `fill` writes the content into a temporary file beside
/// it (`.NAME.PID.tmp`), which is flushed, synced and renamed over `path`. On failure
/// the temporary file is removed and `path` is left as it was.
pub fn atomically(path: &Path, fill: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> Result<(), WriteError> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| WriteError::NotAFile(path.to_path_buf()))?;
    let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
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
        atomically(&path, |w| w.write_all(b"new")).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "only out.txt remains");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_fill_keeps_the_old_file() {
        let dir = scratch("fail");
        let path = dir.join("out.txt");
        fs::write(&path, "old").unwrap();
        let err = atomically(&path, |w| {
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
        let err = atomically(Path::new("/nonexistent-sockcap-dir/out.json"), |_| Ok(())).unwrap_err();
        assert!(err.to_string().contains("/nonexistent-sockcap-dir/"), "{err}");
    }
}
