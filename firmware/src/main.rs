//! BitNet b1.58 text generation on a Cortex-M33: a Raspberry Pi Pico 2 (`pico2`, the
//! default board) or its QEMU twin `mps2-an505` (`qemu`). See `README.md` in this folder.
//!
//! Two modes (`build.rs`): by default the firmware serves the interactive line protocol of
//! `runtime::chat` on its serial ports ([`serve::serve`]); with `FIRMWARE_PROMPT` it generates
//! once and stops ([`app::run`]). Only `board/` differs between the boards; both modes are
//! generic over the board's text port, LED and cost counter.

#![no_std]
#![no_main]

#[cfg(all(feature = "pico2", feature = "qemu"))]
compile_error!("enable one board: `pico2` (default) or `--no-default-features --features qemu`");

mod app;
mod console;
mod cost;
mod fault;
mod partition;
mod serve;
mod settings;
mod source;
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
    match settings::PROMPT {
        Some(prompt) => match app::run(prompt, &mut board.uart, &mut board.led, &mut board.cost) {
            Ok(()) => {
                defmt::info!("stack used: {} bytes", fault::stack_high_water());
                board::finish()
            }
            Err(error) => board::fatal(fault::Fatal::App(&error)),
        },
        None => {
            let mut console = board::console(board);
            serve::serve(&mut console, board::EXIT_ON_END);
            defmt::info!(
                "input ended; stack used: {} bytes",
                fault::stack_high_water()
            );
            board::finish()
        }
    }
}
