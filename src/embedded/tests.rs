use std::os::unix::fs::PermissionsExt;

use super::error::EmbeddedError;
use super::host::{check_reachable, find_binaries, passwd_entry, pid_file_port, RunAs};
use super::names::BINARIES;

#[test]
fn binaries_come_from_the_override_path_or_the_highest_version() {
    let d = tempfile::tempdir().unwrap();
    let mk = |rel: &str| {
        let bin = d.path().join(rel);
        std::fs::create_dir_all(&bin).unwrap();
        for b in BINARIES {
            std::fs::write(bin.join(b), "").unwrap();
        }
        bin
    };
    let v9 = mk("root/9/bin");
    let v15 = mk("root/15/bin");
    let root = d.path().join("root");
    std::fs::create_dir_all(d.path().join("root/16/bin")).unwrap(); // incomplete
    assert_eq!(find_binaries(None, None, &root), Some(v15.clone()));
    let path = std::env::join_paths([d.path().join("nope"), v9.clone()]).unwrap();
    assert_eq!(find_binaries(None, Some(&path), &root), Some(v9.clone()));
    assert_eq!(find_binaries(Some(&v9), Some(&path), &root), Some(v9));
    assert_eq!(find_binaries(Some(&d.path().join("x")), None, &root), None);
    assert_eq!(find_binaries(None, None, &d.path().join("none")), None);
}

#[test]
fn a_folder_the_server_user_cannot_pass_is_reported() {
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let closed = d.path().join("closed");
    let inner = closed.join("state/embedded");
    std::fs::create_dir_all(&inner).unwrap();
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
    // A user that owns nothing here.
    let stranger = RunAs(Some((54321, 54321)));
    let e = check_reachable(&inner, stranger).unwrap_err().to_string();
    assert!(
        e.contains("has mode 700") && e.contains("--state-dir"),
        "{e}"
    );
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o755)).unwrap();
    check_reachable(&inner, stranger).unwrap();
    check_reachable(&inner, RunAs(None)).unwrap();
}

#[test]
fn the_no_binaries_error_names_both_fixes() {
    let e = EmbeddedError::NoBinaries.to_string();
    assert!(
        e.contains("install PostgreSQL") && e.contains("--database-url"),
        "{e}"
    );
}

#[test]
fn passwd_and_pid_file_parsing() {
    let passwd = "root:x:0:0:root:/root:/bin/bash\npostgres:x:101:104:PostgreSQL:/var/lib/postgresql:/bin/bash\n";
    assert_eq!(passwd_entry(passwd, "postgres"), Some((101, 104)));
    assert_eq!(passwd_entry(passwd, "nobody"), None);
    assert_eq!(
        pid_file_port("123\n/data\n1700000000\n54329\n.\n127.0.0.1\n"),
        Some(54329)
    );
    assert_eq!(pid_file_port("123\n"), None);
}
