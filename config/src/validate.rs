//! The collector that [`Config::validate`](crate::Config::validate) fills, and small checks
//! shared by the sections (URLs: [`crate::urls`]).

use crate::FieldError;

/// Every problem found so far; validation goes on after the first.
#[derive(Debug, Default)]
pub(crate) struct Problems(Vec<FieldError>);

impl Problems {
    pub(crate) fn push(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            reason: reason.into(),
        });
    }

    /// Records `reason` against `path` unless `ok`.
    pub(crate) fn check(&mut self, ok: bool, path: &str, reason: impl Into<String>) {
        if !ok {
            self.push(path, reason);
        }
    }

    /// `value` must be a finite number greater than zero.
    pub(crate) fn positive(&mut self, value: f64, path: &str) {
        self.check(
            value.is_finite() && value > 0.0,
            path,
            "must be a number greater than 0",
        );
    }

    pub(crate) fn into_vec(self) -> Vec<FieldError> {
        self.0
    }
}
