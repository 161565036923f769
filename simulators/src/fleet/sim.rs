//! The pure core: a fleet of devices, sampled at simulated times, with faults injected.
//! No clock, no I/O: [`Simulation::tick`] turns a simulated time into `(topic, payload)`
//! messages, and the same config, seed and times give the same bytes.

use std::collections::VecDeque;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::payload;
use super::places::{PLACES, ROUTES};
use super::vehicle::{Script, Vehicle};
use crate::loadgen::payload::Fields;

/// Which faults to inject. Each is off by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// GPS noise of a few tens of metres within 2 km of a place (accuracy still claims 5 m).
    pub jitter: bool,
    /// Silence for a few minutes, about once per simulated hour per device; the readings of
    /// the silence are lost (unless `store_and_forward`).
    pub dropout: bool,
    /// Swap a message with the device's next one.
    pub reorder: bool,
    /// Send a message twice.
    pub duplicate: bool,
    /// Truncated JSON or an out-of-range latitude instead of a reading.
    pub malformed: bool,
    /// Dropouts as above, after which the readings of the silence arrive as one native batch
    /// (a JSON array). Implies dropouts.
    pub store_and_forward: bool,
}

impl Faults {
    /// Every fault.
    pub fn all() -> Self {
        Faults {
            jitter: true,
            dropout: true,
            reorder: true,
            duplicate: true,
            malformed: true,
            store_and_forward: true,
        }
    }

    /// Parses `jitter,dropout,reorder,duplicate,malformed,store-and-forward` (any subset;
    /// `all` and `none` too).
    pub fn parse(list: &str) -> anyhow::Result<Self> {
        let mut f = Faults::default();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match name {
                "jitter" => f.jitter = true,
                "dropout" => f.dropout = true,
                "reorder" => f.reorder = true,
                "duplicate" => f.duplicate = true,
                "malformed" => f.malformed = true,
                "store-and-forward" | "store_and_forward" => f.store_and_forward = true,
                "all" => f = Faults::all(),
                "none" => f = Faults::default(),
                other => anyhow::bail!(
                    "unknown fault {other:?} (expected jitter, dropout, reorder, duplicate, \
                     malformed, store-and-forward)"
                ),
            }
        }
        Ok(f)
    }
}

/// What to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetConfig {
    /// Number of devices. Of every 8: 6 trucks (every other one a reefer), 1 warehouse sensor
    /// (SenML), 1 driver's phone (OwnTracks). Device 0 is a reefer on Anshan -> Yingkou port,
    /// starting at the Anshan dock, whose unit fails on every loaded trip.
    pub devices: usize,
    /// Messages per second per device (real time, in [`run`](super::run)).
    pub rate_hz: f64,
    /// How long to publish (real time); `None` = until Ctrl-C.
    pub duration: Option<Duration>,
    /// Seed of everything random: routes, speeds, loads, faults.
    pub seed: u64,
    pub faults: Faults,
    /// Tenant in the `landport/{tenant}/...` topics.
    pub tenant: String,
    /// Simulated seconds per real second (1 = real time; a demo may speed trucks up).
    pub time_scale: f64,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            devices: 16,
            rate_hz: 1.0,
            duration: None,
            seed: 1,
            faults: Faults::default(),
            tenant: "default".into(),
            time_scale: 1.0,
        }
    }
}

/// What a scripted run adds to a [`FleetConfig`]: some trucks following a [`Script`], and a
/// stretch of history the devices stored before going live.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scenario {
    /// `(device index, script)`: the truck at that index follows the script (an index that is
    /// not a truck's is ignored). Scripts' times count from the simulation's start.
    pub scripts: Vec<(usize, Script)>,
    /// How much simulated time to play before going live: the simulation starts this long
    /// before the wall clock, and [`run_with`](super::run_with) publishes what the trucks
    /// recorded in it as store-and-forward batches first.
    pub history: Duration,
    /// Simulated time the live part starts at, epoch ms, when later than the wall clock (a
    /// demo restarted on its own data resumes where its devices' clocks had got to: readings
    /// older than a device's latest are late, and would not move it). `None`: the wall clock.
    pub live_from_ms: Option<i64>,
}

/// Simulated time between two recorded readings of the history, ms.
pub const HISTORY_STEP_MS: i64 = 5_000;

/// What kind of message a [`Message`] is (for the summary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// One native reading on `landport/{tenant}/{device}/telemetry`.
    Native,
    /// A SenML pack on `landport/{tenant}/{device}/senml`.
    Senml,
    /// An OwnTracks location on `owntracks/{user}/{device}`.
    OwnTracks,
    /// Deliberately unreadable or out of range: Landport must reject it.
    Malformed,
    /// A second copy of the previous message.
    Duplicate,
    /// A store-and-forward batch (JSON array of native readings) after a dropout.
    Batch,
}

/// One MQTT message to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    pub kind: Kind,
    /// Device id as Landport sees it (`truck-3`, `sensor-6`, `driver7-phone`).
    pub device: String,
}

/// What a device is.
#[derive(Debug, Clone)]
enum Body {
    Truck(Box<Vehicle>),
    Phone(Box<Vehicle>),
    Sensor {
        place: usize,
        /// Cold-room temperature and floor-scale load.
        temp_c: f64,
        weight_kg: f64,
        last_ms: i64,
    },
}

/// One simulated device and its fault state.
#[derive(Debug, Clone)]
struct Device {
    id: String,
    topic: String,
    body: Body,
    /// Faults and sensor noise: separate from the motion's generator, so the motion does not
    /// depend on how often the device is sampled.
    rng: SmallRng,
    seq: u64,
    /// Silent until then (dropout), epoch ms.
    silent_until_ms: Option<i64>,
    /// Readings kept during a dropout (store-and-forward).
    stored: Vec<Fields>,
    /// A message held back to be sent after the next one (reorder).
    held: Option<Message>,
}

/// Most readings a store-and-forward batch carries (well under the 64 KiB payload limit).
const MAX_BATCH: usize = 200;

/// The fleet. Build it with [`Simulation::new`], then call [`Simulation::tick`] with
/// increasing simulated times.
#[derive(Debug, Clone)]
pub struct Simulation {
    faults: Faults,
    devices: Vec<Device>,
    last_tick_ms: i64,
    /// Messages of the last tick, kept to be handed out (avoids reallocating).
    out: VecDeque<Message>,
}

impl Simulation {
    /// A fleet as `config` says, its clock at `start_ms` (simulated, epoch ms).
    pub fn new(config: &FleetConfig, start_ms: i64) -> Self {
        Simulation::with_scenario(config, &Scenario::default(), start_ms)
    }

    /// As [`Simulation::new`], with the trucks `scenario` scripts following their scripts.
    pub fn with_scenario(config: &FleetConfig, scenario: &Scenario, start_ms: i64) -> Self {
        let mut devices = Vec::with_capacity(config.devices);
        let mut trucks = 0usize;
        for i in 0..config.devices {
            let seed = config
                .seed
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .wrapping_add(i as u64);
            let rng = SmallRng::seed_from_u64(seed ^ 0xF00D);
            let (id, topic, body) = match i % 8 {
                6 => {
                    let place = (i / 8) % PLACES.len();
                    let id = format!("sensor-{i}");
                    let topic = format!("landport/{}/{id}/senml", config.tenant);
                    let body = Body::Sensor {
                        place,
                        temp_c: -20.0,
                        weight_kg: 20_000.0,
                        last_ms: start_ms,
                    };
                    (id, topic, body)
                }
                7 => {
                    let user = format!("driver{i}");
                    let id = format!("{user}-phone");
                    let topic = format!("owntracks/{user}/phone");
                    let v = Vehicle::new(seed, i / 8 + 2, false, false, start_ms);
                    (id, topic, Body::Phone(Box::new(v)))
                }
                _ => {
                    let id = format!("truck-{i}");
                    let topic = format!("landport/{}/{id}/telemetry", config.tenant);
                    let route = trucks % ROUTES.len();
                    let reefer = trucks.is_multiple_of(2);
                    let script = scenario.scripts.iter().find(|(k, _)| *k == i);
                    let v = match script {
                        Some((_, s)) => Vehicle::scripted(seed, s, start_ms),
                        None => Vehicle::new(seed, route, reefer, i == 0, start_ms),
                    };
                    trucks += 1;
                    (id, topic, Body::Truck(Box::new(v)))
                }
            };
            devices.push(Device {
                id,
                topic,
                body,
                rng,
                seq: 0,
                silent_until_ms: None,
                stored: Vec::new(),
                held: None,
            });
        }
        Simulation {
            faults: config.faults,
            devices,
            last_tick_ms: start_ms,
            out: VecDeque::new(),
        }
    }

    /// Device ids, in index order.
    pub fn device_ids(&self) -> impl Iterator<Item = &str> {
        self.devices.iter().map(|d| d.id.as_str())
    }

    /// Advances every device to `now_ms` (simulated epoch ms; times before the last tick
    /// are treated as the last tick) and returns what they send at that moment: one message
    /// per device, give or take the faults.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Message> {
        let now_ms = now_ms.max(self.last_tick_ms);
        let dt_ms = now_ms - self.last_tick_ms;
        self.last_tick_ms = now_ms;
        let faults = self.faults;
        for d in &mut self.devices {
            d.emit(now_ms, dt_ms, faults, &mut self.out);
        }
        self.out.drain(..).collect()
    }

    /// Plays simulated time up to `until_ms` in steps of [`HISTORY_STEP_MS`] and returns what
    /// the trucks recorded meanwhile, as store-and-forward batches (native JSON arrays of at
    /// most 200 readings, oldest first; each device's in time order). Faults are
    /// not injected; sensors and phones advance but send nothing for this stretch.
    pub fn history(&mut self, until_ms: i64) -> Vec<Message> {
        let mut recorded: Vec<Vec<Fields>> = vec![Vec::new(); self.devices.len()];
        let mut t = self.last_tick_ms;
        while t + HISTORY_STEP_MS <= until_ms {
            t += HISTORY_STEP_MS;
            for (d, rec) in self.devices.iter_mut().zip(&mut recorded) {
                d.seq += 1;
                match &mut d.body {
                    Body::Truck(v) => {
                        v.advance_to(t);
                        let pose = v.pose(t);
                        let f = Fields {
                            ts_ms: t,
                            seq: d.seq,
                            lat: pose.lon_lat.1,
                            lon: pose.lon_lat.0,
                            speed_kmh: pose.speed_kmh,
                            heading_deg: pose.heading_deg,
                            accuracy_m: 5.0,
                            temp_c: v.temp_c + d.rng.random_range(-0.2..0.2),
                            weight_kg: v.weight_kg,
                            battery_pct: v.battery_pct,
                        };
                        rec.push(f);
                    }
                    Body::Phone(v) => v.advance_to(t),
                    Body::Sensor { last_ms, .. } => *last_ms = t,
                }
            }
        }
        self.last_tick_ms = self.last_tick_ms.max(t);
        let mut out = Vec::new();
        for (d, rec) in self.devices.iter().zip(recorded) {
            for chunk in rec.chunks(MAX_BATCH) {
                out.push(Message {
                    topic: d.topic.clone(),
                    payload: payload::native_batch(chunk),
                    kind: Kind::Batch,
                    device: d.id.clone(),
                });
            }
        }
        out
    }
}

impl Device {
    fn emit(&mut self, now_ms: i64, dt_ms: i64, faults: Faults, out: &mut VecDeque<Message>) {
        self.seq += 1;
        let (payload, kind, fields) = match &mut self.body {
            Body::Sensor {
                place,
                temp_c,
                weight_kg,
                last_ms,
            } => {
                // The cold room drifts around -20 °C, warmer while its door is open; pallets
                // come and go on the floor scale.
                let dt_s = (now_ms - *last_ms).max(0) as f64 / 1000.0;
                *last_ms = now_ms;
                let door_open = self.rng.random_bool((dt_s / 1_800.0).min(1.0));
                let target = if door_open { -12.0 } else { -20.0 };
                *temp_c += (target - *temp_c) * (1.0 - (-dt_s / 600.0).exp())
                    + self.rng.random_range(-0.1..0.1);
                if self.rng.random_bool((dt_s / 600.0).min(1.0)) {
                    let pallet = self.rng.random_range(500.0..2_000.0_f64).round();
                    let sign = if self.rng.random_bool(0.5) { 1.0 } else { -1.0 };
                    *weight_kg = (*weight_kg + sign * pallet).clamp(0.0, 60_000.0);
                }
                let name = format!("{}-{}", PLACES[*place].id, self.id);
                (
                    payload::senml(&name, now_ms, *temp_c, *weight_kg),
                    Kind::Senml,
                    None,
                )
            }
            Body::Truck(v) | Body::Phone(v) => {
                v.advance_to(now_ms);
                let pose = v.pose(now_ms);
                let (mut lon, mut lat) = pose.lon_lat;
                if faults.jitter && v.nearest_place_m(pose.lon_lat) < 2_000.0 {
                    // Tens of metres of noise, as under a port's cranes.
                    let r_m = self.rng.random_range(0.0..60.0);
                    let a = self.rng.random_range(0.0..std::f64::consts::TAU);
                    lat += r_m * a.cos() / 111_320.0;
                    lon += r_m * a.sin() / (111_320.0 * lat.to_radians().cos());
                }
                let f = Fields {
                    ts_ms: now_ms,
                    seq: self.seq,
                    lat,
                    lon,
                    speed_kmh: pose.speed_kmh,
                    heading_deg: pose.heading_deg,
                    accuracy_m: 5.0,
                    temp_c: v.temp_c + self.rng.random_range(-0.2..0.2),
                    weight_kg: v.weight_kg,
                    battery_pct: v.battery_pct,
                };
                if matches!(self.body, Body::Phone(_)) {
                    (payload::owntracks(&f, "dr"), Kind::OwnTracks, Some(f))
                } else {
                    (payload::native(&f), Kind::Native, Some(f))
                }
            }
        };

        // Dropouts (and store-and-forward) apply to the trucks, which go through tunnels
        // and dead zones; a batch follows the silence.
        let is_truck = matches!(self.body, Body::Truck(_));
        if is_truck && (faults.dropout || faults.store_and_forward) {
            if let Some(until) = self.silent_until_ms {
                if now_ms < until {
                    if faults.store_and_forward && self.stored.len() < MAX_BATCH {
                        self.stored.extend(fields);
                    }
                    return;
                }
                self.silent_until_ms = None;
                if !self.stored.is_empty() {
                    let batch = payload::native_batch(&self.stored);
                    self.stored.clear();
                    self.push(out, batch, Kind::Batch, faults);
                }
            } else if self.rng.random_bool((dt_ms as f64 / 3_600_000.0).min(1.0)) {
                let silence_ms = self.rng.random_range(3..9) * 60_000;
                self.silent_until_ms = Some(now_ms + silence_ms);
                if faults.store_and_forward {
                    self.stored.extend(fields);
                }
                return;
            }
        }

        if faults.malformed && self.rng.random_bool(0.01) {
            let bad = match fields {
                Some(mut f) if self.rng.random_bool(0.5) && kind == Kind::Native => {
                    f.lat = crate::loadgen::payload::MALFORMED_LAT;
                    payload::native(&f)
                }
                _ => payload[..payload.len() / 2].to_vec(),
            };
            self.push(out, bad, Kind::Malformed, faults);
            return;
        }
        self.push(out, payload, kind, faults);
    }

    /// Queues one message, duplicating or holding it back as the faults say.
    fn push(&mut self, out: &mut VecDeque<Message>, payload: Vec<u8>, kind: Kind, faults: Faults) {
        let m = Message {
            topic: self.topic.clone(),
            payload,
            kind,
            device: self.id.clone(),
        };
        let twice = faults.duplicate && kind != Kind::Malformed && self.rng.random_bool(0.02);
        if faults.reorder && self.held.is_none() && self.rng.random_bool(0.02) {
            self.held = Some(m);
            return;
        }
        if twice {
            let mut copy = m.clone();
            copy.kind = Kind::Duplicate;
            out.push_back(m);
            out.push_back(copy);
        } else {
            out.push_back(m);
        }
        if let Some(h) = self.held.take() {
            out.push_back(h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_lists_parse_and_unknown_faults_are_refused() {
        let f = Faults::parse("jitter, store-and-forward").unwrap();
        assert!(f.jitter && f.store_and_forward && !f.dropout && !f.malformed);
        assert_eq!(Faults::parse("").unwrap(), Faults::default());
        assert_eq!(Faults::parse("all").unwrap(), Faults::all());
        assert!(Faults::parse("jitter,lightning").is_err());
    }

    #[test]
    fn every_device_sends_one_message_per_tick_without_faults() {
        let config = FleetConfig {
            devices: 16,
            ..FleetConfig::default()
        };
        let mut sim = Simulation::new(&config, 0);
        for k in 1..100 {
            let out = sim.tick(k * 1_000);
            assert_eq!(out.len(), 16);
        }
        let ids: Vec<_> = sim.device_ids().collect();
        assert_eq!(ids[0], "truck-0");
        assert_eq!(ids[6], "sensor-6");
        assert_eq!(ids[7], "driver7-phone");
    }
}
