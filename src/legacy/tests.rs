use super::*;

fn doc(file: &str, yaml: &str) -> LegacyDoc {
    LegacyDoc {
        file: file.into(),
        index: 0,
        of: 1,
        value: serde_yaml::from_str(yaml).unwrap(),
    }
}

fn refs() -> SecretRefs {
    SecretRefs {
        prefix: PathBuf::new(),
        needs_secrets_dir: true,
    }
}

const URL: &str = "postgresql://u:pw-x@h/abc";

fn env(var: &str) -> Option<String> {
    (var == "ABC_URL" || var == "WH_DSN").then(|| format!("{URL}\n"))
}

#[test]
fn names_are_safe() {
    assert_eq!(connection_name("ABC_URL"), "abc_url");
    assert_eq!(connection_name("_X Y"), "env_x_y");
}

#[test]
fn one_connection_per_variable_and_projects_reference_it() {
    let docs = [
        doc("a.yaml", "name: a\ndescription: A\nconnection: {env_var: ABC_URL}\ninbox: /in/a\ndefaults: {primary_key: id}\n"),
        doc("b.json", r#"{"connection": {"env_var": "ABC_URL"}, "inbox": "/in/b"}"#),
        doc("c.yaml", "apiVersion: cpi/v1\nkind: Project\nmetadata: {name: c}\nspec:\n  connection: x\n  config:\n    connection: {env_var: WH_DSN}\n    inbox: /in/c\n"),
    ];
    let out = convert(&docs, env, &refs()).unwrap();
    let files: BTreeMap<_, _> = out.files.manifests.iter().cloned().collect();
    assert_eq!(files.len(), 5);
    assert_eq!(
        files[Path::new("projects/a.yaml")],
        format!("{HEADER}apiVersion: cpi/v1\nkind: Project\nmetadata:\n  name: a\nspec:\n  description: A\n  connection: abc_url\n  config:\n    inbox: /in/a\n    defaults:\n      primary_key: id\n")
    );
    assert!(files[Path::new("projects/b.yaml")].contains("name: b\n"));
    assert!(files[Path::new("projects/c.yaml")].contains("connection: wh_dsn\n"));
    assert!(
        files[Path::new("connections/abc_url.yaml")].contains("database_url_file: abc_url.url\n")
    );
    assert!(files.values().all(|t| !t.contains("pw-x")));
    assert_eq!(out.files.secrets.len(), 2);
    assert_eq!(out.files.secrets[0].1.expose(), URL);
}

#[test]
fn a_missing_variable_fails_everything_and_is_named() {
    let docs = [
        doc("a.yaml", "connection: {env_var: ABC_URL}\n"),
        doc("b.yaml", "connection: {env_var: NOPE_URL}\n"),
    ];
    let e = convert(&docs, env, &refs()).unwrap_err();
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].to_string().contains("NOPE_URL is not set"), "{e:?}");
    assert!(e[0].to_string().contains("project(s) b"), "{e:?}");
}

#[test]
fn bad_input_is_reported_per_file_without_the_url() {
    let docs = [
        doc("a.yaml", "name: a\ninbox: /x\n"),
        doc("b.yaml", "connection: {env_var: ABC_URL}\ninbx: /x\n"),
        doc("c.yaml", "connection: {env_var: BAD}\n"),
    ];
    let e = convert(
        &docs,
        |v| (v == "BAD").then(|| "mysql://u:pw-x@h/x".to_string()),
        &refs(),
    )
    .unwrap_err();
    let all = e
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(all.contains("a.yaml: no `connection.env_var`"), "{all}");
    assert!(
        all.contains("b.yaml: config: unknown field `inbx`"),
        "{all}"
    );
    assert!(
        all.contains("BAD does not hold a postgres:// or postgresql:// URL"),
        "{all}"
    );
    assert!(!all.contains("pw-x"));
}
