//! The operator kits in `examples/observability` and `examples/deploy`,
//! checked by the tools operators use on them (promtool, systemd-analyze,
//! kubernetes-validate) and against the real binary: every flag they pass
//! exists, and every metric they query is one cpi exports. The tools are
//! installed by `.ci/run`; a missing tool fails the test, never skips it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Runs a tool and fails with its output unless it exits 0.
fn check(program: &str, args: &[&str], dir: &Path) -> String {
    crate::support::bin::tool(program, args, Some(dir))
}

/// The `--long-flags` that a text passes to cpi.
fn flags_in(text: &str) -> BTreeSet<String> {
    text.split(|c: char| c.is_whitespace() || c == '=' || c == '"' || c == ',')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| w.trim_end_matches('\\').to_string())
        .collect()
}

/// The flags `cpi run` takes: its own (`cpi run --help`) and the global
/// ones, listed once in `cpi --help`.
fn run_help() -> String {
    let mut text = String::new();
    for args in [&["run", "--help"][..], &["--help"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_cpi"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success());
        text.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    text
}

/// The names of the metric families a text refers to (`cpi_…`), with the
/// histogram suffixes folded into their family.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("cpi_") {
        let start = i + pos;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(text.len(), |e| start + e);
        if boundary {
            let name = &text[start..end];
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            names.insert(family.to_string());
        }
        i = end;
    }
    names
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let dir = repo("examples/observability");
    let text = check("promtool", &["check", "rules", "alerts.yaml"], &dir);
    assert!(text.contains("SUCCESS: 6 rules found"), "{text}");
    check("promtool", &["test", "rules", "alerts.test.yaml"], &dir);
}

/// The shipped rules fire on what an operator must act on, and stop once it
/// is fixed: `alerts.test.yaml` holds a persistent reconcile failure (one
/// run recorded, the alert fires after 15 minutes), a failed import
/// (fires) and a failed import retried with success on two replicas
/// (quiet); promtool runs them against `alerts.yaml`.
#[test]
fn regression_alert_rules_fire_on_persistent_failures_and_not_after_a_retry() {
    let dir = repo("examples/observability");
    let rules = std::fs::read_to_string(dir.join("alerts.yaml")).unwrap();
    let tests = std::fs::read_to_string(dir.join("alerts.test.yaml")).unwrap();
    // increase() on a gauge reads every fall as a counter reset.
    assert!(!rules.contains("increase(cpi_import_jobs{"), "{rules}");
    for case in [
        "alertname: CpiReconcileFailing\n        exp_alerts:\n          - exp_labels",
        "alertname: CpiImportFailures\n        exp_alerts:\n          - exp_labels",
        "alertname: CpiImportFailures\n        exp_alerts: []",
    ] {
        assert!(tests.contains(case), "alerts.test.yaml lacks {case:?}");
    }
    check("promtool", &["test", "rules", "alerts.test.yaml"], &dir);
}

#[test]
fn every_dashboard_query_is_valid_promql() {
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo("examples/observability/grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    let mut n = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            // Grafana's variables become a plain matcher, so promtool parses
            // exactly the query Grafana would send.
            let expr = target["expr"].as_str().unwrap().replace("$instance", ".*");
            rules.push_str(&format!(
                "      - record: dashboard:query_{n}\n        expr: {}\n",
                serde_json::to_string(&expr).unwrap()
            ));
            n += 1;
        }
    }
    assert!(n >= 10, "the dashboard has {n} queries");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dashboard.rules.yaml"), rules).unwrap();
    check(
        "promtool",
        &["check", "rules", "dashboard.rules.yaml"],
        dir.path(),
    );
}

#[tokio::test]
async fn dashboard_and_alerts_query_only_metrics_that_cpi_exports() {
    let db = crate::support::TestDb::new().await;
    let pool = sqlx::PgPool::connect(&db.url()).await.unwrap();
    cpi::store::migrate(&pool).await.unwrap();
    // A finished reconcile, so that the metrics that need one are exported.
    sqlx::query("INSERT INTO cpi_reconcile_runs (owner, trigger, status, finished_at) VALUES ('cpi', 'test', 'succeeded', now())")
        .execute(&pool)
        .await
        .unwrap();
    let health = cpi::metrics::Health::with_reconciler();
    let exported = metric_names(&cpi::metrics::render(&pool, &health).await);
    pool.close().await;
    for file in [
        "examples/observability/grafana-dashboard.json",
        "examples/observability/alerts.yaml",
    ] {
        let used = metric_names(&std::fs::read_to_string(repo(file)).unwrap());
        assert!(!used.is_empty(), "{file} queries no cpi metric");
        let unknown: Vec<_> = used.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{file} queries metrics cpi does not export: {unknown:?}"
        );
    }
}

#[test]
fn systemd_unit_verifies_and_passes_only_real_flags() {
    let unit = std::fs::read_to_string(repo("examples/deploy/systemd/cpi.service")).unwrap();
    for setting in [
        "User=cpi",
        "ProtectSystem=strict",
        "LoadCredential=",
        "NoNewPrivileges=yes",
    ] {
        assert!(unit.contains(setting), "the unit lacks {setting}");
    }
    // systemd-analyze checks that ExecStart's program exists and runs: point
    // it at the binary under test.
    let dir = tempfile::tempdir().unwrap();
    let local = unit.replace("/usr/local/bin/cpi", env!("CARGO_BIN_EXE_cpi"));
    std::fs::write(dir.path().join("cpi.service"), &local).unwrap();
    check("systemd-analyze", &["verify", "./cpi.service"], dir.path());
    let help = run_help();
    let exec: String = unit
        .lines()
        .skip_while(|l| !l.starts_with("ExecStart="))
        .take_while(|l| l.starts_with("ExecStart=") || l.starts_with("    "))
        .collect::<Vec<_>>()
        .join("\n");
    let flags = flags_in(&exec);
    assert!(flags.len() >= 3, "{exec}");
    for flag in flags {
        assert!(help.contains(&flag), "cpi run has no {flag}");
    }
}

#[test]
fn kubernetes_manifests_validate_and_fit_together() {
    let dir = repo("examples/deploy/kubernetes");
    let text = check("kubernetes-validate", &["--strict", "cpi.yaml"], &dir);
    for kind in ["deployment/cpi", "service/cpi", "serviceaccount/cpi"] {
        assert!(
            text.contains(&format!("passed for resource {kind}")),
            "{text}"
        );
    }
    // A CRD: kubernetes-validate has no schema for it and says so; what we
    // check is that it parses and points at the Service's port and labels.
    check("kubernetes-validate", &["servicemonitor.yaml"], &dir);
    let docs: Vec<serde_yaml::Value> =
        serde_yaml::Deserializer::from_str(&std::fs::read_to_string(dir.join("cpi.yaml")).unwrap())
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
    let of_kind = |k: &str| docs.iter().find(|d| d["kind"] == k).unwrap().clone();
    let deployment = of_kind("Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .unwrap();
    let cpi = containers.iter().find(|c| c["name"] == "cpi").unwrap();
    assert_eq!(cpi["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(cpi["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(containers.iter().any(|c| c["name"] == "git-sync"));
    assert!(
        cpi["env"]
            .as_sequence()
            .unwrap()
            .iter()
            .all(|e| e.get("valueFrom").is_none() && !e["name"].as_str().unwrap().contains("URL")),
        "secrets come as files, not variables"
    );
    let args: Vec<String> = cpi["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let help = run_help();
    for flag in flags_in(&args.join(" ")) {
        assert!(help.contains(&flag), "cpi run has no {flag}");
    }
    let service = of_kind("Service");
    let monitor: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("servicemonitor.yaml")).unwrap())
            .unwrap();
    assert_eq!(
        monitor["spec"]["endpoints"][0]["port"],
        service["spec"]["ports"][0]["name"]
    );
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"],
        service["metadata"]["labels"]
    );
}
