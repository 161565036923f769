//! `[log]`: what the service logs and how.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::validate::Problems;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl LogFormat {
    /// The name used in the config file: `"text"` or `"json"`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `[log]` section, for the binary's tracing subscriber.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing-subscriber `EnvFilter` directive (`info`, `landport_ingest=debug,info`);
    /// `RUST_LOG` overrides it. The directive's syntax is checked when the subscriber is built.
    pub level: String,
    /// Line format.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_string(),
            format: LogFormat::Text,
        }
    }
}

impl LogConfig {
    pub(crate) fn validate(&self, p: &mut Problems) {
        p.check(
            !self.level.trim().is_empty(),
            "log.level",
            "must not be empty",
        );
    }
}
