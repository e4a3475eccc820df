//! What a run leaves: the result file ([`results`], counts in [`summary`]), the terminal summary
//! ([`table`], [`terse`]), repeated errors recognised ([`errors`]) and the progress display
//! while it runs ([`progress`]).

pub mod errors;
pub mod progress;
pub mod results;
pub mod summary;
pub mod table;
pub mod terse;
