//! What a release ships: `cpi --version` names the commit, the release
//! profile carries no debug info and strips the binary, and the LICENSE file
//! is the license Cargo.toml declares.

use std::path::Path;
use std::process::Command;

use crate::support::cpi;

fn repo_file(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn version_names_the_package_version_and_the_commit() {
    let r = cpi(&["--version"]);
    r.assert_code(0);
    let head = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    let want = format!("cpi {} ({head})", env!("CARGO_PKG_VERSION"));
    assert_eq!(r.stdout.trim(), want, "{}", r.all());
}

#[test]
fn version_is_the_same_on_a_subcommand() {
    let top = cpi(&["--version"]);
    let sub = cpi(&["apply", "--version"]);
    sub.assert_code(0);
    // clap names the subcommand ("cpi-apply"); the version part is the same.
    let version = |s: &str| s.split_once(' ').map(|(_, v)| v.trim().to_string());
    assert!(sub.stdout.starts_with("cpi-apply "), "{}", sub.stdout);
    assert_eq!(version(&top.stdout), version(&sub.stdout));
}

#[test]
fn release_profile_has_no_debug_info_and_strips() {
    let manifest: toml_like::Section =
        toml_like::section(&repo_file("Cargo.toml"), "profile.release");
    assert_eq!(manifest.get("debug"), Some("false"), "{manifest:?}");
    assert_eq!(manifest.get("strip"), Some("true"), "{manifest:?}");
}

#[test]
fn license_file_is_the_declared_mit_license() {
    let cargo = repo_file("Cargo.toml");
    assert!(
        cargo.contains("license = \"MIT\""),
        "Cargo.toml declares MIT"
    );
    let license = repo_file("LICENSE");
    assert!(license.starts_with("MIT License"), "{license}");
    assert!(license.contains("Permission is hereby granted, free of charge"));
}

/// Just enough of TOML to read one table's `key = value` lines, without a
/// TOML dependency for one test.
mod toml_like {
    #[derive(Debug)]
    pub struct Section(Vec<(String, String)>);

    impl Section {
        pub fn get(&self, key: &str) -> Option<&str> {
            self.0
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        }
    }

    pub fn section(text: &str, name: &str) -> Section {
        let header = format!("[{name}]");
        let mut inside = false;
        let mut pairs = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                inside = line == header;
            } else if inside {
                if let Some((k, v)) = line.split_once('=') {
                    pairs.push((k.trim().to_string(), v.trim().to_string()));
                }
            }
        }
        Section(pairs)
    }
}

/// The Dockerfile's stages: (the FROM line, the instructions after it).
fn dockerfile_stages(text: &str) -> Vec<(String, Vec<String>)> {
    let mut stages: Vec<(String, Vec<String>)> = Vec::new();
    let mut line = String::new();
    for raw in text.lines() {
        let raw = raw.trim();
        if raw.is_empty() || raw.starts_with('#') {
            continue;
        }
        line.push_str(raw.trim_end_matches('\\'));
        if raw.ends_with('\\') {
            line.push(' ');
            continue;
        }
        let instruction = std::mem::take(&mut line);
        if instruction.starts_with("FROM ") {
            stages.push((instruction, Vec::new()));
        } else {
            let stage = stages.last_mut().expect("an instruction before FROM");
            stage.1.push(instruction);
        }
    }
    stages
}

#[test]
fn dockerfile_is_multi_stage_and_ships_the_binary_alone_as_non_root() {
    let stages = dockerfile_stages(&repo_file("Dockerfile"));
    assert!(stages.len() >= 2, "not multi-stage: {stages:?}");
    let (build_from, build) = &stages[0];
    assert!(build_from.ends_with(" AS build"), "{build_from}");
    assert!(
        build
            .iter()
            .any(|i| i.contains("cargo build --release --locked")),
        "{build:?}"
    );
    let (_, last) = stages.last().unwrap();
    let copies: Vec<_> = last.iter().filter(|i| i.starts_with("COPY")).collect();
    assert_eq!(
        copies,
        ["COPY --from=build /src/target/release/cpi /usr/local/bin/cpi"],
        "the final stage copies the binary and nothing else"
    );
    assert!(
        !last
            .iter()
            .any(|i| i.starts_with("RUN") || i.starts_with("ADD")),
        "the final stage adds nothing: {last:?}"
    );
    let user = last
        .iter()
        .rev()
        .find_map(|i| i.strip_prefix("USER "))
        .expect("the final stage sets USER");
    let uid = user.split(':').next().unwrap();
    assert!(uid != "root" && uid != "0", "USER {user} is root");
}

#[test]
fn kubernetes_kit_names_the_image_the_docs_explain() {
    let kit = repo_file("examples/deploy/kubernetes/cpi.yaml");
    let image = format!("registry.example.com/cpi:{}", env!("CARGO_PKG_VERSION"));
    assert!(kit.contains(&format!("image: {image}")), "{kit}");
    let docs = repo_file("docs/operations.md");
    assert!(
        docs.contains(&format!("-t {image} .")),
        "docs/operations.md does not say how to build {image}"
    );
}

#[test]
fn ci_examples_install_the_release_tarball_not_a_cargo_build() {
    for file in [
        "examples/ci/github-actions.yml",
        "examples/ci/gitlab-ci.yml",
    ] {
        let text = repo_file(file);
        assert!(!text.contains("cargo install"), "{file} builds cpi");
        assert!(
            text.contains("sha256sum --check") && text.contains("-x86_64-linux.tar.gz"),
            "{file} does not install the checked release tarball"
        );
    }
    let release = repo_file("scripts/release.sh");
    assert!(release.contains("cpi-${version}-${arch}-linux.tar.gz"));
    assert!(release.contains("SHA256SUMS"));
}
