//! Environment overrides: `LANDPORT_SECTION__KEY=value` sets `section.key`.
//!
//! After the `LANDPORT_` prefix, `__` separates path segments; names are case-insensitive
//! (segments are lowercased, so a map key such as an OwnTracks user name set this way is
//! lowercase too). Variables with the prefix but no `__` (such as a future `LANDPORT_CONFIG`)
//! are not overrides and are ignored.
//!
//! The value is read as a TOML value (`42`, `true`, `1.5`, `"text"`, `["a"]`, `{ a = "b" }`),
//! and as a plain string when it is not one (`0.0.0.0:9000`, `info`). A value that reads as a
//! number or boolean but lands on a string field (an all-digit password) is retried as the string
//! it was written as.

use toml::{Table, Value};

use crate::ConfigError;

/// The prefix of override variables, matched case-insensitively.
pub const ENV_PREFIX: &str = "LANDPORT_";

/// One override: where it goes and what it sets.
#[derive(Debug, Clone)]
pub(crate) struct Override {
    /// The variable as it was spelled, for error messages.
    pub(crate) var: String,
    /// Lowercased path segments.
    pub(crate) path: Vec<String>,
    /// The value as written.
    pub(crate) raw: String,
    /// The value to set: `raw` read as TOML, or as a string.
    pub(crate) value: Value,
}

impl Override {
    /// Makes the value the string it was written as. Returns false if it already was one.
    pub(crate) fn fall_back_to_string(&mut self) -> bool {
        if matches!(&self.value, Value::String(s) if *s == self.raw) {
            return false;
        }
        self.value = Value::String(self.raw.clone());
        true
    }
}

/// The overrides among `env`, ordered so that a shorter path is applied before a longer one
/// (`LANDPORT_INGEST__OWNTRACKS_TENANTS={...}` before `..._TENANTS__BOB=...`).
pub(crate) fn collect(
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<Override>, ConfigError> {
    let mut overrides = Vec::new();
    for (var, raw) in env {
        let Some(rest) = strip_prefix_ignore_case(&var, ENV_PREFIX) else {
            continue;
        };
        if !rest.contains("__") {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if path.iter().any(String::is_empty) {
            return Err(ConfigError::Override {
                var,
                path: String::new(),
                reason: "malformed override name: empty segment between '__' separators"
                    .to_string(),
            });
        }
        let value = raw
            .parse::<Value>()
            .unwrap_or_else(|_| Value::String(raw.clone()));
        overrides.push(Override {
            var,
            path,
            raw,
            value,
        });
    }
    overrides.sort_by(|a, b| (a.path.len(), &a.var).cmp(&(b.path.len(), &b.var)));
    Ok(overrides)
}

/// Sets the override's value in `table`, creating tables on the way (so
/// `LANDPORT_INFLUXDB__URL` creates `[influxdb]`).
pub(crate) fn apply(table: &mut Table, o: &Override) -> Result<(), ConfigError> {
    let Some((last, parents)) = o.path.split_last() else {
        return Ok(());
    };
    let mut current = table;
    for (depth, segment) in parents.iter().enumerate() {
        let entry = current
            .entry(segment.clone())
            .or_insert_with(|| Value::Table(Table::new()));
        current = match entry {
            Value::Table(inner) => inner,
            _ => {
                return Err(ConfigError::Override {
                    var: o.var.clone(),
                    path: o.path[..=depth].join("."),
                    reason: "is not a table, so it has no keys to set".to_string(),
                });
            }
        };
    }
    current.insert(last.clone(), o.value.clone());
    Ok(())
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}
