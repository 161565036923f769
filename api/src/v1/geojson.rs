//! Geofences as GeoJSON Features (RFC 7946), by hand with serde: in (validated) and out.
//!
//! In: `{"type": "Feature", "id"?, "geometry", "properties"}` with a Polygon or MultiPolygon
//! (holes allowed), a Point with `properties.radius_m`, or a LineString with
//! `properties.corridor_m`; properties `name`, `kind`, `confirm_seconds`, `dwell_seconds`.
//! Unknown members are refused, except the `tenant` and `updated_at` properties this API
//! writes itself, so that a Feature read back can be sent again. Positions are
//! `[lon, lat]` degrees (an altitude is ignored).

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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", deny_unknown_fields)]
enum GeometryIn {
    Polygon {
        coordinates: Vec<Vec<Vec<f64>>>,
    },
    MultiPolygon {
        coordinates: Vec<Vec<Vec<Vec<f64>>>>,
    },
    Point {
        coordinates: Vec<f64>,
    },
    LineString {
        coordinates: Vec<Vec<f64>>,
    },
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

    /// Converts and validates (via [`Geofence::new`]) into the definition with id `id`.
    pub fn into_def(self, id: String) -> Result<GeofenceDef, ApiError> {
        if self.kind != "Feature" {
            return Err(ApiError::bad_request(format!(
                "expected a GeoJSON Feature, got type {:?}",
                self.kind
            )));
        }
        let p = self.properties.unwrap_or_default();
        let shape = match self.geometry {
            GeometryIn::Polygon { coordinates } => {
                no_width(&p, "Polygon")?;
                Shape::Area(MultiPolygon(vec![polygon(coordinates)?]))
            }
            GeometryIn::MultiPolygon { coordinates } => {
                no_width(&p, "MultiPolygon")?;
                let polys = coordinates
                    .into_iter()
                    .map(polygon)
                    .collect::<Result<Vec<_>, _>>()?;
                if polys.is_empty() {
                    return Err(ApiError::bad_request("a MultiPolygon needs a polygon"));
                }
                Shape::Area(MultiPolygon(polys))
            }
            GeometryIn::Point { coordinates } => {
                if p.corridor_m.is_some() {
                    return Err(ApiError::bad_request(
                        "properties.corridor_m applies to a LineString, not a Point",
                    ));
                }
                let radius_m = p.radius_m.ok_or_else(|| {
                    ApiError::bad_request("a Point geofence needs properties.radius_m (metres)")
                })?;
                let c = position(&coordinates)?;
                Shape::Circle {
                    center: Point(c),
                    radius_m,
                }
            }
            GeometryIn::LineString { coordinates } => {
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
                    line: line(coordinates)?,
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
        match Geofence::new(def.clone()) {
            Ok(_) => Ok(def),
            Err(TrackerError::InvalidGeometry(msg)) => Err(ApiError::InvalidGeometry(format!(
                "invalid geometry: {msg}"
            ))),
            Err(other) => Err(ApiError::bad_request(other.to_string())),
        }
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

fn position(p: &[f64]) -> Result<Coord<f64>, ApiError> {
    match p {
        [lon, lat] | [lon, lat, _] => Ok(Coord { x: *lon, y: *lat }),
        _ => Err(ApiError::bad_request(format!(
            "a position is [lon, lat] or [lon, lat, alt], got {} numbers",
            p.len()
        ))),
    }
}

fn line(points: Vec<Vec<f64>>) -> Result<LineString<f64>, ApiError> {
    Ok(LineString(
        points
            .iter()
            .map(|p| position(p))
            .collect::<Result<_, _>>()?,
    ))
}

/// A linear ring: closed (first position = last) with at least 4 positions (RFC 7946
/// §3.1.6). Checked here because geo-types would close an open ring silently.
fn ring(points: Vec<Vec<f64>>) -> Result<LineString<f64>, ApiError> {
    let l = line(points)?;
    if l.0.len() < 4 {
        return Err(ApiError::bad_request(format!(
            "a polygon ring needs at least 4 positions, got {}",
            l.0.len()
        )));
    }
    if l.0.first() != l.0.last() {
        return Err(ApiError::bad_request(
            "a polygon ring must be closed: its last position must equal its first",
        ));
    }
    Ok(l)
}

fn polygon(rings: Vec<Vec<Vec<f64>>>) -> Result<Polygon<f64>, ApiError> {
    let mut rings = rings.into_iter();
    let exterior = rings
        .next()
        .ok_or_else(|| ApiError::bad_request("a polygon needs an exterior ring"))?;
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
