//! pvcheck-test-csi: thin CLI over the library. Exit codes: 0 stopped by SIGTERM/SIGINT,
//! 1 failed while serving, 2 bad flags, state directory or endpoint. `pvcheck-test-csi
//! fuse-daemon …` (hidden) is the daemon of `--data-path fuse-outside`.

use std::process::ExitCode;

use clap::Parser;
use pvcheck_test_csi::config::{Args, DaemonArgs, FAULTS_ENV};
use pvcheck_test_csi::driver::Driver;
use pvcheck_test_csi::fuse_path::{self, DAEMON_SUBCOMMAND};
use pvcheck_test_csi::{log, serve};

const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    if std::env::args_os().nth(1).as_deref() == Some(DAEMON_SUBCOMMAND.as_ref()) {
        let argv = std::iter::once(std::ffi::OsString::from("fuse-daemon"))
            .chain(std::env::args_os().skip(2));
        return match DaemonArgs::try_parse_from(argv) {
            Ok(args) => fuse_path::daemon_main(args),
            Err(e) if !e.use_stderr() => {
                let _ = e.print();
                ExitCode::SUCCESS
            }
            Err(e) => {
                // clap's message up to its usage hint, as one line.
                let text = e.to_string();
                let line = text
                    .lines()
                    .map(str::trim)
                    .take_while(|l| !l.is_empty() && !l.starts_with("Usage:"))
                    .collect::<Vec<_>>()
                    .join(" ");
                log!("fuse-daemon: {}", line.trim_start_matches("error: "));
                ExitCode::from(EXIT_USAGE)
            }
        };
    }
    let args = Args::parse();
    let env = std::env::var(FAULTS_ENV).ok();
    let config = match args.into_config(env.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            log!("{e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    for fault in config.faults.iter() {
        log!("FAULT {fault}: injected");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            log!("starting the runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let driver = match Driver::open(config) {
        Ok(d) => d,
        Err(e) => {
            log!("{e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match runtime.block_on(serve::run(driver)) {
        Ok(()) => {
            // A call that hangs forever (the `hang` fault) must not block the exit.
            runtime.shutdown_timeout(std::time::Duration::from_millis(100));
            ExitCode::SUCCESS
        }
        Err(e) => {
            log!("{e}");
            runtime.shutdown_timeout(std::time::Duration::from_millis(100));
            ExitCode::from(if e.is_usage() {
                EXIT_USAGE
            } else {
                EXIT_FAILED
            })
        }
    }
}
