//! GeoJSON (RFC 7946) in and out, with serde: the one GeoJSON reader of Landport.
//!
//! - Geofences as Features ([`FeatureIn`], [`feature`]): `{"type": "Feature", "id"?,
//!   "geometry", "properties"}` with a Polygon or MultiPolygon (holes allowed), a Point with
//!   `properties.radius_m`, or a LineString with `properties.corridor_m`; properties `name`,
//!   `kind`, `confirm_seconds`, `dwell_seconds`. Unknown members are refused, except the
//!   `tenant` and `updated_at` properties this API writes itself, so that a Feature read back
//!   can be sent again.
//! - Bare geometries for the other resources: [`point`] (a shipment's origin or destination)
//!   and [`line_string`] (a shipment's route, or a Feature holding one).
//!
//! Every reader goes through the same typed geometry and the same position, line and ring
//! rules: positions are `[lon, lat]` degrees (an altitude is ignored), a geometry's members
//! are `type`, `coordinates` and an optional `bbox` (not read), a polygon ring is closed.
//! Errors are reasons (`String`) the handlers turn into a 400 with a JSON body.
//!
//! Why not the `geojson` crate: it keeps unknown ("foreign") members instead of refusing
//! them, leaves ring closure and position arity to us anyway, has no OpenAPI schema for
//! `utoipa`, and would add `geojson`, `tinyvec` and `log` for what is ~100 lines of serde here.

use geo_types::{Coord, LineString, MultiPolygon, Point, Polygon};
use landport_store::GeofenceRecord;
use landport_tracker::geofence::Geofence;
use landport_tracker::{GeofenceDef, Shape, TrackerError};
use serde::Deserialize;
use serde_json::{Value, json};

use super::view::rfc3339;
use crate::error::ApiError;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeatureIn {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    id: Option<Value>,
    geometry: GeometryIn,
    #[serde(default)]
    properties: Option<PropertiesIn>,
    #[serde(default)]
    #[allow(dead_code)]
    bbox: Option<Vec<f64>>,
}

/// A geometry as sent. `bbox` (RFC 7946 §5) is allowed on each and not read.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", deny_unknown_fields)]
#[allow(dead_code)] // `bbox`
enum GeometryIn {
    Polygon {
        coordinates: Vec<Vec<Vec<f64>>>,
        #[serde(default)]
        bbox: Option<Vec<f64>>,
    },
    MultiPolygon {
        coordinates: Vec<Vec<Vec<Vec<f64>>>>,
        #[serde(default)]
        bbox: Option<Vec<f64>>,
    },
    Point {
        coordinates: Vec<f64>,
        #[serde(default)]
        bbox: Option<Vec<f64>>,
    },
    LineString {
        coordinates: Vec<Vec<f64>>,
        #[serde(default)]
        bbox: Option<Vec<f64>>,
    },
}

impl GeometryIn {
    /// Reads a geometry object; the reason names what was expected.
    fn from_value(v: Value) -> Result<GeometryIn, String> {
        serde_json::from_value(v).map_err(|e| {
            format!("not a GeoJSON Polygon, MultiPolygon, Point or LineString geometry: {e}")
        })
    }

    fn type_name(&self) -> &'static str {
        match self {
            GeometryIn::Polygon { .. } => "Polygon",
            GeometryIn::MultiPolygon { .. } => "MultiPolygon",
            GeometryIn::Point { .. } => "Point",
            GeometryIn::LineString { .. } => "LineString",
        }
    }
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PropertiesIn {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    confirm_seconds: Option<u32>,
    #[serde(default)]
    dwell_seconds: Option<u32>,
    #[serde(default)]
    radius_m: Option<f64>,
    #[serde(default)]
    corridor_m: Option<f64>,
    /// Written by this API on the way out; ignored on the way in.
    #[serde(default)]
    #[allow(dead_code)]
    tenant: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    updated_at: Option<Value>,
}

impl FeatureIn {
    /// The Feature's `id`: a string, or a number (kept as its decimal text); `None` if absent.
    pub fn id(&self) -> Result<Option<String>, ApiError> {
        match &self.id {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(ApiError::bad_request(
                "the Feature id must be a string or a number",
            )),
        }
    }

    /// Positions in the geometry: every ring of every polygon, the line's, or 1 for a Point.
    pub fn vertices(&self) -> u64 {
        let n = match &self.geometry {
            GeometryIn::Polygon { coordinates, .. } => coordinates.iter().map(Vec::len).sum(),
            GeometryIn::MultiPolygon { coordinates, .. } => coordinates
                .iter()
                .flat_map(|p| p.iter().map(Vec::len))
                .sum(),
            GeometryIn::Point { .. } => 1,
            GeometryIn::LineString { coordinates, .. } => coordinates.len(),
        };
        n as u64
    }

    /// Converts into the definition with id `id`, checking the GeoJSON (shape of the members,
    /// positions, closed rings, at most `max_vertices` positions: a 422 naming
    /// `limits.geofence_vertices`) but not the geometry's validity: [`prepare`] does that, once.
    pub fn into_def(self, id: String, max_vertices: u64) -> Result<GeofenceDef, ApiError> {
        if self.kind != "Feature" {
            return Err(ApiError::bad_request(format!(
                "expected a GeoJSON Feature, got type {:?}",
                self.kind
            )));
        }
        let vertices = self.vertices();
        if vertices > max_vertices {
            return Err(ApiError::LimitExceeded {
                limit: "limits.geofence_vertices",
                message: format!(
                    "limits.geofence_vertices: the geometry has {vertices} positions, more than \
                     the {max_vertices} allowed"
                ),
            });
        }
        let p = self.properties.unwrap_or_default();
        for (what, v) in [("properties.name", &p.name), ("properties.kind", &p.kind)] {
            if v.as_ref()
                .is_some_and(|v| v.chars().count() > MAX_TEXT_CHARS)
            {
                return Err(ApiError::bad_request(format!(
                    "{what} is longer than {MAX_TEXT_CHARS} characters"
                )));
            }
        }
        let shape = match self.geometry {
            GeometryIn::Polygon { coordinates, .. } => {
                no_width(&p, "Polygon")?;
                Shape::Area(MultiPolygon(vec![
                    polygon(coordinates).map_err(ApiError::bad_request)?,
                ]))
            }
            GeometryIn::MultiPolygon { coordinates, .. } => {
                no_width(&p, "MultiPolygon")?;
                let polys = coordinates
                    .into_iter()
                    .map(polygon)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(ApiError::bad_request)?;
                if polys.is_empty() {
                    return Err(ApiError::bad_request("a MultiPolygon needs a polygon"));
                }
                Shape::Area(MultiPolygon(polys))
            }
            GeometryIn::Point { coordinates, .. } => {
                if p.corridor_m.is_some() {
                    return Err(ApiError::bad_request(
                        "properties.corridor_m applies to a LineString, not a Point",
                    ));
                }
                let radius_m = p.radius_m.ok_or_else(|| {
                    ApiError::bad_request("a Point geofence needs properties.radius_m (metres)")
                })?;
                let c = position(&coordinates).map_err(ApiError::bad_request)?;
                Shape::Circle {
                    center: Point(c),
                    radius_m,
                }
            }
            GeometryIn::LineString { coordinates, .. } => {
                if p.radius_m.is_some() {
                    return Err(ApiError::bad_request(
                        "properties.radius_m applies to a Point, not a LineString",
                    ));
                }
                let corridor_m = p.corridor_m.ok_or_else(|| {
                    ApiError::bad_request(
                        "a LineString geofence needs properties.corridor_m (metres)",
                    )
                })?;
                Shape::Corridor {
                    line: line(coordinates).map_err(ApiError::bad_request)?,
                    corridor_m,
                }
            }
        };
        let def = GeofenceDef {
            name: p.name.unwrap_or_else(|| id.clone()),
            id,
            kind: p.kind.unwrap_or_default(),
            shape,
            confirm_seconds: p.confirm_seconds,
            dwell_seconds: p.dwell_seconds,
        };
        Ok(def)
    }
}

/// The longest geofence name or kind, characters.
pub const MAX_TEXT_CHARS: usize = 256;

/// Validates and prepares a definition ([`Geofence::new`]: O(n log n) in its vertices) on a
/// blocking thread, off the async workers; the result goes to the tracker as it is, which
/// does not validate again. Invalid geometry is a 400 saying why.
pub async fn prepare(def: GeofenceDef) -> Result<Geofence, ApiError> {
    match tokio::task::spawn_blocking(move || Geofence::new(def)).await {
        Ok(Ok(fence)) => Ok(fence),
        Ok(Err(TrackerError::InvalidGeometry(msg))) => Err(ApiError::InvalidGeometry(format!(
            "invalid geometry: {msg}"
        ))),
        Ok(Err(other)) => Err(ApiError::bad_request(other.to_string())),
        Err(e) => Err(ApiError::Internal(format!(
            "geofence validation failed: {e}"
        ))),
    }
}

fn no_width(p: &PropertiesIn, what: &str) -> Result<(), ApiError> {
    if p.radius_m.is_some() || p.corridor_m.is_some() {
        return Err(ApiError::bad_request(format!(
            "properties.radius_m and corridor_m do not apply to a {what}"
        )));
    }
    Ok(())
}

/// A GeoJSON Point geometry, `{"type": "Point", "coordinates": [lon, lat]}` -> its position
/// (`x` = lon, `y` = lat, degrees).
pub(crate) fn point(v: Value) -> Result<Coord<f64>, String> {
    match GeometryIn::from_value(v)? {
        GeometryIn::Point { coordinates, .. } => position(&coordinates),
        other => Err(format!("expected a Point, got a {}", other.type_name())),
    }
}

/// A GeoJSON LineString geometry, or a Feature holding one (the Feature's other members are
/// not read) -> the line, at least 2 positions.
pub(crate) fn line_string(v: Value) -> Result<LineString<f64>, String> {
    let geometry = match v {
        Value::Object(mut m) if m.get("type").and_then(Value::as_str) == Some("Feature") => {
            m.remove("geometry").unwrap_or(Value::Null)
        }
        v => v,
    };
    let l = match GeometryIn::from_value(geometry)? {
        GeometryIn::LineString { coordinates, .. } => line(coordinates)?,
        other => {
            return Err(format!(
                "expected a LineString (or a Feature holding one), got a {}",
                other.type_name()
            ));
        }
    };
    if l.0.len() < 2 {
        return Err(format!(
            "a LineString needs at least 2 positions, got {}",
            l.0.len()
        ));
    }
    Ok(l)
}

fn position(p: &[f64]) -> Result<Coord<f64>, String> {
    match p {
        [lon, lat] | [lon, lat, _] => Ok(Coord { x: *lon, y: *lat }),
        _ => Err(format!(
            "a position is [lon, lat] or [lon, lat, alt], got {} numbers",
            p.len()
        )),
    }
}

fn line(points: Vec<Vec<f64>>) -> Result<LineString<f64>, String> {
    Ok(LineString(
        points
            .iter()
            .map(|p| position(p))
            .collect::<Result<_, _>>()?,
    ))
}

/// A linear ring: closed (first position = last) with at least 4 positions (RFC 7946
/// §3.1.6). Checked here because geo-types would close an open ring silently.
fn ring(points: Vec<Vec<f64>>) -> Result<LineString<f64>, String> {
    let l = line(points)?;
    if l.0.len() < 4 {
        return Err(format!(
            "a polygon ring needs at least 4 positions, got {}",
            l.0.len()
        ));
    }
    if l.0.first() != l.0.last() {
        return Err(
            "a polygon ring must be closed: its last position must equal its first".to_string(),
        );
    }
    Ok(l)
}

fn polygon(rings: Vec<Vec<Vec<f64>>>) -> Result<Polygon<f64>, String> {
    let mut rings = rings.into_iter();
    let exterior = rings
        .next()
        .ok_or_else(|| "a polygon needs an exterior ring".to_string())?;
    let holes = rings.map(ring).collect::<Result<Vec<_>, _>>()?;
    Ok(Polygon::new(ring(exterior)?, holes))
}

fn coords(l: &LineString<f64>) -> Vec<[f64; 2]> {
    l.0.iter().map(|c| [c.x, c.y]).collect()
}

fn polygon_coords(p: &Polygon<f64>) -> Vec<Vec<[f64; 2]>> {
    std::iter::once(p.exterior())
        .chain(p.interiors())
        .map(coords)
        .collect()
}

/// The stored geofence as a Feature: `id` is the geofence id; a one-polygon area is a Polygon.
pub fn feature(rec: &GeofenceRecord) -> Value {
    let d = &rec.def;
    let mut props = json!({
        "name": d.name, "kind": d.kind,
        "confirm_seconds": d.confirm_seconds, "dwell_seconds": d.dwell_seconds,
        "tenant": rec.tenant, "updated_at": rfc3339(Some(rec.updated_ms)),
    });
    let geometry = match &d.shape {
        Shape::Area(mp) if mp.0.len() == 1 => {
            json!({"type": "Polygon", "coordinates": polygon_coords(&mp.0[0])})
        }
        Shape::Area(mp) => json!({"type": "MultiPolygon",
            "coordinates": mp.0.iter().map(polygon_coords).collect::<Vec<_>>()}),
        Shape::Circle { center, radius_m } => {
            props["radius_m"] = json!(radius_m);
            json!({"type": "Point", "coordinates": [center.x(), center.y()]})
        }
        Shape::Corridor { line, corridor_m } => {
            props["corridor_m"] = json!(corridor_m);
            json!({"type": "LineString", "coordinates": coords(line)})
        }
    };
    json!({"type": "Feature", "id": d.id, "geometry": geometry, "properties": props})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feature_in(v: Value) -> Result<GeofenceDef, String> {
        let f: FeatureIn = serde_json::from_value(v).map_err(|e| e.to_string())?;
        let def = f
            .into_def("fence".into(), 10_000)
            .map_err(|e| e.to_string())?;
        // What the handlers do next (`prepare`, on a blocking thread).
        Geofence::new(def.clone())
            .map(|_| def)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn more_positions_than_the_cap_are_a_limit_naming_it() {
        let ring: Vec<[f64; 2]> = (0..=12)
            .map(|i| {
                let a = f64::from(i % 12) / 12.0 * std::f64::consts::TAU;
                [a.cos(), a.sin()]
            })
            .collect();
        let f = |max| {
            let f: FeatureIn = serde_json::from_value(json!({"type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring]}}))
            .unwrap();
            f.into_def("fence".into(), max)
        };
        assert!(f(13).is_ok());
        match f(12) {
            Err(ApiError::LimitExceeded { limit, message }) => {
                assert_eq!(limit, "limits.geofence_vertices");
                assert!(message.contains("13 positions"), "{message}");
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
    }

    fn square() -> Value {
        json!([[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]])
    }

    #[test]
    fn a_point_is_lon_then_lat_and_an_altitude_is_ignored() {
        let c = point(json!({"type": "Point", "coordinates": [122.2, 40.6]})).unwrap();
        assert_eq!((c.x, c.y), (122.2, 40.6));
        let c = point(json!({"type": "Point", "coordinates": [122.2, 40.6, 12.0]})).unwrap();
        assert_eq!((c.x, c.y), (122.2, 40.6));
        let c = point(json!({"type": "Point", "coordinates": [1, 2], "bbox": [1, 2, 1, 2]}));
        assert!(c.is_ok(), "{c:?}");
    }

    #[test]
    fn a_bad_point_says_why() {
        let e = |v| point(v).unwrap_err();
        assert!(e(json!({"type": "Point", "coordinates": [1]})).contains("[lon, lat]"));
        assert!(e(json!({"type": "Point", "coordinates": [1, 2, 3, 4]})).contains("4 numbers"));
        assert!(
            e(json!({"type": "Point", "coordinates": [1, 2], "name": "x"})).contains("unknown")
        );
        assert!(e(json!({"type": "Point", "coordinates": ["1", 2]})).contains("GeoJSON"));
        assert!(e(json!({"type": "Circle", "coordinates": [1, 2]})).contains("Circle"));
        assert!(
            e(json!({"type": "LineString", "coordinates": [[1, 2], [3, 4]]}))
                .contains("expected a Point, got a LineString")
        );
    }

    #[test]
    fn a_line_string_comes_bare_or_in_a_feature() {
        let want = LineString::from(vec![(121.6, 38.9), (122.2, 40.6)]);
        let g = json!({"type": "LineString", "coordinates": [[121.6, 38.9], [122.2, 40.6, 5]]});
        assert_eq!(line_string(g.clone()), Ok(want.clone()));
        let f = json!({"type": "Feature", "geometry": g, "properties": {"road": "G15"}});
        assert_eq!(line_string(f), Ok(want));
    }

    #[test]
    fn a_bad_line_string_says_why() {
        let e = |v| line_string(v).unwrap_err();
        assert!(e(json!({"type": "LineString", "coordinates": [[1, 2]]})).contains("at least 2"));
        assert!(
            e(json!({"type": "LineString", "coordinates": [[1, 2], [3]]})).contains("[lon, lat]")
        );
        assert!(e(json!({"type": "LineString", "coordinates": "nope"})).contains("GeoJSON"));
        assert!(e(json!({"type": "Polygon", "coordinates": square()})).contains("got a Polygon"));
        assert!(e(json!({"type": "Feature"})).contains("GeoJSON"));
        assert!(e(json!("A1")).contains("GeoJSON"));
    }

    #[test]
    fn geofence_features_use_the_same_position_and_ring_rules() {
        let poly = |coordinates| {
            feature_in(
                json!({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": coordinates}}),
            )
        };
        assert!(matches!(poly(square()).unwrap().shape, Shape::Area(_)));
        assert!(
            poly(json!([[[0, 0], [1, 0], [1, 1], [0, 1]]]))
                .unwrap_err()
                .contains("closed")
        );
        assert!(
            poly(json!([[[0, 0], [1, 0], [0, 0]]]))
                .unwrap_err()
                .contains("at least 4")
        );
        assert!(poly(json!([])).unwrap_err().contains("exterior ring"));
        assert!(
            poly(json!([[[0], [1, 0], [1, 1], [0]]]))
                .unwrap_err()
                .contains("[lon, lat]")
        );
        let circle = feature_in(json!({"type": "Feature",
            "geometry": {"type": "Point", "coordinates": [122.2, 40.6]},
            "properties": {"radius_m": 500.0}}))
        .unwrap();
        assert!(matches!(circle.shape, Shape::Circle { center, .. } if center.x() == 122.2));
        let unknown = feature_in(json!({"type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": square(), "style": "red"}}));
        assert!(unknown.unwrap_err().contains("unknown field"));
    }
}
