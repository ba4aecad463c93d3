//! Crash-safe file writes: write a temporary file beside the target, fsync, rename, fsync the folder.
//! A reader therefore sees either the old file or the complete new one, never a torn write.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Context, Result};

/// A temporary name beside `path`, unique to this process (`.name.tmp-PID`).
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Fsyncs a folder so that a rename inside it survives a power cut.
pub fn sync_dir(dir: &Path) -> Result<()> {
    // Opening a directory for fsync works on Unix; elsewhere it is a best effort.
    if let Ok(f) = fs::File::open(dir) {
        let _ = f.sync_all();
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = fs::File::create(&tmp).context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(bytes).context(|| format!("cannot write {}", path.display()))?;
        f.sync_all().context(|| format!("cannot sync {}", path.display()))?;
        fs::rename(&tmp, path).context(|| format!("cannot move {} into place", path.display()))?;
        sync_dir(path.parent().unwrap_or(Path::new(".")))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
