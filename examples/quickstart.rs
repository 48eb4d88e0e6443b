//! The quickstart, as one command from the repository root:
//!
//! ```sh
//! cargo run --release --example quickstart
//! ```
//!
//! It drops copies of the sample CSVs (`examples/quickstart/samples/`) into
//! the project's inbox under the state dir (`.cpi/quickstart/inbox/`) and
//! runs the real `cpi run --manifests examples/quickstart/manifests`: with no
//! `--database-url`, cpi starts its embedded PostgreSQL under `.cpi/`. The
//! daemon moves what it imports to `.cpi/quickstart/inbox/processed/`, so the
//! checkout stays as it was. Extra arguments go to `cpi run` (e.g.
//! `-- --listen 127.0.0.1:8080`). Ctrl-C stops it.

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;

const SAMPLES: &str = "examples/quickstart/samples";
const INBOX: &str = ".cpi/quickstart/inbox";

fn main() -> ExitCode {
    if let Err(e) = seed(Path::new(SAMPLES), Path::new(INBOX)) {
        eprintln!(
            "error: cannot copy the samples into {INBOX} ({e}); run from the repository root"
        );
        return ExitCode::FAILURE;
    }
    let mut args = vec![
        "cpi".to_string(),
        "run".into(),
        "--manifests".into(),
        "examples/quickstart/manifests".into(),
    ];
    args.extend(std::env::args().skip(1));
    let cli = match cpi::cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::FAILURE;
        }
    };
    cpi::cli::init_logging(cli.global.log_format);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(cpi::cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", cpi::secret::scrub_known(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

/// Copies each sample into the inbox unless a file of that name is already
/// waiting there or was imported before (it sits in `processed/`): a second
/// quickstart run imports nothing twice and reports no duplicates.
pub fn seed(samples: &Path, inbox: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(inbox)?;
    for entry in std::fs::read_dir(samples)? {
        let entry = entry?;
        let name = entry.file_name();
        let seen = inbox.join(&name).exists() || inbox.join("processed").join(&name).exists();
        if entry.file_type()?.is_file() && !seen {
            // Written under a temporary name and renamed, so the daemon never
            // sees half a file.
            let tmp = inbox.join(format!(".{}.tmp", name.to_string_lossy()));
            std::fs::copy(entry.path(), &tmp)?;
            std::fs::rename(&tmp, inbox.join(&name))?;
        }
    }
    Ok(())
}
