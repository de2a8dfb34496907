//! `tools`: pack a trainer run into a blob and exercise blobs on the host.
//!
//! Data goes to stdout, progress and diagnostics to stderr; failures exit non-zero with a
//! one-line reason. The command line itself lives in [`tools::cli`].

use std::process::ExitCode;

use clap::Parser;
use tools::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // SIGINT/SIGTERM/SIGHUP: a half-written output's temporary file is removed, then the
    // process exits (in `tools chat`, Ctrl-C stops a generation instead).
    if let Err(e) = tools::signals::install() {
        eprintln!("tools: {e:#}");
        return ExitCode::FAILURE;
    }
    match cli::run(cli, &mut std::io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        // `tools … | head` closes stdout early: not an error.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tools: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
