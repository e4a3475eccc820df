//! pvcheck's agent: what runs on the volume under test.
//!
//! - [`integrity`]: writes a seeded, self-describing dataset and proves later that every
//!   acknowledged byte is still what it must be, naming the kind of damage where it is not.
//! - [`speed`]: measures IOPS, bandwidth and latency the way fio does, without fio.
//! - [`pod`]: the supervisor the agent image's container runs on Kubernetes (framed log).
//!
//! The harness runs this code as a separate process (`pvcheck agent …` or `pvcheck-agent …`)
//! and reads its JSON from stdout; it may link this crate only for types and for [`units`].

pub mod cli;
pub mod exit;
pub mod integrity;
pub mod pod;
pub mod speed;
pub mod units;
