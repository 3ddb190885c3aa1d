fn main() -> std::process::ExitCode {
    sparsebak::cli::main()
}
