//! The speed engine: fio-like jobs with io_uring or a thread pool, HDR latency histograms.
//!
//! - [`job`]: what to run (validated parameters), [`matrix`]: the named standard workloads,
//! - [`runner`]: runs one job and builds its [`result::BenchResult`],
//! - [`engine`]: the two ways of keeping I/Os in flight (io_uring, threads),
//! - [`latency`], [`stats`]: histograms and run statistics.

pub mod buffers;
pub mod cli;
pub mod clock;
pub mod engine;
pub mod error;
pub mod job;
pub mod latency;
pub mod matrix;
pub mod metadata;
pub mod offsets;
pub mod result;
pub mod runner;
pub mod signals;
pub mod stats;
pub mod target;

pub use error::Error;
