use super::folder::walk;
use super::text::marks;
use super::*;

fn write(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// The error text of loading a folder that holds `text` as `name`.
fn load_error(name: &str, text: &str) -> String {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), name, text);
    load(d.path(), None, Secrets::Optional)
        .unwrap_err()
        .to_string()
}

const CONN: &str = "apiVersion: cpi/v1\nkind: Connection\nmetadata:\n  name: abc\nspec:\n  description: d\n  database_url: postgresql://importer@db:5432/abc\n  password_file: abc.pass\n";
const PROJ: &str = "apiVersion: cpi/v1\nkind: Project\nmetadata:\n  name: p1\nspec:\n  connection: abc\n  config:\n    inbox: /tmp/in\n";

#[test]
fn loads_multi_document_files_recursively() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "sub/all.yaml", &format!("{CONN}---\n{PROJ}"));
    write(d.path(), "abc.pass", "p@ss w/rd\n");
    let l = load(d.path(), None, Secrets::Required).unwrap();
    let c = &l.desired.connections["abc"];
    assert_eq!(c.source, "sub/all.yaml");
    match &c.url {
        UrlState::Known(s) => assert_eq!(
            s.expose(),
            "postgresql://importer:p%40ss%20w%2Frd@db:5432/abc"
        ),
        other => panic!("{other:?}"),
    }
    let p = &l.desired.projects["p1"];
    assert_eq!(p.config["name"], "p1");
    assert_eq!(p.connection, "abc");
}

#[test]
fn missing_secret_is_error_for_apply_and_warning_for_diff() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "c.yaml", CONN);
    let e = load(d.path(), None, Secrets::Required).unwrap_err();
    assert!(
        e.to_string()
            .contains("c.yaml:8: password_file: cannot read secret file"),
        "{e}"
    );
    let l = load(d.path(), None, Secrets::Optional).unwrap();
    assert_eq!(l.warnings.len(), 1);
    assert_eq!(
        l.desired.connections["abc"].url,
        UrlState::PasswordUnknown("postgresql://importer@db:5432/abc".into())
    );
}

#[test]
fn errors_name_file_line_and_column() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "a.yaml",
        &format!("{CONN}---\n{}", PROJ.replace("inbox", "inbx")),
    );
    write(d.path(), "abc.pass", "x");
    let e = load(d.path(), None, Secrets::Required).unwrap_err();
    assert_eq!(e.0.len(), 1, "{e}");
    assert_eq!(e.0[0].file, "a.yaml");
    assert_eq!(e.0[0].line, Some(17));
    assert!(
        e.0[0].message.contains("unknown field `inbx`"),
        "{}",
        e.0[0].message
    );
}

#[test]
fn inline_password_is_rejected_without_echoing_it() {
    let e = load_error(
        "c.yaml",
        &CONN
            .replace("importer@", "importer:sup3rs3cret@")
            .replace("  password_file: abc.pass\n", ""),
    );
    assert!(
        e.contains("c.yaml:7: database_url contains a password"),
        "{e}"
    );
    assert!(!e.contains("sup3rs3cret"));
}

#[test]
fn legacy_env_var_gets_the_migration_hint() {
    let e = load_error(
        "p.yaml",
        "apiVersion: cpi/v1\nkind: Project\nmetadata: {name: p}\nspec:\n  connection: x\n  config:\n    connection:\n      env_var: ABC_URL\n",
    );
    assert!(
        e.contains("p.yaml:8: connection.env_var (ABC_URL) is no longer supported"),
        "{e}"
    );
    assert!(e.contains("convert-legacy"));
}

#[test]
fn duplicates_and_dangling_references_fail_the_whole_set() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "a.yaml", PROJ);
    write(d.path(), "b.yaml", PROJ);
    let e = load(d.path(), None, Secrets::Optional).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("b.yaml:4: duplicate Project \"p1\" (first declared in a.yaml)"),
        "{text}"
    );
    assert!(
        text.contains(
            "a.yaml:6: project \"p1\" references connection \"abc\", which no manifest declares"
        ),
        "{text}"
    );
}

#[test]
fn missing_folder_is_an_error_not_an_empty_set() {
    let e = load(Path::new("/nonexistent/cpi"), None, Secrets::Optional).unwrap_err();
    assert!(e.to_string().contains("does not exist"));
}

#[test]
fn yaml_syntax_errors_have_positions() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "bad.yml", "---\n{}\n---\nkind: [\n");
    let e = load(d.path(), None, Secrets::Optional).unwrap_err();
    assert_eq!(e.0[0].file, "bad.yml");
    assert!(e.0.iter().all(|x| x.line.is_some()), "{e}");
}

#[test]
fn alias_expansion_is_estimated_linearly() {
    // A small, ordinary use of anchors stays far below the cap.
    let ok = "defaults: &d\n  a: 1\n  b: 2\ntables:\n  - *d\n  - *d\n";
    assert_eq!(expanded_nodes(ok), 6 + 2 * 3);
    // Nested: each level multiplies.
    let mut nested = String::from("a: &a [x, x, x, x, x, x, x, x, x]\n");
    for (i, prev) in ["a", "b", "c", "d", "e", "f"].iter().enumerate() {
        nested.push_str(&format!("{}: &{} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n", i, ["b", "c", "d", "e", "f", "g"][i]));
    }
    assert!(
        expanded_nodes(&nested) > MAX_EXPANDED_NODES,
        "{}",
        expanded_nodes(&nested)
    );
    // `&` and `*` inside words are not marks.
    assert_eq!(
        marks("url: postgres://h/db?a=1&b=2 *x"),
        (vec![], vec!["x"])
    );
}

#[test]
fn symlinked_folders_are_not_walked() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "a/p.yaml", PROJ);
    std::os::unix::fs::symlink("..", d.path().join("a/up")).unwrap();
    let (mut files, mut warnings) = (Vec::new(), Vec::new());
    walk(d.path(), &mut files, &mut warnings).unwrap();
    assert_eq!(files, vec![d.path().join("a/p.yaml")]);
    assert_eq!(warnings.len(), 1);
}

#[test]
fn a_duplicate_key_is_located_at_the_repeat() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "c.yaml", &format!("{CONN}  description: again\n"));
    let e = load(d.path(), None, Secrets::Optional).unwrap_err();
    assert_eq!((e.0[0].line, e.0[0].column), (Some(9), Some(3)), "{e}");
    assert!(e.0[0].message.contains("description"), "{e}");
    // The generic path (flow style) too.
    write(
        d.path(),
        "c.yaml",
        "{apiVersion: cpi/v1, kind: Connection}\n",
    );
    write(d.path(), "d.yaml", "a: 1\nb:\n  x: 1\n  x: 2\n");
    let e = load(d.path(), None, Secrets::Optional).unwrap_err();
    let dup = e.0.iter().find(|x| x.file == "d.yaml").unwrap();
    assert_eq!(dup.line, Some(4), "{e}");
}

#[test]
fn nesting_depth_counts_flow_block_and_entries_but_not_scalars() {
    use super::text::too_deep;
    // The manifests of the docs nest a few levels.
    assert_eq!(too_deep(CONN, 4), None);
    assert_eq!(too_deep("a: {b: [c, {d: e}]}\n", 4), None);
    assert_eq!(too_deep("a: {b: [c, {d: e}]}\n", 3), Some((1, 12)));
    // Brackets inside quotes, comments, plain scalars and block scalars
    // are text.
    let text = "a: \"{{{{\"\nb: '[[['' [[['\nc: x{{{{ # {{{{\nd: |\n  {{{{\n  [[[[\ne: f\n";
    assert_eq!(too_deep(text, 1), None);
    // Indentation and `- ` entries nest.
    assert_eq!(too_deep("a:\n  b:\n    c: 1\n", 2), Some((3, 5)));
    assert_eq!(too_deep("- - - x\n", 2), Some((1, 1)));
    assert_eq!(too_deep(&"{a: ".repeat(200_000), 64), Some((1, 253)));
}

const TOKEN: &str = "apiVersion: cpi/v1\nkind: ApiToken\nmetadata:\n  name: ci\nspec:\n  sha256: 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824\n  expires: 2030-01-01T00:00:00Z\n";
const BINDING: &str = "apiVersion: cpi/v1\nkind: RoleBinding\nmetadata:\n  name: abc-ops\nspec:\n  role: operator\n  projects: [p1, 'customer_*']\n  subjects:\n    - token: ci\n    - group: team-alpha\n";

#[test]
fn access_kinds_load_with_the_others() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "access.yaml", &format!("{TOKEN}---\n{BINDING}"));
    let l = load(d.path(), None, Secrets::Optional).unwrap();
    let t = &l.desired.tokens["ci"];
    assert_eq!(t.source, "access.yaml");
    assert_eq!(
        hex::encode(t.sha256),
        crate::access::token::sha256_hex("hello")
    );
    assert!(t.expires.is_some());
    let b = &l.desired.bindings["abc-ops"];
    assert_eq!(b.role, crate::access::Role::Operator);
    assert_eq!(b.subjects.len(), 2);
    assert!(l.desired.declares_access());
    assert_eq!(l.desired.known_tokens()[0].name, "ci");
}

#[test]
fn access_kinds_are_checked_fail_closed() {
    let e = load_error("b.yaml", BINDING);
    assert!(
        e.contains("names token \"ci\", which no ApiToken manifest declares"),
        "{e}"
    );
    assert!(e.contains("b.yaml"), "{e}");
    let e = load_error("t.yaml", &TOKEN.replace("2cf24dba", "cpi_0000"));
    assert!(e.contains("sha256: must be the 64 hex digits"), "{e}");
    assert!(e.contains("t.yaml:6"), "{e}");
    let e = load_error("t.yaml", &format!("{TOKEN}---\n{TOKEN}"));
    assert!(e.contains("duplicate ApiToken \"ci\""), "{e}");
    let e = load_error("r.yaml", &BINDING.replace("operator", "root"));
    assert!(e.contains("root"), "{e}");
    let e = load_error(
        "r.yaml",
        &BINDING.replace("  role:", "  secret: x\n  role:"),
    );
    assert!(e.contains("secret"), "{e}");
}

const PROVIDER: &str = "apiVersion: cpi/v1\nkind: Provider\nmetadata:\n  name: ops\nspec:\n  type: webhook\n  url_file: hook.url\n  secret_file: hook.key\n";
const ALERT: &str = "apiVersion: cpi/v1\nkind: Alert\nmetadata:\n  name: failures\nspec:\n  provider: ops\n  projects: ['p*']\n  events: [import.failed]\n";
const RECEIVER: &str = "apiVersion: cpi/v1\nkind: Receiver\nmetadata:\n  name: gh\nspec:\n  type: github\n  secret_file: gh.key\n  triggers: [reconcile]\n";

#[test]
fn notification_kinds_load_with_their_secret_files_by_absolute_path() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "notify.yaml",
        &format!("{PROVIDER}---\n{ALERT}---\n{RECEIVER}"),
    );
    write(
        d.path(),
        "hook.url",
        "https://hooks.example.com/planted-url-secret\n",
    );
    write(d.path(), "hook.key", "planted-hmac-secret\n");
    write(d.path(), "gh.key", "planted-gh-secret\n");
    let l = load(d.path(), None, Secrets::Required).unwrap();
    let p = &l.desired.objects[&(Kind::Provider, "ops".to_string())];
    let url_file = p.spec["url_file"].as_str().unwrap();
    assert!(Path::new(url_file).is_absolute(), "{url_file}");
    assert!(url_file.ends_with("hook.url"));
    let text = serde_json::to_string(
        &l.desired
            .objects
            .values()
            .map(|o| &o.spec)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(
        !text.contains("planted"),
        "a spec holds paths, never secrets: {text}"
    );
    assert_eq!(l.secrets().len(), 3, "the secrets are known for scrubbing");
    assert_eq!(l.desired.objects.len(), 3);
    let alerts: Vec<(String, notify::AlertSpec)> = l.desired.specs(Kind::Alert);
    assert_eq!(alerts[0].1.provider, "ops");
}

#[test]
fn an_alert_naming_an_undeclared_provider_is_refused_naming_both() {
    let e = load_error("a.yaml", ALERT);
    assert!(
        e.contains("alert \"failures\" references provider \"ops\", which no manifest declares"),
        "{e}"
    );
    let e = load_error("p.yaml", &PROVIDER.replace("  url_file: hook.url\n", ""));
    assert!(e.contains("url_file is required"), "{e}");
    let e = load_error("r.yaml", &RECEIVER.replace("github", "gitlab"));
    assert!(e.contains("gitlab"), "{e}");
}

#[test]
fn a_missing_notification_secret_fails_only_when_secrets_are_required() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "r.yaml", RECEIVER);
    assert!(load(d.path(), None, Secrets::Optional).is_ok());
    let e = load(d.path(), None, Secrets::Required)
        .unwrap_err()
        .to_string();
    assert!(e.contains("secret_file"), "{e}");
}
