//! Reading input files without trusting them: only regular files, never more than a stated
//! number of bytes, and the allocation is reserved fallibly (a refusal, not an abort).

use std::fs::File;
use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::term::shown;

/// Opens `path` (following symlinks) and checks that it is a regular file; returns the file
/// and its length. `what` names the file in errors ("model", "data file", …).
pub fn open_regular(path: &Path, what: &str) -> Result<(File, u64)> {
    let p = shown(path);
    // The type first, from the path: opening a FIFO for reading would block.
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read {what} {p}"))?;
    check_regular(&meta, what, path)?;
    let file = File::open(path).with_context(|| format!("cannot read {what} {p}"))?;
    // Again on the open file, in case the path changed in between.
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read {what} {p}"))?;
    check_regular(&meta, what, path)?;
    Ok((file, meta.len()))
}

fn check_regular(meta: &std::fs::Metadata, what: &str, path: &Path) -> Result<()> {
    if !meta.is_file() {
        let kind = if meta.is_dir() {
            "a directory"
        } else {
            "not a regular file"
        };
        bail!("{what} {} is {kind}", shown(path));
    }
    Ok(())
}

/// Reads the whole regular file `path`, refusing one over `max` bytes before reading it.
pub fn read_capped(path: &Path, what: &str, max: u64) -> Result<Vec<u8>> {
    let (file, len) = open_regular(path, what)?;
    if len > max {
        bail!(
            "{what} {} is {len} bytes, more than the {max} bytes allowed here",
            shown(path)
        );
    }
    read_rest(file, Vec::new(), len, path, what)
}

/// Appends the next `len - start.len()` bytes of `file` to `start` (which holds what was
/// already read), reserving `len` bytes first. Fails if the file is shorter or grows.
pub fn read_rest(
    file: File,
    mut start: Vec<u8>,
    len: u64,
    path: &Path,
    what: &str,
) -> Result<Vec<u8>> {
    let p = shown(path);
    let total =
        usize::try_from(len).with_context(|| format!("{what} {p} is too large for this host"))?;
    start
        .try_reserve_exact(total.saturating_sub(start.len()))
        .with_context(|| format!("cannot allocate {total} bytes for {what} {p}"))?;
    // One byte past the expected end tells a growing file from a complete one.
    let want = (len + 1).saturating_sub(start.len() as u64);
    file.take(want)
        .read_to_end(&mut start)
        .with_context(|| format!("cannot read {what} {p}"))?;
    if start.len() != total {
        bail!("{what} {p} changed size while it was read");
    }
    Ok(start)
}
