//! `examples/quickstart` on a fresh clone: no database setup, the embedded
//! PostgreSQL under `.cpi/` of the working directory (the repository root).

use std::path::Path;

use crate::support::fs::{copy_dir, file_names};
use crate::support::{free_port, Cpi, Run};

#[test]
fn quickstart_applies_on_a_fresh_clone_with_the_embedded_database() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("clone");
    // As a fresh clone has it: without the `processed/` and `failed/`
    // folders a quickstart run leaves in the inbox.
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart"),
        &repo.join("examples/quickstart"),
        &["processed", "failed"],
    );
    // The manifests name the default port; this test takes a free one so
    // that it never meets a quickstart running on the same machine.
    let port = free_port();
    let conn = repo.join("examples/quickstart/manifests/connections/quickstart.yaml");
    let text = std::fs::read_to_string(&conn).unwrap();
    assert!(text.contains("127.0.0.1:54329/quickstart"));
    std::fs::write(&conn, text.replace("54329", &port.to_string())).unwrap();

    let inbox = repo.join("examples/quickstart/inbox");
    let files = || file_names(&inbox);
    let before = files();

    let run = |args: &[&str]| -> Run {
        Cpi::new(args)
            .current_dir(&repo)
            .manifests("examples/quickstart/manifests")
            .embedded_port(port)
            .run()
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
