//! Files of the run dir written so that a crash never leaves a torn one: each file is flushed to
//! the disk, and replaced atomically (a temporary file renamed over it).

use crate::error::{Result, TrainError};
use serde::Serialize;
use std::path::Path;

/// Writes `bytes` to `path` and flushes them to the disk; every error is reported (unlike a
/// `BufWriter` dropped without `flush`, which loses the error of its last write).
pub fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(TrainError::io("create", path))?;
    f.write_all(bytes).map_err(TrainError::io("write", path))?;
    f.sync_all().map_err(TrainError::io("write", path))
}

/// Flushes a directory's entries (renames) to the disk; best effort (not every file system
/// can open a directory for that).
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Replaces `path` by `bytes` atomically: written to `path.tmp`, then renamed over `path`, so a
/// crash or a full disk leaves either the old file or the new one, never a truncated one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let res = write_synced(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path).map_err(TrainError::io("rename", &tmp)));
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    } else if let Some(dir) = path.parent() {
        sync_dir(dir);
    }
    res
}

/// Writes `v` as pretty JSON (with a final newline) through [`write_atomic`].
pub fn write_json(path: &Path, v: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(v).expect("serialisable") + "\n";
    write_atomic(path, text.as_bytes())
}
