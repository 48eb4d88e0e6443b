//! The arguments of the commands that read CSV files: `cpi import`,
//! `cpi check` and `cpi infer`.

use std::path::PathBuf;

use clap::Args;

use super::format::Output;

/// `cpi import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The project whose options and connection apply.
    #[arg(long)]
    pub project: String,
    /// CSV files (`.csv.gz` read through gzip, `.csv.zst` through zstd).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// One line per file, or JSON or YAML.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: Output,
}

/// `cpi check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The project whose options, checks and connection apply.
    #[arg(short = 'p', long)]
    pub project: String,
    /// Take the project and its connection from the manifests folder
    /// (`--manifests`), as a pull request has them, not as applied; needs
    /// no management database, only the connection's secret file.
    #[arg(long)]
    pub from_manifests: bool,
    /// Check against the database whose URL this file holds instead of the
    /// project's connection (a staging copy, or a scratch database in CI).
    #[arg(long, value_name = "FILE")]
    pub target_url_file: Option<PathBuf>,
    /// CSV files (`.csv.gz` read through gzip, `.csv.zst` through zstd).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// A report per file, or JSON or YAML.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: Output,
}

/// `cpi infer`.
#[derive(Debug, Args)]
pub struct InferArgs {
    /// Read the files with this project's options (table, key, dialect).
    #[arg(long)]
    pub project: Option<String>,
    /// CSV files (`.csv.gz` read through gzip, `.csv.zst` through zstd).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}
