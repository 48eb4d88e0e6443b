//! TLS against a private PostgreSQL that accepts TLS only
//! (support::tls): verify-full with the test CA works for imports and for
//! the management database; verify-ca accepts a certificate for another
//! host name (chain only, as libpq); a wrong CA, a wrong host name under
//! verify-full, sslmode=disable and a missing client certificate each fail
//! with their own clear error.

use crate::support::fs::manifest;
use crate::support::tls::TlsServer;
use crate::support::{write, Cpi, Run, TestDb};

fn connection(name: &str, url: &str) -> String {
    manifest("Connection", name, &format!("database_url: \"{url}\""))
}

/// `cpi connections test NAME` with the manifests applied to `mgmt`.
fn test_conn(mgmt: &str, secrets: &std::path::Path, name: &str) -> Run {
    Cpi::new(["connections", "test", name, "--timeout", "10"])
        .database_url(mgmt)
        .args([std::ffi::OsStr::new("--secrets-dir"), secrets.as_os_str()])
        .run()
}

#[tokio::test]
async fn connections_test_names_each_tls_outcome() {
    let tls = TlsServer::start();
    let plain = TlsServer::start_plain();
    let expired = TlsServer::start_expired();
    let mgmt = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m");
    let ca = tls.file("ca.crt").display().to_string();
    let other = tls.file("other-ca.crt").display().to_string();
    let mut docs = vec![
        connection("good", &tls.verified_url("postgres")),
        connection(
            "wrongca",
            &tls.url(
                "localhost",
                "postgres",
                &format!("sslmode=verify-full&sslrootcert={other}"),
            ),
        ),
        connection(
            "wronghost",
            &tls.url(
                "127.0.0.2",
                "postgres",
                &format!("sslmode=verify-full&sslrootcert={ca}"),
            ),
        ),
        // libpq's verify-ca checks the chain only: 127.0.0.2 is not in the
        // certificate (verify-full to it is "wronghost" above), and
        // verify-ca to it connects. The chain is still checked: a CA that
        // did not sign the server fails.
        connection(
            "verifyca",
            &tls.url(
                "127.0.0.2",
                "postgres",
                &format!("sslmode=verify-ca&sslrootcert={ca}"),
            ),
        ),
        connection(
            "verifyca-wrongca",
            &tls.url(
                "127.0.0.2",
                "postgres",
                &format!("sslmode=verify-ca&sslrootcert={other}"),
            ),
        ),
        connection(
            "disabled",
            &tls.url("localhost", "postgres", "sslmode=disable"),
        ),
        // libpq's allow: plain first, then TLS when the server wants it.
        connection("allow", &tls.url("localhost", "postgres", "sslmode=allow")),
        connection(
            "notls",
            &plain.url("127.0.0.1", "postgres", "sslmode=require"),
        ),
        connection("prefer-plain", &plain.url("127.0.0.1", "postgres", "")),
        connection("expired", &expired.verified_url("postgres")),
        // Relative certificate paths resolve under the secrets folder.
        connection(
            "clientcert",
            &tls.url(
                "localhost",
                "certdb",
                &format!(
                    "sslmode=verify-full&sslrootcert={ca}&sslcert=client.crt&sslkey=client.key"
                ),
            ),
        ),
        connection(
            "nocert",
            &tls.url(
                "localhost",
                "certdb",
                &format!("sslmode=verify-full&sslrootcert={ca}"),
            ),
        ),
        connection(
            "nofile",
            &tls.url(
                "localhost",
                "postgres",
                "sslmode=verify-full&sslrootcert=/nonexistent/ca.crt",
            ),
        ),
    ];
    docs.sort();
    write(&m, "c.yaml", &docs.join("---\n"));
    let secrets = tls.dir.path();
    let a = Cpi::new(["apply"])
        .db(&mgmt)
        .manifests(&m)
        .args([std::ffi::OsStr::new("--secrets-dir"), secrets.as_os_str()])
        .run();
    assert_eq!(a.code, 0, "{}", a.all());
    let url = mgmt.url();

    for ok in ["good", "verifyca", "allow", "clientcert"] {
        let r = test_conn(&url, secrets, ok);
        assert_eq!(r.code, 0, "{ok}: {}", r.all());
        let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"success": true, "message": "Connection successful"}),
            "{ok}"
        );
        assert!(
            r.stderr.contains("session: encrypted (TLSv1."),
            "{ok}: {}",
            r.stderr
        );
    }
    let r = test_conn(&url, secrets, "prefer-plain");
    r.assert_code(0).assert_stderr("session: not encrypted");

    for (name, expect) in [
        ("wrongca", "unknown CA"),
        ("verifyca-wrongca", "unknown CA"),
        ("wronghost", "wrong host name"),
        ("expired", "certificate has expired"),
        ("disabled", "accepts only TLS connections"),
        ("notls", "does not accept TLS connections"),
        ("nocert", "client certificate"),
        (
            "nofile",
            "cannot read the sslrootcert file /nonexistent/ca.crt",
        ),
    ] {
        let r = test_conn(&url, secrets, name);
        assert_eq!(r.code, 1, "{name}: {}", r.all());
        let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
        assert_eq!(v["success"], false);
        let msg = v["message"].as_str().unwrap();
        assert!(msg.contains(expect), "{name}: want {expect:?} in {msg}");
    }
}

#[tokio::test]
async fn management_and_target_over_verify_full_import_a_file() {
    let tls = TlsServer::start();
    tls.psql("postgres", "CREATE DATABASE mgmt");
    tls.psql("postgres", "CREATE DATABASE target");
    tls.psql("target", "CREATE TABLE t (id int, v text)");
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m");
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    write(
        &m,
        "c.yaml",
        &connection("target", &tls.verified_url("target")),
    );
    write(
        &m,
        "p.yaml",
        &crate::support::manifests::project("p", "target", &inbox, "{table: t, mode: append}"),
    );
    let csv = write(&inbox, "a.csv", "id,v\n1,x\n2,y\n");
    // The management database itself over verify-full.
    let mgmt = tls.verified_url("mgmt");

    let a = Cpi::new(["apply"]).database_url(&mgmt).manifests(&m).run();
    assert_eq!(a.code, 0, "{}", a.all());
    let r = Cpi::new(["import", "--project", "p", csv.to_str().unwrap()])
        .database_url(&mgmt)
        .run();
    r.assert_code(0).assert_stdout("a.csv: succeeded into t");
    assert_eq!(tls.psql("target", "SELECT count(*) FROM t"), "2");
    // Every session of this server is encrypted (hostssl only), and cpi's
    // management pool talked to it.
    assert_eq!(
        tls.psql(
            "mgmt",
            "SELECT count(*) FROM cpi_import_jobs WHERE status = 'succeeded'"
        ),
        "1"
    );

    // The management URL with a CA that did not sign the server fails clearly.
    let wrong = tls.url(
        "localhost",
        "mgmt",
        &format!(
            "sslmode=verify-full&sslrootcert={}",
            tls.file("other-ca.crt").display()
        ),
    );
    let r = Cpi::new(["connections", "list"]).database_url(&wrong).run();
    r.assert_code(1).assert_stderr("unknown CA");
}

/// Regression (sqlx 0.9 dropped `TCP_NODELAY`): a COPY stalled ~40 ms per
/// file on Nagle and the server's delayed ACK (the vendored sqlx-core sets it
/// again). A connection made by
/// `tls::connect` (every target connection) has `TCP_NODELAY` set: the
/// socket whose local port the server sees as `inet_client_port()`.
#[tokio::test]
async fn target_connections_send_small_writes_at_once() {
    let db = TestDb::new().await;
    let opts = cpi::store::connect_options(&cpi::secret::Secret::new(db.url())).unwrap();
    let (mut conn, _) = cpi::tls::connect(&opts).await.unwrap();
    let port: i32 = sqlx::query_scalar("SELECT inet_client_port()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let mut found = 0;
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: only reads into the buffers passed, with their sizes.
        unsafe {
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            let mut alen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            if libc::getsockname(fd, (&raw mut addr).cast(), &mut alen) != 0
                || i32::from(addr.sin_family) != libc::AF_INET
                || i32::from(u16::from_be(addr.sin_port)) != port
            {
                continue;
            }
            let mut on: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            assert_eq!(
                libc::getsockopt(
                    fd,
                    libc::IPPROTO_TCP,
                    libc::TCP_NODELAY,
                    (&raw mut on).cast(),
                    &mut len
                ),
                0
            );
            assert_eq!(
                on, 1,
                "TCP_NODELAY is off on the target connection's socket"
            );
            found += 1;
        }
    }
    assert!(
        found >= 1,
        "the connection's socket (local port {port}) was not found"
    );
}

/// An `sslrootcert` file is the only trust anchor, as in libpq: the system
/// roots are not added to it. The machine's store cannot be changed here,
/// so the server's CA is made a "system" root through `SSL_CERT_FILE`
/// (which the OS-roots loader, rustls-native-certs, reads instead of the
/// store): a URL whose `sslrootcert` names another CA must then fail with
/// "unknown CA" under verify-ca, require (= verify-ca with a file) and
/// verify-full, while `sslrootcert=system` trusts that CA.
#[tokio::test]
async fn a_root_file_excludes_the_system_roots() {
    let tls = TlsServer::start();
    let mgmt = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m");
    let other = tls.file("other-ca.crt").display().to_string();
    let mut docs = [
        connection(
            "file-verifyca",
            &tls.url(
                "127.0.0.2",
                "postgres",
                &format!("sslmode=verify-ca&sslrootcert={other}"),
            ),
        ),
        connection(
            "file-require",
            &tls.url(
                "localhost",
                "postgres",
                &format!("sslmode=require&sslrootcert={other}"),
            ),
        ),
        connection(
            "file-verifyfull",
            &tls.url(
                "localhost",
                "postgres",
                &format!("sslmode=verify-full&sslrootcert={other}"),
            ),
        ),
        connection(
            "system",
            &tls.url(
                "localhost",
                "postgres",
                "sslmode=verify-full&sslrootcert=system",
            ),
        ),
        connection(
            "default-roots",
            &tls.url("localhost", "postgres", "sslmode=verify-full"),
        ),
    ];
    docs.sort();
    write(&m, "c.yaml", &docs.join("---\n"));
    let a = Cpi::new(["apply"]).db(&mgmt).manifests(&m).run();
    assert_eq!(a.code, 0, "{}", a.all());
    let url = mgmt.url();
    let secrets = dir.path();
    let with_system_ca = |name: &str| {
        Cpi::new(["connections", "test", name, "--timeout", "10"])
            .database_url(&url)
            .args([std::ffi::OsStr::new("--secrets-dir"), secrets.as_os_str()])
            .env("SSL_CERT_FILE", tls.file("ca.crt"))
            .run()
    };

    for ok in ["system", "default-roots"] {
        let r = with_system_ca(ok);
        assert_eq!(r.code, 0, "{ok}: {}", r.all());
        assert!(
            r.stderr.contains("session: encrypted (TLSv1."),
            "{ok}: {}",
            r.stderr
        );
    }
    for name in ["file-verifyca", "file-require", "file-verifyfull"] {
        let r = with_system_ca(name);
        assert_eq!(r.code, 1, "{name}: {}", r.all());
        let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
        let msg = v["message"].as_str().unwrap();
        assert!(msg.contains("unknown CA"), "{name}: {msg}");
    }
    // Without the override the server's CA is no system root: the system
    // case fails, so the successes above came from SSL_CERT_FILE.
    let r = test_conn(&url, secrets, "system");
    r.assert_code(1).assert_stdout("unknown CA");
}
