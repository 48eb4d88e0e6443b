//! Unit tests of `controls`: finding a job's file.
use super::*;

fn job(path: &str, name: &str) -> Job {
    Job {
        id: Uuid::parse_str("11111111-2222-3333-4444-555555555555").unwrap(),
        project_id: None,
        project_name: "p".into(),
        connection_id: None,
        file_name: name.into(),
        file_path: path.into(),
        file_size: None,
        file_sha256: None,
        target_table: None,
        mode: None,
        status: JobStatus::Failed,
        rows_read: 0,
        rows_inserted: 0,
        rows_updated: 0,
        rows_deleted: 0,
        rows_rejected: 0,
        error: None,
        error_details: None,
        worker: None,
        attempts: 1,
        lease_expires_at: None,
        not_before: None,
        waits_for_fix: false,
        created_at: chrono::Utc::now(),
        started_at: None,
        finished_at: None,
        replay_of: None,
    }
}

#[test]
fn a_failed_file_is_found_in_failed_and_told_from_another_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("in");
    std::fs::create_dir_all(inbox.join("failed")).unwrap();
    let config: ProjectConfig =
        serde_yaml::from_str(&format!("inbox: {}\n", inbox.display())).unwrap();
    let j = job(inbox.join("a.csv").to_str().unwrap(), "a.csv");
    assert_eq!(locate(&j, Some(&config)), None, "gone");

    // Another job's a.csv (its report says so): not this job's file.
    std::fs::write(inbox.join("failed/a.csv"), "x").unwrap();
    std::fs::write(
        inbox.join("failed/a.csv.error.json"),
        r#"{"job_id": "other"}"#,
    )
    .unwrap();
    assert_eq!(locate(&j, Some(&config)), None);

    // This job's, under the prefixed name it got.
    let mine = inbox.join("failed/11111111_a.csv");
    std::fs::write(&mine, "x").unwrap();
    let report = inbox.join("failed/11111111_a.csv.error.json");
    std::fs::write(&report, format!(r#"{{"job_id": "{}"}}"#, j.id)).unwrap();
    assert_eq!(
        locate(&j, Some(&config)),
        Some(Located::SetAside {
            file: mine,
            report: Some(report),
            back: inbox.join("a.csv"),
        })
    );

    // A job pointing at failed/ (an earlier retry) goes back too.
    let old = job(inbox.join("failed/a.csv").to_str().unwrap(), "a.csv");
    for f in [
        "a.csv.error.json",
        "11111111_a.csv",
        "11111111_a.csv.error.json",
    ] {
        std::fs::remove_file(inbox.join("failed").join(f)).unwrap();
    }
    assert_eq!(
        locate(&old, Some(&config)),
        Some(Located::SetAside {
            file: inbox.join("failed/a.csv"),
            report: None,
            back: inbox.join("a.csv"),
        })
    );
    // A file given to `cpi import` is retried where it is.
    std::fs::write(dir.path().join("b.csv"), "x").unwrap();
    let given = job(dir.path().join("b.csv").to_str().unwrap(), "b.csv");
    assert_eq!(
        locate(&given, Some(&config)),
        Some(Located::InPlace(dir.path().join("b.csv")))
    );
}
