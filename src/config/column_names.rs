//! Column names as a config gives them: one, or a list.

use serde::{Deserialize, Serialize};

/// One column name or several (`primary_key: id` or `primary_key: [a, b]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One column.
    One(String),
    /// Several columns.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The column names as a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}
