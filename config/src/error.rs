//! [`ConfigError`]: everything that can go wrong between a config file and a valid [`Config`].
//!
//! Every message starts with the dotted path of the field at fault (`http.listen: ...`), so an
//! operator can find the line to fix; errors from the file itself are prefixed with the file name
//! and line, errors from an environment override name the variable.
//!
//! [`Config`]: crate::Config

use std::fmt;
use std::path::PathBuf;

/// Why a config could not be loaded, or is not valid.
///
/// `Display` renders `field.path: reason`, prefixed by `file:line:` where the problem is in the
/// file. [`ConfigError::Invalid`] carries every validation problem at once; print them one per
/// line with [`ConfigError::problems`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("{}: cannot read config file: {source}", path.display())]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },

    /// The file is not valid TOML.
    #[error("{}invalid TOML: {message}", prefix(location.as_ref()))]
    Syntax {
        /// Where in the file, when known.
        location: Option<SourceLocation>,
        /// What the TOML parser said.
        message: String,
    },

    /// A key in the file is unknown, or its value has the wrong type or form.
    #[error("{}{path}: {reason}", prefix(location.as_ref()))]
    Field {
        /// Where in the file, when known.
        location: Option<SourceLocation>,
        /// Dotted field path, such as `http.listen`.
        path: String,
        /// What is wrong with it.
        reason: String,
    },

    /// An environment override (`LANDPORT_SECTION__KEY=value`) names an unknown key or sets a
    /// value of the wrong type.
    #[error("{}{reason} (set by environment variable {var})", path_prefix(path))]
    Override {
        /// The environment variable, as it was spelled.
        var: String,
        /// Dotted field path it resolves to (empty if the name itself is malformed).
        path: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The config parsed but breaks one or more rules; every problem found is listed.
    #[error("{}", join(.0))]
    Invalid(Vec<FieldError>),
}

impl ConfigError {
    /// Each problem as a `field.path: reason` line: one for most errors, one per broken rule
    /// for [`ConfigError::Invalid`].
    pub fn problems(&self) -> Vec<String> {
        match self {
            ConfigError::Invalid(problems) => problems.iter().map(ToString::to_string).collect(),
            other => vec![other.to_string()],
        }
    }
}

/// One broken validation rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted field path, such as `storage.retention_days`.
    pub path: String,
    /// What is wrong, such as `must be at least 1`.
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

/// A position in a config file. Lines and columns count from 1; the column counts characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLocation {
    /// The file, when the text came from one.
    pub file: Option<PathBuf>,
    /// Line number, from 1.
    pub line: usize,
    /// Column number (characters), from 1.
    pub column: usize,
}

impl SourceLocation {
    /// The location of byte offset `offset` in `text`.
    pub(crate) fn at(file: Option<PathBuf>, text: &str, offset: usize) -> SourceLocation {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        SourceLocation { file, line, column }
    }
}

impl fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{}:{}:{}", file.display(), self.line, self.column),
            None => write!(f, "line {}, column {}", self.line, self.column),
        }
    }
}

fn prefix(location: Option<&SourceLocation>) -> String {
    location.map_or_else(String::new, |l| format!("{l}: "))
}

fn path_prefix(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    }
}

fn join(problems: &[FieldError]) -> String {
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    lines.join("; ")
}
