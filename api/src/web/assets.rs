//! The files the pages load, compiled into the binary. Leaflet (npm `leaflet`, BSD-2-Clause,
//! its LICENSE beside it) is vendored under `api/assets/vendor/leaflet/`; `api/assets/package.json`
//! pins the version it came from.

/// One file served under `/assets/`.
pub struct Asset {
    /// Path under `/assets/`.
    pub path: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
    /// Vendored files change only with a new version of the binary's Leaflet: cache them a
    /// week. Our own files are revalidated (`no-cache` + `ETag`) so an upgrade shows at once.
    pub immutable: bool,
}

impl Asset {
    /// A strong `ETag`: FNV-1a 64 of the bytes.
    pub fn etag(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("\"{h:016x}\"")
    }
}

pub const MAP_HTML: &str = include_str!("../../assets/map.html");
pub const TRACK_HTML: &str = include_str!("../../assets/track.html");
pub const NOT_FOUND_HTML: &str = include_str!("../../assets/not_found.html");

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const PNG: &str = "image/png";

macro_rules! asset {
    ($path:literal, $ct:expr, $immutable:expr) => {
        Asset {
            path: $path,
            content_type: $ct,
            bytes: include_bytes!(concat!("../../assets/", $path)),
            immutable: $immutable,
        }
    };
}

/// Every file under `/assets/`.
pub const ALL: &[Asset] = &[
    asset!("app.css", CSS, false),
    asset!("common.js", JS, false),
    asset!("map.js", JS, false),
    asset!("track.js", JS, false),
    asset!("vendor/leaflet/leaflet.js", JS, true),
    asset!("vendor/leaflet/leaflet.css", CSS, true),
    asset!("vendor/leaflet/LICENSE", "text/plain; charset=utf-8", true),
    asset!("vendor/leaflet/images/marker-icon.png", PNG, true),
    asset!("vendor/leaflet/images/marker-icon-2x.png", PNG, true),
    asset!("vendor/leaflet/images/marker-shadow.png", PNG, true),
    asset!("vendor/leaflet/images/layers.png", PNG, true),
    asset!("vendor/leaflet/images/layers-2x.png", PNG, true),
];

pub fn find(path: &str) -> Option<&'static Asset> {
    ALL.iter().find(|a| a.path == path)
}
