//! Real places of Liaoning's steel belt and the truck routes between them. Coordinates are
//! `(lon, lat)` degrees (WGS 84); distances are metres.

/// A place trucks drive between: a warehouse, a port, a steel works...
#[derive(Debug, Clone, PartialEq)]
pub struct Place {
    /// Stable id, usable as a geofence id (`anshan-steel`).
    pub id: &'static str,
    /// Human name.
    pub name: &'static str,
    /// Longitude, degrees.
    pub lon: f64,
    /// Latitude, degrees.
    pub lat: f64,
    /// What it is, as a geofence `kind`: `warehouse`, `port`, `depot` or `customer`.
    pub kind: &'static str,
}

/// The places the simulated fleet serves, in a fixed order (their indices are used by
/// [`ROUTES`]). A demo makes geofences around them (circles of ~800 m).
pub fn places() -> Vec<Place> {
    PLACES.to_vec()
}

pub(crate) const PLACES: [Place; 5] = [
    Place {
        id: "anshan-steel",
        name: "Anshan steel works",
        lon: 122.99,
        lat: 41.11,
        kind: "warehouse",
    },
    Place {
        id: "shenyang",
        name: "Shenyang distribution centre",
        lon: 123.43,
        lat: 41.80,
        kind: "warehouse",
    },
    Place {
        id: "liaoyang",
        name: "Liaoyang depot",
        lon: 123.17,
        lat: 41.27,
        kind: "depot",
    },
    Place {
        id: "yingkou-port",
        name: "Yingkou port",
        lon: 122.23,
        lat: 40.67,
        kind: "port",
    },
    Place {
        id: "dalian-port",
        name: "Dalian port",
        lon: 121.64,
        lat: 38.92,
        kind: "port",
    },
];

/// A road between two places: indices into [`places`] and intermediate waypoints
/// `(lon, lat)` along the expressways (G15 Shenyang–Haikou, G1501, S16 ...).
#[derive(Debug, Clone, Copy)]
pub struct RouteDef {
    pub from: usize,
    pub to: usize,
    pub via: &'static [(f64, f64)],
}

/// The routes, in a fixed order: truck `k` drives route `k % ROUTES.len()` back and forth.
/// Route 0 is Anshan -> Yingkou port, the demo's reefer shipment.
pub const ROUTES: [RouteDef; 6] = [
    // Anshan -> Haicheng -> Dashiqiao -> Yingkou port (~105 km)
    RouteDef {
        from: 0,
        to: 3,
        via: &[
            (122.94, 41.02),
            (122.75, 40.86),
            (122.52, 40.64),
            (122.33, 40.66),
        ],
    },
    // Shenyang -> Sujiatun -> Dengta -> Liaoyang
    RouteDef {
        from: 1,
        to: 2,
        via: &[
            (123.38, 41.70),
            (123.34, 41.58),
            (123.30, 41.43),
            (123.22, 41.33),
        ],
    },
    // Liaoyang -> Anshan
    RouteDef {
        from: 2,
        to: 0,
        via: &[(123.12, 41.22), (123.05, 41.16)],
    },
    // Yingkou port -> Gaizhou -> Wafangdian -> Jinzhou -> Dalian port
    RouteDef {
        from: 3,
        to: 4,
        via: &[
            (122.36, 40.42),
            (122.10, 40.00),
            (121.99, 39.63),
            (121.78, 39.12),
        ],
    },
    // Shenyang -> Anshan, past Liaoyang
    RouteDef {
        from: 1,
        to: 0,
        via: &[(123.36, 41.62), (123.27, 41.38), (123.10, 41.19)],
    },
    // Anshan -> Dalian port
    RouteDef {
        from: 0,
        to: 4,
        via: &[
            (122.80, 40.90),
            (122.38, 40.40),
            (122.00, 39.62),
            (121.78, 39.12),
        ],
    },
];

/// Great-circle distance, metres (haversine on a 6 371 km sphere).
pub fn distance_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lon1, lat1) = (a.0.to_radians(), a.1.to_radians());
    let (lon2, lat2) = (b.0.to_radians(), b.1.to_radians());
    let h = ((lat2 - lat1) / 2.0).sin().powi(2)
        + lat1.cos() * lat2.cos() * ((lon2 - lon1) / 2.0).sin().powi(2);
    2.0 * 6_371_000.0 * h.sqrt().asin()
}

/// Initial bearing from `a` to `b`, degrees in `[0, 360)`.
pub fn bearing_deg(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lon1, lat1) = (a.0.to_radians(), a.1.to_radians());
    let (lon2, lat2) = (b.0.to_radians(), b.1.to_radians());
    let y = (lon2 - lon1).sin() * lat2.cos();
    let x = lat1.cos() * lat2.sin() - lat1.sin() * lat2.cos() * (lon2 - lon1).cos();
    y.atan2(x).to_degrees().rem_euclid(360.0)
}

/// A route as a polyline with cumulative distances, in one direction.
#[derive(Debug, Clone)]
pub(crate) struct Path {
    /// `(lon, lat)` degrees, from the origin place to the destination place.
    pub points: Vec<(f64, f64)>,
    /// Distance from the start to each point, metres.
    pub cumulative_m: Vec<f64>,
    /// Index into [`PLACES`] of the destination.
    pub to: usize,
}

impl Path {
    /// Route `index` driven forward (`from` -> `to`) or backward.
    pub fn of(index: usize, forward: bool) -> Path {
        let def = ROUTES[index % ROUTES.len()];
        let (a, b) = (&PLACES[def.from], &PLACES[def.to]);
        let mut points = vec![(a.lon, a.lat)];
        points.extend_from_slice(def.via);
        points.push((b.lon, b.lat));
        let to = if forward { def.to } else { def.from };
        if !forward {
            points.reverse();
        }
        let mut cumulative_m = vec![0.0];
        for w in points.windows(2) {
            let last = *cumulative_m.last().unwrap_or(&0.0);
            cumulative_m.push(last + distance_m(w[0], w[1]));
        }
        Path {
            points,
            cumulative_m,
            to,
        }
    }

    pub fn length_m(&self) -> f64 {
        *self.cumulative_m.last().unwrap_or(&0.0)
    }

    /// Position `(lon, lat)` and heading (degrees) at `s_m` metres from the start.
    pub fn at(&self, s_m: f64) -> ((f64, f64), f64) {
        let s = s_m.clamp(0.0, self.length_m());
        let i = self
            .cumulative_m
            .partition_point(|&c| c <= s)
            .clamp(1, self.points.len() - 1);
        let (a, b) = (self.points[i - 1], self.points[i]);
        let seg = self.cumulative_m[i] - self.cumulative_m[i - 1];
        let f = if seg > 0.0 {
            (s - self.cumulative_m[i - 1]) / seg
        } else {
            0.0
        };
        (
            (a.0 + (b.0 - a.0) * f, a.1 + (b.1 - a.1) * f),
            bearing_deg(a, b),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anshan_to_yingkou_is_about_a_hundred_km_by_road() {
        let p = Path::of(0, true);
        assert!(
            (90_000.0..130_000.0).contains(&p.length_m()),
            "{}",
            p.length_m()
        );
        let (start, _) = p.at(0.0);
        let (end, _) = p.at(p.length_m());
        assert_eq!(start, (122.99, 41.11));
        assert_eq!(end, (122.23, 40.67));
    }

    #[test]
    fn a_backward_path_starts_at_the_destination() {
        let p = Path::of(0, false);
        assert_eq!(p.to, 0);
        assert_eq!(p.at(0.0).0, (122.23, 40.67));
    }
}
