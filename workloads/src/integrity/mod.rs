//! The integrity engine: seeded, self-describing blocks, a constant-size ledger, and a verifier
//! that names the kind of damage, the file, the offset and the generation.

pub mod cli;
