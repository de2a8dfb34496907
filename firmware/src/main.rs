//! BitNet b1.58 text generation on a Cortex-M33: a Raspberry Pi Pico 2 (`pico2`, the
//! default board, two cores) or its QEMU twins `mps2-an505` (`qemu`, one core) and
//! `mps2-an521` (`an521`, two cores). See `README.md` in this folder.
//!
//! Two modes (`build.rs`): by default the firmware serves the interactive line protocol of
//! `runtime::chat` on its serial ports ([`serve::serve`]); with `FIRMWARE_PROMPT` it generates
//! once and stops ([`app::run`]). Only `board/` differs between the boards; both modes are
//! generic over the board's text port, LED and cost counter.

#![no_std]
#![no_main]

#[cfg(any(
    all(feature = "pico2", feature = "qemu"),
    all(feature = "pico2", feature = "an521"),
    all(feature = "qemu", feature = "an521")
))]
compile_error!(
    "enable one board: `pico2` (default), or `--no-default-features --features qemu` / `an521`"
);

mod app;
mod console;
#[cfg(two_cores)]
mod cores;
mod cost;
mod fault;
mod partition;
#[cfg(two_cores)]
mod ram_text;
mod serve;
mod settings;
mod source;
mod work;

#[cfg_attr(feature = "pico2", path = "board/pico2.rs")]
#[cfg_attr(any(feature = "qemu", feature = "an521"), path = "board/qemu.rs")]
mod board;

#[cfg_attr(feature = "pico2", rp235x_hal::entry)]
#[cfg_attr(any(feature = "qemu", feature = "an521"), cortex_m_rt::entry)]
fn main() -> ! {
    #[cfg(two_cores)]
    ram_text::copy();
    fault::arm_stack_guard();
    let mut board = board::init();
    defmt::info!(
        "board {}, stack limit {=u32:#x}",
        board::NAME,
        fault::stack_limit()
    );
    let cores = board.cores;
    match settings::PROMPT {
        Some(prompt) => match app::run(
            prompt,
            &mut board.uart,
            &mut board.led,
            &mut board.cost,
            cores,
        ) {
            Ok(()) => {
                defmt::info!("stack used: {} bytes", fault::stack_high_water());
                #[cfg(two_cores)]
                defmt::info!(
                    "core 1 stack used: {} of {} bytes",
                    fault::core1_stack_high_water(),
                    fault::core1_stack().1 - fault::core1_stack().0
                );
                board::finish()
            }
            Err(error) => board::fatal(fault::Fatal::App(&error)),
        },
        None => {
            let mut console = board::console(board);
            serve::serve(&mut console, board::EXIT_ON_END, cores);
            defmt::info!(
                "input ended; stack used: {} bytes",
                fault::stack_high_water()
            );
            board::finish()
        }
    }
}
