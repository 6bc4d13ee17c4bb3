//! The `vakt` binary: parses the command line and hands over to [`vakt::cli`].

fn main() -> std::process::ExitCode {
    vakt::cli::main()
}
