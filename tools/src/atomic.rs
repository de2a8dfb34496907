//! Writing an output file whole or not at all: every command that writes a file (`pack`,
//! `repack`, `uf2`) goes through [`check_output`] first and [`write_atomically`] at the end.
//!
//! The bytes go to a new file in the output's directory, named `.NAME.tmp.PID.RANDOM` (16 hex
//! digits; `NAME` cut to its first [`TEMP_NAME_PREFIX`] bytes, so that an output name up to the
//! file system's 255 bytes still has a temporary name that fits), opened with `create_new`
//! (`O_EXCL`: it never follows or reuses a planted symlink or file), synced, then renamed over
//! `NAME`. On an error the temporary file is removed; on SIGINT, SIGTERM or SIGHUP the handler
//! of [`crate::signals`] removes it before the process exits. Only SIGKILL or a power cut can
//! leave one behind: such a stale file never replaces anything, and its name says which output
//! and which process it was for, so `rm .NAME.tmp.*` is always safe when no `tools` is running.
//!
//! An output that is one of the command's inputs (the same file, also through a symlink or a
//! hard link: the same device and inode) is refused, as is one that exists and is not a regular
//! file.

use std::collections::hash_map::RandomState;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

use crate::term::shown;

/// Bytes of the output's name kept in its temporary name: `.` + 200 + `.tmp.` + a PID (at most
/// 10 digits) + `.` + 16 hex digits is at most 233 bytes, under the usual 255-byte limit.
pub const TEMP_NAME_PREFIX: usize = 200;

/// Temporary files being written now (removed by the signal handler).
static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Removes the temporary files being written (the signal handler calls it before exiting).
pub fn remove_temporaries() {
    if let Ok(live) = LIVE.lock() {
        for p in live.iter() {
            let _ = fs::remove_file(p);
        }
    }
}

/// A temporary file that removes itself unless [`Temp::persist`] renamed it.
struct Temp {
    path: PathBuf,
    file: Option<File>,
}

impl Temp {
    fn create(dir: &Path, name: &str) -> Result<Temp> {
        let pid = std::process::id();
        let mut name = name.to_string();
        crate::term::truncate_utf8(&mut name, TEMP_NAME_PREFIX);
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
                        return Err(e).with_context(|| format!("cannot create {}", shown(&path)));
                    }
                }
            }
        }
        bail!("cannot find a free temporary name in {}", shown(dir))
    }

    fn persist(mut self, to: &Path) -> Result<()> {
        drop(self.file.take());
        fs::rename(&self.path, to).with_context(|| format!("cannot rename to {}", shown(to)))?;
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
/// a FIFO, a socket, or a symlink to one of these: renaming over it would destroy it), and one
/// that is the same file as one of `inputs` (compared by device and inode, so through symlinks
/// and hard links too: the output would replace the input).
pub fn check_output(path: &Path, inputs: &[&Path]) -> Result<()> {
    let out = match fs::metadata(path) {
        Ok(m) if m.is_file() => m,
        Ok(m) if m.is_dir() => bail!("output {} is a directory", shown(path)),
        Ok(_) => bail!(
            "output {} exists and is not a regular file (a device, FIFO or socket): refusing to replace it",
            shown(path)
        ),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot check output {}", shown(path))),
    };
    for input in inputs {
        if fs::metadata(input).is_ok_and(|m| same_file(&out, &m)) {
            bail!(
                "output {} is the input {} (the same file): refusing to replace an input; write to another name",
                shown(path),
                shown(input)
            );
        }
    }
    Ok(())
}

fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

/// Writes `bytes` to `path` atomically (see the module docs), after [`check_output`] against
/// `inputs` once more (the output may have appeared while the command worked).
pub fn write_atomically(path: &Path, inputs: &[&Path], bytes: &[u8]) -> Result<()> {
    check_output(path, inputs)?;
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file path", shown(path)))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = Temp::create(dir, &name.to_string_lossy())?;
    let f = tmp.file.as_mut().context("temporary file closed")?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("cannot write {}", shown(&tmp.path)))?;
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
