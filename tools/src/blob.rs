//! Reading blob files: the file type, its size and the 32-byte prefix are checked before the
//! rest is read, so a device node, a huge file or a file that is not a blob costs nothing.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use runtime::format::{known_flags, MAGIC, PREFIX_LEN, VERSION_MAJOR, VERSION_MAJOR_MIN};
use runtime::Model;

use crate::term::shown;
use crate::{files, memory};

/// The largest blob the format can describe: the prefix's offsets and lengths are `u32`.
pub const MAX_BLOB_BYTES: u64 = u32::MAX as u64;

/// The model shipped in the repository (`models/shakespeare-mcu.bin`).
pub fn shipped_model() -> PathBuf {
    // The workspace root is the tools crate's parent (named without a `tools/..` detour).
    let tools = Path::new(env!("CARGO_MANIFEST_DIR"));
    tools
        .parent()
        .unwrap_or(tools)
        .join("models/shakespeare-mcu.bin")
}

/// `path`, or the shipped model when `None`.
pub fn model_path(path: Option<&Path>) -> PathBuf {
    path.map_or_else(shipped_model, Path::to_path_buf)
}

/// Reads a blob file. Refuses, before reading more than the 32-byte prefix: anything but a
/// regular file, a file over [`MAX_BLOB_BYTES`], a file without the blob magic or with another
/// major version, non-zero prefix flags, and a file whose length differs from the length its
/// prefix declares. The contents are validated by [`load`].
pub fn read(path: &Path) -> Result<Vec<u8>> {
    let p = shown(path);
    let (mut file, len) = files::open_regular(path, "model")?;
    if len > MAX_BLOB_BYTES {
        bail!("model {p} is {len} bytes, more than a blob can be (4 GiB)");
    }
    let mut prefix = Vec::with_capacity(PREFIX_LEN);
    (&mut file)
        .take(PREFIX_LEN as u64)
        .read_to_end(&mut prefix)
        .with_context(|| format!("cannot read model {p}"))?;
    if prefix.len() >= MAGIC.len() && prefix[..MAGIC.len()] != MAGIC {
        bail!("{p}: not a model blob (bad magic)");
    }
    if prefix.len() < PREFIX_LEN {
        bail!("{p}: {len} bytes, shorter than a blob's {PREFIX_LEN}-byte prefix");
    }
    let u32_at = |at: usize| {
        u32::from_le_bytes([prefix[at], prefix[at + 1], prefix[at + 2], prefix[at + 3]])
    };
    let major = u16::from_le_bytes([prefix[8], prefix[9]]);
    if !(VERSION_MAJOR_MIN..=VERSION_MAJOR).contains(&major) {
        let minor = u16::from_le_bytes([prefix[10], prefix[11]]);
        bail!("{p}: blob format {major}.{minor} is not supported (this build reads major versions {VERSION_MAJOR_MIN}-{VERSION_MAJOR}); repack the run with this build's `tools pack`");
    }
    let flags = u32_at(28);
    let known = known_flags(major);
    if flags & !known != 0 {
        bail!("{p}: the prefix flags are {flags:#010x} but format {major} defines {known:#x} (a corrupted or newer blob)");
    }
    // data offset + data length: the whole blob.
    let declared = u64::from(u32_at(16)) + u64::from(u32_at(20));
    if declared != len {
        bail!("{p}: the prefix declares a {declared}-byte blob but the file has {len} bytes (truncated or inflated)");
    }
    files::read_rest(file, prefix, len, path, "model")
}

/// Validates `bytes` as a model, naming `path` in the error.
pub fn load<'a>(path: &Path, bytes: &'a [u8]) -> Result<Model<'a>> {
    validate(bytes).map_err(|e| anyhow::anyhow!("{}: {e}", shown(path)))
}

/// [`Model::from_bytes_in`] with room for any vocabulary's ids (128 KiB), so that the
/// duplicate-token check of an unsorted vocabulary is one sort, `O(V log V)`.
pub fn validate(bytes: &[u8]) -> Result<Model<'_>, runtime::LoadError> {
    let mut scratch = vec![0u8; 2 * (runtime::format::MAX_VOCAB as usize + 1)];
    Model::from_bytes_in(bytes, &mut scratch)
}

/// Working memory of [`repack`] for model `m` into `encodings`, an upper bound: every
/// parameter unpacked (a byte per ternary weight, as [`runtime::writer::ModelParams`] holds
/// them), the new data region and the new blob (both exist at once), and the header.
pub fn repack_bytes(m: &Model<'_>, encodings: runtime::schema::MatrixEncodings) -> u64 {
    use runtime::format::{ElemFormat, TensorKind};
    let layout = m.layout();
    let mut params = 0u64;
    for e in layout.entries() {
        let elems = u64::from(e.rows) * u64::from(e.cols);
        let per = match e.format {
            ElemFormat::Ternary2 { .. } | ElemFormat::Ternary5 { .. } => 1,
            ElemFormat::Int8Rows { .. } | ElemFormat::Bytes => 1,
            ElemFormat::Dyadic => std::mem::size_of::<runtime::Dyadic>() as u64,
            ElemFormat::FixedI32 { .. } => 4,
            ElemFormat::U32 => 0, // vocabulary offsets: not held
        };
        params += elems * per;
        if e.kind == TensorKind::VocabOffsets {
            // One `Vec<u8>` per token.
            params += elems * (std::mem::size_of::<Vec<u8>>() as u64 + 16);
        }
    }
    let vocab_bytes = layout
        .global_entry(TensorKind::VocabBytes)
        .map_or(0, |e| e.len);
    let data = runtime::Layout::with_encodings(*m.config(), vocab_bytes, encodings)
        .map_or(u64::from(u32::MAX), |l| l.data_len() as u64);
    // Header: the postcard tensor table (a few bytes per entry), vocabulary sizes, metadata.
    let header = 64 * layout.n_tensors() as u64 + 65_536;
    params + 2 * data + 2 * header
}

/// `m` rewritten with its ternary matrices stored as `encodings`, its working memory
/// ([`repack_bytes`]) checked against `cap` (and the machine) first and allocated fallibly:
/// a blob too large for the cap or the system is a one-line error, never an abort.
pub fn repack(
    path: &Path,
    m: &Model<'_>,
    encodings: runtime::schema::MatrixEncodings,
    cap: u64,
) -> Result<Vec<u8>> {
    let need = repack_bytes(m, encodings);
    crate::memory::check(need, cap).with_context(|| {
        format!(
            "{}: repacking its ternary matrices (every weight unpacked to a byte)",
            shown(path)
        )
    })?;
    runtime::writer::ModelParams::from_model(m)
        .and_then(|p| p.to_blob_with(encodings))
        .map_err(|e| anyhow::anyhow!("{}: cannot repack: {e}", shown(path)))
}

/// The copies of a blob's matrices a host keeps in memory beside the blob: the row-tiled copy that
/// the x86-64 SIMD kernels (AVX2, AVX-VNNI, AVX-512 VNNI) read ([`Model::with_tiled`]), or, at the
/// other SIMD levels (NEON), a base-3 blob rewritten with 2-bit matrices (the base-3 table-lookup
/// kernel is made for microcontrollers). Lives as long as the model reading it.
#[derive(Default)]
pub struct HostCopies {
    repacked: Vec<u8>,
    tiled: Vec<u8>,
}

/// What a command needs in memory beside the model's copies ([`load_for_host`]).
pub struct Beside<'b> {
    /// Said in a refusal: "a session over the model's whole context", "a session and the
    /// latency samples of 5 rounds".
    pub what: &'b str,
    /// Bytes, for the model's configuration.
    pub bytes: &'b dyn Fn(&runtime::Config) -> u64,
}

/// The model the host runs from `bytes` (validated once), with the copy of its matrices the
/// current kernel level reads fastest, in `copies` (the same weights, so the same outputs bit
/// for bit): at the x86-64 SIMD levels every matrix rewritten into the row-tiled layout (from
/// the 2-bit or the base-3 encoding); at the other SIMD levels a base-3 blob rewritten with
/// 2-bit matrices (the base-3 kernel is a portable table-lookup kernel made for
/// microcontrollers, about 20 times slower than the NEON one), said on stderr when `verbose`.
/// The copies count against `cap` (`--max-memory`) with what the command needs `beside` them
/// (so that the advice a refusal gives is enough), and are allocated fallibly. Returns the model and the bytes the copies hold (0 when the
/// blob runs as it is), which stay in use while the model runs.
pub fn load_for_host<'a>(
    path: &Path,
    bytes: &'a [u8],
    copies: &'a mut HostCopies,
    cap: u64,
    verbose: bool,
    beside: Beside<'_>,
) -> Result<(Model<'a>, u64)> {
    use runtime::kernels::{level, tiled_level, Level};
    let m = load(path, bytes)?;
    // The copies (`held` bytes) and what the command needs beside them must fit the cap.
    let beside_bytes = (beside.bytes)(m.config());
    let fits = |held: u64, copy: &str| {
        memory::check(held.saturating_add(beside_bytes), cap).with_context(|| match held {
            0 => beside.what.to_string(),
            _ => format!("{}: {copy} ({held} bytes) and {}", shown(path), beside.what),
        })
    };
    let HostCopies { repacked, tiled } = copies;
    if tiled_level() {
        let need = m.tiled_bytes();
        fits(need as u64, "the row-tiled copy of its matrices")?;
        *tiled = memory::zeroed(need)?;
        let m = m
            .with_tiled(tiled)
            .map_err(|e| anyhow::anyhow!("{}: cannot tile the matrices: {e}", shown(path)))?;
        if verbose {
            eprintln!(
                "tools: {}: matrices copied to the row-tiled layout in memory ({need} bytes) for the {} kernels",
                shown(path),
                level()
            );
        }
        return Ok((m, need as u64));
    }
    let base3 = m
        .layout()
        .encodings()
        .contains(&runtime::TernaryEncoding::Base3);
    if !base3 || level() == Level::Portable {
        fits(0, "")?;
        return Ok((m, 0));
    }
    // The repack checks its own working memory; the repacked blob then stays beside the rest.
    *repacked = repack(path, &m, Default::default(), cap)?;
    let held = repacked.len() as u64;
    fits(held, "its matrices repacked to 2-bit")?;
    if verbose {
        eprintln!(
            "tools: {}: base-3 matrices repacked to 2-bit in memory for the {} kernels",
            shown(path),
            level()
        );
    }
    Ok((load(path, repacked)?, held))
}
