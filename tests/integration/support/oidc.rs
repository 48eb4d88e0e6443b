//! npm's `oidc-provider` on loopback (`support/oidc-provider.mjs`): one
//! confidential client with PKCE required, the users given, the
//! development login form. Installed by scripts/test.sh into
//! `target/oidc-provider` (or `OIDC_PROVIDER_DIR`); missing, the test fails.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::free_port;

/// The running provider; dropping it stops it.
pub struct Provider {
    child: Child,
    /// `http://127.0.0.1:PORT`, the issuer.
    pub issuer: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn install_dir() -> PathBuf {
    std::env::var_os("OIDC_PROVIDER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/oidc-provider"))
}

impl Provider {
    /// Starts the provider for `client_id`/`secret` redirecting to
    /// `redirect_uri`, with `users` (`{"alice": {"email", "groups"}}`).
    pub fn start(
        client_id: &str,
        secret: &str,
        redirect_uri: &str,
        users: &serde_json::Value,
    ) -> Provider {
        let dir = install_dir();
        assert!(
            dir.join("node_modules/oidc-provider/package.json")
                .is_file(),
            "oidc-provider is not installed in {} (scripts/test.sh installs it)",
            dir.display()
        );
        let port = free_port();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/integration/support/oidc-provider.mjs");
        let mut child = Command::new("node")
            .arg(script)
            .args([
                &port.to_string(),
                client_id,
                secret,
                redirect_uri,
                &users.to_string(),
            ])
            .env("OIDC_PROVIDER_DIR", &dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node (scripts/test.sh installs it)");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "oidc-provider did not start");
        // Drained to the end: a closed pipe would kill it at its next line.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        Provider {
            child,
            issuer: format!("http://127.0.0.1:{port}"),
        }
    }
}
