//! Freshness (data contracts): how long a table may go without a
//! successfully imported file, `freshness: {warn_after, error_after}` in
//! `defaults` or a `tables` entry (the entry's replaces the defaults'), and
//! the state a table's age puts it in. Pure.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::table::TableName;

/// `freshness:` as a config writes it: durations such as `26h`, `90m`, `2d`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct FreshnessSpec {
    /// Past this long since the last imported file, the table is `warn`.
    pub warn_after: Option<String>,
    /// Past this long since the last imported file, the table is `error`.
    pub error_after: Option<String>,
}

/// A table's freshness rule, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Freshness {
    /// See [`FreshnessSpec::warn_after`].
    #[serde(with = "humantime_serde_opt")]
    pub warn_after: Option<Duration>,
    /// See [`FreshnessSpec::error_after`].
    #[serde(with = "humantime_serde_opt")]
    pub error_after: Option<Duration>,
}

/// Durations as people write them (`1day 2h`), in JSON and YAML output.
mod humantime_serde_opt {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }
}

/// Where a table stands.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Within `warn_after` (or no rule says otherwise).
    Fresh,
    /// Past `warn_after`.
    Warn,
    /// Past `error_after`.
    Error,
}

impl State {
    /// The word, as the column, the JSON and the metric's help spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Fresh => "fresh",
            State::Warn => "warn",
            State::Error => "error",
        }
    }

    /// The state spelled `s`, if any.
    pub fn parse(s: &str) -> Option<State> {
        [State::Fresh, State::Warn, State::Error]
            .into_iter()
            .find(|st| st.as_str() == s)
    }
}

impl Freshness {
    /// The state of a table whose last file is `age` old.
    pub fn decide(&self, age: Duration) -> State {
        if self.error_after.is_some_and(|e| age > e) {
            State::Error
        } else if self.warn_after.is_some_and(|w| age > w) {
            State::Warn
        } else {
            State::Fresh
        }
    }
}

impl FreshnessSpec {
    /// The rule, or every problem named by its key (`at` is the spec's).
    pub fn parse(&self, at: &str) -> Result<Freshness, Vec<String>> {
        let mut errors = Vec::new();
        let mut one = |v: &Option<String>, key: &str| match v {
            None => None,
            Some(s) => match humantime::parse_duration(s) {
                Ok(d) if d.is_zero() => {
                    errors.push(format!("{at}.{key}: {s:?} must be longer than 0"));
                    None
                }
                Ok(d) => Some(d),
                Err(e) => {
                    errors.push(format!(
                        "{at}.{key}: {s:?} is not a duration (`26h`, `90m`, `2d`): {e}"
                    ));
                    None
                }
            },
        };
        let warn_after = one(&self.warn_after, "warn_after");
        let error_after = one(&self.error_after, "error_after");
        if self.warn_after.is_none() && self.error_after.is_none() {
            errors.push(format!("{at}: needs warn_after, error_after or both"));
        }
        if let (Some(w), Some(e)) = (warn_after, error_after) {
            if w >= e {
                errors.push(format!(
                    "{at}.warn_after: {} is not shorter than error_after ({})",
                    self.warn_after.as_deref().unwrap_or_default(),
                    self.error_after.as_deref().unwrap_or_default()
                ));
            }
        }
        if errors.is_empty() {
            Ok(Freshness {
                warn_after,
                error_after,
            })
        } else {
            Err(errors)
        }
    }
}

/// A table entry as freshness sees it: the table it names, if any, and its
/// own `freshness`, if any.
pub type Entry<'a> = (Option<&'a str>, Option<&'a FreshnessSpec>);

/// The tables a freshness rule watches, as the jobs name them
/// (`schema.table` or `table`), each with its rule: every `tables` entry
/// that names its table, with its own `freshness` or the defaults', and the
/// defaults' `table` with the defaults' rule. A table named by the file (no
/// `table` written) is not watched: no name is known before a file comes.
/// Rules that do not parse are left out (`validate` says why).
pub fn rules<'a>(
    defaults: Option<Entry<'a>>,
    tables: impl Iterator<Item = Entry<'a>>,
) -> Vec<(String, Freshness)> {
    let default_rule = defaults.and_then(|d| d.1);
    let mut rules: Vec<(String, Freshness)> = Vec::new();
    let entries = tables
        .map(|(table, own)| (table, own.or(default_rule)))
        .chain(defaults.map(|(table, _)| (table, default_rule)));
    for (table, rule) in entries {
        let (Some(table), Some(rule)) = (table, rule) else {
            continue;
        };
        let (Ok(name), Ok(rule)) = (TableName::parse(table), rule.parse("freshness")) else {
            continue;
        };
        let name = name.to_string();
        // First entry wins, as for file patterns.
        if !rules.iter().any(|(t, _)| *t == name) {
            rules.push((name, rule));
        }
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(w: Option<&str>, e: Option<&str>) -> FreshnessSpec {
        FreshnessSpec {
            warn_after: w.map(str::to_string),
            error_after: e.map(str::to_string),
        }
    }

    #[test]
    fn age_past_each_bound_decides_the_state() {
        let f = spec(Some("26h"), Some("50h")).parse("f").unwrap();
        let h = |n: u64| Duration::from_secs(n * 3600);
        assert_eq!(f.decide(h(1)), State::Fresh);
        assert_eq!(f.decide(h(26)), State::Fresh, "at the bound is still fresh");
        assert_eq!(f.decide(h(27)), State::Warn);
        assert_eq!(f.decide(h(51)), State::Error);
        let only_error = spec(None, Some("1h")).parse("f").unwrap();
        assert_eq!(only_error.decide(h(2)), State::Error);
    }

    #[test]
    fn a_bad_rule_is_named_by_its_key() {
        let e = spec(Some("soon"), None)
            .parse("defaults.freshness")
            .unwrap_err();
        assert!(
            e[0].starts_with("defaults.freshness.warn_after: \"soon\" is not a duration"),
            "{e:?}"
        );
        let e = spec(Some("2d"), Some("1d")).parse("f").unwrap_err();
        assert_eq!(e, ["f.warn_after: 2d is not shorter than error_after (1d)"]);
        let e = spec(None, None).parse("f").unwrap_err();
        assert_eq!(e, ["f: needs warn_after, error_after or both"]);
        assert!(spec(Some("0s"), None).parse("f").is_err());
    }

    #[test]
    fn tables_take_their_own_rule_or_the_defaults() {
        let config: serde_json::Value = serde_json::json!({
            "defaults": {"freshness": {"warn_after": "1h"}},
            "tables": [
                {"file_pattern": "o*.csv", "table": "sales.orders", "freshness": {"error_after": "2h"}},
                {"file_pattern": "c*.csv", "table": "customers"},
                {"file_pattern": "x*.csv"},
                {"file_pattern": "o2*.csv", "table": "sales.orders", "freshness": {"warn_after": "9h"}},
            ]
        });
        let spec = |v: &serde_json::Value| -> Option<FreshnessSpec> {
            serde_json::from_value(v.get("freshness")?.clone()).ok()
        };
        let table =
            |v: &serde_json::Value| v.get("table").and_then(|t| t.as_str()).map(str::to_string);
        let defaults = (table(&config["defaults"]), spec(&config["defaults"]));
        let tables: Vec<_> = config["tables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (table(t), spec(t)))
            .collect();
        fn entry((t, f): &(Option<String>, Option<FreshnessSpec>)) -> Entry<'_> {
            (t.as_deref(), f.as_ref())
        }
        let rules = rules(Some(entry(&defaults)), tables.iter().map(entry));
        let names: Vec<&str> = rules.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(names, ["sales.orders", "customers"]);
        assert_eq!(rules[0].1.error_after, Some(Duration::from_secs(7200)));
        assert_eq!(rules[0].1.warn_after, None);
        assert_eq!(rules[1].1.warn_after, Some(Duration::from_secs(3600)));
        assert!(super::rules(None, std::iter::empty()).is_empty());
    }
}
