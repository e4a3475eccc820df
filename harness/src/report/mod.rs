//! What a run leaves: the result file ([`results`]), the terminal summary ([`table`]) and the
//! progress display while it runs ([`progress`]).

pub mod progress;
pub mod results;
pub mod table;
