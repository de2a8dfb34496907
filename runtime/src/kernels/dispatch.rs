//! Run-time kernel selection: one binary runs the best kernels the CPU has.
//!
//! Detection stays `no_std`: on x86-64 it reads `CPUID` and `XGETBV` through `core::arch`
//! (the OS must save the `ymm`/`zmm` state, not only the CPU support the instructions); on
//! aarch64 NEON is part of the base target (`target_feature = "neon"`). The level is detected
//! once, on first use, and kept in an atomic; [`set_level`] and [`force_portable`] override it
//! (tests and benchmarks run every path on one machine with them). Every level computes the
//! same integers, so switching never changes a result, only the speed.

use core::fmt;
use core::sync::atomic::{AtomicU8, Ordering};

/// A family of kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    /// Scalar kernels (`fast`; `dsp` on Arm cores with the DSP extension). Every target.
    Portable = 1,
    /// x86-64 AVX2 (`vpmaddubsw`), with BMI1/2, LZCNT and POPCNT (x86-64-v3's integer set).
    Avx2 = 2,
    /// x86-64 AVX-512 F/BW/VL/DQ/CD with VNNI (`vpdpbusd`), on top of the AVX2 level.
    Avx512Vnni = 3,
    /// aarch64 Advanced SIMD (NEON).
    Neon = 4,
    /// WebAssembly SIMD128 (compiled in with `-C target-feature=+simd128`).
    Simd128 = 5,
    /// x86-64 AVX-VNNI (`vpdpbusd` on 256-bit vectors, VEX-encoded: the desktop and
    /// efficiency cores without AVX-512, Alder Lake on), on top of the AVX2 level: the
    /// ternary matvec and block matmul on the row-tiled copy use it, every other step runs the
    /// AVX2 level's kernels. Chosen on CPUs that have it and lack the AVX-512 VNNI level.
    AvxVnni = 6,
}

impl Level {
    /// A short name (`portable`, `avx2`, `avxvnni`, `avx512vnni`, `neon`, `simd128`), as
    /// benchmarks print it.
    pub const fn name(self) -> &'static str {
        match self {
            Level::Portable => "portable",
            Level::Avx2 => "avx2",
            Level::Avx512Vnni => "avx512vnni",
            Level::AvxVnni => "avxvnni",
            Level::Neon => "neon",
            Level::Simd128 => "simd128",
        }
    }

    /// Whether this CPU can run the level.
    pub fn supported(self) -> bool {
        match self {
            Level::Portable => true,
            Level::Avx2 => detected().runs_avx2(),
            Level::AvxVnni => match detected() {
                Level::AvxVnni => true,
                Level::Avx512Vnni => avx_vnni(),
                _ => false,
            },
            Level::Avx512Vnni => detected() == Level::Avx512Vnni,
            Level::Neon => detected() == Level::Neon,
            Level::Simd128 => detected() == Level::Simd128,
        }
    }

    /// Whether the level runs the AVX2 level's kernels where it has none of its own (the
    /// x86-64 SIMD levels: `avx2`, `avxvnni`, `avx512vnni`).
    #[inline]
    pub const fn runs_avx2(self) -> bool {
        matches!(self, Level::Avx2 | Level::AvxVnni | Level::Avx512Vnni)
    }

    fn from_u8(v: u8) -> Option<Level> {
        match v {
            1 => Some(Level::Portable),
            2 => Some(Level::Avx2),
            3 => Some(Level::Avx512Vnni),
            4 => Some(Level::Neon),
            5 => Some(Level::Simd128),
            6 => Some(Level::AvxVnni),
            _ => None,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// [`set_level`] was asked for a level this CPU cannot run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unsupported(pub Level);

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "this CPU cannot run the {} kernels", self.0)
    }
}

/// 0: not chosen yet; otherwise a [`Level`].
static CURRENT: AtomicU8 = AtomicU8::new(0);
/// 0: not detected yet; otherwise the best [`Level`] of this CPU.
static DETECTED: AtomicU8 = AtomicU8::new(0);

/// The best level this CPU supports (detected once).
pub fn detected() -> Level {
    if let Some(l) = Level::from_u8(DETECTED.load(Ordering::Relaxed)) {
        return l;
    }
    let l = detect();
    DETECTED.store(l as u8, Ordering::Relaxed);
    l
}

/// The level the kernels run at now: [`detected`] unless overridden.
#[inline]
pub fn level() -> Level {
    match Level::from_u8(CURRENT.load(Ordering::Relaxed)) {
        Some(l) => l,
        None => {
            let l = detected();
            CURRENT.store(l as u8, Ordering::Relaxed);
            l
        }
    }
}

/// Runs the kernels at `level` from now on (process-wide). Refuses a level this CPU lacks.
pub fn set_level(level: Level) -> Result<(), Unsupported> {
    if !level.supported() {
        return Err(Unsupported(level));
    }
    CURRENT.store(level as u8, Ordering::Relaxed);
    Ok(())
}

/// Runs the portable scalar kernels from now on (process-wide): the fallback every target has.
pub fn force_portable() {
    CURRENT.store(Level::Portable as u8, Ordering::Relaxed);
}

/// Every level this CPU supports, best last.
pub fn supported_levels() -> impl Iterator<Item = Level> {
    [
        Level::Portable,
        Level::Avx2,
        Level::AvxVnni,
        Level::Avx512Vnni,
        Level::Neon,
        Level::Simd128,
    ]
    .into_iter()
    .filter(|l| l.supported())
}

#[cfg(target_arch = "x86_64")]
#[allow(unused_unsafe)] // `__cpuid` is safe since Rust 1.87
fn detect() -> Level {
    use core::arch::x86_64::{__cpuid, __cpuid_count, _xgetbv};
    // SAFETY: CPUID exists on every x86-64 CPU.
    let leaf0 = unsafe { __cpuid(0) };
    if leaf0.eax < 7 {
        return Level::Portable;
    }
    // SAFETY: as above; leaves 1 and 7 exist (checked).
    let (leaf1, leaf7) = unsafe { (__cpuid(1), __cpuid_count(7, 0)) };
    let osxsave = leaf1.ecx & (1 << 27) != 0;
    let avx = leaf1.ecx & (1 << 28) != 0;
    if !(osxsave && avx) {
        return Level::Portable;
    }
    // SAFETY: OSXSAVE is set, so XGETBV is enabled; `xsave` is what the intrinsic requires.
    let xcr0 = unsafe { xgetbv0() };
    // The AVX2 level is x86-64-v3's integer set: AVX2, BMI1, BMI2, LZCNT (the forward pass
    // is compiled for it too, see `forward.rs`).
    let avx2 = leaf7.ebx & (1 << 5) != 0;
    let bmi = leaf7.ebx & (1 << 3) != 0 && leaf7.ebx & (1 << 8) != 0;
    // SAFETY: CPUID exists; leaf 0x8000_0001 is read only if the extended range reaches it.
    let lzcnt = unsafe {
        __cpuid(0x8000_0000).eax >= 0x8000_0001 && __cpuid(0x8000_0001).ecx & (1 << 5) != 0
    };
    let popcnt = leaf1.ecx & (1 << 23) != 0;
    // XMM and YMM state saved by the OS.
    if !(avx2 && bmi && lzcnt && popcnt && xcr0 & 0b110 == 0b110) {
        return Level::Portable;
    }
    let avx512f = leaf7.ebx & (1 << 16) != 0;
    let avx512bw = leaf7.ebx & (1 << 30) != 0;
    let avx512dq = leaf7.ebx & (1 << 17) != 0;
    let avx512cd = leaf7.ebx & (1 << 28) != 0;
    let avx512vl = leaf7.ebx & (1 << 31) != 0;
    let vnni = leaf7.ecx & (1 << 11) != 0;
    // Opmask, ZMM0-15 upper halves and ZMM16-31 saved too.
    if avx512f
        && avx512bw
        && avx512vl
        && avx512dq
        && avx512cd
        && vnni
        && xcr0 & 0b1110_0110 == 0b1110_0110
    {
        return Level::Avx512Vnni;
    }
    if avx_vnni() {
        return Level::AvxVnni;
    }
    return Level::Avx2;

    #[target_feature(enable = "xsave")]
    unsafe fn xgetbv0() -> u64 {
        _xgetbv(0)
    }
}

/// Whether the CPU has AVX-VNNI (`CPUID.(EAX=7, ECX=1):EAX[4]`). Its instructions use the
/// `ymm` state the AVX2 level already requires of the OS; callers check that level first.
#[cfg(target_arch = "x86_64")]
#[allow(unused_unsafe)] // `__cpuid` is safe since Rust 1.87
fn avx_vnni() -> bool {
    use core::arch::x86_64::{__cpuid, __cpuid_count};
    // SAFETY: CPUID exists on every x86-64 CPU; leaf 7 is read only if it exists, and its
    // subleaf 1 only if leaf 7 reports it.
    unsafe {
        __cpuid(0).eax >= 7
            && __cpuid_count(7, 0).eax >= 1
            && __cpuid_count(7, 1).eax & (1 << 4) != 0
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn avx_vnni() -> bool {
    false
}

#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
fn detect() -> Level {
    Level::Neon
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn detect() -> Level {
    Level::Simd128
}

#[cfg(not(any(
    target_arch = "x86_64",
    all(target_arch = "aarch64", target_feature = "neon"),
    all(target_arch = "wasm32", target_feature = "simd128")
)))]
fn detect() -> Level {
    Level::Portable
}
