//! One training process per run folder: an exclusive advisory lock on `RUN/train.lock`.
//!
//! The operating system drops the lock when the process ends, however it ends, so a killed run
//! leaves nothing that blocks `--resume`. The file holds the holder's pid for the error message.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

/// Held for as long as a run trains; dropping it releases the folder.
pub struct RunLock {
    file: File,
    /// What the lock file held before (None: it did not exist), for [`RunLock::abandon`].
    previous: Option<String>,
}

impl RunLock {
    /// Locks `run_dir` (created if missing), or says which process holds it.
    pub fn acquire(run_dir: &Path) -> Result<RunLock, String> {
        fs::create_dir_all(run_dir).map_err(|e| format!("cannot create run folder {}: {e}", run_dir.display()))?;
        let path = run_dir.join("train.lock");
        let previous = fs::read_to_string(&path).ok();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {
                let _ = file.set_len(0).and_then(|_| file.rewind()).and_then(|_| write!(file, "{}", std::process::id()));
                Ok(RunLock { file, previous })
            }
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = if pid.trim().is_empty() { "unknown".to_string() } else { pid.trim().to_string() };
                Err(format!(
                    "{} is in use by another `infini train` (pid {pid}); wait for it to finish, stop it, or choose another run folder",
                    run_dir.display()
                ))
            }
            Err(TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
        }
    }
}

impl RunLock {
    /// Releases the folder and puts the lock file back as it was, for a run that failed to start
    /// (so that a refused command changes no file).
    pub fn abandon(mut self, run_dir: &Path) {
        let path = run_dir.join("train.lock");
        match &self.previous {
            Some(text) => {
                let _ = self.file.set_len(0).and_then(|_| self.file.rewind()).and_then(|_| self.file.write_all(text.as_bytes()));
            }
            None => {
                let _ = fs::remove_file(&path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap();
        let e = RunLock::acquire(dir.path()).err().unwrap();
        assert!(e.contains(&format!("pid {}", std::process::id())) && !e.contains('\n'), "{e}");
        drop(first);
        RunLock::acquire(dir.path()).expect("released on drop");
    }
}
