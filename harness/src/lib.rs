//! pvcheck: provisions a volume per storage class, runs the agent on it, and turns what the
//! agent reports into trials, results and a verdict. See ARCHITECTURE.md for the code map.
pub mod platform;
