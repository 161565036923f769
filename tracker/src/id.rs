//! The one rule for ids that users and devices choose: tenants, devices, OwnTracks users,
//! geofences, shipments.
//!
//! Tenant and device ids become MQTT topic levels (`landport/{tenant}/{device}/telemetry`),
//! InfluxDB tags and URL path segments, so the rule is the narrowest that is safe in all of
//! them: 1 to 64 characters from `A-Z a-z 0-9 . _ -`, and not `.` or `..`. Topics, the HTTP
//! API and the config file all check ids here, so an id the API accepts is one whose readings
//! ingest accepts too.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest id, in characters (all ASCII, so also bytes).
pub const MAX_ID_CHARS: usize = 64;

/// Why an id was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    #[error("is empty")]
    Empty,
    #[error("holds an MQTT wildcard (+ or #)")]
    Wildcard,
    #[error("holds a non-ASCII character")]
    NonAscii,
    #[error("holds a character outside A-Z a-z 0-9 . _ -")]
    BadCharacter,
    #[error("is longer than 64 characters")]
    TooLong,
    #[error("is . or .., which name directories")]
    DotName,
}

impl IdError {
    /// The reason as a static phrase ("is empty", ...), to follow the id's name in a message.
    pub fn reason(self) -> &'static str {
        match self {
            IdError::Empty => "is empty",
            IdError::Wildcard => "holds an MQTT wildcard (+ or #)",
            IdError::NonAscii => "holds a non-ASCII character",
            IdError::BadCharacter => "holds a character outside A-Z a-z 0-9 . _ -",
            IdError::TooLong => "is longer than 64 characters",
            IdError::DotName => "is . or .., which name directories",
        }
    }
}

/// Checks `id` against the rule (see the module docs).
pub fn check_id(id: &str) -> Result<(), IdError> {
    if id.is_empty() {
        return Err(IdError::Empty);
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(match c {
            '+' | '#' => IdError::Wildcard,
            _ if !c.is_ascii() => IdError::NonAscii,
            _ => IdError::BadCharacter,
        });
    }
    // All ASCII by now: bytes are characters.
    if id.len() > MAX_ID_CHARS {
        return Err(IdError::TooLong);
    }
    if id == "." || id == ".." {
        return Err(IdError::DotName);
    }
    Ok(())
}

/// An id that follows the rule. Deserializing checks it, so a config file or request body
/// holding a bad id fails with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Id(String);

impl Id {
    pub fn new(id: impl Into<String>) -> Result<Id, IdError> {
        let id = id.into();
        check_id(&id)?;
        Ok(Id(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Id {
    type Error = IdError;

    fn try_from(id: String) -> Result<Id, IdError> {
        Id::new(id)
    }
}

impl From<Id> for String {
    fn from(id: Id) -> String {
        id.0
    }
}

impl AsRef<str> for Id {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Id {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_letters_digits_dots_underscores_and_dashes_pass() {
        for ok in ["acme", "truck-17", "cold_room.2", "A", &"x".repeat(64)] {
            assert_eq!(check_id(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn bad_ids_are_refused_with_the_reason() {
        for (bad, why) in [
            ("", IdError::Empty),
            ("a+b", IdError::Wildcard),
            ("a#", IdError::Wildcard),
            ("lkw-müller", IdError::NonAscii),
            ("a/b", IdError::BadCharacter),
            ("a b", IdError::BadCharacter),
            ("a\u{0}", IdError::BadCharacter),
            (&"x".repeat(65), IdError::TooLong),
            (".", IdError::DotName),
            ("..", IdError::DotName),
        ] {
            assert_eq!(check_id(bad), Err(why), "{bad:?}");
            assert_eq!(why.reason(), why.to_string());
        }
    }

    #[test]
    fn deserializing_checks_the_rule() {
        let id: Id = serde_json::from_str("\"truck-1\"").unwrap();
        assert_eq!(id.as_str(), "truck-1");
        let err = serde_json::from_str::<Id>("\"lkw-müller\"").unwrap_err();
        assert!(err.to_string().contains("non-ASCII"), "{err}");
    }
}
