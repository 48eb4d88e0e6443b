//! The output formats of the commands that print objects (`-o`).

use clap::ValueEnum;

/// The format of a command's result on stdout: tables and text for people,
/// or JSON or YAML for scripts (as `kubectl -o` gives).
// Doc comments on the variants would become clap's help for each value.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
    Yaml,
}

impl Output {
    /// JSON or YAML: one document for a program, nothing else on stdout.
    pub fn structured(self) -> bool {
        self != Output::Text
    }
}
