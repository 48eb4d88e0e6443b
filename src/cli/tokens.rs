//! `cpi token create`: a new random API token, shown once, and the
//! ApiToken manifest that holds only its SHA-256.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{bail, Result};

use super::args::TokenCommand;
use crate::access::token;
use crate::manifest::access::ApiTokenSpec;
use crate::manifest::{Envelope, Kind};

/// Runs `cpi token …`.
pub fn token(command: &TokenCommand) -> Result<ExitCode> {
    match command {
        TokenCommand::Create {
            name,
            expires,
            description,
        } => create(name, *expires, description.clone()),
    }
}

fn create(
    name: &str,
    expires: Option<chrono::DateTime<chrono::Utc>>,
    description: Option<String>,
) -> Result<ExitCode> {
    if let Err(m) = crate::rules::check_name(name) {
        bail!("token name {m}");
    }
    let secret = token::generate();
    let spec = ApiTokenSpec {
        description,
        sha256: token::sha256_hex(secret.expose()),
        expires,
    };
    let doc = Envelope::new(Kind::ApiToken, name, spec)
        .to_yaml("# Made by `cpi token create`: the SHA-256 of the token, never the token.\n");
    // The manifest on stdout (redirect it into the manifests folder); the
    // token on stderr, so it reaches the terminal and not the file.
    std::io::stdout().write_all(doc.as_bytes())?;
    eprintln!(
        "new API token {name:?} (shown once: keep it in your secret store, send it as \
         `Authorization: Bearer <token>`):\n{}",
        secret.expose()
    );
    Ok(ExitCode::SUCCESS)
}
