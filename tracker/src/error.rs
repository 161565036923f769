//! The tracker's one error type.

/// What the tracker refuses. Input errors only: the tracker does no I/O.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TrackerError {
    /// A geofence or route geometry is unusable; the message names what is wrong.
    #[error("invalid geometry: {0}")]
    InvalidGeometry(String),
    /// A shipment definition is inconsistent (unknown geofence, bad range, ...).
    #[error("invalid shipment: {0}")]
    InvalidShipment(String),
    /// A snapshot could not be restored.
    #[error("invalid snapshot: {0}")]
    InvalidSnapshot(String),
}
