//! The spheroseg binary: parse the command line, start logging, run, turn the outcome into an exit
//! code (0 ok, 1 failure, 2 bad configuration).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

fn main() {
    let cli = spheroseg::cli::parse();
    let filter = EnvFilter::try_from_env("SPHEROSEG_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    if let Err(e) = spheroseg::cli::run(cli) {
        match &e {
            spheroseg::cli::Exit::Config(c) => eprintln!("spheroseg: {c}"),
            spheroseg::cli::Exit::Other(a) => eprintln!("spheroseg: {a:#}"),
            partial => eprintln!("spheroseg: {partial}"),
        }
        std::process::exit(e.code());
    }
}
