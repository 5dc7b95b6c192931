//! `mode`: parse the command line, run one command, print its summary or the error chain once,
//! and set the exit code. Everything else lives in the library.

use clap::Parser;
use mode::cli::{self, Cli, Printed};
use std::io::IsTerminal;

fn main() {
    if let Err(e) = cli::check_set_args(&std::env::args().collect::<Vec<_>>()) {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
    let cli = Cli::parse();
    let level = if cli.quiet {
        tracing::Level::ERROR
    } else {
        tracing::Level::INFO
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false)
        .without_time()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    match cli::run(cli) {
        Ok(Printed::Log(line)) => tracing::info!("{line}"),
        Ok(Printed::Stdout(text)) => {
            use std::io::Write;
            // A reader that stops early (`| head`) is not an error.
            let _ = writeln!(std::io::stdout(), "{}", text.trim_end());
        }
        Err(e) => {
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("error: {}", chain.join(": "));
            std::process::exit(1);
        }
    }
}
