//! The command line, on top of everything else: argument parsing
//! ([`args`]), the shared context ([`context`]) and one module per command
//! family. Every command validates its arguments first and only then
//! touches the database or the file system. Nothing below `cli` imports it.

pub mod args;
pub mod check;
pub mod context;
mod file_args;
mod format;
pub mod generate;
mod http_args;
pub mod import;
pub mod infer;
pub mod inspect;
mod job_args;
pub mod keys;
pub mod manifests;
mod notify;
mod notify_args;
pub mod run;
pub mod serve;
mod tokens;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Result;

pub use args::{command, Cli, Command, DiffArgs, Global, LogFormat, Output};
pub use context::{load_manifests, management_pool, management_url, table};
pub use manifests::EXIT_CHANGES;

use crate::store;

/// Logs to stderr, filtered by `CPI_LOG` (default: info, sqlx quiet).
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
/// URL given, starts the embedded one). Every command answers here, with no
/// catch-all arm: a new command does not compile until its author decides.
fn needs_management_db(command: &Command) -> bool {
    match command {
        Command::Diff(DiffArgs { against, .. }) => against.is_none(),
        Command::Infer(args::InferArgs { project, .. }) => project.is_some(),
        Command::Check(a) => !a.from_manifests,
        Command::Freshness { .. } => true,
        Command::Apply(_)
        | Command::Migrate { .. }
        | Command::Connections { .. }
        | Command::Projects { .. }
        | Command::Run(_)
        | Command::Import(_)
        | Command::Jobs { .. }
        | Command::Serve(_)
        | Command::Export(_)
        | Command::Rekey
        | Command::Prune(_)
        | Command::Audit { .. }
        | Command::Events { .. } => true,
        // `add` edits a file only; the others read the running processes.
        Command::Keys { command } => !matches!(command, args::KeysCommand::Add { .. }),
        Command::Validate(_)
        | Command::ConvertLegacy(_)
        | Command::Keygen { .. }
        | Command::Token { .. }
        | Command::Notify { .. }
        | Command::Schema
        | Command::Completions { .. }
        | Command::Man { .. } => false,
    }
}

/// Runs one parsed command; its exit code (errors are printed by `main`).
pub async fn run(cli: Cli) -> Result<ExitCode> {
    let mut global = cli.global.clone();
    keys::install(&global)?;
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
    if matches!(
        cli.command,
        Command::Run(_) | Command::Serve(_) | Command::Apply(_)
    ) {
        keys::warn_if_plain(g);
    }
    match &cli.command {
        Command::Validate(a) => manifests::validate(g, a),
        Command::Diff(a) => manifests::diff(g, a).await,
        Command::Apply(a) => manifests::apply(g, a).await,
        Command::Migrate { dry_run: true } => {
            let pool = management_pool(g).await?;
            let pending = store::schema_version::pending(&pool).await?;
            if pending.is_empty() {
                println!("management schema is up to date: nothing would run");
            }
            for (version, description) in pending {
                println!("would run {version:04} {description}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate { dry_run: false } => {
            let pool = management_pool(g).await?;
            store::migrate(&pool).await?;
            println!("management schema is up to date");
            Ok(ExitCode::SUCCESS)
        }
        Command::Connections { command } => inspect::connections(g, command).await,
        Command::Projects { command } => inspect::projects(g, command).await,
        Command::Run(a) => run::run(g, a).await,
        Command::Import(a) => import::import(g, a).await,
        Command::Infer(a) => infer::infer(g, a).await,
        Command::Check(a) => check::check(g, a).await,
        Command::Freshness { project, output } => {
            inspect::freshness(g, project.as_deref(), *output).await
        }
        Command::Jobs { command } => import::jobs_command(g, command).await,
        Command::Serve(a) => serve::serve(g, a).await,
        Command::Export(to) => {
            let pool = management_pool(g).await?;
            generate::export(&pool, &to.dir, &to.secrets_out, to.force).await
        }
        Command::ConvertLegacy(a) => {
            let to = &a.to;
            generate::convert_legacy(&a.input, &to.dir, &to.secrets_out, to.force)
        }
        Command::Keygen { file } => keys::keygen(file),
        Command::Rekey => keys::rekey(g).await,
        Command::Keys { command } => keys::keys(g, command).await,
        Command::Prune(a) => {
            let pool = management_pool(g).await?;
            store::migrate_if_empty(&pool).await?;
            let p = crate::daemon::prune::prune(&pool, a.older_than).await?;
            let secs = a.older_than.as_secs();
            // humantime writes 90d as "2months 29days 2h…": days read better.
            let age = if secs % 86_400 == 0 {
                format!("{}d", secs / 86_400)
            } else {
                humantime::format_duration(a.older_than).to_string()
            };
            println!(
                "pruned {} job(s) and {} reconcile run(s) older than {age} ({} event(s))",
                p.jobs, p.reconcile_runs, p.events
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Token { command } => tokens::token(command),
        Command::Audit {
            command: args::AuditCommand::List { limit, output },
        } => {
            let pool = management_pool(g).await?;
            store::migrate_if_empty(&pool).await?;
            let rows = store::audit::list(&pool, &Default::default(), i64::from(*limit), 0).await?;
            if output.structured() {
                context::print_value(&rows, *output)?;
            } else {
                println!(
                    "{:<25} {:<28} {:<36} {:<28} {:<7} SOURCE",
                    "AT", "ACTOR", "ACTION", "TARGET", "OUTCOME"
                );
                for r in &rows {
                    println!(
                        "{:<25} {:<28} {:<36} {:<28} {:<7} {}",
                        r.at.format("%Y-%m-%dT%H:%M:%SZ"),
                        r.actor,
                        r.action,
                        r.target,
                        r.outcome,
                        r.source.as_deref().unwrap_or("-")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Events { command } => notify::events(g, command).await,
        Command::Notify { command } => notify::notify(g, command).await,
        Command::Schema => {
            print!("{}", crate::schema::text());
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "cpi", &mut script);
            write_stdout(&script)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { dir } => {
            use anyhow::Context;
            use clap::CommandFactory;
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(Cli::command(), dir)
                .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Writes `bytes` to stdout. A reader that closed the pipe early
/// (`cpi completions bash | head`) took what it wanted: that is success,
/// not an error (nor a panic, as `print!` would).
fn write_stdout(bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
