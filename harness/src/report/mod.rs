//! What a run leaves: the result file ([`results`], counts in [`summary`]), the terminal summary
//! ([`table`], [`terse`]), repeated errors recognised ([`errors`]) and the progress display
//! while it runs ([`progress`]); for comparisons and reports (issue 12) the comparison table
//! ([`compare_table`]) and the report files ([`outputs`]: [`junit`], [`markdown`], [`html`] with
//! [`charts`], [`prometheus`]; [`push`] sends its figures to a Pushgateway).

pub mod charts;
pub mod compare_table;
pub mod errors;
pub mod html;
pub mod junit;
pub mod markdown;
pub mod outputs;
pub mod progress;
pub mod prometheus;
pub mod push;
pub mod results;
pub mod summary;
pub mod table;
pub mod terse;
