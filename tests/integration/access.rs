//! Access (issue #26): API tokens made by `cpi token create`, declared as
//! manifests, and checked like every other kind.

use crate::support::bin::cpi;

/// The token appears once, on stderr; the manifest on stdout holds its
/// SHA-256 and validates as an ApiToken, alongside a RoleBinding naming it.
#[test]
fn token_create_prints_the_token_once_and_a_manifest_of_its_hash() {
    let run = cpi(&["token", "create", "ci", "--expires", "2030-01-01T00:00:00Z"]);
    run.assert_code(0);
    let token = run
        .stderr
        .lines()
        .find(|l| l.starts_with("cpi_"))
        .expect("the token on stderr")
        .to_string();
    assert!(
        !run.stdout.contains(&token),
        "the token is never in the manifest"
    );
    let hash = cpi::access::token::sha256_hex(&token);
    assert!(
        run.stdout.contains(&format!("sha256: {hash}")),
        "{}",
        run.stdout
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ci.yaml"), &run.stdout).unwrap();
    std::fs::write(
        dir.path().join("binding.yaml"),
        "apiVersion: cpi/v1\nkind: RoleBinding\nmetadata:\n  name: ci-ops\nspec:\n  role: operator\n  projects: ['*']\n  subjects: [{token: ci}]\n",
    )
    .unwrap();
    let manifests = dir.path().to_str().unwrap();
    cpi(&["validate", "--manifests", manifests]).assert_code(0);
    // A second create makes another token.
    let again = cpi(&["token", "create", "ci"]);
    assert!(!again.stderr.contains(&token));
    // A bad name is refused before any token is made.
    let bad = cpi(&["token", "create", "no spaces"]);
    assert_ne!(bad.code, 0);
    assert!(!bad.stderr.contains("cpi_"), "{}", bad.stderr);
}
