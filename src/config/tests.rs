use super::*;

#[test]
fn numbers_round_trip_as_written() {
    for text in ["settle_seconds: 2\n", "settle_seconds: 2.5\n"] {
        let c: ProjectConfig = serde_yaml::from_str(text).unwrap();
        assert_eq!(serde_yaml::to_string(&c).unwrap(), text);
    }
    let c: ProjectConfig = serde_yaml::from_str("settle_seconds: 2\n").unwrap();
    assert_eq!(
        serde_json::to_value(&c).unwrap(),
        serde_json::json!({"settle_seconds": 2})
    );
    assert_eq!(c.settle(), Some(std::time::Duration::from_secs(2)));
}

fn cfg(yaml: &str) -> ProjectConfig {
    serde_yaml::from_str(yaml).unwrap()
}

#[test]
fn first_matching_table_entry_wins_over_defaults() {
    let c = cfg(r#"
inbox: /tmp/in
defaults: { primary_key: id, delimiter: ";" }
tables:
  - { file_pattern: "orders_*.csv", table: sales.orders, primary_key: [order_id], mode: upsert }
  - { file_pattern: "orders_*.csv", table: never }
"#);
    assert!(c.validate().is_empty(), "{:?}", c.validate());
    let o = c.options_for("orders_07.csv").unwrap();
    assert_eq!(o.table.quoted(), "\"sales\".\"orders\"");
    assert_eq!(o.primary_key, vec!["order_id"]);
    assert_eq!(o.delimiter, b';');
    let d = c.options_for("Customers 2024.csv").unwrap();
    assert_eq!(d.table.name, "customers_2024");
    assert_eq!(d.mode, Mode::Upsert);
    assert!(c.options_for("notes.txt").is_none());
}

#[test]
fn defaults_without_key_append() {
    let c = cfg("inbox: /x");
    let z = c.options_for("Sales 2024.csv.zst").unwrap();
    assert_eq!(z.table.name, "sales_2024");
    let o = c.options_for("a.csv.gz").unwrap();
    assert_eq!(o.mode, Mode::Append);
    assert_eq!(o.table.name, "a");
    assert_eq!(o.null, vec![String::new()]);
}

#[test]
fn upsert_without_key_is_an_error() {
    let c = cfg("tables: [{ file_pattern: '*.csv', mode: sync }]");
    assert_eq!(
        c.validate(),
        vec!["tables[0].primary_key: mode sync needs a primary_key"]
    );
    let c = cfg("defaults: { delimiter: ';;', table: 'a.b.c' }");
    let e = c.validate();
    assert_eq!(e.len(), 2, "{e:?}");
}

#[test]
fn extra_columns_add_misuse() {
    let c = cfg("defaults: { extra_columns: add }\ntables: [{ table: t, header: false }]");
    assert_eq!(
        c.validate(),
        vec!["tables[0]: extra_columns: add needs a header (header: false gives the new columns no names)"]
    );
    assert_eq!(
        cfg("defaults: { extra_columns: add }")
            .options_for("a.csv")
            .unwrap()
            .extra_columns,
        ExtraColumns::Add
    );
    // `add` is for the file's columns only; the error lists what is allowed.
    for (yaml, allowed) in [
        (
            "defaults: { missing_columns: add }",
            "expected `error` or `ignore`",
        ),
        (
            "defaults: { extra_columns: adds }",
            "expected one of `error`, `ignore`, `add`",
        ),
    ] {
        let e = serde_yaml::from_str::<ProjectConfig>(yaml).unwrap_err();
        assert!(e.to_string().contains(allowed), "{yaml}: {e}");
    }
}

#[test]
fn value_options_say_what_is_wrong() {
    let c = cfg(r##"
defaults: { decimal_separator: ";", thousands_separator: "#", date_format: "%Q", true_values: [ja, ""], false_values: [JA] }
tables:
  - { date_format: { booked: "dd.mm.yyyy" }, timestamp_format: "", decimal_separator: ",", thousands_separator: "," }
"##);
    assert_eq!(
        c.validate(),
        vec![
            "defaults.date_format: \"%Q\" is not a valid strftime-like format (see chrono's strftime)",
            "defaults.decimal_separator: \";\" must be \".\" or \",\"",
            "defaults.thousands_separator: \"#\" must be one of \".\", \",\", \" \", \"'\" or \"_\"",
            "defaults: true_values/false_values: the empty value is NULL (see `null`)",
            "defaults: \"ja\" is in both true_values and false_values",
            "tables[0].date_format: \"dd.mm.yyyy\" has no % field",
            "tables[0].timestamp_format: \"\" is empty",
            "tables[0].thousands_separator: \",\" is also the decimal_separator",
        ]
    );
    assert!(serde_yaml::from_str::<ProjectConfig>("defaults: { date_order: DDMMYY }").is_err());
    let o = cfg("defaults: { date_order: DMY, decimal_separator: ',', thousands_separator: '.' }")
        .options_for("a.csv")
        .unwrap();
    assert_eq!(
        (o.date_order, o.decimal_separator, o.thousands_separator),
        (DateOrder::Dmy, b',', Some(b'.'))
    );
}

#[test]
fn unknown_keys_are_rejected() {
    assert!(serde_yaml::from_str::<ProjectConfig>("inbox: x\nmodee: upsert").is_err());
    assert!(serde_yaml::from_str::<ProjectConfig>("defaults: { modee: upsert }").is_err());
}

#[test]
fn identifiers_are_quoted() {
    assert_eq!(
        quote_ident("id\"; DROP TABLE x; --"),
        "\"id\"\"; DROP TABLE x; --\""
    );
    assert_eq!(table_from_file_name("2024.csv"), "_2024");
}

#[test]
fn checks_are_validated_and_add_up() {
    let c = cfg(r##"
defaults:
  checks:
    - { check: row_count, min: 1 }
tables:
  - file_pattern: "a*.csv"
    checks:
      - { check: expression, name: bad, sql: "1 = 1; DROP TABLE t" }
      - { check: unique, columns: id, warn_if: "> x" }
  - file_pattern: "b*.csv"
    checks:
      - { check: not_null, columns: id, severity: warn }
"##);
    assert_eq!(
        c.validate(),
        vec![
            "tables[0].checks[0].sql: \"1 = 1; DROP TABLE t\" holds a `;` (one expression, not statements)",
            "tables[0].checks[1].warn_if: \"> x\" is not a threshold (`> 0` rows or `> 1%` of the rows)",
        ]
    );
    let names: Vec<String> = c
        .options_for("b1.csv")
        .unwrap()
        .checks
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["row_count", "not_null(id)"]);
}

#[test]
fn limits_merge_key_by_key_and_refuse_nonsense() {
    let c = cfg(r#"
defaults: { limits: { max_record_bytes: 1000, max_compression_ratio: 7 } }
tables:
  - { file_pattern: "a*.csv", limits: { max_field_bytes: 10 } }
  - { file_pattern: "z*.csv", limits: { max_record_bytes: 0, max_header_columns: 1601 } }
"#);
    assert_eq!(
        c.validate(),
        vec![
            "tables[1].limits.max_record_bytes: must be at least 1",
            "tables[1].limits.max_header_columns: at most 1600 (PostgreSQL's most columns of a table)",
        ]
    );
    let l = c.options_for("a.csv").unwrap().limits;
    assert_eq!(
        (
            l.max_record_bytes,
            l.max_field_bytes,
            l.max_compression_ratio
        ),
        (1000, 10, 7)
    );
    assert_eq!(l.max_header_columns, 1600);
    assert_eq!(
        cfg("inbox: /x").options_for("b.csv").unwrap().limits,
        crate::config::Limits::default()
    );
    assert!(
        serde_yaml::from_str::<ProjectConfig>("defaults: { limits: { max_rows: 1 } }").is_err()
    );
}
