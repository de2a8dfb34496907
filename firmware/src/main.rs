//! BitNet b1.58 text generation on a Cortex-M33: a Raspberry Pi Pico 2 (`pico2`, the
//! default board) or its QEMU twin `mps2-an505` (`qemu`). See `README.md` in this folder.
//!
//! Only `board/` differs between the boards; [`app::run`] is generic over
//! `embedded_io::Write`, `embedded_hal::digital::OutputPin` and [`cost::CostCounter`].

#![no_std]
#![no_main]

#[cfg(all(feature = "pico2", feature = "qemu"))]
compile_error!("enable one board: `pico2` (default) or `--no-default-features --features qemu`");

mod app;
mod cost;
mod fault;
mod placement;
mod settings;
mod work;

#[cfg_attr(feature = "pico2", path = "board/pico2.rs")]
#[cfg_attr(feature = "qemu", path = "board/qemu.rs")]
mod board;

#[cfg_attr(feature = "pico2", rp235x_hal::entry)]
#[cfg_attr(feature = "qemu", cortex_m_rt::entry)]
fn main() -> ! {
    fault::arm_stack_guard();
    let mut board = board::init();
    defmt::info!(
        "board {}, stack limit {=u32:#x}",
        board::NAME,
        fault::stack_limit()
    );
    match app::run(&mut board.uart, &mut board.led, &mut board.cost) {
        Ok(()) => {
            defmt::info!("stack used: {} bytes", fault::stack_high_water());
            board::finish()
        }
        Err(error) => board::fatal(fault::Fatal::App(&error)),
    }
}
