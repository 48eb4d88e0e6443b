//! `examples/quickstart` on a fresh clone: no database setup, the embedded
//! PostgreSQL under `.cpi/` of the working directory (the repository root).

use std::path::Path;

use crate::common::{cpi_command, Run};

/// Copies the folder as a fresh clone has it: without the `processed/` and
/// `failed/` folders a quickstart run leaves in the inbox.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_name() == "processed" || e.file_name() == "failed" {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn quickstart_applies_on_a_fresh_clone_with_the_embedded_database() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("clone");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart"),
        &repo.join("examples/quickstart"),
    );
    // The manifests name the default port; this test takes a free one so
    // that it never meets a quickstart running on the same machine.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let conn = repo.join("examples/quickstart/manifests/connections/quickstart.yaml");
    let text = std::fs::read_to_string(&conn).unwrap();
    assert!(text.contains("127.0.0.1:54329/quickstart"));
    std::fs::write(&conn, text.replace("54329", &port)).unwrap();

    let inbox = repo.join("examples/quickstart/inbox");
    let files = || {
        let mut names: Vec<_> = std::fs::read_dir(&inbox)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    let before = files();

    let run = |args: &[&str]| -> Run {
        cpi_command()
            .current_dir(&repo)
            .args(args)
            .args(["--manifests", "examples/quickstart/manifests"])
            .args(["--embedded-port", &port])
            .output()
            .unwrap()
            .into()
    };
    let v = run(&["validate"]);
    assert_eq!(v.code, 0, "{}", v.all());
    assert!(
        v.stdout.contains("1 connection(s), 1 project(s)"),
        "{}",
        v.stdout
    );

    let a = run(&["apply"]);
    assert_eq!(a.code, 0, "{}", a.all());
    assert!(repo.join(".cpi/embedded/password").exists());
    let d = run(&["diff"]);
    assert_eq!(d.code, 0, "{}", d.all());

    // The Connection reaches the quickstart database with the generated password.
    let t = run(&["connections", "test", "quickstart"]);
    assert_eq!(t.code, 0, "{}", t.all());
    assert!(t.stdout.contains("Connection successful"), "{}", t.stdout);
    let password = std::fs::read_to_string(repo.join(".cpi/embedded/password")).unwrap();
    for r in [&v, &a, &d, &t] {
        assert!(!r.all().contains(password.trim()));
    }
    assert_eq!(files(), before, "none of these commands touches the inbox");
}
