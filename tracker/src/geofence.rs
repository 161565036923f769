//! Geofence shapes and exact point tests.
//!
//! Conventions (the same in every geometry module):
//! - Coordinates are `(lon, lat)` WGS 84 degrees; distances are metres.
//! - Polygon edges and corridor segments are straight lines in `(lon, lat)`, as GeoJSON reads
//!   them (RFC 7946 §3.1.1), so point-in-polygon is the planar test on degrees.
//! - A point on the boundary is inside. "On" means within [`BOUNDARY_EPS_DEG`] (about 0.1 mm)
//!   of an edge, so a boundary point survives floating-point rounding.
//! - Antimeridian: a polygon or line with an edge whose longitude jumps by more than 180° is
//!   the small shape crossing the antimeridian, not the one wrapping the globe. Its negative
//!   longitudes are moved by +360° (its "frame" is then [0°, 360°]) and points are tested in
//!   that frame; [`Geofence::envelopes`] splits it into boxes in [-180°, 180°]. Each polygon of
//!   a MultiPolygon has its own frame.
//! - A polygon is planar in degrees, so one "around a pole" is not supported; circles and
//!   corridors near a pole work (their envelopes then cover every longitude).
//!
//! Preparation, chosen by measurement (see `tests/geometry_perf.rs`): each polygon's edges are
//! copied into horizontal latitude bands. A point test looks at the one band holding the point's
//! latitude and runs the crossing-number test on its edges, with an on-edge check; it neither
//! allocates nor touches the other bands, so its cost depends on the edges per band (a
//! handful for outlines made of short edges, whatever their vertex count; spiky polygons, whose
//! edges span much of their height, get fewer bands because copies are capped at 4 per edge),
//! not on the size of the polygon. Corridors of more than 8 segments keep an R-tree of
//! their segments' envelopes, widened by the corridor width.

use rstar::RTree;
use rstar::primitives::{GeomWithData, Rectangle};
use serde::{Deserialize, Serialize};

use crate::error::TrackerError;

mod sweep;
use crate::geodesy::{self, BOUNDARY_EPS_DEG, MIN_RADIUS_M, NearestSegment as Nearest, reach_deg};

/// The geometry of a geofence. Coordinates `(lon, lat)` degrees; distances metres.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Shape {
    /// A Polygon or MultiPolygon, holes allowed. May cross the antimeridian.
    Area(geo_types::MultiPolygon<f64>),
    /// Every point within `radius_m` (geodesic) of `center`.
    Circle {
        center: geo_types::Point<f64>,
        radius_m: f64,
    },
    /// Every point within `corridor_m` of the line.
    Corridor {
        line: geo_types::LineString<f64>,
        corridor_m: f64,
    },
}

/// A geofence as the user defines it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeofenceDef {
    pub id: String,
    pub name: String,
    /// warehouse, customer, port, depot, restricted, or anything else the user chose.
    pub kind: String,
    pub shape: Shape,
    /// Seconds readings on the new side must hold before a transition is confirmed;
    /// `None` = the tracker's default.
    pub confirm_seconds: Option<u32>,
    /// Seconds inside before `geofence.dwell` fires; `None` = no dwell event.
    pub dwell_seconds: Option<u32>,
}

/// A validated geofence, prepared for fast point tests.
#[derive(Debug, Clone)]
pub struct Geofence {
    def: GeofenceDef,
    /// The shape in the form the point tests use.
    prepared: Prepared,
    /// Computed once: the fence index asks for them on every upsert.
    envelopes: Vec<[f64; 4]>,
}

impl Geofence {
    /// Validates the definition (finite, in-range coordinates; closed rings of >= 4 points; no
    /// self-intersection; positive radius/width) and prepares it.
    ///
    /// Polygon validity, on the antimeridian-normalised polygons: no ring meets itself or
    /// another ring anywhere (a sweep line, [`sweep`], O(n log n) in the vertex count; stricter
    /// than OGC, which lets a hole touch its shell at a point), every hole is inside its shell
    /// and in no other hole, and no member of a MultiPolygon is inside another (except in one
    /// of its holes). Measured (release): ~25 ms for a 10,000-vertex ring, ~0.4 s for
    /// 100,000 (`cargo test --release -p landport-tracker --test geofence_validation -- --nocapture`).
    pub fn new(def: GeofenceDef) -> Result<Geofence, TrackerError> {
        Geofence::build(def, true)
    }

    /// Prepares a definition that [`Geofence::new`] accepted before (one stored by the API,
    /// read back at a restart or from a snapshot), without checking its rings again: linear in
    /// its vertices. The cheap checks (positions, closed rings, radius and width) still run,
    /// so a damaged definition is still an error rather than a wrong fence.
    pub fn trusted(def: GeofenceDef) -> Result<Geofence, TrackerError> {
        Geofence::build(def, false)
    }

    fn build(def: GeofenceDef, check_rings: bool) -> Result<Geofence, TrackerError> {
        let prepared = match &def.shape {
            Shape::Area(mp) => Prepared::Area(prepare_area(mp, check_rings)?),
            Shape::Circle { center, radius_m } => {
                Prepared::Circle(PreparedCircle::new(center.x(), center.y(), *radius_m)?)
            }
            Shape::Corridor { line, corridor_m } => {
                Prepared::Corridor(PreparedCorridor::new(line, *corridor_m)?)
            }
        };
        let envelopes = prepared.envelopes();
        Ok(Geofence {
            def,
            prepared,
            envelopes,
        })
    }

    pub fn def(&self) -> &GeofenceDef {
        &self.def
    }

    /// The geofence id (`def().id`).
    pub fn id(&self) -> &str {
        &self.def.id
    }

    /// Envelopes `[min_lon, min_lat, max_lon, max_lat]` in [-180, 180] longitude; two when the
    /// shape crosses the antimeridian.
    ///
    /// A MultiPolygon whose members lie on both sides of the antimeridian may have up to three;
    /// they may overlap. Every point for which [`contains`](Self::contains) is true lies in one
    /// of them.
    pub fn envelopes(&self) -> Vec<[f64; 4]> {
        self.envelopes.clone()
    }

    /// [`envelopes`](Self::envelopes) without the copy.
    pub fn envelope_slice(&self) -> &[[f64; 4]] {
        &self.envelopes
    }

    /// Whether the point is inside; a point on the boundary is inside.
    ///
    /// Allocation-free. Polygons: the planar test on degrees, with points within
    /// [`BOUNDARY_EPS_DEG`] of an edge on the boundary. Circles: geodesic distance to the
    /// centre `<= radius_m` (a fast flat-earth distance decides when it is clearly on one side,
    /// Karney's algorithm otherwise). Corridors: distance to the line `<= corridor_m`. A
    /// non-finite coordinate is never inside.
    pub fn contains(&self, lon: f64, lat: f64) -> bool {
        if !(lon.is_finite() && lat.is_finite()) {
            return false;
        }
        match &self.prepared {
            Prepared::Area(polys) => polys.iter().any(|p| p.contains(lon, lat)),
            Prepared::Circle(c) => c.contains(lon, lat),
            Prepared::Corridor(c) => c.contains(lon, lat),
        }
    }

    /// Distance in metres from the point to the nearest boundary (0 on it), inside or outside.
    ///
    /// Polygons: to the nearest edge of any ring, holes included; the nearest edge is found in
    /// a local equirectangular frame around the point and the distance to its nearest point
    /// measured on the ellipsoid (see [`geodesy::NearestSegment`]; below 0.1 mm of error for
    /// boundaries within 1 km, 4 cm at 10 km, 5 m at 50 km). Circles: `|d - radius_m|` with
    /// `d` geodesic. Corridors: `|d - corridor_m|` with `d` the distance to the line. NaN for
    /// non-finite input.
    ///
    /// Allocation-free. Cost: polygons visit the edges whose latitude is within the answer of
    /// the point's (measured: ~0.2 µs for 20 vertices, ~5 µs for a 2,000-vertex outline from
    /// deep inside it); corridors scan every segment when the point is outside the corridor.
    /// Meant for the few readings near a transition, not for every reading.
    pub fn boundary_distance_m(&self, lon: f64, lat: f64) -> f64 {
        if !(lon.is_finite() && lat.is_finite()) {
            return f64::NAN;
        }
        match &self.prepared {
            Prepared::Area(polys) => {
                let mut best = Nearest::new(lon, lat);
                for p in polys {
                    p.nearest_edge(lat, &mut best);
                }
                best.distance_m()
            }
            Prepared::Circle(c) => (geodesy::distance_m(c.center, (lon, lat)) - c.radius_m).abs(),
            Prepared::Corridor(c) => (c.distance_m(lon, lat, true) - c.width_m).abs(),
        }
    }
}

/// Validation errors all read "invalid geometry: ...".
fn invalid(msg: impl Into<String>) -> TrackerError {
    TrackerError::InvalidGeometry(msg.into())
}

/// Checks one position: finite and within [-180, 180] x [-90, 90].
fn check_position(c: geo_types::Coord<f64>, what: &dyn Fn() -> String) -> Result<(), TrackerError> {
    if !(c.x.is_finite() && c.y.is_finite()) {
        return Err(invalid(format!(
            "{}: coordinate is not a finite number",
            what()
        )));
    }
    if !(-180.0..=180.0).contains(&c.x) || !(-90.0..=90.0).contains(&c.y) {
        return Err(invalid(format!(
            "{}: position ({}, {}) is out of range (lon in [-180, 180], lat in [-90, 90])",
            what(),
            c.x,
            c.y
        )));
    }
    Ok(())
}

/// Whether consecutive positions jump by more than 180° of longitude: the line is meant to
/// cross the antimeridian.
fn crosses_antimeridian<'a>(
    rings: impl IntoIterator<Item = &'a geo_types::LineString<f64>>,
) -> bool {
    rings
        .into_iter()
        .any(|r| r.0.windows(2).any(|w| (w[1].x - w[0].x).abs() > 180.0))
}

/// The coordinates in the frame: negative longitudes + 360 when `shifted`.
fn to_frame(ls: &geo_types::LineString<f64>, shifted: bool) -> geo_types::LineString<f64> {
    ls.0.iter()
        .map(|c| geo_types::coord! { x: frame_lon(c.x, shifted), y: c.y })
        .collect()
}

#[inline]
fn frame_lon(lon: f64, shifted: bool) -> f64 {
    if shifted && lon < 0.0 {
        lon + 360.0
    } else {
        lon
    }
}

/// Boxes in [-180, 180] covering `[min_x, max_x]` given in any frame.
fn push_wrapped_box(b: [f64; 4], out: &mut Vec<[f64; 4]>) {
    let [min_x, min_y, max_x, max_y] = b;
    if !(max_x - min_x < 360.0) {
        out.push([-180.0, min_y, 180.0, max_y]);
        return;
    }
    let shift = ((min_x + 180.0) / 360.0).floor() * 360.0;
    let (a, z) = (min_x - shift, max_x - shift);
    if z <= 180.0 {
        out.push([a, min_y, z, max_y]);
    } else {
        out.push([a, min_y, 180.0, max_y]);
        out.push([-180.0, min_y, z - 360.0, max_y]);
    }
}

/// Grows `acc` to cover `b`.
fn union_box(acc: &mut Option<[f64; 4]>, b: [f64; 4]) {
    *acc = Some(match *acc {
        None => b,
        Some(a) => [
            a[0].min(b[0]),
            a[1].min(b[1]),
            a[2].max(b[2]),
            a[3].max(b[3]),
        ],
    });
}

/// A shape in the form the point tests use.
#[derive(Debug, Clone)]
enum Prepared {
    Area(Vec<PreparedPolygon>),
    Circle(PreparedCircle),
    Corridor(PreparedCorridor),
}

impl Prepared {
    fn envelopes(&self) -> Vec<[f64; 4]> {
        let mut out = Vec::with_capacity(2);
        match self {
            Prepared::Area(polys) => {
                let (mut plain, mut shifted) = (None, None);
                for p in polys {
                    union_box(if p.shifted { &mut shifted } else { &mut plain }, p.bbox);
                }
                for b in [plain, shifted].into_iter().flatten() {
                    push_wrapped_box(b, &mut out);
                }
            }
            Prepared::Circle(c) => {
                out.extend_from_slice(
                    geodesy::bboxes_around_inline(c.center.0, c.center.1, c.radius_m).as_slice(),
                );
            }
            Prepared::Corridor(c) => {
                let [min_x, min_y, max_x, max_y] = c.bbox;
                let (dlon, dlat) = reach_deg(min_y.abs().max(max_y.abs()), c.width_m);
                let b = [
                    min_x - dlon,
                    (min_y - dlat).max(-90.0),
                    max_x + dlon,
                    (max_y + dlat).min(90.0),
                ];
                push_wrapped_box(b, &mut out);
            }
        }
        out
    }
}

// ----- polygons -------------------------------------------------------------------------------

/// Validates a MultiPolygon and prepares each member.
fn prepare_area(
    mp: &geo_types::MultiPolygon<f64>,
    check: bool,
) -> Result<Vec<PreparedPolygon>, TrackerError> {
    if mp.0.is_empty() {
        return Err(invalid("the area has no polygon"));
    }
    let mut framed = Vec::with_capacity(mp.0.len());
    for (pi, poly) in mp.0.iter().enumerate() {
        let rings = std::iter::once(poly.exterior()).chain(poly.interiors());
        for (ri, ring) in rings.enumerate() {
            let what = || {
                let ring = if ri == 0 {
                    "exterior ring".to_owned()
                } else {
                    format!("hole {}", ri - 1)
                };
                format!("polygon {pi}, {ring}")
            };
            if ring.0.len() < 4 {
                return Err(invalid(format!(
                    "{}: a ring needs at least 4 positions, has {}",
                    what(),
                    ring.0.len()
                )));
            }
            for c in &ring.0 {
                check_position(*c, &what)?;
            }
            if ring.0.first() != ring.0.last() {
                return Err(invalid(format!(
                    "{}: the ring is not closed (first and last positions differ)",
                    what()
                )));
            }
        }
        let shifted =
            crosses_antimeridian(std::iter::once(poly.exterior()).chain(poly.interiors()));
        let framed_poly = if shifted {
            geo_types::Polygon::new(
                to_frame(poly.exterior(), true),
                poly.interiors().iter().map(|r| to_frame(r, true)).collect(),
            )
        } else {
            poly.clone()
        };
        if shifted
            && crosses_antimeridian(
                std::iter::once(framed_poly.exterior()).chain(framed_poly.interiors()),
            )
        {
            return Err(invalid(format!(
                "polygon {pi}: crosses the antimeridian but spans more than 180° of longitude"
            )));
        }
        framed.push((shifted, framed_poly));
    }
    if check {
        check_rings(&framed)?;
    }
    Ok(framed
        .iter()
        .map(|(shifted, p)| PreparedPolygon::new(p, *shifted))
        .collect())
}

/// Checks the rings of every member (each in its frame): simple, touching no other ring
/// ([`sweep`]: O(n log n) in the vertex count), each hole inside its shell and in no other
/// hole, no member inside another (except in one of its holes). Members are compared in a
/// common frame: plain members as they are, and when some member crosses the antimeridian,
/// every member that can be expressed there in the antimeridian frame. A pair of which one
/// crosses the antimeridian and the other the prime meridian is not compared: together they
/// would span more than 180°, and their point tests are a plain union anyway.
fn check_rings(framed: &[(bool, geo_types::Polygon<f64>)]) -> Result<(), TrackerError> {
    let plain: Vec<(usize, &geo_types::Polygon<f64>)> = framed
        .iter()
        .enumerate()
        .filter(|(_, (shifted, _))| !*shifted)
        .map(|(i, (_, p))| (i, p))
        .collect();
    check_group(&plain)?;
    if framed.iter().any(|(shifted, _)| *shifted) {
        let moved: Vec<(usize, geo_types::Polygon<f64>)> = framed
            .iter()
            .enumerate()
            .filter_map(|(i, f)| in_shifted_frame(f).map(|p| (i, p)))
            .collect();
        let group: Vec<(usize, &geo_types::Polygon<f64>)> =
            moved.iter().map(|(i, p)| (*i, p)).collect();
        check_group(&group)?;
    }
    Ok(())
}

/// A member in the antimeridian frame, when it can be expressed there.
fn in_shifted_frame(
    (shifted, p): &(bool, geo_types::Polygon<f64>),
) -> Option<geo_types::Polygon<f64>> {
    if *shifted {
        return Some(p.clone());
    }
    let lons = || p.exterior().0.iter().map(|c| c.x);
    if lons().all(|x| x >= 0.0) {
        Some(p.clone())
    } else if lons().all(|x| x <= 0.0) {
        let shift = |r: &geo_types::LineString<f64>| -> geo_types::LineString<f64> {
            r.0.iter()
                .map(|c| geo_types::coord! { x: c.x + 360.0, y: c.y })
                .collect()
        };
        Some(geo_types::Polygon::new(
            shift(p.exterior()),
            p.interiors().iter().map(shift).collect(),
        ))
    } else {
        None
    }
}

/// The name of ring `ring` of a polygon in messages.
fn ring_name(ring: u32) -> String {
    if ring == 0 {
        "exterior ring".to_owned()
    } else {
        format!("hole {}", ring - 1)
    }
}

/// [`check_rings`] for members already in one frame, with their indices in the MultiPolygon.
fn check_group(members: &[(usize, &geo_types::Polygon<f64>)]) -> Result<(), TrackerError> {
    use sweep::{Origin, Seg};
    // Every ring's segments, consecutive repeated positions dropped.
    let mut segs = Vec::new();
    for (m, poly) in members {
        for (r, ring) in std::iter::once(poly.exterior())
            .chain(poly.interiors())
            .enumerate()
        {
            let mut v: Vec<geo_types::Coord<f64>> = Vec::with_capacity(ring.0.len());
            for c in &ring.0[..ring.0.len() - 1] {
                if v.last() != Some(c) {
                    v.push(*c);
                }
            }
            while v.len() > 1 && v.first() == v.last() {
                v.pop();
            }
            if v.len() < 3 {
                return Err(invalid(format!(
                    "polygon {m}, {}: a ring needs at least 3 distinct positions",
                    ring_name(r as u32)
                )));
            }
            let len = v.len() as u32;
            for i in 0..v.len() {
                let origin = Origin {
                    member: *m as u32,
                    ring: r as u32,
                    index: i as u32,
                    len,
                };
                let id = segs.len() as u32;
                segs.push(Seg::new(v[i], v[(i + 1) % v.len()], origin, id));
            }
        }
    }
    if let Some(c) = sweep::find_contact(&segs) {
        let at = format!("({}, {})", c.at.x, c.at.y);
        let (a, b) = (c.a, c.b);
        return Err(invalid(if a.member != b.member {
            let (i, j) = (a.member.min(b.member), a.member.max(b.member));
            if c.along_a_line {
                format!("polygons {i} and {j} overlap or touch along a line near {at}")
            } else {
                format!("polygons {i} and {j} overlap or touch at {at}")
            }
        } else if a.ring == b.ring {
            format!(
                "polygon {}, {}: self-intersection at {at}",
                a.member,
                ring_name(a.ring)
            )
        } else {
            format!(
                "polygon {}: {} and {} intersect or touch at {at}",
                a.member,
                ring_name(a.ring.min(b.ring)),
                ring_name(a.ring.max(b.ring))
            )
        }));
    }
    // No two rings meet: each ring is wholly inside or wholly outside any other, which one
    // of its vertices tells.
    let bbox = |r: &geo_types::LineString<f64>| {
        r.0.iter().fold(
            [
                f64::INFINITY,
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::NEG_INFINITY,
            ],
            |b, c| [b[0].min(c.x), b[1].min(c.y), b[2].max(c.x), b[3].max(c.y)],
        )
    };
    let in_box = |b: &[f64; 4], c: geo_types::Coord<f64>| {
        b[0] <= c.x && c.x <= b[2] && b[1] <= c.y && c.y <= b[3]
    };
    let inside =
        |p: &PreparedPolygon, c: geo_types::Coord<f64>| p.locate(c.x, c.y) == Location::Inside;
    let as_polygon = |r: &geo_types::LineString<f64>| {
        PreparedPolygon::new(&geo_types::Polygon::new(r.clone(), vec![]), false)
    };
    for (m, poly) in members {
        if poly.interiors().is_empty() {
            continue;
        }
        let shell = as_polygon(poly.exterior());
        let holes: Vec<_> = poly.interiors().iter().map(|h| (bbox(h), h)).collect();
        for (k, (_, h)) in holes.iter().enumerate() {
            if !inside(&shell, h.0[0]) {
                return Err(invalid(format!(
                    "polygon {m}: hole {k} is not contained in the exterior ring"
                )));
            }
        }
        // Holes in holes. Candidates by box; a ring is prepared only when a test needs it.
        let mut prepared: Vec<Option<PreparedPolygon>> = vec![None; holes.len()];
        for (k, (_, h)) in holes.iter().enumerate() {
            for (j, (bj, hj)) in holes.iter().enumerate() {
                if j == k || !in_box(bj, h.0[0]) {
                    continue;
                }
                let pj = prepared[j].get_or_insert_with(|| as_polygon(hj));
                if inside(pj, h.0[0]) {
                    return Err(invalid(format!("polygon {m}: hole {k} is inside hole {j}")));
                }
            }
        }
    }
    if members.len() > 1 {
        let boxes: Vec<[f64; 4]> = members.iter().map(|(_, p)| bbox(p.exterior())).collect();
        let mut prepared: Vec<Option<PreparedPolygon>> = vec![None; members.len()];
        for (a, (i, pa)) in members.iter().enumerate() {
            let v = pa.exterior().0[0];
            for (b, (j, pb)) in members.iter().enumerate() {
                if a == b || !in_box(&boxes[b], v) {
                    continue;
                }
                let p = prepared[b].get_or_insert_with(|| PreparedPolygon::new(pb, false));
                if inside(p, v) {
                    let (i, j) = ((*i).min(*j), (*i).max(*j));
                    return Err(invalid(format!("polygons {i} and {j} overlap")));
                }
            }
        }
    }
    Ok(())
}

/// One edge of a ring, in the polygon's frame, degrees, stored upward (`y0 <= y1`): the
/// even-odd crossing rule and the on-edge check do not depend on the edge's direction.
#[derive(Debug, Clone, Copy)]
struct Edge {
    x0: f64,
    y0: f64,
    x1: f64,
    y1: f64,
    /// `1 / |edge|²` in degrees², for the on-edge check.
    inv_len2: f64,
}

/// Where a point is relative to one polygon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Location {
    Inside,
    Boundary,
    Outside,
}

/// One polygon (exterior ring and holes) with its edges in latitude bands.
#[derive(Debug, Clone)]
struct PreparedPolygon {
    /// Negative longitudes were moved by +360: the polygon crosses the antimeridian.
    shifted: bool,
    /// `[min_x, min_y, max_x, max_y]` in the polygon's frame, degrees.
    bbox: [f64; 4],
    /// Latitude where band 0 starts, degrees.
    band_min_y: f64,
    /// Bands per degree of latitude (0 when there is one band).
    band_scale: f64,
    /// Band `k` holds `band_edges[band_offsets[k]..band_offsets[k + 1]]`.
    band_offsets: Vec<u32>,
    /// Every edge of every ring, copied into each band that its latitude range (widened by
    /// the boundary tolerance) overlaps. Copies rather than indices: a point test reads one
    /// contiguous run of memory.
    band_edges: Vec<Edge>,
}

/// Upper bound on edge copies, as a multiple of the edge count (memory: 40 bytes a copy).
const MAX_COPIES_PER_EDGE: usize = 4;
/// Below this many edges per band, more bands buy nothing measurable.
const GOOD_EDGES_PER_BAND: usize = 3;

impl PreparedPolygon {
    fn new(p: &geo_types::Polygon<f64>, shifted: bool) -> Self {
        let mut edges = Vec::new();
        let (mut min_x, mut min_y) = (f64::INFINITY, f64::INFINITY);
        let (mut max_x, mut max_y) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
        for ring in std::iter::once(p.exterior()).chain(p.interiors()) {
            for c in &ring.0 {
                min_x = min_x.min(c.x);
                max_x = max_x.max(c.x);
                min_y = min_y.min(c.y);
                max_y = max_y.max(c.y);
            }
            for w in ring.0.windows(2) {
                let (a, b) = if w[0].y <= w[1].y {
                    (w[0], w[1])
                } else {
                    (w[1], w[0])
                };
                let len2 = (b.x - a.x).powi(2) + (b.y - a.y).powi(2);
                if len2 > 0.0 {
                    edges.push(Edge {
                        x0: a.x,
                        y0: a.y,
                        x1: b.x,
                        y1: b.y,
                        inv_len2: 1.0 / len2,
                    });
                }
            }
        }
        let height = max_y - min_y;
        let mut prep = PreparedPolygon {
            shifted,
            bbox: [min_x, min_y, max_x, max_y],
            band_min_y: min_y,
            band_scale: 0.0,
            band_offsets: Vec::new(),
            band_edges: Vec::new(),
        };
        // Band count: powers of two, keeping the one with the fewest edge copies per band (what
        // a point test reads) within the memory cap; stop early once bands are short enough.
        let copies_with = |prep: &mut PreparedPolygon, bands: usize| -> usize {
            prep.band_scale = if bands > 1 {
                bands as f64 / height
            } else {
                0.0
            };
            edges
                .iter()
                .map(|e| {
                    let (lo, hi) = prep.edge_bands(e, bands);
                    hi - lo + 1
                })
                .sum()
        };
        let mut bands = 1;
        if height > 0.0 {
            let mut best_cost = edges.len() as f64;
            let mut b = 2;
            while b <= (edges.len() / 2).min(1 << 16) && best_cost > GOOD_EDGES_PER_BAND as f64 {
                let copies = copies_with(&mut prep, b);
                if copies > MAX_COPIES_PER_EDGE * edges.len() {
                    break;
                }
                let cost = copies as f64 / b as f64;
                if cost < best_cost * 0.9 {
                    best_cost = cost;
                    bands = b;
                }
                b *= 2;
            }
        }
        copies_with(&mut prep, bands);
        // Counting sort of edge copies by band.
        let mut counts = vec![0u32; bands + 1];
        for e in &edges {
            let (lo, hi) = prep.edge_bands(e, bands);
            for k in lo..=hi {
                counts[k + 1] += 1;
            }
        }
        for k in 0..bands {
            counts[k + 1] += counts[k];
        }
        let mut fill = counts.clone();
        let filler = Edge {
            x0: 0.0,
            y0: 0.0,
            x1: 0.0,
            y1: 0.0,
            inv_len2: 0.0,
        };
        let mut band_edges = vec![filler; counts[bands] as usize];
        for e in &edges {
            let (lo, hi) = prep.edge_bands(e, bands);
            for slot in &mut fill[lo..=hi] {
                band_edges[*slot as usize] = *e;
                *slot += 1;
            }
        }
        prep.band_offsets = counts;
        prep.band_edges = band_edges;
        prep
    }

    /// The band of a latitude, clamped to the existing bands (`bands` = their count).
    #[inline]
    fn band_of(&self, y: f64, bands: usize) -> usize {
        let f = (y - self.band_min_y) * self.band_scale;
        if f > 0.0 {
            (f as usize).min(bands - 1)
        } else {
            0
        }
    }

    #[inline]
    fn bands(&self) -> usize {
        self.band_offsets.len() - 1
    }

    /// First and last band an edge goes into.
    fn edge_bands(&self, e: &Edge, bands: usize) -> (usize, usize) {
        let lo = self.band_of(e.y0 - BOUNDARY_EPS_DEG, bands);
        let hi = self.band_of(e.y1 + BOUNDARY_EPS_DEG, bands);
        (lo, hi)
    }

    #[inline]
    fn band_slice(&self, k: usize) -> &[Edge] {
        &self.band_edges[self.band_offsets[k] as usize..self.band_offsets[k + 1] as usize]
    }

    #[inline]
    fn contains(&self, lon: f64, lat: f64) -> bool {
        if self.shifted {
            // -180 and 180 are the same meridian: in the [0, 360] frame both are 180.
            return self.locate(frame_lon(lon, true), lat) != Location::Outside;
        }
        self.locate(lon, lat) != Location::Outside
            || (lon.abs() == 180.0 && self.locate(-lon, lat) != Location::Outside)
    }

    /// Crossing-number test over the point's band, with the on-edge check.
    #[inline]
    fn locate(&self, px: f64, py: f64) -> Location {
        const EPS: f64 = BOUNDARY_EPS_DEG;
        let [min_x, min_y, max_x, max_y] = self.bbox;
        if px < min_x - EPS || px > max_x + EPS || py < min_y - EPS || py > max_y + EPS {
            return Location::Outside;
        }
        let (py_lo, py_hi) = (py - EPS, py + EPS);
        let px_lo = px - EPS;
        let mut inside = false;
        for e in self.band_slice(self.band_of(py, self.bands())) {
            // Most edges end here: not within EPS of the point's latitude.
            if e.y1 < py_lo || e.y0 > py_hi {
                continue;
            }
            let (xlo, xhi) = if e.x0 <= e.x1 {
                (e.x0, e.x1)
            } else {
                (e.x1, e.x0)
            };
            if xhi < px_lo {
                // Wholly to the left: the rightward ray cannot cross it, and it is not near.
                continue;
            }
            // Half-open rule: an upward edge includes its lower end, excludes its upper end.
            let straddles = e.y0 <= py && py < e.y1;
            if xlo > px + EPS {
                // Wholly to the right and not within EPS: crossed iff it straddles the ray.
                inside ^= straddles;
                continue;
            }
            let (dx, dy) = (e.x1 - e.x0, e.y1 - e.y0);
            let (ax, ay) = (px - e.x0, py - e.y0);
            let t = ((ax * dx + ay * dy) * e.inv_len2).clamp(0.0, 1.0);
            let (qx, qy) = (ax - t * dx, ay - t * dy);
            if qx * qx + qy * qy <= EPS * EPS {
                return Location::Boundary;
            }
            // The point is left of the upward edge: the rightward ray crosses it. The sign
            // is reliable: a point where rounding could flip it is within EPS of the edge.
            if straddles && dx * ay - ax * dy > 0.0 {
                inside = !inside;
            }
        }
        if inside {
            Location::Inside
        } else {
            Location::Outside
        }
    }

    /// Updates `best` with this polygon's nearest edge point, searching bands outward from
    /// the point's latitude and stopping when the next band is farther (in latitude alone)
    /// than the best distance found.
    fn nearest_edge(&self, lat: f64, best: &mut Nearest) {
        // Lower bound on the distance per degree of latitude.
        let m_per_deg = MIN_RADIUS_M.to_radians();
        let gap_m = |gap_deg: f64| (gap_deg - BOUNDARY_EPS_DEG).max(0.0) * m_per_deg;
        let [_, min_y, _, max_y] = self.bbox;
        let bbox_gap = (min_y - lat).max(lat - max_y);
        if gap_m(bbox_gap) >= best.approx_m() {
            return;
        }
        let bands = self.bands();
        let visit = |k: usize, best: &mut Nearest| {
            for e in self.band_slice(k) {
                best.consider(0, e.x0, e.y0, e.x1, e.y1);
            }
        };
        let k0 = self.band_of(lat, bands);
        visit(k0, best);
        if bands == 1 {
            return;
        }
        let h = 1.0 / self.band_scale;
        let (mut down, mut up) = (k0 as isize - 1, k0 + 1);
        loop {
            let gap_down = if down >= 0 {
                lat - (self.band_min_y + (down + 1) as f64 * h)
            } else {
                f64::INFINITY
            };
            let gap_up = if up < bands {
                self.band_min_y + up as f64 * h - lat
            } else {
                f64::INFINITY
            };
            let gap = gap_down.min(gap_up);
            if gap == f64::INFINITY || gap_m(gap) >= best.approx_m() {
                return;
            }
            if gap_down <= gap_up {
                visit(down as usize, best);
                down -= 1;
            } else {
                visit(up, best);
                up += 1;
            }
        }
    }
}

// ----- circles --------------------------------------------------------------------------------

/// Relative error allowed for the flat-earth shortcut in circle tests: thirty times the worst
/// error measured for distances up to 100 km within ±80° latitude (`fast_distance_m` docs).
const FAST_CIRCLE_MARGIN: f64 = 1e-2;
/// Circles larger than this always use the exact distance.
const FAST_CIRCLE_MAX_RADIUS_M: f64 = 50_000.0;

#[derive(Debug, Clone)]
struct PreparedCircle {
    /// `(lon, lat)`, degrees.
    center: (f64, f64),
    radius_m: f64,
    /// Whether the flat-earth shortcut may decide (small circle, away from the poles).
    fast: bool,
}

impl PreparedCircle {
    fn new(lon: f64, lat: f64, radius_m: f64) -> Result<Self, TrackerError> {
        check_position(geo_types::coord! { x: lon, y: lat }, &|| {
            "circle centre".to_owned()
        })?;
        if !(radius_m.is_finite() && radius_m > 0.0) {
            return Err(invalid(format!(
                "circle radius_m must be a positive number, is {radius_m}"
            )));
        }
        Ok(PreparedCircle {
            center: (lon, lat),
            radius_m,
            fast: radius_m <= FAST_CIRCLE_MAX_RADIUS_M && lat.abs() < 75.0,
        })
    }

    #[inline]
    fn contains(&self, lon: f64, lat: f64) -> bool {
        // Exact lower bound: a geodesic changing latitude by Δφ is at least Δφ · MIN_RADIUS_M.
        if (lat - self.center.1).abs().to_radians() * MIN_RADIUS_M > self.radius_m {
            return false;
        }
        if self.fast && lat.abs() < 80.0 {
            let d = geodesy::fast_distance_m(self.center, (lon, lat));
            if d <= 2.0 * FAST_CIRCLE_MAX_RADIUS_M {
                if d < self.radius_m * (1.0 - FAST_CIRCLE_MARGIN) {
                    return true;
                }
                if d > self.radius_m * (1.0 + FAST_CIRCLE_MARGIN) {
                    return false;
                }
            }
        }
        geodesy::distance_m(self.center, (lon, lat)) <= self.radius_m
    }
}

// ----- corridors ------------------------------------------------------------------------------

/// Corridors with more segments than this get an R-tree of segment envelopes (measured: a
/// 20-segment corridor tests a point in ~150 ns with the tree, ~300-450 ns by a scan).
const CORRIDOR_TREE_MIN_SEGMENTS: usize = 8;

type SegmentTree = RTree<GeomWithData<Rectangle<[f64; 2]>, u32>>;

#[derive(Debug, Clone)]
struct PreparedCorridor {
    /// Negative longitudes were moved by +360: the line crosses the antimeridian.
    shifted: bool,
    /// Vertices in the line's frame, degrees.
    pts: Vec<[f64; 2]>,
    /// `[min_x, min_y, max_x, max_y]` of `pts`.
    bbox: [f64; 4],
    width_m: f64,
    /// Envelopes of the segments widened by `width_m`, in the line's frame, carrying the
    /// index of the segment's first vertex; `None` for short lines (a scan is faster).
    tree: Option<SegmentTree>,
}

impl PreparedCorridor {
    fn new(line: &geo_types::LineString<f64>, width_m: f64) -> Result<Self, TrackerError> {
        if line.0.len() < 2 {
            return Err(invalid("a corridor line needs at least 2 positions"));
        }
        for (i, c) in line.0.iter().enumerate() {
            check_position(*c, &|| format!("corridor line position {i}"))?;
        }
        if line.0.iter().all(|c| *c == line.0[0]) {
            return Err(invalid(
                "a corridor line needs at least 2 distinct positions",
            ));
        }
        if !(width_m.is_finite() && width_m > 0.0) {
            return Err(invalid(format!(
                "corridor_m must be a positive number, is {width_m}"
            )));
        }
        let shifted = crosses_antimeridian([line]);
        let framed = to_frame(line, shifted);
        if shifted && crosses_antimeridian([&framed]) {
            return Err(invalid(
                "the corridor line crosses the antimeridian but spans more than 180° of longitude",
            ));
        }
        let pts: Vec<[f64; 2]> = framed.0.iter().map(|c| [c.x, c.y]).collect();
        let mut bbox = [
            f64::INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NEG_INFINITY,
        ];
        for p in &pts {
            bbox = [
                bbox[0].min(p[0]),
                bbox[1].min(p[1]),
                bbox[2].max(p[0]),
                bbox[3].max(p[1]),
            ];
        }
        let tree = (pts.len() - 1 > CORRIDOR_TREE_MIN_SEGMENTS).then(|| {
            let items = pts
                .windows(2)
                .enumerate()
                .map(|(i, w)| {
                    let (dlon, dlat) = reach_deg(w[0][1].abs().max(w[1][1].abs()), width_m);
                    let dlon = dlon.min(360.0);
                    let lo = [w[0][0].min(w[1][0]) - dlon, w[0][1].min(w[1][1]) - dlat];
                    let hi = [w[0][0].max(w[1][0]) + dlon, w[0][1].max(w[1][1]) + dlat];
                    GeomWithData::new(Rectangle::from_corners(lo, hi), i as u32)
                })
                .collect();
            RTree::bulk_load(items)
        });
        Ok(PreparedCorridor {
            shifted,
            pts,
            bbox,
            width_m,
            tree,
        })
    }

    #[inline]
    fn contains(&self, lon: f64, lat: f64) -> bool {
        self.distance_m(lon, lat, false) <= self.width_m
    }

    /// Distance from the point to the line, metres. With `exact_outside` false, any value
    /// above the width may be returned for points outside (as `INFINITY` when no segment's
    /// widened envelope holds the point); with it true the distance is always measured.
    fn distance_m(&self, lon: f64, lat: f64, exact_outside: bool) -> f64 {
        let mut best = Nearest::new(lon, lat);
        if let Some(tree) = &self.tree {
            let x = frame_lon(lon, self.shifted);
            let mut probe = |x: f64| {
                let _ = tree.locate_all_at_point_int(&[x, lat], |seg| {
                    let i = seg.data as usize;
                    let (a, b) = (self.pts[i], self.pts[i + 1]);
                    best.consider(i, a[0], a[1], b[0], b[1]);
                    std::ops::ControlFlow::<()>::Continue(())
                });
            };
            // Widened envelopes may reach past ±180 (or past 360 in the shifted frame).
            probe(x);
            if x < 0.0 {
                probe(x + 360.0);
            } else {
                probe(x - 360.0);
                if x <= 180.0 {
                    probe(x + 360.0);
                }
            }
            let d = best.distance_m();
            if d <= self.width_m || !exact_outside {
                return d;
            }
            best = Nearest::new(lon, lat);
        }
        for (i, w) in self.pts.windows(2).enumerate() {
            best.consider(i, w[0][0], w[0][1], w[1][0], w[1][1]);
        }
        best.distance_m()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geodesy::wrap_lon;
    use geo_types::{LineString, MultiPolygon, Point, Polygon, coord, line_string, polygon};

    fn def(shape: Shape) -> GeofenceDef {
        GeofenceDef {
            id: "f".into(),
            name: "F".into(),
            kind: "depot".into(),
            shape,
            confirm_seconds: None,
            dwell_seconds: None,
        }
    }

    fn area(p: Polygon<f64>) -> Geofence {
        Geofence::new(def(Shape::Area(MultiPolygon(vec![p])))).expect("valid polygon")
    }

    fn square_with_hole() -> Geofence {
        area(polygon!(
            exterior: [(x: 0.0, y: 0.0), (x: 4.0, y: 0.0), (x: 4.0, y: 4.0), (x: 0.0, y: 4.0), (x: 0.0, y: 0.0)],
            interiors: [[(x: 1.0, y: 1.0), (x: 2.0, y: 1.0), (x: 2.0, y: 2.0), (x: 1.0, y: 2.0), (x: 1.0, y: 1.0)]],
        ))
    }

    fn triangle() -> Geofence {
        area(
            polygon![(x: 10.0, y: 50.0), (x: 10.3, y: 50.0), (x: 10.1, y: 50.7), (x: 10.0, y: 50.0)],
        )
    }

    fn circle(lon: f64, lat: f64, radius_m: f64) -> Geofence {
        Geofence::new(def(Shape::Circle {
            center: Point::new(lon, lat),
            radius_m,
        }))
        .expect("valid circle")
    }

    fn error_of(shape: Shape) -> String {
        match Geofence::new(def(shape)) {
            Ok(_) => panic!("accepted an invalid shape"),
            Err(e) => e.to_string(),
        }
    }

    /// A polygon deserialized from JSON keeps its rings as given (Polygon::new would close them).
    fn raw_area(json: &str) -> Shape {
        Shape::Area(serde_json::from_str(json).expect("json polygon"))
    }

    #[test]
    fn point_inside_a_polygon_is_inside_and_outside_is_outside() {
        let f = square_with_hole();
        assert!(f.contains(3.0, 3.0));
        assert!(f.contains(0.5, 3.5));
        assert!(!f.contains(5.0, 3.0));
        assert!(!f.contains(-0.1, 2.0));
        assert!(!f.contains(2.0, 4.5));
    }

    #[test]
    fn points_on_polygon_edges_and_vertices_are_inside() {
        let f = square_with_hole();
        for (x, y) in [
            (0.0, 0.0),
            (4.0, 4.0),
            (0.0, 2.5),
            (4.0, 2.5),
            (3.0, 0.0),
            (3.0, 4.0),
        ] {
            assert!(f.contains(x, y), "({x}, {y})");
        }
        let t = triangle();
        // Vertices, and points on the slanted edges computed in floating point.
        for (x, y) in [(10.0, 50.0), (10.3, 50.0), (10.1, 50.7)] {
            assert!(t.contains(x, y), "vertex ({x}, {y})");
        }
        for i in 1..100 {
            let s = i as f64 / 100.0;
            let (x, y) = (10.0 + s * 0.1, 50.0 + s * 0.7);
            assert!(t.contains(x, y), "left edge ({x}, {y})");
            let (x, y) = (10.3 + s * (10.1 - 10.3), 50.0 + s * 0.7);
            assert!(t.contains(x, y), "right edge ({x}, {y})");
        }
        // Just off the slanted edge, on the outside: 1 µdeg (about 0.1 m) away.
        assert!(!t.contains(10.05 - 1e-6, 50.35));
        assert!(t.contains(10.05 + 1e-6, 50.35));
    }

    #[test]
    fn a_point_in_a_hole_is_outside_but_the_hole_boundary_is_inside() {
        let f = square_with_hole();
        assert!(!f.contains(1.5, 1.5));
        assert!(f.contains(1.0, 1.5));
        assert!(f.contains(2.0, 2.0));
        assert!(f.contains(1.5, 1.0));
        assert!(f.contains(2.0 + 1e-7, 1.5));
    }

    #[test]
    fn geo_contains_excludes_the_boundary_and_intersects_includes_it_like_ours() {
        use geo::{Contains, Intersects};
        let p: Polygon<f64> =
            polygon![(x: 0.0, y: 0.0), (x: 4.0, y: 0.0), (x: 4.0, y: 4.0), (x: 0.0, y: 0.0)];
        let on_edge = coord! { x: 2.0, y: 0.0 };
        assert!(!p.contains(&on_edge));
        assert!(p.intersects(&on_edge));
        let f = area(p);
        assert!(f.contains(2.0, 0.0));
    }

    #[test]
    fn multipolygon_members_are_all_inside_and_the_gap_is_outside() {
        let mp = MultiPolygon(vec![
            polygon![(x: 0.0, y: 0.0), (x: 1.0, y: 0.0), (x: 1.0, y: 1.0), (x: 0.0, y: 1.0), (x: 0.0, y: 0.0)],
            polygon![(x: 2.0, y: 0.0), (x: 3.0, y: 0.0), (x: 3.0, y: 1.0), (x: 2.0, y: 1.0), (x: 2.0, y: 0.0)],
        ]);
        let f = Geofence::new(def(Shape::Area(mp))).unwrap();
        assert!(f.contains(0.5, 0.5));
        assert!(f.contains(2.5, 0.5));
        assert!(f.contains(3.0, 1.0));
        assert!(!f.contains(1.5, 0.5));
        assert_eq!(f.envelopes(), vec![[0.0, 0.0, 3.0, 1.0]]);
        assert!((f.boundary_distance_m(1.5, 0.5) - 55_660.0).abs() < 100.0);
    }

    #[test]
    fn overlapping_multipolygon_members_are_rejected() {
        let mp = MultiPolygon(vec![
            polygon![(x: 0.0, y: 0.0), (x: 2.0, y: 0.0), (x: 2.0, y: 2.0), (x: 0.0, y: 0.0)],
            polygon![(x: 1.0, y: 0.0), (x: 3.0, y: 0.0), (x: 3.0, y: 2.0), (x: 1.0, y: 0.0)],
        ]);
        assert!(error_of(Shape::Area(mp)).contains("overlap"));
    }

    #[test]
    fn antimeridian_polygon_is_the_small_one_across_the_line() {
        let f = area(polygon![
            (x: 179.0, y: -17.0), (x: -179.0, y: -17.0), (x: -179.0, y: -16.0), (x: 179.0, y: -16.0), (x: 179.0, y: -17.0)
        ]);
        assert!(f.contains(179.9, -16.5));
        assert!(f.contains(-179.9, -16.5));
        assert!(f.contains(180.0, -16.5));
        assert!(f.contains(-180.0, -16.5));
        assert!(f.contains(-179.0, -16.5));
        assert!(!f.contains(0.0, -16.5));
        assert!(!f.contains(178.9, -16.5));
        assert!(!f.contains(-178.9, -16.5));
        assert_eq!(
            f.envelopes(),
            vec![[179.0, -17.0, 180.0, -16.0], [-180.0, -17.0, -179.0, -16.0]]
        );
        // Nearest boundary: the southern or northern edge, half a degree of latitude away.
        let d = f.boundary_distance_m(-179.9, -16.5);
        let expected = geodesy::distance_m((-179.9, -16.5), (-179.9, -16.0));
        assert!((d - expected).abs() < 1.0, "{d} vs {expected}");
    }

    fn square(lon: f64, lat: f64, w: f64) -> Polygon<f64> {
        let e = wrap_lon(lon + w);
        polygon![(x: lon, y: lat), (x: e, y: lat), (x: e, y: lat + w), (x: lon, y: lat + w), (x: lon, y: lat)]
    }

    #[test]
    fn multipolygon_with_a_member_across_the_antimeridian_tests_each_member_in_its_frame() {
        let mp = MultiPolygon(vec![
            square(179.5, 0.0, 1.0),
            square(10.0, 0.0, 1.0),
            square(-170.0, 0.0, 1.0),
        ]);
        let f = Geofence::new(def(Shape::Area(mp))).unwrap();
        for (x, y) in [(179.9, 0.5), (-179.9, 0.5), (10.5, 0.5), (-169.5, 0.5)] {
            assert!(f.contains(x, y), "({x}, {y})");
        }
        for (x, y) in [(179.0, 0.5), (-179.0, 0.5), (0.0, 0.5), (-171.0, 0.5)] {
            assert!(!f.contains(x, y), "({x}, {y})");
        }
    }

    #[test]
    fn multipolygon_members_overlapping_or_touching_across_frames_are_rejected() {
        // Overlap between the antimeridian member and one on the negative side.
        let mp = MultiPolygon(vec![square(179.5, 0.0, 1.0), square(-179.8, 0.2, 1.0)]);
        assert!(error_of(Shape::Area(mp)).contains("overlap"));
        // Two plain members touching along the prime meridian, beside an antimeridian member.
        let mp = MultiPolygon(vec![
            square(179.5, 0.0, 1.0),
            square(-1.0, 0.0, 1.0),
            square(0.0, 0.0, 1.0),
        ]);
        assert!(error_of(Shape::Area(mp)).contains("touch along a line"));
    }

    #[test]
    fn polygon_touching_the_antimeridian_matches_points_at_minus_180() {
        let f = area(
            polygon![(x: 170.0, y: 0.0), (x: 180.0, y: 0.0), (x: 180.0, y: 1.0), (x: 170.0, y: 0.0)],
        );
        assert!(f.contains(180.0, 0.5));
        assert!(f.contains(-180.0, 0.5));
        assert!(!f.contains(-179.9, 0.5));
    }

    #[test]
    fn self_intersecting_bowtie_is_rejected() {
        let e = error_of(Shape::Area(MultiPolygon(vec![polygon![
            (x: 0.0, y: 0.0), (x: 1.0, y: 1.0), (x: 1.0, y: 0.0), (x: 0.0, y: 1.0), (x: 0.0, y: 0.0)
        ]])));
        assert!(e.contains("self-intersection"), "{e}");
    }

    #[test]
    fn open_ring_is_rejected() {
        let shape = raw_area(
            r#"[{"exterior":[{"x":0,"y":0},{"x":1,"y":0},{"x":1,"y":1},{"x":0,"y":1}],"interiors":[]}]"#,
        );
        assert!(error_of(shape).contains("not closed"));
    }

    #[test]
    fn ring_with_too_few_positions_is_rejected() {
        let shape = raw_area(
            r#"[{"exterior":[{"x":0,"y":0},{"x":1,"y":0},{"x":0,"y":0}],"interiors":[]}]"#,
        );
        assert!(error_of(shape).contains("at least 4"));
        assert!(error_of(Shape::Area(MultiPolygon(vec![]))).contains("no polygon"));
    }

    #[test]
    fn nan_and_out_of_range_coordinates_are_rejected() {
        let nan =
            polygon![(x: 0.0, y: 0.0), (x: f64::NAN, y: 0.0), (x: 1.0, y: 1.0), (x: 0.0, y: 0.0)];
        assert!(error_of(Shape::Area(MultiPolygon(vec![nan]))).contains("finite"));
        let far = polygon![(x: 0.0, y: 0.0), (x: 1.0, y: 91.0), (x: 1.0, y: 1.0), (x: 0.0, y: 0.0)];
        assert!(error_of(Shape::Area(MultiPolygon(vec![far]))).contains("out of range"));
        let e = error_of(Shape::Circle {
            center: Point::new(f64::NAN, 0.0),
            radius_m: 10.0,
        });
        assert!(e.contains("finite"));
        let e = error_of(Shape::Corridor {
            line: line_string![(x: 0.0, y: 0.0), (x: 0.0, y: f64::INFINITY)],
            corridor_m: 10.0,
        });
        assert!(e.contains("finite"));
    }

    #[test]
    fn non_positive_or_nan_radius_and_width_are_rejected() {
        for r in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let e = error_of(Shape::Circle {
                center: Point::new(0.0, 0.0),
                radius_m: r,
            });
            assert!(e.contains("radius_m"), "{e}");
            let e = error_of(Shape::Corridor {
                line: line_string![(x: 0.0, y: 0.0), (x: 1.0, y: 0.0)],
                corridor_m: r,
            });
            assert!(e.contains("corridor_m"), "{e}");
        }
    }

    #[test]
    fn hole_outside_the_shell_is_rejected() {
        let p = polygon!(
            exterior: [(x: 0.0, y: 0.0), (x: 1.0, y: 0.0), (x: 1.0, y: 1.0), (x: 0.0, y: 0.0)],
            interiors: [[(x: 5.0, y: 5.0), (x: 6.0, y: 5.0), (x: 6.0, y: 6.0), (x: 5.0, y: 5.0)]],
        );
        let e = error_of(Shape::Area(MultiPolygon(vec![p])));
        assert!(e.contains("not contained"), "{e}");
    }

    #[test]
    fn circle_edge_is_inside_and_just_beyond_is_outside() {
        use geo::Destination;
        let f = circle(4.9, 52.37, 1_000.0);
        for bearing in [0.0, 45.0, 90.0, 200.0] {
            let on = geo::Geodesic.destination(Point::new(4.9, 52.37), bearing, 999.999_9);
            assert!(f.contains(on.x(), on.y()), "bearing {bearing}");
            let off = geo::Geodesic.destination(Point::new(4.9, 52.37), bearing, 1_000.001);
            assert!(!f.contains(off.x(), off.y()), "bearing {bearing}");
        }
        assert!(f.contains(4.9, 52.37));
        assert!((f.boundary_distance_m(4.9, 52.37) - 1_000.0).abs() < 1e-6);
    }

    #[test]
    fn circle_across_the_antimeridian_has_two_envelopes_and_contains_both_sides() {
        let f = circle(179.99, 0.0, 5_000.0);
        assert_eq!(f.envelopes().len(), 2);
        assert!(f.contains(-179.99, 0.0));
        assert!(!f.contains(-179.9, 0.0));
    }

    #[test]
    fn corridor_edge_is_inside_and_beyond_is_outside() {
        let f = Geofence::new(def(Shape::Corridor {
            line: line_string![(x: 0.0, y: 0.0), (x: 1.0, y: 0.0)],
            corridor_m: 500.0,
        }))
        .unwrap();
        let (kx, ky) = geodesy::metres_per_degree(0.0);
        assert!(f.contains(0.5, 0.0));
        assert!(f.contains(0.5, 499.999 / ky));
        assert!(!f.contains(0.5, 500.01 / ky));
        // Beyond the end of the line the corridor is round.
        assert!(f.contains(1.0 + 499.0 / kx, 0.0));
        assert!(!f.contains(1.0 + 501.0 / kx, 0.0));
        assert!((f.boundary_distance_m(0.5, 0.0) - 500.0).abs() < 1e-6);
        assert!((f.boundary_distance_m(0.5, 1_500.0 / ky) - 1_000.0).abs() < 0.01);
    }

    #[test]
    fn corridor_across_the_antimeridian_is_continuous() {
        let f = Geofence::new(def(Shape::Corridor {
            line: line_string![(x: 179.5, y: 10.0), (x: -179.5, y: 10.0)],
            corridor_m: 1_000.0,
        }))
        .unwrap();
        assert!(f.contains(180.0, 10.0));
        assert!(f.contains(-179.7, 10.001));
        assert!(!f.contains(0.0, 10.0));
        assert_eq!(f.envelopes().len(), 2);
    }

    #[test]
    fn corridor_with_many_segments_uses_its_tree_and_agrees_with_a_scan() {
        let line: LineString<f64> = (0..200)
            .map(|i| coord! { x: 179.0 + i as f64 * 0.01, y: 10.0 + (i as f64 * 0.3).sin() * 0.05 })
            .map(|c| coord! { x: wrap_lon(c.x), y: c.y })
            .collect();
        let f = Geofence::new(def(Shape::Corridor {
            line,
            corridor_m: 2_000.0,
        }))
        .unwrap();
        let Prepared::Corridor(c) = &f.prepared else {
            unreachable!()
        };
        assert!(c.tree.is_some());
        for i in 0..400 {
            let lon = wrap_lon(178.9 + i as f64 * 0.0055);
            for lat in [9.93, 9.97, 10.0, 10.02, 10.06] {
                let scan = {
                    let mut best = Nearest::new(lon, lat);
                    for (i, w) in c.pts.windows(2).enumerate() {
                        best.consider(i, w[0][0], w[0][1], w[1][0], w[1][1]);
                    }
                    best.distance_m()
                };
                assert_eq!(f.contains(lon, lat), scan <= 2_000.0, "({lon}, {lat})");
                let d = f.boundary_distance_m(lon, lat);
                assert!((d - (scan - 2_000.0).abs()).abs() < 1e-9, "({lon}, {lat})");
            }
        }
    }

    #[test]
    fn boundary_distance_is_zero_on_the_boundary_and_positive_elsewhere() {
        let f = square_with_hole();
        assert!(f.boundary_distance_m(0.0, 2.0) < 1e-6);
        assert!(f.boundary_distance_m(1.0, 1.5) < 1e-6);
        // Inside, nearest boundary is the hole's right edge (2.0) at 0.5° of longitude.
        let d = f.boundary_distance_m(2.5, 1.5);
        let expected = geodesy::distance_m((2.5, 1.5), (2.0, 1.5));
        assert!((d - expected).abs() < 5.0, "{d} vs {expected}");
        assert!(f.boundary_distance_m(f64::NAN, 0.0).is_nan());
    }

    #[test]
    fn big_polygons_use_many_bands_and_stay_exact() {
        // A wobbly 1,000-vertex outline: short edges, so many bands.
        let n = 1_000;
        let ring: LineString<f64> = (0..=n)
            .map(|i| {
                let a = (i % n) as f64 / n as f64 * std::f64::consts::TAU;
                let r = 1.0 + 0.1 * (7.0 * a).sin() + 0.02 * (i % 3) as f64;
                coord! { x: 20.0 + r * a.cos(), y: 45.0 + r * a.sin() }
            })
            .collect();
        let p = Polygon::new(ring, vec![]);
        let f = area(p.clone());
        let Prepared::Area(polys) = &f.prepared else {
            unreachable!()
        };
        assert!(polys[0].bands() > 64, "{} bands", polys[0].bands());
        use geo::Intersects;
        for i in 0..200 {
            for j in 0..200 {
                let (x, y) = (18.9 + i as f64 * 0.011, 43.9 + j as f64 * 0.011);
                assert_eq!(
                    f.contains(x, y),
                    p.intersects(&coord! { x: x, y: y }),
                    "({x}, {y})"
                );
            }
        }
    }
}
