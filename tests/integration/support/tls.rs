//! A private PostgreSQL that accepts TLS only, with a test CA made for it:
//! a server certificate for `localhost` and `127.0.0.1` (the server also
//! listens on 127.0.0.2, a name the certificate does not list), a client
//! certificate for the user `postgres`, and a second CA that signed
//! nothing the server shows. `pg_hba.conf` has `hostssl` lines only; the
//! database `certdb` also wants a client certificate
//! (`clientcert=verify-full`).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::free_port;

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// The running server; dropping it stops the server.
pub struct TlsServer {
    /// The temp folder holding the certificates and the data dir.
    pub dir: tempfile::TempDir,
    /// The port on 127.0.0.1 and 127.0.0.2.
    pub port: u16,
}

fn run(cmd: &mut Command) {
    super::bin::succeed(&format!("{cmd:?}"), cmd);
}

fn openssl(dir: &Path, args: &[&str]) {
    run(Command::new("openssl").current_dir(dir).args(args));
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// A command run as the server's user (`postgres` when the tests run as root).
fn as_server_user(program: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", program]);
        c
    } else {
        Command::new(program)
    }
}

/// Makes a CA (`NAME.crt`, `NAME.key`) in `dir`.
pub fn ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "30",
            "-subj",
            &format!("/CN=cpi test {name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
        ],
    );
}

/// A certificate `NAME.crt` + key `NAME.key` signed by `ca`, for `cn` with `san`.
pub fn leaf(dir: &Path, ca: &str, name: &str, cn: &str, san: Option<&str>, days: &str) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    let ext = format!("{name}.ext");
    let mut text = String::from("basicConstraints=CA:FALSE\n");
    if let Some(san) = san {
        text.push_str(&format!("subjectAltName={san}\n"));
    }
    std::fs::write(dir.join(&ext), text).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            days,
            "-extfile",
            &ext,
            "-out",
            &format!("{name}.crt"),
        ],
    );
}

impl TlsServer {
    /// Makes the certificates, initdb, TLS-only config, start.
    pub fn start() -> TlsServer {
        Self::start_with(true, false, false)
    }

    /// The same TLS-only server, whose certificate is X.509 version 1 (no
    /// extensions: what `openssl x509 -req` makes by default, PostgreSQL's
    /// own recipe), signed by the same CA.
    pub fn start_v1() -> TlsServer {
        Self::start_with(true, false, true)
    }

    /// The same TLS-only server, whose certificate expired yesterday.
    pub fn start_expired() -> TlsServer {
        Self::start_with(true, true, false)
    }

    /// The same server without TLS at all (`ssl = off`, `host` lines), for
    /// `sslmode=require` against a server that cannot.
    pub fn start_plain() -> TlsServer {
        Self::start_with(false, false, false)
    }

    fn start_with(ssl: bool, expired: bool, v1: bool) -> TlsServer {
        let dir = tempfile::Builder::new()
            .prefix("cpi-tls-")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        ca(d, "ca");
        ca(d, "other-ca");
        leaf(
            d,
            "ca",
            "server",
            "localhost",
            Some("DNS:localhost,IP:127.0.0.1"),
            // openssl takes a negative validity: not after is before now.
            if expired { "-1" } else { "30" },
        );
        if v1 {
            // Signed again without `-extfile`: version 1.
            openssl(
                d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    "server.csr",
                    "-CA",
                    "ca.crt",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "30",
                    "-out",
                    "server.crt",
                ],
            );
        }
        leaf(d, "ca", "client", "postgres", None, "30");
        for f in ["client.key", "server.key"] {
            std::fs::set_permissions(d.join(f), std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let data = d.join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
        if is_root() {
            run(Command::new("chown")
                .arg("postgres:postgres")
                .arg(&data)
                .arg(d.join("server.key")));
        }
        run(as_server_user(&format!("{BIN}/initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--locale=C",
                "--encoding=UTF8",
            ]));
        let port = free_port();
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1,127.0.0.2'\nport = {port}\nunix_socket_directories = '.'\nmax_connections = 30\nshared_buffers = 16MB\nssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nssl_ca_file = '{}'\n",
            d.join("server.crt").display(),
            d.join("server.key").display(),
            d.join("ca.crt").display()
        );
        let (conf, hba) = if ssl {
            (
                conf,
                "local all all trust\n\
                 hostssl certdb all 127.0.0.0/8 trust clientcert=verify-full\n\
                 hostssl all all 127.0.0.0/8 trust\n",
            )
        } else {
            (
                conf.replace("ssl = on", "ssl = off"),
                "local all all trust\nhost all all 127.0.0.0/8 trust\n",
            )
        };
        append(&data.join("postgresql.conf"), &conf);
        std::fs::write(data.join("pg_hba.conf"), hba).unwrap();
        run(as_server_user(&format!("{BIN}/pg_ctl"))
            .arg("start")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(data.join("server.log"))
            .args(["-w", "-t", "60"]));
        let server = TlsServer { dir, port };
        server.psql("postgres", "CREATE DATABASE certdb");
        server
    }

    /// A file of the test PKI (`ca.crt`, `other-ca.crt`, `client.crt`, `client.key`).
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `postgresql://postgres@HOST:PORT/DB?QUERY`.
    pub fn url(&self, host: &str, db: &str, query: &str) -> String {
        format!("postgresql://postgres@{host}:{}/{db}?{query}", self.port)
    }

    /// `verify-full` against the test CA, by `localhost`.
    pub fn verified_url(&self, db: &str) -> String {
        self.url(
            "localhost",
            db,
            &format!(
                "sslmode=verify-full&sslrootcert={}",
                self.file("ca.crt").display()
            ),
        )
    }

    /// Runs SQL through the Unix socket (no TLS needed there).
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = super::bin::succeed(
            &format!("psql {sql}"),
            as_server_user("/usr/bin/psql")
                .args(["-h"])
                .arg(self.dir.path().join("data"))
                .args([
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                    "-d",
                    db,
                    "-tAc",
                    sql,
                ]),
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = as_server_user(&format!("{BIN}/pg_ctl"))
            .arg("stop")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate"])
            .output();
    }
}
