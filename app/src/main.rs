//! The `tunnelwatch` binary: the command line lives in `app::cli`.

/// mimalloc: the pipeline allocates many small strings per event (ids, names, addresses),
/// which glibc's malloc serves markedly slower (the session join's benchmark, BENCHMARKS.md,
/// measures with this allocator, as the binary runs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    app::cli::main()
}
