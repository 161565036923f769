//! From TOML text and environment overrides to a [`Config`]: parse the text to a table, apply
//! the overrides by path, then deserialize with `serde_path_to_error` so that an error names the
//! field path. Errors in the file get the file name and line; errors from an override name the
//! variable.

use std::path::Path;

use serde_path_to_error::Segment;
use toml::de::{DeTable, DeValue};
use toml::{Spanned, Table, Value};

use crate::env::{self, Override};
use crate::{Config, ConfigError, SourceLocation};

/// Parses `text` (from `file`, for messages), applies the overrides found in `env`, and
/// deserializes. Does not validate.
pub(crate) fn parse(
    file: Option<&Path>,
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let mut table: Table = toml::from_str(text).map_err(|e| ConfigError::Syntax {
        location: e
            .span()
            .map(|span| SourceLocation::at(file.map(Path::to_path_buf), text, span.start)),
        message: e.message().trim_end().to_string(),
    })?;
    let mut overrides = env::collect(env)?;
    for o in &overrides {
        env::apply(&mut table, o)?;
    }
    loop {
        let error = match serde_path_to_error::deserialize(Value::Table(table.clone())) {
            Ok(config) => return Ok(config),
            Err(error) => error,
        };
        let path = segments(error.path());
        // A value that read as a number or boolean but belongs to a string field: use it as
        // the string it was written as, and try again.
        if let Some(o) = overrides.iter_mut().find(|o| o.path == path)
            && o.fall_back_to_string()
        {
            env::apply(&mut table, o)?;
            continue;
        }
        return Err(field_error(
            file,
            text,
            &overrides,
            path,
            error.inner().message(),
        ));
    }
}

/// The error for a deserialization failure at `path` with serde's `message`.
fn field_error(
    file: Option<&Path>,
    text: &str,
    overrides: &[Override],
    mut path: Vec<String>,
    message: &str,
) -> ConfigError {
    let mut unknown_key = false;
    let reason = match unknown_field(message) {
        Some((key, rest)) => {
            unknown_key = true;
            if path.last().map(String::as_str) != Some(key) {
                path.push(key.to_string());
            }
            format!("unknown key{rest}")
        }
        None => message.to_string(),
    };
    let dotted = path.join(".");
    if let Some(o) = overrides
        .iter()
        .rev()
        .find(|o| o.path.starts_with(&path) || path.starts_with(&o.path))
    {
        return ConfigError::Override {
            var: o.var.clone(),
            path: dotted,
            reason,
        };
    }
    let location = locate(text, &path, unknown_key)
        .map(|offset| SourceLocation::at(file.map(Path::to_path_buf), text, offset));
    ConfigError::Field {
        location,
        path: dotted,
        reason,
    }
}

/// Splits serde's "unknown field `lisen`, expected `listen`" into the key and the rest.
fn unknown_field(message: &str) -> Option<(&str, &str)> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split_once('`')
}

fn segments(path: &serde_path_to_error::Path) -> Vec<String> {
    path.iter()
        .filter_map(|segment| match segment {
            Segment::Map { key } => Some(key.clone()),
            Segment::Seq { index } => Some(index.to_string()),
            Segment::Enum { .. } | Segment::Unknown => None,
        })
        .collect()
}

/// Byte offset in `text` of the key at `path` (when `at_key`) or of its value.
fn locate(text: &str, path: &[String], at_key: bool) -> Option<usize> {
    let root = DeTable::parse(text).ok()?;
    let mut table: &DeTable<'_> = root.get_ref();
    let (last, parents) = path.split_last()?;
    for segment in parents {
        let (_, value) = entry(table, segment)?;
        table = match value.get_ref() {
            DeValue::Table(inner) => inner,
            _ => return Some(value.span().start),
        };
    }
    let (key, value) = entry(table, last)?;
    Some(if at_key {
        key.span().start
    } else {
        value.span().start
    })
}

type Entry<'a, 'i> = (
    &'a Spanned<std::borrow::Cow<'i, str>>,
    &'a Spanned<DeValue<'i>>,
);

fn entry<'a, 'i>(table: &'a DeTable<'i>, key: &str) -> Option<Entry<'a, 'i>> {
    table.iter().find(|(k, _)| k.get_ref().as_ref() == key)
}
