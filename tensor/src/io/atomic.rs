//! Atomic file writes: write a temp file in the target's own directory, flush it to
//! disk, then rename it over the target. A reader (or a crash) sees either the old
//! file or the complete new one, never a half-written file. Every file this crate
//! writes (safetensors checkpoints, PNG images) goes through here.
//!
//! The temp file is named `.NAME.tmp.PID.N` next to `NAME`, so the rename never crosses
//! file systems; on any error it is removed and the target is left untouched.
//! Introduced with checkpoint saving in `lessons/03-tensors`.
//!
//! ```
//! let dir = std::env::temp_dir().join(format!("atomic-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("hello.txt");
//! tensor::io::write_atomic(&path, b"12 bytes! ok").unwrap();
//! assert_eq!(std::fs::read(&path).unwrap().len(), 12);
//! std::fs::remove_dir_all(&dir).unwrap();
//! ```

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Result, TensorError};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The temp path used for writing `path`: same directory, hidden, unique per process
/// and call.
fn temp_path_for(path: &Path) -> Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        TensorError::invalid(
            "write_atomic",
            format!("{}: path has no file name", path.display()),
        )
    })?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp_name = format!(
        ".{}.tmp.{}.{}",
        name.to_string_lossy(),
        std::process::id(),
        n
    );
    Ok(match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(tmp_name),
        _ => PathBuf::from(tmp_name),
    })
}

/// Atomically create or replace `path`: `write` receives a fresh temp path in the same
/// directory and must create the file there; it is then synced and renamed to `path`.
/// On error the temp file is removed and `path` is left as it was.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = temp_path_for(path)?;
    let result = write(&tmp)
        .and_then(|()| {
            // Flush the data to disk before the rename makes it visible.
            File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(|e| TensorError::io(&tmp, e))
        })
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| TensorError::io(path, e)));
    match result {
        Ok(()) => Ok(()),
        Err(e) => {
            // Best effort: the temp file may not exist if `write` failed early.
            let _ = std::fs::remove_file(&tmp);
            // Report failures on the temp file under the name the caller asked for.
            Err(match e {
                TensorError::Io { path: p, source } if p == tmp => TensorError::io(path, source),
                other => other,
            })
        }
    }
}

/// Atomically create or replace `path` with `bytes`.
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    let path = path.as_ref();
    write_atomic_with(path, |tmp| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(tmp)
            .map_err(|e| TensorError::io(tmp, e))?;
        f.write_all(bytes).map_err(|e| TensorError::io(tmp, e))
    })
}
