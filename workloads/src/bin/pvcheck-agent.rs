//! `pvcheck-agent`: the process that runs inside the pod (or, on the local platform, beside it).
//! All of it lives in the library; this file only hands over the arguments.

fn main() -> std::process::ExitCode {
    pvcheck_workloads::cli::main(std::env::args_os())
}
