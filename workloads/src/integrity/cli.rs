//! Subcommands of the integrity engine: write, rewrite, verify, durability, selftest.

use clap::Subcommand;

use crate::exit::Outcome;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a seeded dataset and print its ledger (JSON) on stdout.
    Write,
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
