use super::*;

fn spec(yaml: &str) -> CheckSpec {
    serde_yaml::from_str(yaml).expect("a check")
}

#[test]
fn thresholds_parse_counts_and_fractions() {
    assert_eq!(Threshold::parse("> 0"), Some(Threshold::Count(0)));
    assert_eq!(Threshold::parse(">5"), Some(Threshold::Count(5)));
    assert_eq!(Threshold::parse("> 1%"), Some(Threshold::Percent(1.0)));
    assert_eq!(Threshold::parse(" > 0.5 % "), Some(Threshold::Percent(0.5)));
    for bad in ["0", ">= 1", "> -1", "> 101%", "> x", ">"] {
        assert_eq!(Threshold::parse(bad), None, "{bad}");
    }
    assert!(Threshold::Count(0).exceeded(1, 10));
    assert!(!Threshold::Count(1).exceeded(1, 10));
    assert!(Threshold::Percent(10.0).exceeded(2, 10));
    assert!(!Threshold::Percent(10.0).exceeded(1, 10));
    assert!(!Threshold::Percent(0.0).exceeded(0, 0));
}

#[test]
fn decisions_follow_severity_then_thresholds() {
    let mut c = spec("{check: not_null, columns: id, error_if: '> 10%', warn_if: '> 0'}")
        .parse("t")
        .unwrap();
    assert_eq!(c.decide(0, 100), Outcome::Pass);
    assert_eq!(c.decide(5, 100), Outcome::Warn);
    assert_eq!(c.decide(11, 100), Outcome::Error);
    c.severity = Severity::Warn;
    assert_eq!(c.decide(50, 100), Outcome::Warn);
}

#[test]
fn every_kind_parses_with_its_fields() {
    for y in [
        "{check: row_count, min: 1, max: 10}",
        "{check: not_null, columns: [a, b]}",
        "{check: unique, columns: id, scope: table}",
        "{check: accepted_values, column: s, values: [a, b]}",
        "{check: range, column: n, min: 0, max: '2024-01-01'}",
        "{check: matches, column: e, pattern: '^.+@.+$'}",
        "{check: max_length, column: e, max: 20}",
        "{check: relationship, column: c, to: public.customers.id}",
        "{check: expression, name: pos, sql: \"amount >= 0 OR status = 'refund'\"}",
    ] {
        spec(y).parse("t").unwrap_or_else(|e| panic!("{y}: {e:?}"));
    }
    let r = spec("{check: relationship, column: c, to: s.cust.id}")
        .parse("t")
        .unwrap();
    assert_eq!(r.name, "relationship(c)");
    let Rule::Relationship {
        table, to_column, ..
    } = r.rule
    else {
        panic!()
    };
    assert_eq!(
        (table.to_string(), to_column.as_str()),
        ("s.cust".into(), "id")
    );
}

#[test]
fn problems_are_named_by_key() {
    let e = spec("{check: range, columns: a}")
        .parse("tables.t.checks[0]")
        .unwrap_err();
    assert!(
        e.iter()
            .any(|m| m == "tables.t.checks[0].columns: check range takes no `columns`"),
        "{e:?}"
    );
    assert!(e.iter().any(|m| m.contains("needs `column`")), "{e:?}");
    let e = spec("{check: not_null, columns: a, warn_if: '>= 1'}")
        .parse("d")
        .unwrap_err();
    assert!(e[0].starts_with("d.warn_if: \">= 1\""), "{e:?}");
    assert!(serde_yaml::from_str::<CheckSpec>("{check: nope}").is_err());
    assert!(serde_yaml::from_str::<CheckSpec>("{check: unique, columns: a, colour: b}").is_err());
}

#[test]
fn an_expression_cannot_be_a_statement() {
    for bad in [
        "true; DROP TABLE t",
        "a > 0) OR (true",
        "(select count(*) from pg_user) > 0",
        "a > 0 -- x",
        "a /* */ > 0",
        "$$x$$ = a",
        "a = 'x",
        "exists (SELECT 1)",
        "a > 0 union all",
        "",
    ] {
        assert!(expression_problem(bad).is_some(), "{bad:?}");
    }
    for good in [
        "amount >= 0 OR status = 'refund'",
        "\"Weird; name\" > 0",
        "status IN ('a;b', 'select')",
        "coalesce(a, 0) between 0 and 10",
        "length(name) < 20 AND (x IS NULL OR x <> 'it''s')",
    ] {
        assert_eq!(expression_problem(good), None, "{good:?}");
    }
}
