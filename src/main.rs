//! The `cpi` binary: parse the command line, start logging, run one
//! command, and print any error through the secret scrubber.

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::FromArgMatches;

use cpi::cli::{self, Cli};
use cpi::secret;

fn main() -> ExitCode {
    // A panic message can quote any value: it leaves through the scrubber
    // like every other message.
    std::panic::set_hook(Box::new(|info| {
        let text = match info.payload().downcast_ref::<&str>() {
            Some(s) => s.to_string(),
            None => info
                .payload()
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_default(),
        };
        // `cpi … | head`: `print!` panics once the reader has gone. The
        // reader took what it wanted, so a command (on the main thread;
        // the daemon's tasks run elsewhere) ends quietly with success.
        if text.starts_with("failed printing to stdout")
            && text.contains("Broken pipe")
            && std::thread::current().name() == Some("main")
        {
            std::process::exit(0);
        }
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("cpi panicked{at}: {}", secret::scrub_known(&text));
    }));
    let cli = match cli::command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(cli) => cli,
        Err(e) => {
            // clap exits 2 on usage errors, which `cpi diff` callers would
            // read as "changes": every error is 1 here.
            let code = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                _ => 1,
            };
            let text = e.render().to_string();
            if code == 0 {
                print!("{text}");
            } else {
                eprint!("{}", secret::scrub_credentials(&text));
            }
            return ExitCode::from(code);
        }
    };
    cli::init_logging(cli.global.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            // Last line of defence: whatever produced the message, no
            // registered secret and no URL password leaves the process.
            eprintln!("error: {}", secret::scrub_known(&chain(&e)));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, skipping a cause whose text the message
/// already carries (many errors print their source inline).
fn chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}
