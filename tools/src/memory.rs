//! The memory cap: every command that allocates in proportion to a blob's configuration (a
//! session's working memory, eval's corpus and threads, bench's latency samples) checks the
//! total against a cap before allocating, and allocates fallibly. A small blob can declare a
//! configuration whose session needs tens of GiB; without the cap that is an abort
//! (`memory allocation of … bytes failed`), with it a one-line error.
//!
//! The cap is also checked against the machine: a need above what the machine has available
//! ([`available`]) is refused whatever `--max-memory` says, and the advice to raise the cap is
//! only given when the machine has the memory, so following it cannot get the process killed
//! by the kernel's out-of-memory killer (buffers are zeroed, so every page is touched).

use std::fmt;

/// The cap when `--max-memory` is not given: 1 GiB (the largest shipped model needs about
/// 200 KiB; the `small` preset under 4 MiB).
pub const DEFAULT_MAX_MEMORY: u64 = 1 << 30;

/// Why working memory was not allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryError {
    /// The command would need more than the cap (and the machine has that much).
    OverCap {
        /// Bytes the command needs.
        needed: u64,
        /// The cap (`--max-memory`).
        cap: u64,
        /// What the machine has available ([`available`]), if known.
        available: Option<u64>,
    },
    /// The command would need more than the machine has available, whatever the cap.
    OverMachine {
        /// Bytes the command needs.
        needed: u64,
        /// The cap (`--max-memory`).
        cap: u64,
        /// What the machine has available ([`available`]).
        available: u64,
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
            MemoryError::OverCap {
                needed,
                cap,
                available: Some(a),
            } => write!(
                f,
                "this needs {needed} bytes of working memory, more than the cap of {cap} bytes \
                 (raise it with --max-memory {needed}: this machine has {a} bytes available)"
            ),
            MemoryError::OverCap {
                needed,
                cap,
                available: None,
            } => write!(
                f,
                "this needs {needed} bytes of working memory, more than the cap of {cap} bytes \
                 (raise it with --max-memory {needed} if this machine has that much free memory)"
            ),
            MemoryError::OverMachine {
                needed,
                cap,
                available,
            } => write!(
                f,
                "this needs {needed} bytes of working memory, more than the {available} bytes \
                 this machine has available (free memory and swap, or its memory cgroup's \
                 limit): it cannot run here, whatever --max-memory says (the cap is {cap} bytes)"
            ),
            MemoryError::Refused { needed } => {
                write!(f, "the system refused {needed} bytes of working memory")
            }
        }
    }
}

impl std::error::Error for MemoryError {}

/// Checks that `needed` bytes fit `cap` and what the machine has [`available`].
pub fn check(needed: u64, cap: u64) -> Result<(), MemoryError> {
    check_with(needed, cap, available())
}

/// [`check`] with the machine's available memory given (`None`: unknown, not checked).
pub fn check_with(needed: u64, cap: u64, available: Option<u64>) -> Result<(), MemoryError> {
    match available {
        Some(available) if needed > available => Err(MemoryError::OverMachine {
            needed,
            cap,
            available,
        }),
        _ if needed > cap => Err(MemoryError::OverCap {
            needed,
            cap,
            available,
        }),
        _ => Ok(()),
    }
}

/// Bytes of memory this process can still use without being killed, on Linux: `MemAvailable`
/// plus `SwapFree` of `/proc/meminfo`, or less inside a memory cgroup with a limit (its limit
/// minus its usage, read where the process's cgroup is mounted: `/sys/fs/cgroup/memory.max`
/// for cgroup v2, `/sys/fs/cgroup/memory/memory.limit_in_bytes` for v1). `None` where none of
/// these can be read (another OS). Test hook: `TOOLS_TEST_AVAILABLE_MEMORY=BYTES` stands in for
/// the machine's figure, so a test can show the refusal on any machine (unset in normal use).
pub fn available() -> Option<u64> {
    if let Some(v) = std::env::var("TOOLS_TEST_AVAILABLE_MEMORY")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return Some(v);
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
    let field = |name: &str| -> Option<u64> {
        let line = meminfo.as_deref()?.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        kib.checked_mul(1024)
    };
    let system = field("MemAvailable:").map(|a| a.saturating_add(field("SwapFree:").unwrap_or(0)));
    let read = |p: &str| -> Option<u64> { std::fs::read_to_string(p).ok()?.trim().parse().ok() };
    let cgroup = [
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ]
    .iter()
    // "max" (v2) does not parse: no limit.
    .find_map(|(limit, usage)| Some(read(limit)?.saturating_sub(read(usage)?)));
    match (system, cgroup) {
        (Some(s), Some(c)) => Some(s.min(c)),
        (s, c) => s.or(c),
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
        let e = check_with(2000, 1000, None).unwrap_err().to_string();
        assert!(
            e.contains("2000") && e.contains("1000") && e.contains("--max-memory"),
            "{e}"
        );
        assert!(check_with(1000, 1000, None).is_ok());
    }

    #[test]
    fn the_advice_never_exceeds_the_machine() {
        // Room on the machine: the advice names the need and what the machine has.
        let e = check_with(2000, 1000, Some(5000)).unwrap_err().to_string();
        assert!(
            e.contains("--max-memory 2000") && e.contains("5000 bytes available"),
            "{e}"
        );
        // No room: refused whatever the cap, and no advice to raise it.
        let e = check_with(2000, 1 << 40, Some(1500)).unwrap_err();
        assert!(matches!(e, MemoryError::OverMachine { .. }), "{e}");
        let e = e.to_string();
        assert!(e.contains("1500") && !e.contains("raise"), "{e}");
        assert!(check_with(1000, 1000, Some(1000)).is_ok());
    }

    #[test]
    fn this_machine_reports_its_memory() {
        // On Linux /proc/meminfo is always there; elsewhere there is nothing to assert.
        if std::path::Path::new("/proc/meminfo").exists() {
            let a = available().expect("MemAvailable in /proc/meminfo");
            assert!(a > 1 << 20, "{a}");
        }
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
