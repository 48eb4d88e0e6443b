//! Readiness, candidates and moves of an inbox.

use super::*;

#[test]
fn a_file_listed_again_after_it_was_forgotten_is_ready_again() {
    let t = SystemTime::UNIX_EPOCH;
    let now = Instant::now();
    let listing = vec![(PathBuf::from("s3://b/in/a.csv#e"), 10, t)];
    let mut r = Readiness::default();
    assert_eq!(r.observe(&listing, Duration::ZERO, now, t).len(), 1);
    // The same key, ETag, size and second: not new by itself...
    assert!(r.observe(&listing, Duration::ZERO, now, t).is_empty());
    // ...but after its job moved it away, a listing of it is a new upload.
    assert!(r.forget(Path::new("s3://b/in/a.csv#e")));
    assert_eq!(r.observe(&listing, Duration::ZERO, now, t).len(), 1);
    assert!(!r.forget(Path::new("s3://b/in/other.csv#e")));
}

#[test]
fn temp_and_hidden_names_are_ignored() {
    for name in [
        ".x.csv",
        "a.csv.tmp",
        "a.CSV.PART",
        "b.partial",
        "c.crdownload",
        "a.csv.error.json",
    ] {
        assert!(!is_candidate(name), "{name}");
    }
    assert!(is_candidate("orders_07.csv"));
    assert!(is_candidate("orders_07.csv.gz"));
    assert!(is_candidate("orders_07.csv.zst"));
}

#[test]
fn a_file_is_ready_once_it_stops_changing_for_settle() {
    let mut r = Readiness::default();
    let t0 = Instant::now();
    let settle = Duration::from_secs(2);
    let p = PathBuf::from("/in/a.csv");
    let m1 = SystemTime::UNIX_EPOCH + Duration::from_secs(1);
    let m2 = SystemTime::UNIX_EPOCH + Duration::from_secs(2);
    // The wall clock at the last write: only what this process sees counts.
    assert!(r.observe(&[(p.clone(), 10, m1)], settle, t0, m2).is_empty());
    // Grew: settling starts over.
    assert!(r
        .observe(
            &[(p.clone(), 20, m2)],
            settle,
            t0 + Duration::from_secs(3),
            m2
        )
        .is_empty());
    assert!(r.settling());
    assert!(r
        .observe(
            &[(p.clone(), 20, m2)],
            settle,
            t0 + Duration::from_secs(4),
            m2
        )
        .is_empty());
    assert_eq!(
        r.observe(
            &[(p.clone(), 20, m2)],
            settle,
            t0 + Duration::from_secs(5),
            m2
        ),
        vec![p.clone()]
    );
    // Handed out once.
    assert!(r
        .observe(
            &[(p.clone(), 20, m2)],
            settle,
            t0 + Duration::from_secs(9),
            m2
        )
        .is_empty());
    assert!(!r.settling());
    r.release(&p);
    assert_eq!(
        r.observe(
            &[(p.clone(), 20, m2)],
            settle,
            t0 + Duration::from_secs(10),
            m2
        ),
        vec![p.clone()]
    );
    // Gone from the listing: forgotten, so a new file of that name starts fresh.
    assert!(r
        .observe(&[], settle, t0 + Duration::from_secs(11), m2)
        .is_empty());
    assert!(r
        .observe(
            &[(p.clone(), 20, m2)],
            settle,
            t0 + Duration::from_secs(11),
            m2
        )
        .is_empty());
}

#[test]
fn ready_files_come_in_name_order() {
    let mut r = Readiness::default();
    let t0 = Instant::now();
    let m = SystemTime::UNIX_EPOCH;
    let listing: Vec<_> = ["c.csv", "a.csv", "b.csv"]
        .iter()
        .map(|n| (PathBuf::from(n), 1, m))
        .collect();
    r.observe(&listing, Duration::ZERO, t0, m);
    let mut r = Readiness::default();
    let got = r.observe(&listing, Duration::ZERO, t0, m);
    assert_eq!(
        got,
        vec![
            PathBuf::from("a.csv"),
            PathBuf::from("b.csv"),
            PathBuf::from("c.csv")
        ]
    );
}

#[test]
fn a_file_whose_mtime_is_settle_old_is_ready_at_first_sight() {
    let settle = Duration::from_secs(2);
    let t0 = Instant::now();
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
    let p = PathBuf::from("/in/renamed.csv");
    // Written long ago and renamed in: nothing to wait for.
    let mut r = Readiness::default();
    let old = wall - Duration::from_secs(60);
    assert_eq!(
        r.observe(&[(p.clone(), 9, old)], settle, t0, wall),
        vec![p.clone()]
    );
    // Written a second ago: it waits out the rest of its settle time
    // by the mtime, before this process has seen it for settle.
    let mut r = Readiness::default();
    let recent = wall - Duration::from_secs(1);
    assert!(r
        .observe(&[(p.clone(), 9, recent)], settle, t0, wall)
        .is_empty());
    let later = t0 + Duration::from_millis(1_100);
    let wall_later = wall + Duration::from_millis(1_100);
    assert_eq!(
        r.observe(&[(p.clone(), 9, recent)], settle, later, wall_later),
        vec![p.clone()]
    );
    // An mtime ahead of our clock proves nothing: only seeing it counts.
    let mut r = Readiness::default();
    let ahead = wall + Duration::from_secs(3_600);
    assert!(r
        .observe(&[(p.clone(), 9, ahead)], settle, t0, wall)
        .is_empty());
    assert!(r
        .observe(
            &[(p.clone(), 9, ahead)],
            settle,
            t0 + Duration::from_secs(1),
            wall
        )
        .is_empty());
    assert_eq!(
        r.observe(&[(p.clone(), 9, ahead)], settle, t0 + settle, wall + settle),
        vec![p.clone()]
    );
}

#[test]
fn never_overwrites_in_the_destination() {
    let d = tempfile::tempdir().unwrap();
    let inbox = d.path();
    std::fs::write(inbox.join("a.csv"), "1").unwrap();
    let to = move_into(&inbox.join("a.csv"), &inbox.join("processed"), "j1").unwrap();
    assert_eq!(to, inbox.join("processed/a.csv"));
    std::fs::write(inbox.join("a.csv"), "2").unwrap();
    let to = move_into(&inbox.join("a.csv"), &inbox.join("processed"), "j2").unwrap();
    assert_eq!(to, inbox.join("processed/j2_a.csv"));
    assert_eq!(
        std::fs::read_to_string(inbox.join("processed/a.csv")).unwrap(),
        "1"
    );
}

#[test]
fn configured_dirs_are_relative_to_the_inbox() {
    let c = ProjectConfig {
        processed_dir: Some("done".into()),
        failed_dir: Some("/var/rejects".into()),
        ..Default::default()
    };
    assert_eq!(
        processed_dir(&c, Path::new("/in")),
        PathBuf::from("/in/done")
    );
    assert_eq!(
        failed_dir(&c, Path::new("/in")),
        PathBuf::from("/var/rejects")
    );
    assert_eq!(
        processed_dir(&ProjectConfig::default(), Path::new("/in")),
        PathBuf::from("/in/processed")
    );
}

#[test]
fn symlinked_files_are_never_listed() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("a.csv"), "1").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", d.path().join("b.csv")).unwrap();
    let names: Vec<_> = list(d.path())
        .unwrap()
        .into_iter()
        .map(|(p, _, _)| p)
        .collect();
    assert_eq!(names, vec![d.path().join("a.csv")]);
}

#[test]
fn reports_sit_beside_the_moved_file_and_never_overwrite() {
    let d = tempfile::tempdir().unwrap();
    let failed = d.path().join("failed");
    std::fs::create_dir_all(&failed).unwrap();
    std::fs::write(d.path().join("a.csv"), "1").unwrap();
    let to = move_into(&d.path().join("a.csv"), &failed, "j1").unwrap();
    let r1 = write_report_beside(&to, "j1", b"first").unwrap();
    assert_eq!(r1, failed.join("a.csv.error.json"));
    let r2 = write_report_beside(&to, "j2", b"second").unwrap();
    assert_eq!(r2, failed.join("j2_a.csv.error.json"));
    assert_eq!(std::fs::read(&r1).unwrap(), b"first");
    // A second a.csv lands as j3_a.csv, its report beside it.
    std::fs::write(d.path().join("a.csv"), "2").unwrap();
    let to = move_into(&d.path().join("a.csv"), &failed, "j3").unwrap();
    assert_eq!(to, failed.join("j3_a.csv"));
    let r3 = write_report_beside(&to, "j3", b"third").unwrap();
    assert_eq!(r3, failed.join("j3_a.csv.error.json"));
    let left: Vec<_> = std::fs::read_dir(&failed)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        !left.iter().any(|n| n.to_string_lossy().ends_with(".tmp")),
        "{left:?}"
    );
}
