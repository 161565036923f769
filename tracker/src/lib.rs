//! # landport-tracker
//!
//! The pure heart of Landport. No tokio, no network, no clock reads, no file I/O: the caller
//! passes readings and the current time in, and takes events out.
//!
//! Data flows one way: `Tracker::apply(device, reading, now)` validates ordering (duplicates are
//! dropped, late readings are reported but move nothing), updates the device's live state, tests
//! the position against the tenant's geofences (R-tree of envelopes, then exact tests), runs the
//! shipment rules (departure, arrival, ETA, route corridor, speed, temperature, weight) and
//! returns the events. Things that happen when nothing arrives (offline, dwell, a temperature
//! excursion outlasting its grace period) come from `next_deadline()` / `on_timer(now)`.
//!
//! Layout: `id` (the one rule for ids users choose), `reading` (input), `event` (output envelope and deterministic ids), `geodesy`,
//! `geofence`, `fence_index`, `route`, `positions` (geometry), `shipment`, `eta` and `eta_history`
//! (shipment rules, the ETA model and what it learns), `tracker` (the state machine tying them together), `settings`,
//! `reports` (stops, trips and the cold-chain record over stored history: streaming detectors).

pub mod device;
pub mod error;
pub mod eta;
pub mod eta_history;
pub mod event;
pub mod fence_index;
pub mod geodesy;
pub mod geofence;
pub mod id;
pub mod positions;
pub mod reading;
pub mod reports;
pub mod route;
pub mod settings;
pub mod shipment;
pub mod tracker;

pub use error::TrackerError;
pub use event::{Event, EventType};
pub use geofence::{GeofenceDef, Shape};
pub use id::{Id, IdError, check_id};
pub use reading::{Fix, Reading, TimestampMs};
pub use settings::{EtaSettings, TrackerSettings};
pub use shipment::{Eta, EtaMethod, Place, ShipmentDef, ShipmentState, ShipmentStatus};
pub use tracker::{
    Applied, DeviceSlot, DeviceView, LiveView, ShipmentView, TenantView, Tracker, TrackerSnapshot,
};
