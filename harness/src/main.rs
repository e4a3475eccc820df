//! `pvcheck`: a thin command line over the `pvcheck` library.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    let prog = args.next().unwrap_or_default();
    let rest: Vec<_> = args.collect();
    // `pvcheck agent …` is the agent built in, so one binary is enough on a node.
    if rest.first().is_some_and(|a| a == "agent") {
        return pvcheck_workloads::cli::main(
            std::iter::once("pvcheck agent".into()).chain(rest.into_iter().skip(1)),
        );
    }
    let _ = prog;
    eprintln!("pvcheck: not implemented yet");
    ExitCode::from(2)
}
