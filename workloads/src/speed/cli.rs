//! Subcommands of the speed engine: bench.

use clap::Subcommand;

use crate::exit::Outcome;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one job and print its result (JSON) on stdout.
    Bench,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not implemented yet")]
    NotImplemented,
}

impl Command {
    pub fn run(self) -> Result<Outcome, Error> {
        Err(Error::NotImplemented)
    }
}
