//! `pvcheck`: a thin command line over the `pvcheck` library. Exit codes: see `pvcheck::exit_code`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    let prog = args.next();
    let rest: Vec<_> = args.collect();
    // Called `pvcheck-agent` (a static pvcheck as the agent image's entrypoint, see
    // `pvcheck image export`): the agent built in, as `pvcheck agent …` is.
    if prog
        .as_deref()
        .map(std::path::Path::new)
        .and_then(std::path::Path::file_name)
        .is_some_and(|n| n == "pvcheck-agent")
    {
        return pvcheck_workloads::cli::main(std::iter::once("pvcheck-agent".into()).chain(rest));
    }
    // `pvcheck agent …` is the agent built in, so one binary is enough on a node.
    if rest.first().is_some_and(|a| a == "agent") && rest.len() > 1 {
        return pvcheck_workloads::cli::main(
            std::iter::once("pvcheck agent".into()).chain(rest.into_iter().skip(1)),
        );
    }
    let cli = match pvcheck::cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::from(pvcheck::exit_code::OK);
        }
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // `pvcheck` alone: say what is missing, not the tool's description.
            eprintln!("pvcheck: a subcommand is needed: run, cleanup or agent (see --help)");
            return ExitCode::from(pvcheck::exit_code::USAGE);
        }
        Err(e) => {
            eprintln!("pvcheck: {}", pvcheck_workloads::cli::usage_error_line(&e));
            return ExitCode::from(pvcheck::exit_code::USAGE);
        }
    };
    ExitCode::from(pvcheck::cli::main(cli))
}
