//! The `vakt` binary: parses the command line and hands over to [`vakt::cli`].

/// mimalloc: the decision path allocates many small short-lived values, and a
/// million-entity world is a large heap; see BENCHMARKS.md for the measured effect.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    vakt::cli::main()
}
