//! The truck fleet and warehouse sensor simulator, with fault injection (`landport
//! simulate`, and the fleet of `landport demo`).
//!
//! Trucks drive real roads of Liaoning's steel belt (Anshan, Shenyang, Liaoyang, Yingkou
//! port, Dalian port) back and forth: 60-90 km/h on the expressway, 40 km/h near the ends,
//! accelerating and braking; at each dock they unload and load in steps of several tonnes
//! over a quarter of an hour or so. Reefers keep their cargo near -18 °C; on some trips
//! (every trip of truck-0) the unit fails for 12-20 minutes and the cargo warms past
//! -15 °C for well over 5 minutes. Warehouse sensors publish SenML (cold room `Cel`, floor
//! scale `kg`); drivers' phones publish OwnTracks locations.
//!
//! Layout:
//! - `places`: the places ([`places()`]) and routes (polylines, `(lon, lat)` degrees).
//! - `vehicle`: one truck's motion and cargo, advanced in whole simulated seconds (pure).
//! - `payload`: native, batch, SenML and OwnTracks encoders (pure).
//! - `sim`: [`Simulation`], the pure core: `tick(simulated ms) -> Vec<Message>`, with the
//!   [`Faults`] injected; the same config, seed and times give the same bytes.
//! - `run`: [`run`], the driver publishing a simulation to a broker in real time (QoS 1)
//!   with a progress bar and a [`Summary`]; [`run_with`] adds a [`Scenario`] (scripted
//!   trucks, and history published first as store-and-forward batches) and a [`Login`].
//! - [`scenario`]: the story `landport demo` tells (which truck carries which customer's
//!   shipment, the reefer failure, the breakdown, the hour of history), as pure data.
//!
//! Like the rest of this crate it does not use Landport's own crates (its tests do, to
//! check that what it sends decodes and fires the events it should).

mod payload;
mod places;
mod run;
pub mod scenario;
mod sim;
mod vehicle;

pub use places::{Place, ROUTES, RouteDef, bearing_deg, distance_m, places};
pub use run::{Login, Summary, run, run_with};
pub use sim::{Faults, FleetConfig, HISTORY_STEP_MS, Kind, Message, Scenario, Simulation};
pub use vehicle::{Failure, REEFER_RANGE_C, REEFER_SET_C, Script, Start};

/// Route 0's polyline, `(lon, lat)` degrees, from its origin place to its destination (for
/// a demo's planned shipment route).
pub fn route_polyline(index: usize) -> Vec<(f64, f64)> {
    route_polyline_towards(index, true)
}

/// Route `index`'s polyline, `(lon, lat)` degrees, driven forward (`from` -> `to`) or back.
pub fn route_polyline_towards(index: usize, forward: bool) -> Vec<(f64, f64)> {
    places::Path::of(index, forward).points
}

/// Route `index`'s length along its polyline, metres.
pub fn route_length_m(index: usize) -> f64 {
    places::Path::of(index, true).length_m()
}
