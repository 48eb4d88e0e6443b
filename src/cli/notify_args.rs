//! The grammar of `cpi events` and `cpi notify` (kept beside `args`, which
//! holds the rest).

use clap::Subcommand;

use super::format::Output;

/// `cpi events`.
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// The latest events, newest first, with each delivery's state.
    List {
        /// Only this project's events.
        #[arg(short = 'p', long)]
        project: Option<String>,
        /// At most this many events.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// A table, or JSON or YAML.
        #[arg(short = 'o', long, value_enum, default_value = "text")]
        output: Output,
    },
}

/// `cpi notify`.
#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Send a test message through an Alert's Provider (as the manifests
    /// declare them) and print the outcome. Exit 0: sent, 1: not sent.
    Test {
        /// The Alert's name.
        alert: String,
    },
}
