//! The command line's grammar (clap): every command, its arguments and the
//! global options. Parsing only: what the arguments do is in the command
//! modules beside this one.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use super::file_args::{CheckArgs, ImportArgs, InferArgs};
pub use super::format::Output;
pub use super::http_args::{AnonymousArg, HttpArgs};
pub use super::job_args::JobsCommand;
pub use super::notify_args::{EventsCommand, NotifyCommand};

/// `cpi`: the parsed command line.
#[derive(Debug, Parser)]
#[command(
    name = "cpi",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("CPI_GIT_COMMIT"), ")"),
    about = "CSV imports into PostgreSQL, under git",
    propagate_version = true
)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: Global,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The command line as `cpi` parses it: [`Cli`], with the global options
/// listed once, in `cpi --help`, instead of in every command's help (as
/// `kubectl options` does). Each command's help says where they are. They
/// are still accepted everywhere: hiding changes only the help text.
/// Completions and man pages take [`Cli`]'s own command, which keeps them.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    let listed = Global::augment_args(clap::Command::new("cpi"))
        .help_template("{options}")
        .disable_help_flag(true)
        .render_help()
        .to_string();
    const POINTER: &str =
        "Global options (the management database, manifests, keys, logs): see `cpi --help`.";
    fn point(cmd: clap::Command, pointer: &'static str) -> clap::Command {
        cmd.after_help(pointer)
            .mut_subcommands(|sub| point(sub, pointer))
    }
    Cli::command()
        .mut_args(|a| if a.is_global_set() { a.hide(true) } else { a })
        .after_help(format!(
            "Global options (every command takes them):\n{listed}"
        ))
        .mut_subcommands(|sub| point(sub, POINTER))
}

/// Options every command takes (management database, manifests, owner, logs).
#[derive(Debug, Args, Clone)]
pub struct Global {
    /// The manifests folder (read recursively).
    #[arg(
        long,
        env = "CPI_MANIFESTS",
        global = true,
        default_value = "manifests"
    )]
    pub manifests: PathBuf,
    /// Where relative secret file paths are resolved (default: the manifests folder).
    #[arg(long, env = "CPI_SECRETS_DIR", global = true)]
    pub secrets_dir: Option<PathBuf>,
    /// The management database URL. Never read from DATABASE_URL.
    #[arg(long, env = "CPI_DATABASE_URL", hide_env_values = true, global = true)]
    pub database_url: Option<String>,
    /// A file holding the management database URL.
    #[arg(long, global = true, conflicts_with = "database_url")]
    pub database_url_file: Option<PathBuf>,
    /// The owner id written into `managed_by`; owners never touch each other's rows.
    #[arg(long, env = "CPI_OWNER", global = true, default_value = "cpi")]
    pub owner: String,
    /// How log lines on stderr look.
    #[arg(long, value_enum, global = true, default_value = "text")]
    pub log_format: LogFormat,
    /// Where cpi keeps local state, e.g. the embedded PostgreSQL that serves
    /// as management database when none is given.
    #[arg(long, env = "CPI_STATE_DIR", global = true, default_value = ".cpi")]
    pub state_dir: PathBuf,
    /// A key file (`cpi keygen`): connection URLs are stored encrypted with
    /// its first key and read with any of its keys.
    #[arg(long, env = "CPI_ENCRYPTION_KEY_FILE", global = true)]
    pub encryption_key_file: Option<PathBuf>,
    /// The port of the embedded PostgreSQL (127.0.0.1 only).
    #[arg(long, env = "CPI_EMBEDDED_PORT", global = true, default_value_t = crate::embedded::DEFAULT_PORT, value_parser = clap::value_parser!(u16).range(1..))]
    pub embedded_port: u16,
}

/// The format of log lines: human-readable text, or one JSON object per
/// line (for log collectors).
// Doc comments on the variants would become clap's help for each value and
// change every command's `--help` layout.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `cpi audit`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// The latest rows of `cpi_audit`.
    List {
        /// At most this many rows.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// A table, or JSON or YAML.
        #[arg(short = 'o', long, value_enum, default_value = "text")]
        output: Output,
    },
}

/// `cpi token`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a new random token: the token goes to standard error, once; the
    /// ApiToken manifest (its SHA-256 only) to standard output.
    Create {
        /// The token's name (the ApiToken's metadata.name, a RoleBinding's `token:` subject).
        name: String,
        /// When the token stops working (RFC 3339, e.g. 2027-06-30T00:00:00Z).
        #[arg(long)]
        expires: Option<chrono::DateTime<chrono::Utc>>,
        /// The manifest's description.
        #[arg(long)]
        description: Option<String>,
    },
}

/// Every `cpi` command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse and check the manifests and their secret references (no database).
    Validate(ValidateArgs),
    /// Show what `apply` would change. Exit 0: no changes, 2: changes, 1: error.
    Diff(DiffArgs),
    /// Apply the plan once, in one transaction.
    Apply(ApplyArgs),
    /// Apply the management schema migrations.
    Migrate {
        /// List the migrations that would run, and run none.
        #[arg(long)]
        dry_run: bool,
    },
    /// Inspect connections.
    Connections {
        /// What to do with connections.
        #[command(subcommand)]
        command: ConnectionsCommand,
    },
    /// Inspect projects.
    Projects {
        /// What to do with projects.
        #[command(subcommand)]
        command: ProjectsCommand,
    },
    /// The daemon: reconcile on every manifest or secret change, watch the inboxes, import.
    Run(RunArgs),
    /// Import CSV files into a project's target database, once each.
    Import(ImportArgs),
    /// Print the CREATE TABLE that `create_table: infer` would run for CSV files.
    Infer(InferArgs),
    /// Dry-run files: everything an import does, rolled back; nothing is
    /// written. Exit 0: would load, 2: would load with warnings, 3: would
    /// fail, 1: error.
    Check(CheckArgs),
    /// How long since each table with a `freshness` rule got a file. Exit
    /// 0: all fresh, 2: one past warn_after, 3: one past error_after, 1: error.
    Freshness {
        /// Only this project's tables.
        #[arg(short = 'p', long)]
        project: Option<String>,
        /// Table, JSON or YAML.
        #[arg(short = 'o', long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Inspect and retry import jobs.
    Jobs {
        /// What to do with jobs.
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// Serve the HTTP API alone (no reconcile, no imports).
    Serve(ApiArgs),
    /// Write manifests for the rows that exist (to bring a database under git).
    Export(GeneratedArgs),
    /// Turn legacy `connection.env_var` project configs into Connection and
    /// Project manifests and secret files (reads the variables they name).
    ConvertLegacy(ConvertLegacyArgs),
    /// Write a new encryption key file (mode 0600) for --encryption-key-file.
    Keygen {
        /// The file to create (never overwritten).
        // `--output`, its old name, stays a hidden alias for one release.
        #[arg(long, alias = "output")]
        file: PathBuf,
    },
    /// Re-encrypt every stored connection URL with the first key of
    /// --encryption-key-file (after `cpi keys promote`); refused while a
    /// running process does not hold that key.
    Rekey,
    /// Rotate the encryption key in the safe order: add, promote, retire.
    Keys {
        /// Which step.
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Delete finished import jobs and reconcile runs older than AGE.
    Prune(PruneArgs),
    /// Make API tokens.
    Token {
        /// What to do.
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Read the audit trail (every API action and refused request), newest first.
    Audit {
        /// What to do.
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// List the events (`cpi_events`) and their notifications' delivery.
    Events {
        /// What to do.
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Try notifications.
    Notify {
        /// What to do.
        #[command(subcommand)]
        command: NotifyCommand,
    },
    /// Print the JSON Schema of a manifest document (for editors).
    Schema,
    /// Print a shell completion script.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write a man page per command (cpi.1, cpi-apply.1, ...) into DIR
    /// (for packagers: scripts/release.sh).
    #[command(hide = true)]
    Man {
        /// The folder to write the pages into (created if missing).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
}

/// `cpi convert-legacy`.
#[derive(Debug, Args)]
pub struct ConvertLegacyArgs {
    /// Folder of legacy project configs (*.yaml, *.yml, *.json).
    #[arg(long)]
    pub input: PathBuf,
    /// Where the manifests and secret files go.
    #[command(flatten)]
    pub to: GeneratedArgs,
}

/// Where `cpi export` and `cpi convert-legacy` write what they generate.
#[derive(Debug, Args)]
pub struct GeneratedArgs {
    /// Folder for the manifests (connections/, projects/).
    // `--output`, its old name, stays a hidden alias for one release.
    #[arg(long, alias = "output")]
    pub dir: PathBuf,
    /// Folder for the secret files (mode 0600); keep it out of git.
    #[arg(long)]
    pub secrets_out: PathBuf,
    /// Overwrite files that already exist.
    #[arg(long)]
    pub force: bool,
}

/// `--inbox-root`: the folders every `inbox`, `processed_dir` and
/// `failed_dir` must resolve inside (`run`, `serve`, `apply`, `diff`, `validate`).
#[derive(Debug, Clone, Default, Args)]
pub struct InboxRoots {
    /// Every inbox, processed_dir and failed_dir must resolve inside one of
    /// these folders (repeatable). Without one, the API may not set them.
    #[arg(
        long = "inbox-root",
        value_name = "DIR",
        env = "CPI_INBOX_ROOTS",
        value_delimiter = ':'
    )]
    pub inbox_roots: Vec<PathBuf>,
}

/// `cpi prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Finished jobs and reconcile runs that ended longer ago than this (`90d`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub older_than: Duration,
}

/// `cpi validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Text, or JSON or YAML (every problem with its file, line and column).
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: Output,
    /// Where inboxes may be.
    #[command(flatten)]
    pub roots: InboxRoots,
}

/// `cpi diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Plan against another manifests folder instead of the database (no database, no secrets).
    #[arg(long)]
    pub against: Option<PathBuf>,
    /// Text (unified diffs), JSON or YAML.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: Output,
    /// Take over rows of the same name that are unmanaged or another owner's.
    #[arg(long)]
    pub adopt: bool,
    /// Where inboxes may be.
    #[command(flatten)]
    pub roots: InboxRoots,
}

/// `cpi apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Adoption and the delete guard.
    #[command(flatten)]
    pub guards: Guards,
    /// Text (unified diffs), JSON or YAML.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: Output,
    /// Where inboxes may be.
    #[command(flatten)]
    pub roots: InboxRoots,
}

/// What `cpi apply` and `cpi run` may take over and delete.
#[derive(Debug, Clone, Args)]
pub struct Guards {
    /// Take over rows of the same name that are unmanaged or another owner's.
    #[arg(long)]
    pub adopt: bool,
    /// Refuse a plan that deletes more objects than this.
    #[arg(long, default_value_t = 10)]
    pub max_delete: usize,
    /// Allow any number of deletes, including every managed object.
    #[arg(long)]
    pub allow_delete: bool,
}

/// The steps of a key rotation (docs/operations.md, "Rotating the
/// encryption key"). FILE defaults to --encryption-key-file.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Append a new key last: it decrypts, it does not encrypt yet.
    Add {
        /// The key file to edit.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Make key ID the one that encrypts (first); refused while a running
    /// process does not hold it.
    Promote {
        /// The key's id.
        id: String,
        /// The key file to edit.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Remove key ID; refused while a stored URL is encrypted with it or a
    /// running process encrypts with it.
    Retire {
        /// The key's id.
        id: String,
        /// The key file to edit.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// The keys of the file, the stored URLs each one encrypts, and the
    /// running processes with the ids they hold.
    List {
        /// The key file to read.
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

/// `cpi connections ...`.
#[derive(Debug, Subcommand)]
pub enum ConnectionsCommand {
    /// List connections (never shows a URL).
    List {
        /// Table, JSON or YAML.
        #[arg(short = 'o', long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Show one connection; its URL is redacted unless --show-secrets.
    Show {
        /// The connection's name.
        name: String,
        /// Print the URL with its password.
        #[arg(long)]
        show_secrets: bool,
        /// YAML (text and yaml) or JSON.
        #[arg(short = 'o', long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Connect to the connection's database and run `SELECT 1`.
    Test {
        /// The connection's name.
        name: String,
        /// Seconds before giving up.
        #[arg(long, default_value_t = 5)]
        timeout: u64,
    },
}

/// `cpi projects ...`.
#[derive(Debug, Subcommand)]
pub enum ProjectsCommand {
    /// List projects.
    List {
        /// Table, JSON or YAML.
        #[arg(short = 'o', long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Show one project with its config.
    Show {
        /// The project's name.
        name: String,
        /// YAML (text and yaml) or JSON.
        #[arg(short = 'o', long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Pause a project: its files keep arriving and are queued, but none is
    /// imported until it is resumed (a running import finishes).
    Pause {
        /// The project's name.
        name: String,
        /// Why (recorded with who in the `project.paused` event).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Resume a paused project: its waiting files are imported, in order.
    Resume {
        /// The project's name.
        name: String,
        /// Why (recorded with who in the `project.resumed` event).
        #[arg(long)]
        reason: Option<String>,
    },
}

/// `cpi run`: the daemon's knobs, turned into [`crate::daemon::Settings`] by
/// [`super::run::run`].
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Reconcile at least this often, whatever the watcher saw (repairs drift).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// List every inbox at least this often (files the watcher missed).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub rescan: Duration,
    /// Poll the file system instead of inotify (network file systems).
    #[arg(long)]
    pub poll: bool,
    /// How often --poll looks.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub poll_interval: Duration,
    /// Test-only (hidden): use at most this many inotify watches for the
    /// inboxes, as if the kernel's budget were that small; the rest are
    /// polled, as when `fs.inotify.max_user_watches` runs out.
    #[arg(long, hide = true)]
    pub inotify_watch_cap: Option<usize>,
    /// Import workers (concurrent imports; one at a time per target table).
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// A file is ready when its size and mtime have not changed for this long
    /// (a project's `settle_seconds` overrides it); a file whose mtime is
    /// already that old when listed (renamed in) is ready at once.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub settle: Duration,
    /// A claimed job is taken over by another worker when its lease is not
    /// renewed for this long (its worker died).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub lease: Duration,
    /// On SIGTERM/SIGINT, how long running imports may take to finish before
    /// they are rolled back and requeued.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
    /// Adoption and the delete guard, as for `cpi apply`.
    #[command(flatten)]
    pub guards: Guards,
    /// Serve the HTTP API (connections, projects, jobs, health, metrics) on host:port.
    #[arg(long, env = "CPI_LISTEN")]
    pub listen: Option<String>,
    /// A file holding the API token (writes and URL-bearing responses need it).
    #[arg(long, env = "CPI_API_TOKEN_FILE", requires = "listen")]
    pub api_token_file: Option<PathBuf>,
    /// The HTTP server's limits.
    #[command(flatten)]
    pub http: HttpArgs,
    /// Where inboxes may be.
    #[command(flatten)]
    pub roots: InboxRoots,
    /// Delete finished jobs and reconcile runs older than this, hourly (off by default).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub retention: Option<Duration>,
    /// How often the freshness of the tables with a `freshness` rule is
    /// assessed; each change of state is a `freshness.*` event.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub freshness_interval: Duration,
    /// The console's address (`https://cpi.example.com/`): notifications link jobs there.
    #[arg(long, value_name = "URL")]
    pub console_url: Option<String>,
}

/// `cpi serve`: the HTTP API alone.
#[derive(Debug, Args, Clone)]
pub struct ApiArgs {
    /// Address the HTTP API listens on (host:port).
    #[arg(long, env = "CPI_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// A file holding the API token (surrounding whitespace trimmed). Without
    /// one, writes and every response with a database URL answer 403.
    #[arg(long, env = "CPI_API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,
    /// The HTTP server's limits.
    #[command(flatten)]
    pub http: HttpArgs,
    /// Where inboxes may be.
    #[command(flatten)]
    pub roots: InboxRoots,
}
