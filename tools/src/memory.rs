//! The memory cap: every command that allocates in proportion to a blob's configuration (a
//! session's working memory, eval's corpus and threads, bench's latency samples) checks the
//! total against a cap before allocating, and allocates fallibly. A small blob can declare a
//! configuration whose session needs tens of GiB; without the cap that is an abort
//! (`memory allocation of … bytes failed`), with it a one-line error.

use std::fmt;

/// The cap when `--max-memory` is not given: 1 GiB (the largest shipped model needs about
/// 200 KiB; the `small` preset under 4 MiB).
pub const DEFAULT_MAX_MEMORY: u64 = 1 << 30;

/// Why working memory was not allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryError {
    /// The command would need more than the cap.
    OverCap {
        /// Bytes the command needs.
        needed: u64,
        /// The cap (`--max-memory`).
        cap: u64,
    },
    /// The system refused the allocation.
    Refused {
        /// Bytes asked for.
        needed: u64,
    },
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MemoryError::OverCap { needed, cap } => write!(
                f,
                "this needs {needed} bytes of working memory, more than the cap of {cap} bytes \
                 (raise it with --max-memory {needed})"
            ),
            MemoryError::Refused { needed } => {
                write!(f, "the system refused {needed} bytes of working memory")
            }
        }
    }
}

impl std::error::Error for MemoryError {}

/// Checks that `needed` bytes fit `cap`.
pub fn check(needed: u64, cap: u64) -> Result<(), MemoryError> {
    if needed > cap {
        Err(MemoryError::OverCap { needed, cap })
    } else {
        Ok(())
    }
}

/// A zeroed buffer of `n` bytes, allocated fallibly (call [`check`] first).
pub fn zeroed(n: usize) -> Result<Vec<u8>, MemoryError> {
    let mut v = Vec::new();
    v.try_reserve_exact(n)
        .map_err(|_| MemoryError::Refused { needed: n as u64 })?;
    v.resize(n, 0);
    Ok(v)
}

/// Parses a byte count: a number, optionally followed by `K`, `M`, `G` or `T` (powers of
/// 1024; `KiB`, `MiB`, … and `KB`, `MB`, … mean the same).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a byte count (e.g. 1073741824, 512M, 4G)"))?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (use K, M, G or T)")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("`{s}` is more than {} bytes", u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_parse_with_units() {
        assert_eq!(parse_bytes("0"), Ok(0));
        assert_eq!(parse_bytes("1536"), Ok(1536));
        assert_eq!(parse_bytes("512M"), Ok(512 << 20));
        assert_eq!(parse_bytes("4GiB"), Ok(4 << 30));
        assert_eq!(parse_bytes("2 kb"), Ok(2048));
        assert!(parse_bytes("").is_err());
        assert!(parse_bytes("-1").is_err());
        assert!(parse_bytes("1.5G").is_err());
        assert!(parse_bytes("99999999999999999999").is_err());
        assert!(parse_bytes("16000000000T").is_err());
        assert!(parse_bytes("3X").is_err());
    }

    #[test]
    fn the_cap_names_both_numbers() {
        let e = check(2000, 1000).unwrap_err().to_string();
        assert!(
            e.contains("2000") && e.contains("1000") && e.contains("--max-memory"),
            "{e}"
        );
        assert!(check(1000, 1000).is_ok());
    }

    #[test]
    fn huge_buffers_are_refused_not_aborted() {
        assert!(matches!(
            zeroed(usize::MAX),
            Err(MemoryError::Refused { .. })
        ));
        assert_eq!(zeroed(3).unwrap(), vec![0; 3]);
    }
}
