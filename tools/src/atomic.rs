//! Writing an output file whole or not at all.
//!
//! The bytes go to a new file in the output's directory, named `.NAME.tmp.PID.RANDOM` (16 hex
//! digits), opened with `create_new` (`O_EXCL`: it never follows or reuses a planted symlink or
//! file), synced, then renamed over `NAME`. On an error the temporary file is removed; on
//! SIGINT, SIGTERM or SIGHUP the handler that [`remove_on_interrupt`] installs removes it
//! before the process exits. Only SIGKILL or a power cut can leave one behind: such a stale
//! file never replaces anything, and its name says which output and which process it was for,
//! so `rm .NAME.tmp.*` is always safe when no `tools` is running.

use std::collections::hash_map::RandomState;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

/// Temporary files being written now (removed by the interrupt handler).
static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Installs a SIGINT/SIGTERM/SIGHUP handler that removes the temporary files being written,
/// then exits with status 130. Call it once, from `main`.
pub fn remove_on_interrupt() -> Result<()> {
    ctrlc::set_handler(|| {
        if let Ok(live) = LIVE.lock() {
            for p in live.iter() {
                let _ = fs::remove_file(p);
            }
        }
        std::process::exit(130);
    })
    .context("cannot install the interrupt handler")
}

/// A temporary file that removes itself unless [`Temp::persist`] renamed it.
struct Temp {
    path: PathBuf,
    file: Option<File>,
}

impl Temp {
    fn create(dir: &Path, name: &str) -> Result<Temp> {
        let pid = std::process::id();
        for _ in 0..16 {
            let random = RandomState::new().build_hasher().finish();
            let path = dir.join(format!(".{name}.tmp.{pid}.{random:016x}"));
            // Registered before it exists: the handler may run between create and push.
            LIVE.lock().map(|mut l| l.push(path.clone())).ok();
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => {
                    return Ok(Temp {
                        path,
                        file: Some(file),
                    })
                }
                Err(e) => {
                    unregister(&path);
                    if e.kind() != ErrorKind::AlreadyExists {
                        return Err(e).with_context(|| format!("cannot create {}", path.display()));
                    }
                }
            }
        }
        bail!("cannot find a free temporary name in {}", dir.display())
    }

    fn persist(mut self, to: &Path) -> Result<()> {
        drop(self.file.take());
        fs::rename(&self.path, to).with_context(|| format!("cannot rename to {}", to.display()))?;
        unregister(&self.path);
        self.path.clear();
        Ok(())
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            drop(self.file.take());
            let _ = fs::remove_file(&self.path);
            unregister(&self.path);
        }
    }
}

fn unregister(path: &Path) {
    if let Ok(mut l) = LIVE.lock() {
        l.retain(|p| p != path);
    }
}

/// Refuses an output path that exists and is not a regular file (a directory, a device node,
/// a FIFO, a socket, or a symlink to one of these): renaming over it would destroy it.
pub fn check_output(path: &Path) -> Result<()> {
    match fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(m) if m.is_dir() => bail!("output {} is a directory", path.display()),
        Ok(_) => bail!(
            "output {} exists and is not a regular file (a device, FIFO or socket): refusing to replace it",
            path.display()
        ),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot check output {}", path.display())),
    }
}

/// Writes `bytes` to `path` atomically (see the module docs).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    check_output(path)?;
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file path", path.display()))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = Temp::create(dir, &name.to_string_lossy())?;
    let f = tmp.file.as_mut().context("temporary file closed")?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.path.display()))?;
    stall_for_tests();
    tmp.persist(path)
}

/// Test hook: `TOOLS_TEST_STALL_BEFORE_RENAME_MS` makes the write pause with the temporary
/// file complete, so a test can interrupt it deterministically. Unset in normal use.
fn stall_for_tests() {
    if let Some(ms) = std::env::var("TOOLS_TEST_STALL_BEFORE_RENAME_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms.min(60_000)));
    }
}
