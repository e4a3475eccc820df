//! Configuration errors: one line that says which file, which line and which field.

use std::fmt;
use std::path::PathBuf;

/// A class file that cannot be used. Displays as `FILE:LINE: FIELD: WHAT`, one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The YAML file (or `<built-in storageclasses/local.yaml>`).
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<u64>,
    /// The field (`classes[1].local.loop.size`) when known.
    pub field: Option<String>,
    /// What is wrong, for a human.
    pub message: String,
}

impl ConfigError {
    pub fn new(
        file: impl Into<PathBuf>,
        line: Option<u64>,
        field: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.into(),
            line: line.filter(|l| *l > 0),
            field,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        // The parser's own messages may span lines; the user gets exactly one.
        let msg = self
            .message
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        write!(f, ": {msg}")
    }
}
