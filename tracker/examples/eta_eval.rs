//! ETA evaluation (SPEC section 17), run by `scripts/eta-eval`: replays real trajectories
//! through the real, pure [`Tracker`] and compares its ETAs with two naive rules.
//!
//! Input: CSV files `trip,device,ts_s,lon,lat` (one data set each, sorted by trip then time).
//! For every usable trip it defines a shipment on the trip's device with origin = the first
//! position, destination = the last position (the tracker's 300 m place radius), and planned
//! route = the real path simplified to ~100 m. All readings of a data set (kept trips or not)
//! are applied in time order to one tracker, so whatever it learns comes from the past only.
//! At 25, 50 and 75 % of each trip's time (departure -> real arrival) the shipment's ETA is
//! read and compared with the real arrival, beside:
//!
//! - direct: straight-line distance to the destination / current speed;
//! - route/mean: remaining route / mean speed since departure.
//!
//! The real arrival is the first reading within 300 m of the trip's end after which the
//! vehicle stays within 1 km of it (it may drift in and out of the circle at its berth);
//! departure the first reading more than 300 m from its start. Trips that start in
//! the last 40 % of a data set's time span are the held-out part: nothing was tuned on them.
//!
//! Relative error = |predicted - real arrival| / (real arrival - query time).
//!
//! Not a baseline but a diagnosis, "stops known": remaining route at the speed moved so far
//! (stops left out) plus the time the vehicle will really stand still before arriving (it
//! reads the future). How far it beats the rest shows how much of the error is the stops
//! to come.

use std::collections::HashMap;
use std::error::Error;

use landport_tracker::geodesy::distance_m;
use landport_tracker::route::Route;
use landport_tracker::{
    Fix, Place, Reading, ShipmentDef, ShipmentStatus, TimestampMs, Tracker, TrackerSettings,
};

const TENANT: &str = "eval";
/// Place radius of origin and destination, metres (the tracker's default).
const RADIUS_M: f64 = 300.0;
/// Once inside the radius, a vehicle that stays this close to its end has arrived, metres.
const SETTLED_M: f64 = 1_000.0;
/// Douglas-Peucker tolerance of the planned route, metres.
const SIMPLIFY_M: f64 = 100.0;
const FRACTIONS: [f64; 3] = [0.25, 0.5, 0.75];
/// Share of a data set's time span used for tuning; trips departing later are held out.
const TUNE_SHARE: f64 = 0.6;
/// Below this between two fixes the vehicle stood still (the diagnosis), m/s.
const STOPPED_MPS: f64 = 1.0;
/// Speed floor of the direct baseline, m/s (so a stopped vehicle gets a finite estimate).
const BASELINE_MIN_MPS: f64 = 5.0 / 3.6;

#[derive(Debug, Clone, Copy)]
struct Pt {
    ts_ms: TimestampMs,
    lon: f64,
    lat: f64,
}

struct Trip {
    id: String,
    device: String,
    pts: Vec<Pt>,
}

/// A trip fit for evaluation, with its query points.
struct Case {
    trip: usize,
    depart: usize,
    arrive: usize,
    queries: Vec<(usize, usize)>, // (fraction index, point index)
    route: Route,
    held_out: bool,
}

#[derive(Default)]
struct Errors {
    direct: Vec<f64>,
    route_mean: Vec<f64>,
    landport: Vec<f64>,
    stops_known: Vec<f64>,
    covered: usize,
    early_arrivals: usize,
    by_fraction: [Vec<f64>; 3],
    cover_by_fraction: [usize; 3],
}

fn main() -> Result<(), Box<dyn Error>> {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        return Err("usage: eta_eval FILE.csv...".into());
    }
    println!(
        "{:<14} {:<9} {:>5} {:>6} | {:>13} | {:>13} | {:>13} {:>6} {:>5} | {:>11} | {:>18}",
        "data set",
        "part",
        "trips",
        "asks",
        "direct med/p90",
        "route/mean",
        "landport",
        "cover",
        "ratio",
        "stops known",
        "landport 25/50/75%"
    );
    for f in &files {
        let name = std::path::Path::new(f)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or(f)
            .to_owned();
        let trips = read_trips(f)?;
        let (tune, held) = evaluate(&trips);
        for (part, e, n) in [("tuning", &tune.0, tune.1), ("held-out", &held.0, held.1)] {
            print_row(&name, part, n, e);
        }
    }
    Ok(())
}

fn print_row(name: &str, part: &str, trips: usize, e: &Errors) {
    let mp = |v: &[f64]| format!("{:.2} / {:.2}", quantile(v, 0.5), quantile(v, 0.9));
    let n = e.landport.len().max(1) as f64;
    let by: Vec<String> = (0..3)
        .map(|i| format!("{:.2}", quantile(&e.by_fraction[i], 0.5),))
        .collect();
    let cov: Vec<String> = (0..3)
        .map(|i| {
            let k = e.by_fraction[i].len().max(1) as f64;
            format!("{:.0}", 100.0 * e.cover_by_fraction[i] as f64 / k)
        })
        .collect();
    // Landport's median error over the better baseline's (the target is <= 0.7).
    let better = quantile(&e.direct, 0.5).min(quantile(&e.route_mean, 0.5));
    println!(
        "{:<14} {:<9} {:>5} {:>6} | {:>13} | {:>13} | {:>13} {:>5.1}% {:>5.2} | {:>11.2} | {} (cover {} %){}",
        name,
        part,
        trips,
        e.landport.len(),
        mp(&e.direct),
        mp(&e.route_mean),
        mp(&e.landport),
        100.0 * e.covered as f64 / n,
        quantile(&e.landport, 0.5) / better,
        quantile(&e.stops_known, 0.5),
        by.join("/"),
        cov.join("/"),
        if e.early_arrivals > 0 {
            format!("; {} asks after a wrong arrival", e.early_arrivals)
        } else {
            String::new()
        }
    );
}

fn read_trips(path: &str) -> Result<Vec<Trip>, Box<dyn Error>> {
    let text = std::fs::read_to_string(path)?;
    let mut trips: Vec<Trip> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() < 5 {
            continue;
        }
        let (Ok(ts), Ok(lon), Ok(lat)) = (
            f[2].parse::<i64>(),
            f[3].parse::<f64>(),
            f[4].parse::<f64>(),
        ) else {
            continue;
        };
        if !(lon.abs() <= 180.0 && lat.abs() <= 90.0) {
            continue;
        }
        let i = *index.entry(f[0].to_owned()).or_insert_with(|| {
            trips.push(Trip {
                id: f[0].to_owned(),
                device: f[1].to_owned(),
                pts: Vec::new(),
            });
            trips.len() - 1
        });
        let pts = &mut trips[i].pts;
        let p = Pt {
            ts_ms: ts * 1000,
            lon,
            lat,
        };
        // Drop repeated times and jumps no vessel or truck makes (> 70 m/s).
        if let Some(q) = pts.last() {
            let dt = (p.ts_ms - q.ts_ms) as f64 / 1000.0;
            if dt <= 0.0 || distance_m((q.lon, q.lat), (p.lon, p.lat)) / dt > 70.0 {
                continue;
            }
        }
        pts.push(p);
    }
    Ok(trips)
}

/// The case a trip makes, if it is a real journey: long enough, leaving its start and ending
/// away from it.
fn case_of(i: usize, t: &Trip, split_ms: TimestampMs) -> Option<Case> {
    let pts = &t.pts;
    if pts.len() < 10 {
        return None;
    }
    let start = (pts[0].lon, pts[0].lat);
    let end = pts.last().map(|p| (p.lon, p.lat))?;
    if distance_m(start, end) < 2_000.0 {
        return None;
    }
    let depart = pts
        .iter()
        .position(|p| distance_m(start, (p.lon, p.lat)) > RADIUS_M)?;
    // The first reading within the radius after which the vehicle stays within
    // SETTLED_M of the end (it may drift in and out of the circle at its berth).
    let mut arrive = pts.len() - 1;
    let mut settled = pts.len() - 1;
    while settled > 0 && distance_m(end, (pts[settled - 1].lon, pts[settled - 1].lat)) <= SETTLED_M
    {
        settled -= 1;
    }
    if let Some(i) =
        (settled..pts.len()).find(|&i| distance_m(end, (pts[i].lon, pts[i].lat)) <= RADIUS_M)
    {
        arrive = i;
    }
    if arrive <= depart + 4 {
        return None;
    }
    let (t0, t1) = (pts[depart].ts_ms, pts[arrive].ts_ms);
    if t1 - t0 < 15 * 60_000 {
        return None;
    }
    let mut queries = Vec::new();
    for (k, f) in FRACTIONS.iter().enumerate() {
        let tq = t0 + ((t1 - t0) as f64 * f) as i64;
        let q = pts[..arrive].iter().rposition(|p| p.ts_ms <= tq)?;
        if q >= depart {
            queries.push((k, q));
        }
    }
    let line = simplify(pts, SIMPLIFY_M);
    let route = Route::new(line).ok()?;
    Some(Case {
        trip: i,
        depart,
        arrive,
        queries,
        route,
        held_out: t0 >= split_ms,
    })
}

type Part = (Errors, usize);

fn evaluate(trips: &[Trip]) -> (Part, Part) {
    let t_min = trips
        .iter()
        .filter_map(|t| t.pts.first())
        .map(|p| p.ts_ms)
        .min();
    let t_max = trips
        .iter()
        .filter_map(|t| t.pts.last())
        .map(|p| p.ts_ms)
        .max();
    let (Some(t_min), Some(t_max)) = (t_min, t_max) else {
        return Default::default();
    };
    let split_ms = t_min + ((t_max - t_min) as f64 * TUNE_SHARE) as i64;
    let cases: Vec<Case> = trips
        .iter()
        .enumerate()
        .filter_map(|(i, t)| case_of(i, t, split_ms))
        .collect();
    let case_of_trip: HashMap<usize, usize> =
        cases.iter().enumerate().map(|(c, k)| (k.trip, c)).collect();
    // Every reading of the data set, in time order.
    let mut order: Vec<(TimestampMs, usize, usize)> = trips
        .iter()
        .enumerate()
        .flat_map(|(i, t)| t.pts.iter().enumerate().map(move |(j, p)| (p.ts_ms, i, j)))
        .collect();
    order.sort_unstable();

    let mut tr = Tracker::new(TrackerSettings::default());
    let mut out = Vec::new();
    let mut current: HashMap<String, String> = HashMap::new(); // device -> shipment id
    let mut tune = (Errors::default(), 0);
    let mut held = (Errors::default(), 0);
    for c in &cases {
        if c.held_out { &mut held } else { &mut tune }.1 += 1;
    }
    for (ts, i, j) in order {
        let t = &trips[i];
        let case = case_of_trip.get(&i).map(|&c| &cases[c]);
        if j == 0 {
            if let Some(old) = current.remove(&t.device) {
                tr.remove_shipment(TENANT, &old);
            }
            if let Some(c) = case {
                let first = t.pts[0];
                let last = t.pts[t.pts.len() - 1];
                let def = ShipmentDef {
                    id: format!("S-{}", t.id),
                    device: t.device.clone(),
                    reference: None,
                    origin: Some(Place::Point {
                        lon: first.lon,
                        lat: first.lat,
                    }),
                    destination: Place::Point {
                        lon: last.lon,
                        lat: last.lat,
                    },
                    route: Some(c.route.line().clone()),
                    route_corridor_m: None,
                    deadline_ms: None,
                    temp_range_c: None,
                    max_speed_kmh: None,
                };
                tr.upsert_shipment(TENANT, def.clone())
                    .expect("a valid shipment");
                current.insert(t.device.clone(), def.id);
            }
        }
        let p = t.pts[j];
        let slot = tr.device_slot(TENANT, &t.device);
        let reading = Reading {
            fix: Some(Fix {
                lat: p.lat,
                lon: p.lon,
                speed_kmh: None,
                heading_deg: None,
                accuracy_m: None,
            }),
            ..Reading::at(ts)
        };
        out.clear();
        tr.apply(slot, &reading, ts, &mut out);
        let Some(c) = case else { continue };
        for &(k, q) in &c.queries {
            if q != j {
                continue;
            }
            let sid = format!("S-{}", t.id);
            let real = t.pts[c.arrive].ts_ms;
            let to_go = (real - p.ts_ms).max(1) as f64;
            let err = |pred_ms: f64| (pred_ms - real as f64).abs() / to_go;
            let part = if c.held_out { &mut held.0 } else { &mut tune.0 };
            // Baseline 1: straight line / current speed.
            let end = t.pts[t.pts.len() - 1];
            let prev = t.pts[j - 1];
            let dt = (p.ts_ms - prev.ts_ms) as f64 / 1000.0;
            let v = (distance_m((prev.lon, prev.lat), (p.lon, p.lat)) / dt).max(BASELINE_MIN_MPS);
            let direct = distance_m((p.lon, p.lat), (end.lon, end.lat)) / v;
            part.direct.push(err(p.ts_ms as f64 + direct * 1000.0));
            // Baseline 2: remaining route / mean speed since departure.
            let travelled: f64 = t.pts[c.depart..=j]
                .windows(2)
                .map(|w| distance_m((w[0].lon, w[0].lat), (w[1].lon, w[1].lat)))
                .sum();
            let elapsed = (p.ts_ms - t.pts[c.depart].ts_ms).max(1) as f64 / 1000.0;
            let mean = (travelled / elapsed).max(BASELINE_MIN_MPS);
            let along = c.route.project(p.lon, p.lat).along_m;
            let rest = (c.route.length_m() - along).max(0.0);
            part.route_mean
                .push(err(p.ts_ms as f64 + rest / mean * 1000.0));
            // Diagnosis: the same at the speed moved so far, plus the real stops to come.
            let stood = |w: &[Pt]| {
                let dt = (w[1].ts_ms - w[0].ts_ms) as f64 / 1000.0;
                let d = distance_m((w[0].lon, w[0].lat), (w[1].lon, w[1].lat));
                if d < STOPPED_MPS * dt { dt } else { 0.0 }
            };
            let stood_so_far: f64 = t.pts[c.depart..=j].windows(2).map(stood).sum();
            let stops_to_come: f64 = t.pts[j..=c.arrive].windows(2).map(stood).sum();
            let moving = (travelled / (elapsed - stood_so_far).max(1.0)).max(BASELINE_MIN_MPS);
            part.stops_known.push(err(
                p.ts_ms as f64 + (rest / moving + stops_to_come) * 1000.0
            ));
            // Landport.
            let (e, covered) = match tr.shipment_eta(TENANT, &sid) {
                Some(eta) => (
                    err(eta.eta_ms as f64),
                    eta.p10_ms <= real && real <= eta.p90_ms,
                ),
                None => {
                    // Marked arrived (or lost): the tracker says "now".
                    if tr
                        .shipment(TENANT, &sid)
                        .is_some_and(|s| s.status == ShipmentStatus::Arrived)
                    {
                        part.early_arrivals += 1;
                        if std::env::var("ETA_DEBUG").is_ok() {
                            let sh = tr.shipment(TENANT, &sid).unwrap();
                            let am = sh.arrived_ms.unwrap();
                            let ai = t.pts.iter().position(|p| p.ts_ms >= am).unwrap();
                            let ap = t.pts[ai];
                            eprintln!(
                                "{sid}: arrived at pt {ai}/{} (real {}), {:.0} m from end, along {:.0}/{:.0}, progress {:?}",
                                t.pts.len(),
                                c.arrive,
                                distance_m((ap.lon, ap.lat), (end.lon, end.lat)),
                                c.route.project(ap.lon, ap.lat).along_m,
                                c.route.length_m(),
                                sh.eta_trip.progress_m
                            );
                        }
                    }
                    (err(p.ts_ms as f64), false)
                }
            };
            part.landport.push(e);
            part.by_fraction[k].push(e);
            if covered {
                part.covered += 1;
                part.cover_by_fraction[k] += 1;
            }
        }
        if j == t.pts.len() - 1
            && let Some(s) = current.get(&t.device)
            && *s == format!("S-{}", t.id)
        {
            tr.remove_shipment(TENANT, s);
            current.remove(&t.device);
        }
    }
    (tune, held)
}

fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let i = ((s.len() - 1) as f64 * q).round() as usize;
    s[i]
}

/// Douglas-Peucker in a local equirectangular frame, tolerance in metres.
fn simplify(pts: &[Pt], tol_m: f64) -> geo_types::LineString<f64> {
    let lat0 = pts[0].lat.to_radians();
    let xy: Vec<(f64, f64)> = pts
        .iter()
        .map(|p| {
            (
                p.lon.to_radians() * lat0.cos() * 6_371_000.0,
                p.lat.to_radians() * 6_371_000.0,
            )
        })
        .collect();
    let mut keep = vec![false; pts.len()];
    keep[0] = true;
    keep[pts.len() - 1] = true;
    let mut stack = vec![(0, pts.len() - 1)];
    while let Some((a, b)) = stack.pop() {
        if b <= a + 1 {
            continue;
        }
        let (ax, ay) = xy[a];
        let (bx, by) = xy[b];
        let (dx, dy) = (bx - ax, by - ay);
        let len2 = dx * dx + dy * dy;
        let mut far = (0.0, a);
        for (i, &(px, py)) in xy.iter().enumerate().take(b).skip(a + 1) {
            let t = if len2 > 0.0 {
                (((px - ax) * dx + (py - ay) * dy) / len2).clamp(0.0, 1.0)
            } else {
                0.0
            };
            let (qx, qy) = (ax + t * dx - px, ay + t * dy - py);
            let d = (qx * qx + qy * qy).sqrt();
            if d > far.0 {
                far = (d, i);
            }
        }
        if far.0 > tol_m {
            keep[far.1] = true;
            stack.push((a, far.1));
            stack.push((far.1, b));
        }
    }
    pts.iter()
        .zip(keep)
        .filter(|(_, k)| *k)
        .map(|(p, _)| geo_types::coord! { x: p.lon, y: p.lat })
        .collect()
}
