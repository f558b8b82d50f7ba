//! The spheroseg binary: parse the command line, start logging, run, turn the outcome into an exit
//! code (0 ok, 1 failure, 2 bad configuration).

fn main() {
    let cli = spheroseg::cli::parse();
    if let Err(e) = spheroseg::logging::init() {
        eprintln!("spheroseg: {e}");
        std::process::exit(2);
    }
    if let Err(e) = spheroseg::cli::run(cli) {
        match &e {
            spheroseg::cli::Exit::Config(c) => eprintln!("spheroseg: {c}"),
            spheroseg::cli::Exit::Other(a) => eprintln!("spheroseg: {a:#}"),
            partial => eprintln!("spheroseg: {partial}"),
        }
        std::process::exit(e.code());
    }
}
