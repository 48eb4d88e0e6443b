//! The command line: argument parsing (clap) and one function per command.
//! Every command validates its arguments first and only then touches the
//! database or the file system.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::apply::{self, ApplyOptions};
use crate::manifest::{self, Loaded, Secrets};
use crate::plan::{self, Observed};
use crate::render;
use crate::secret::{self, Secret};
use crate::store;

#[derive(Debug, Parser)]
#[command(
    name = "cpi",
    version,
    about = "CSV imports into PostgreSQL, under git",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

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
    #[arg(long, value_enum, global = true, default_value = "text")]
    pub log_format: LogFormat,
    /// Where cpi keeps local state, e.g. the embedded PostgreSQL that serves
    /// as management database when none is given.
    #[arg(long, env = "CPI_STATE_DIR", global = true, default_value = ".cpi")]
    pub state_dir: PathBuf,
    /// The port of the embedded PostgreSQL (127.0.0.1 only).
    #[arg(long, env = "CPI_EMBEDDED_PORT", global = true, default_value_t = crate::embedded::DEFAULT_PORT, value_parser = clap::value_parser!(u16).range(1..))]
    pub embedded_port: u16,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse and check the manifests and their secret references (no database).
    Validate,
    /// Show what `apply` would change. Exit 0: no changes, 2: changes, 1: error.
    Diff(DiffArgs),
    /// Apply the plan once, in one transaction.
    Apply(ApplyArgs),
    /// Apply the management schema migrations.
    Migrate,
    /// Inspect connections.
    Connections {
        #[command(subcommand)]
        command: ConnectionsCommand,
    },
    /// Inspect projects.
    Projects {
        #[command(subcommand)]
        command: ProjectsCommand,
    },
    /// The daemon: reconcile on every manifest or secret change, watch the inboxes, import.
    Run(crate::daemon::RunArgs),
    /// Import CSV files into a project's target database, once each.
    Import(crate::import::cli::ImportArgs),
    /// Inspect and retry import jobs.
    Jobs {
        #[command(subcommand)]
        command: crate::import::cli::JobsCommand,
    },
    /// Serve the HTTP API alone (no reconcile, no imports).
    Serve(crate::api::command::ApiArgs),
    /// Write manifests for the rows that exist (to bring a database under git).
    Export(ExportArgs),
    /// Turn legacy `connection.env_var` project configs into Connection and
    /// Project manifests and secret files (reads the variables they name).
    ConvertLegacy(ConvertLegacyArgs),
    /// Print the JSON Schema of a manifest document (for editors).
    Schema,
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct ConvertLegacyArgs {
    /// Folder of legacy project configs (*.yaml, *.yml, *.json).
    #[arg(long)]
    pub input: PathBuf,
    /// Folder for the manifests (connections/, projects/).
    #[arg(long)]
    pub output: PathBuf,
    /// Folder for the secret files (mode 0600); keep it out of git.
    #[arg(long)]
    pub secrets_out: PathBuf,
    /// Overwrite files that already exist.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Folder for the manifests (connections/, projects/).
    #[arg(long)]
    pub output: PathBuf,
    /// Folder for the secret files (mode 0600); keep it out of git.
    #[arg(long)]
    pub secrets_out: PathBuf,
    /// Overwrite files that already exist.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Plan against another manifests folder instead of the database (no database, no secrets).
    #[arg(long)]
    pub against: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
    /// Take over rows of the same name that are unmanaged or another owner's.
    #[arg(long)]
    pub adopt: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Take over rows of the same name that are unmanaged or another owner's.
    #[arg(long)]
    pub adopt: bool,
    /// Refuse a plan that deletes more objects than this.
    #[arg(long, default_value_t = 10)]
    pub max_delete: usize,
    /// Allow any number of deletes, including every managed object.
    #[arg(long)]
    pub allow_delete: bool,
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum ConnectionsCommand {
    /// List connections (never shows a URL).
    List {
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Show one connection; its URL is redacted unless --show-secrets.
    Show {
        name: String,
        #[arg(long)]
        show_secrets: bool,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Connect to the connection's database and run `SELECT 1`.
    Test {
        name: String,
        /// Seconds before giving up.
        #[arg(long, default_value_t = 5)]
        timeout: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProjectsCommand {
    /// List projects.
    List {
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Show one project with its config.
    Show {
        name: String,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
}

/// Exit code of `cpi diff` when there are changes (`terraform plan -detailed-exitcode`).
pub const EXIT_CHANGES: u8 = 2;

pub fn init_logging(format: LogFormat) {
    // sqlx reports server notices ("relation _sqlx_migrations already
    // exists") at info: noise for an operator.
    let filter = tracing_subscriber::EnvFilter::try_from_env("CPI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Whether a command talks to the management database (and so, with no
/// URL given, starts the embedded one). New commands need it unless listed.
fn needs_management_db(command: &Command) -> bool {
    !matches!(
        command,
        Command::Validate
            | Command::Diff(DiffArgs {
                against: Some(_),
                ..
            })
            | Command::ConvertLegacy(_)
            | Command::Schema
            | Command::Completions { .. }
    )
}

pub async fn run(cli: Cli) -> Result<ExitCode> {
    let mut global = cli.global.clone();
    // Started before anything else and dropped after the command returns
    // (whatever it returns): the guard stops the server it started. A
    // manifest may reference the instance's password file, so it must
    // exist before manifests are loaded.
    let mut _embedded = None;
    if needs_management_db(&cli.command)
        && global.database_url.is_none()
        && global.database_url_file.is_none()
    {
        let e = crate::embedded::Embedded::start(&global.state_dir, global.embedded_port).await?;
        global.database_url = Some(e.url().expose().to_string());
        _embedded = Some(e);
    }
    let g = &global;
    match &cli.command {
        Command::Validate => validate(g),
        Command::Diff(a) => diff(g, a).await,
        Command::Apply(a) => apply_cmd(g, a).await,
        Command::Migrate => {
            let pool = management_pool(g).await?;
            store::migrate(&pool).await?;
            println!("management schema is up to date");
            Ok(ExitCode::SUCCESS)
        }
        Command::Connections { command } => connections(g, command).await,
        Command::Projects { command } => projects(g, command).await,
        Command::Run(a) => crate::daemon::run(g, a).await,
        Command::Import(a) => crate::import::cli::import(g, a).await,
        Command::Jobs { command } => crate::import::cli::jobs_cmd(g, command).await,
        Command::Serve(a) => crate::api::command::run(g, a).await,
        Command::Export(a) => {
            let pool = management_pool(g).await?;
            crate::export::run(&pool, &a.output, &a.secrets_out, a.force).await
        }
        Command::ConvertLegacy(a) => {
            crate::legacy::run(&a.input, &a.output, &a.secrets_out, a.force)
        }
        Command::Schema => {
            print!("{}", crate::schema::text());
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(*shell, &mut Cli::command(), "cpi", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The management database URL: `--database-url`, `CPI_DATABASE_URL` or
/// `--database-url-file`. `DATABASE_URL` is never read.
pub fn management_url(g: &Global) -> Result<Secret> {
    let url = match (&g.database_url, &g.database_url_file) {
        (Some(u), _) => Secret::new(u.trim()),
        (None, Some(f)) => {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read --database-url-file {}", f.display()))?;
            Secret::new(text.trim())
        }
        (None, None) => bail!(
            "no management database: give --database-url, --database-url-file or CPI_DATABASE_URL"
        ),
    };
    secret::register(&url);
    Ok(url)
}

pub async fn management_pool(g: &Global) -> Result<sqlx::PgPool> {
    let url = management_url(g)?;
    Ok(store::connect(&url).await?)
}

/// Loads the manifests, registering every secret for scrubbing.
pub fn load_manifests(g: &Global, mode: Secrets) -> Result<Loaded> {
    load_manifests_from(&g.manifests, g.secrets_dir.as_deref(), mode)
}

fn load_manifests_from(dir: &Path, secrets_dir: Option<&Path>, mode: Secrets) -> Result<Loaded> {
    let loaded = manifest::load(dir, secrets_dir, mode)?;
    for s in loaded.secrets() {
        secret::register(s);
    }
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    Ok(loaded)
}

fn validate(g: &Global) -> Result<ExitCode> {
    let loaded = load_manifests(g, Secrets::Optional)?;
    println!(
        "{}: {} connection(s), {} project(s) in {} file(s): valid",
        g.manifests.display(),
        loaded.desired.connections.len(),
        loaded.desired.projects.len(),
        loaded.files.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn print_plan(p: &plan::Plan, output: Output) {
    match output {
        Output::Text => print!("{}", render::text(p, std::io::stdout().is_terminal())),
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&render::json(p)).unwrap_or_default()
        ),
    }
}

async fn diff(g: &Global, a: &DiffArgs) -> Result<ExitCode> {
    let loaded = load_manifests(g, Secrets::Optional)?;
    let observed = match &a.against {
        Some(dir) => {
            let base = load_manifests_from(dir, g.secrets_dir.as_deref(), Secrets::Optional)
                .with_context(|| format!("loading --against {}", dir.display()))?;
            plan::observed_from_manifests(&base.desired, &g.owner)
        }
        None => {
            let pool = management_pool(g).await?;
            let mut conn = pool.acquire().await?;
            if store::is_migrated(&mut *conn).await? {
                store::load_observed(&mut conn).await?
            } else {
                Observed::default()
            }
        }
    };
    let p = plan::plan(&loaded.desired, &observed, &g.owner, a.adopt);
    print_plan(&p, a.output);
    if !p.conflicts.is_empty() {
        bail!(
            "{} conflict(s): the plan cannot be applied as it is",
            p.conflicts.len()
        );
    }
    if let Err(e) = p.check_deletes(10, false) {
        eprintln!("warning: `cpi apply` with default flags would refuse this plan: {e}");
    }
    Ok(if p.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CHANGES)
    })
}

async fn apply_cmd(g: &Global, a: &ApplyArgs) -> Result<ExitCode> {
    let loaded = load_manifests(g, Secrets::Required)?;
    let pool = management_pool(g).await?;
    store::migrate(&pool).await?;
    let opts = ApplyOptions {
        owner: g.owner.clone(),
        adopt: a.adopt,
        max_delete: a.max_delete,
        allow_delete: a.allow_delete,
        trigger: "cli".into(),
        revision: manifest::revision(&g.manifests),
    };
    let applied = apply::apply(&pool, &loaded.desired, &opts).await?;
    print_plan(&applied.plan, a.output);
    if a.output == Output::Text {
        let c = applied.counts;
        println!(
            "Applied: {} created, {} updated, {} deleted (run {}).",
            c.create, c.update, c.delete, applied.run_id
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Rows as aligned text columns (the first row is the header).
pub fn table(rows: Vec<Vec<String>>) -> String {
    let mut widths = vec![0; rows.first().map_or(0, Vec::len)];
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn dash(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".into())
}

async fn connections(g: &Global, cmd: &ConnectionsCommand) -> Result<ExitCode> {
    let pool = management_pool(g).await?;
    store::require_migrated(&pool).await?;
    match cmd {
        ConnectionsCommand::List { output } => {
            let rows = store::list_connections(&pool).await?;
            match output {
                // ConnectionRow skips database_url when serialized.
                Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
                Output::Text => {
                    let mut t = vec![vec![
                        "NAME".into(),
                        "DESCRIPTION".into(),
                        "MANAGED_BY".into(),
                        "SOURCE".into(),
                    ]];
                    t.extend(rows.iter().map(|r| {
                        vec![
                            r.name.clone(),
                            dash(&r.description),
                            dash(&r.managed_by),
                            dash(&r.source),
                        ]
                    }));
                    print!("{}", table(t));
                }
            }
        }
        ConnectionsCommand::Show {
            name,
            show_secrets,
            output,
        } => {
            let Some(r) = store::connection_by_name(&pool, name).await? else {
                bail!("connection {name:?} does not exist");
            };
            let url = if *show_secrets {
                r.database_url.0.expose().to_string()
            } else {
                secret::redact_url(r.database_url.0.expose())
            };
            let mut v = serde_json::to_value(&r)?;
            v["database_url"] = url.into();
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&v)?),
                Output::Text => print!("{}", serde_yaml::to_string(&v)?),
            }
        }
        ConnectionsCommand::Test { name, timeout } => {
            let Some(r) = store::connection_by_name(&pool, name).await? else {
                bail!("connection {name:?} does not exist");
            };
            secret::register(&r.database_url.0);
            let result =
                store::test_connection(&r.database_url.0, Duration::from_secs(*timeout)).await;
            let body = match &result {
                Ok(()) => serde_json::json!({"success": true, "message": "Connection successful"}),
                Err(e) => {
                    serde_json::json!({"success": false, "message": format!("Connection failed: {e}")})
                }
            };
            println!("{body}");
            if result.is_err() {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn projects(g: &Global, cmd: &ProjectsCommand) -> Result<ExitCode> {
    let pool = management_pool(g).await?;
    store::require_migrated(&pool).await?;
    match cmd {
        ProjectsCommand::List { output } => {
            let rows = store::list_projects(&pool).await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
                Output::Text => {
                    let mut t = vec![vec![
                        "NAME".into(),
                        "CONNECTION".into(),
                        "DESCRIPTION".into(),
                        "MANAGED_BY".into(),
                        "SOURCE".into(),
                    ]];
                    t.extend(rows.iter().map(|r| {
                        vec![
                            r.name.clone(),
                            dash(&r.connection_name),
                            dash(&r.description),
                            dash(&r.managed_by),
                            dash(&r.source),
                        ]
                    }));
                    print!("{}", table(t));
                }
            }
        }
        ProjectsCommand::Show { name, output } => {
            let Some(r) = store::project_by_name(&pool, name).await? else {
                bail!("project {name:?} does not exist");
            };
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&r)?),
                Output::Text => print!("{}", serde_yaml::to_string(&r)?),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
