//! The CI examples (`examples/ci/`) run as written on a two-revision git
//! repository: the test reads the commands out of the workflow files, so
//! a change to a workflow is tested, not a copy of it.

use std::path::{Path, PathBuf};

use crate::support::bin::{bash as sh, diff_against};
use crate::support::fs::{git, manifest, repo_yaml as yaml};
use crate::support::{write, Run};

fn connection() -> String {
    manifest(
        "Connection",
        "abc",
        "database_url: postgresql://importer@db.internal:5432/abc\npassword_file: abc.pass",
    )
}

fn project(name: &str, description: &str) -> String {
    manifest(
        "Project",
        name,
        &format!("description: {description}\nconnection: abc\nconfig:\n  inbox: /srv/in/{name}"),
    )
}

/// `origin` with `main` (the base) and `feature` (changes p1's
/// description, adds p2) and `broken` (an unknown field); secrets are
/// not in git, as in a real repository.
fn origin(dir: &Path) -> PathBuf {
    let o = dir.join("origin");
    std::fs::create_dir_all(&o).unwrap();
    git(&o, &["init", "-q", "-b", "main"]);
    write(&o, "manifests/connections/abc.yaml", &connection());
    write(&o, "manifests/projects/p1.yaml", &project("p1", "nightly"));
    write(&o, "README.md", "data team\n");
    git(&o, &["add", "."]);
    git(&o, &["commit", "-q", "-m", "base"]);
    git(&o, &["checkout", "-q", "-b", "feature"]);
    write(&o, "manifests/projects/p1.yaml", &project("p1", "hourly"));
    write(
        &o,
        "manifests/projects/p2.yaml",
        &project("p2_added", "new"),
    );
    git(&o, &["add", "."]);
    git(&o, &["commit", "-q", "-m", "feature"]);
    git(&o, &["checkout", "-q", "-b", "broken", "main"]);
    write(
        &o,
        "manifests/projects/p1.yaml",
        &project("p1", "x").replace("inbox", "inbx"),
    );
    git(&o, &["commit", "-q", "-am", "broken"]);
    git(&o, &["checkout", "-q", "main"]);
    o
}

/// A CI checkout of `branch`, with `origin/main` as the base.
fn checkout(dir: &Path, origin: &Path, branch: &str) -> PathBuf {
    let c = dir.join(format!("checkout-{branch}"));
    git(
        dir,
        &["clone", "-q", origin.to_str().unwrap(), c.to_str().unwrap()],
    );
    git(&c, &["checkout", "-q", branch]);
    c
}

/// Runs the steps of the GitHub workflow's job `name` (all but installing
/// cpi) in `dir`, with the job's env and `over` on top; the failing step's
/// run (the steps after it do not run) and the step summary. Asserts that
/// `steps` steps ran when none failed.
fn github_job(
    name: &str,
    dir: &Path,
    tmp: &Path,
    over: &[(&'static str, String)],
    steps: usize,
) -> (Option<Run>, String) {
    let wf = yaml("examples/ci/github-actions.yml");
    let job = &wf["jobs"][name];
    let runner = tmp.join(format!("runner-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&runner).unwrap();
    let summary = runner.join("summary.md");
    let mut env = vec![
        ("GITHUB_BASE_REF", "main".to_string()),
        ("RUNNER_TEMP", runner.display().to_string()),
        ("GITHUB_STEP_SUMMARY", summary.display().to_string()),
    ];
    for (k, v) in job["env"].as_mapping().unwrap() {
        env.push((k.as_str().unwrap(), v.as_str().unwrap().to_string()));
    }
    env.retain(|(k, _)| !over.iter().any(|(o, _)| o == k));
    env.extend(over.iter().cloned());
    let summary_text = || std::fs::read_to_string(&summary).unwrap_or_default();
    let mut ran = 0;
    for step in job["steps"].as_sequence().unwrap() {
        let (Some(name), Some(script)) = (step["name"].as_str(), step["run"].as_str()) else {
            continue;
        };
        if name.starts_with("Install") {
            continue;
        }
        let r = sh(dir, script, &env);
        if r.code != 0 {
            return (Some(r), summary_text());
        }
        ran += 1;
    }
    assert_eq!(ran, steps, "{name}: steps run");
    (None, summary_text())
}

/// The `plan` job: checkout base, validate, diff.
fn github(dir: &Path, tmp: &Path) -> Result<String, Run> {
    match github_job("plan", dir, tmp, &[], 3) {
        (Some(failed), _) => Err(failed),
        (None, summary) => Ok(summary),
    }
}

#[test]
fn github_workflow_validates_and_shows_the_change() {
    let tmp = tempfile::tempdir().unwrap();
    let o = origin(tmp.path());

    let summary = github(&checkout(tmp.path(), &o, "feature"), tmp.path())
        .unwrap_or_else(|r| panic!("{}", r.all()));
    assert!(summary.contains("cpi: changes on merge"), "{summary}");
    assert!(summary.contains("+ Project p2_added (create)"), "{summary}");
    assert!(
        summary.contains("~ Project p1 (update: description)"),
        "{summary}"
    );
    assert!(summary.contains("hourly"), "{summary}");
    assert!(
        summary.contains("Plan: 1 to create, 1 to update, 0 to delete."),
        "{summary}"
    );

    let summary = github(&checkout(tmp.path(), &o, "main"), tmp.path())
        .unwrap_or_else(|r| panic!("{}", r.all()));
    assert!(summary.contains("no changes"), "{summary}");

    let Err(failed) = github(&checkout(tmp.path(), &o, "broken"), tmp.path()) else {
        panic!("a broken manifest must fail the workflow");
    };
    assert!(
        failed.stderr.contains("unknown field `inbx`"),
        "{}",
        failed.all()
    );
}

#[test]
fn diff_against_a_base_checkout_exits_0_or_2() {
    let tmp = tempfile::tempdir().unwrap();
    let o = origin(tmp.path());
    let head = checkout(tmp.path(), &o, "feature");
    let base = tmp.path().join("base");
    git(
        &head,
        &[
            "worktree",
            "add",
            "-q",
            "--detach",
            base.to_str().unwrap(),
            "origin/main",
        ],
    );
    let (h, b) = (head.join("manifests"), base.join("manifests"));
    let d = diff_against(&h, &b, &[]);
    d.assert_code(2).assert_stdout("p2_added");
    let d = diff_against(&b, &b, &[]);
    assert_eq!(d.code, 0, "{}", d.all());
    let d = diff_against(&h, "/nonexistent", &[]);
    assert_eq!(d.code, 1, "{}", d.all());
}

/// A YAML list of strings.
fn strings(list: &serde_yaml::Value) -> Vec<&str> {
    let items = list.as_sequence().unwrap().iter();
    items.map(|s| s.as_str().unwrap()).collect()
}

#[test]
fn gitlab_job_validates_and_shows_the_change() {
    let tmp = tempfile::tempdir().unwrap();
    let o = origin(tmp.path());
    let ci = yaml("examples/ci/gitlab-ci.yml");
    let job = &ci["cpi-plan"];
    let script = strings(&job["script"]);
    let run = |branch: &str| {
        let dir = checkout(tmp.path(), &o, branch);
        let mut env = vec![
            ("CI_MERGE_REQUEST_TARGET_BRANCH_NAME", "main".to_string()),
            ("CI_PROJECT_DIR", dir.display().to_string()),
        ];
        for (k, v) in job["variables"].as_mapping().unwrap() {
            let v = v
                .as_str()
                .map_or_else(|| v.as_u64().unwrap().to_string(), str::to_string);
            env.push((k.as_str().unwrap(), v));
        }
        let r = sh(&dir, &script.join("\n"), &env);
        let diff = std::fs::read_to_string(dir.join("cpi-diff.txt")).unwrap_or_default();
        (r, diff)
    };
    let (r, diff) = run("feature");
    r.assert_code(0).assert_stdout("the merge changes");
    assert!(diff.contains("+ Project p2_added (create)"), "{diff}");
    let (r, _) = run("main");
    r.assert_code(0).assert_stdout("cpi: no changes");
    let (r, _) = run("broken");
    assert_ne!(r.code, 0, "{}", r.all());
}

#[test]
fn pre_commit_hook_runs_cpi_validate() {
    let tmp = tempfile::tempdir().unwrap();
    let o = origin(tmp.path());
    let hooks = yaml(".pre-commit-hooks.yaml");
    let hook = &hooks[0];
    assert_eq!(hook["id"], "cpi-validate");
    let config = yaml("examples/ci/pre-commit-config.yaml");
    let used = &config["repos"][0]["hooks"][0];
    assert_eq!(used["id"], "cpi-validate");
    let args = strings(&used["args"]);
    let command = format!("{} {}", hook["entry"].as_str().unwrap(), args.join(" "));
    let r = sh(&checkout(tmp.path(), &o, "feature"), &command, &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    let r = sh(&checkout(tmp.path(), &o, "broken"), &command, &[]);
    r.assert_code(1).assert_stderr("projects/p1.yaml");
}

/// The GitHub workflow's `check` job, its steps as written (but installing
/// cpi): the sample files of each project through `cpi check
/// --from-manifests`, against a scratch database (this test's) that
/// `samples/schema.sql` prepares. A sample that breaks its contract fails
/// the job and says so in the summary; the database keeps no row.
// Multi-threaded: the steps run as blocking child processes.
#[tokio::test(flavor = "multi_thread")]
async fn github_check_job_dry_runs_the_sample_files() {
    let db = crate::support::TestDb::new().await;
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    write(&repo, "manifests/connections/abc.yaml", &connection());
    write(
        &repo,
        "manifests/projects/orders.yaml",
        &manifest(
            "Project",
            "orders",
            "connection: abc\nconfig:\n  inbox: /srv/in/orders\n  defaults:\n    table: orders\n    checks:\n      - {check: accepted_values, column: status, values: [new, paid]}\n",
        ),
    );
    write(
        &repo,
        "samples/schema.sql",
        "CREATE TABLE orders (id int PRIMARY KEY, status text);\n",
    );
    write(&repo, "samples/orders/a.csv", "id,status\n1,new\n2,paid\n");
    // The scratch database is this test's, not the service container's.
    let over = [("CHECK_DATABASE_URL", db.url())];
    let run = |repo: &Path| github_job("check", repo, tmp.path(), &over, 2);
    let (failed, summary) = run(&repo);
    assert!(failed.is_none(), "{}", failed.unwrap().all());
    assert!(
        summary.contains("every sample file would load"),
        "{summary}"
    );

    // A pull request adds a sample with an unknown status.
    write(&repo, "samples/orders/b.csv", "id,status\n3,lost\n");
    let pool = db.pool().await;
    sqlx::query("DROP TABLE orders")
        .execute(&pool)
        .await
        .unwrap();
    let (failed, summary) = run(&repo);
    let r = failed.expect("a sample that breaks its contract fails the job");
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stdout.contains("b.csv: would fail"), "{}", r.all());
    assert!(summary.contains("a sample file would fail"), "{summary}");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 0, "the check wrote rows");
}
