//! The speed engine: fio-like jobs with io_uring or a thread pool, HDR latency histograms.

pub mod cli;
