//! The `tolk` binary: everything lives in `tolk_core`; this maps its status to the exit code.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(tolk_core::main_with_args())
}
