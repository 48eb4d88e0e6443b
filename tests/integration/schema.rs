//! `cpi schema` and `cpi completions`: what editors and shells consume.

use crate::support::cpi;

#[test]
fn committed_schema_equals_cpi_schema() {
    let r = cpi(&["schema"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/cpi.schema.json");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        r.stdout == committed,
        "examples/cpi.schema.json is stale: regenerate it with `cargo run -- schema > examples/cpi.schema.json`"
    );
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        v["definitions"]["Project"]["properties"]["kind"]["const"],
        "Project"
    );
}

#[test]
fn completions_name_every_subcommand() {
    for shell in ["bash", "zsh", "fish"] {
        let r = cpi(&["completions", shell]);
        assert_eq!(r.code, 0, "{shell}: {}", r.all());
        for sub in [
            "validate",
            "diff",
            "apply",
            "export",
            "convert-legacy",
            "schema",
        ] {
            assert!(r.stdout.contains(sub), "{shell} completion lacks {sub}");
        }
    }
    let r = cpi(&["completions", "tcsh"]);
    assert_eq!(r.code, 1, "{}", r.all());
}

#[test]
fn first_run_commands_have_help_and_reject_bad_usage_with_1() {
    for cmd in ["export", "convert-legacy", "schema", "completions"] {
        let r = cpi(&[cmd, "--help"]);
        assert_eq!(r.code, 0, "{cmd}: {}", r.all());
        assert!(r.stdout.contains("Usage:"), "{cmd}");
    }
    // Missing required options exit 1, never clap's 2.
    for cmd in [vec!["export"], vec!["convert-legacy", "--input", "x"]] {
        let r = cpi(&cmd);
        assert_eq!(r.code, 1, "{cmd:?}: {}", r.all());
    }
}
