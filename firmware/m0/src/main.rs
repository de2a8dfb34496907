//! A minimal Cortex-M0+ app (no FPU) that links the runtime's whole generation path: load,
//! encode, session, forward, sampling, decode, and the chat protocol (`runtime::chat`: line
//! parsing, decimal settings, `/stats` rates) over the same session. It exists so that `check-no-float.sh` can prove
//! with `nm` that no soft-float routine (`__aeabi_f*`, `__aeabi_d*`, `__*sf3`, `__*df3`, ...)
//! is linked: the runtime's integer-only contract on a core where a float would show.
//!
//! The model is read from a flash address at run time (a 4-byte length, then the blob), so the
//! compiler cannot fold any of the runtime away. Build:
//! `cargo build --release -p m0 --target thumbv6m-none-eabi` (from `firmware/`).

#![no_std]
#![no_main]

use core::panic::PanicInfo;

use runtime::chat::{Chat, Clock, Settings, Terminal};
use runtime::{Generator, Model, SamplerConfig, Session};

/// A terminal that sums what it is sent and reads its input from flash.
struct Sum {
    sum: u32,
    input: &'static [u8],
    at: usize,
}

impl Terminal for Sum {
    type Error = core::convert::Infallible;
    fn write(&mut self, bytes: &[u8]) -> Result<(), Self::Error> {
        for &b in bytes {
            self.sum = self.sum.wrapping_add(u32::from(b));
        }
        Ok(())
    }
    fn read(&mut self) -> Option<u8> {
        let byte = self.input.get(self.at).copied();
        self.at = self.at.saturating_add(1);
        byte
    }
    fn now(&mut self) -> u64 {
        u64::from(self.sum)
    }
    fn clock(&self) -> Clock {
        Clock {
            per_second: 150_000_000,
            unit: "cycles",
            note: "",
        }
    }
}

/// Where a separately flashed model would start: its length (`u32`, little endian), then it.
const MODEL_ADDR: usize = 0x1010_0000;
/// Working memory: enough for a small model; a larger one is refused with an error.
const WORK_BYTES: usize = 192 * 1024;

static mut WORK: [u8; WORK_BYTES] = [0; WORK_BYTES];

#[cortex_m_rt::entry]
fn main() -> ! {
    // SAFETY: reads flash at a fixed address; the only reference to WORK is taken here once.
    let (blob, work) = unsafe {
        let len = (MODEL_ADDR as *const u32).read_volatile() as usize;
        let blob = core::slice::from_raw_parts((MODEL_ADDR + 4) as *const u8, len.min(1 << 21));
        (blob, &mut *core::ptr::addr_of_mut!(WORK))
    };
    let mut sink = 0u32;
    if let Ok(model) = Model::from_bytes(blob) {
        let mut prompt = [0u16; 64];
        let n = runtime::encode(&model, b"ROMEO:", &mut prompt).unwrap_or(0);
        let ctx = model.config().ctx_len;
        if let Ok(mut session) = Session::new(model, ctx, work) {
            let sampling = SamplerConfig {
                temperature_milli: 800,
                top_k: 40,
                seed: 1,
            };
            let mut generator = Generator::new(&mut session, &prompt[..n], sampling);
            while let Ok(Some(token)) = generator.next_token() {
                for &b in runtime::decode(generator.session().model(), token) {
                    sink = sink.wrapping_add(u32::from(b));
                }
            }
            // The chat protocol, typed at from flash after the model (a 4-byte length, then
            // the bytes).
            // SAFETY: reads flash at a fixed address.
            let input = unsafe {
                let at = (MODEL_ADDR + 4 + blob.len() + 3) & !3;
                let len = (at as *const u32).read_volatile() as usize;
                core::slice::from_raw_parts((at + 4) as *const u8, len.min(4096))
            };
            let mut chat = Chat::new(Ok(session), Settings::DEFAULT);
            let mut term = Sum {
                sum: sink,
                input,
                at: 0,
            };
            let Ok(()) = chat.greet(&mut term);
            while let Ok(true) = chat.poll(&mut term) {}
            sink = term.sum;
        }
    }
    // Keep the result observable.
    // SAFETY: a plain store to RAM the app owns.
    unsafe { core::ptr::write_volatile(core::ptr::addr_of_mut!(WORK).cast::<u32>(), sink) };
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    cortex_m::asm::udf()
}
