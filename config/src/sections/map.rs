//! `[map]`: the live map page.

use serde::{Deserialize, Serialize};

use crate::urls::is_http_url;
use crate::validate::Problems;

/// The `[map]` section, for the live map served by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MapConfig {
    /// Raster tile URL template with `{z}`, `{x}` and `{y}` (and optionally `{s}`), `http(s)://`
    /// or a path on this server starting with `/`.
    pub tile_url: String,
    /// Attribution shown on the map for the tiles (HTML allowed, as in Leaflet/MapLibre).
    /// OpenStreetMap's tile usage policy requires one.
    pub tile_attribution: String,
}

impl Default for MapConfig {
    fn default() -> Self {
        MapConfig {
            tile_url: "https://tile.openstreetmap.org/{z}/{x}/{y}.png".to_string(),
            tile_attribution: "&copy; <a href=\"https://www.openstreetmap.org/copyright\">OpenStreetMap</a> contributors".to_string(),
        }
    }
}

impl MapConfig {
    pub(crate) fn validate(&self, p: &mut Problems) {
        let url = &self.tile_url;
        let absolute = is_http_url(url) || (url.starts_with('/') && !url.starts_with("//"));
        p.check(
            absolute && ["{z}", "{x}", "{y}"].iter().all(|t| url.contains(t)),
            "map.tile_url",
            format!(
                "must be an http(s):// URL or a /path containing {{z}}, {{x}} and {{y}}, got {url:?}"
            ),
        );
    }
}
