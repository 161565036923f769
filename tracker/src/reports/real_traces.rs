//! The detectors on real recorded GPS traces (`testdata/`, see its README), against results
//! worked out apart from them: a brute-force stop finder over the same fixes, the distance
//! summed fix to fix, and stop positions found by a separate Python implementation of the
//! definition (haversine distances) when these tests were written.

use super::segments::tests::brute_stops;
use super::segments::{Segment, SegmentSettings, segments_of};
use crate::geodesy;

/// `(ts_ms, lon, lat)` of every `<trkpt>` with a `<time>`, in file order.
fn gpx(text: &str) -> Vec<(i64, f64, f64)> {
    let attr = |tag: &str, name: &str| -> f64 {
        let at = tag.find(&format!("{name}=\"")).expect(name) + name.len() + 2;
        let end = tag[at..].find('"').unwrap();
        tag[at..at + end].parse().unwrap()
    };
    let mut out = Vec::new();
    for chunk in text.split("<trkpt ").skip(1) {
        let body = &chunk[..chunk.find("</trkpt>").unwrap()];
        let tag = &body[..body.find('>').unwrap()];
        let Some(t0) = body.find("<time>") else {
            continue;
        };
        let t1 = body.find("</time>").unwrap();
        let ts = chrono::DateTime::parse_from_rfc3339(&body[t0 + 6..t1])
            .unwrap()
            .timestamp_millis();
        out.push((ts, attr(tag, "lon"), attr(tag, "lat")));
    }
    out
}

/// Runs the detector over a trace and checks it against the brute force and the Python
/// indices; returns the segments.
fn check(file: &str, s: SegmentSettings, python: &[(usize, usize)]) -> Vec<Segment> {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/reports/testdata")
            .join(file),
    )
    .unwrap();
    let pts = gpx(&text);
    assert!(pts.len() > 100, "{file}: {} fixes", pts.len());
    let segs = segments_of(s, pts.iter().map(|p| (p.0, p.1, p.2, None))).unwrap();
    let got: Vec<(i64, i64)> = segs
        .iter()
        .filter_map(|x| match x {
            Segment::Stop(st) => Some((st.start_ms, st.end_ms)),
            _ => None,
        })
        .collect();
    let brute = brute_stops(&pts, &s);
    assert_eq!(
        brute, python,
        "{file}: brute force against the Python finder"
    );
    let want: Vec<(i64, i64)> = brute.iter().map(|(a, b)| (pts[*a].0, pts[*b].0)).collect();
    assert_eq!(got, want, "{file}");
    // Trips and stops tile the track: summing the trips and the movement inside stops
    // and the short movements left out gives the whole distance; here, at least the trips
    // never exceed it and each trip's distance is its fixes' sum.
    let whole: f64 = pts
        .windows(2)
        .map(|w| geodesy::distance_m((w[0].1, w[0].2), (w[1].1, w[1].2)))
        .sum();
    let mut trips_m = 0.0;
    for seg in &segs {
        if let Segment::Trip(t) = seg {
            let a = pts.iter().position(|p| p.0 == t.start.ts_ms).unwrap();
            let b = pts.iter().position(|p| p.0 == t.end.ts_ms).unwrap();
            let sum: f64 = pts[a..=b]
                .windows(2)
                .map(|w| geodesy::distance_m((w[0].1, w[0].2), (w[1].1, w[1].2)))
                .sum();
            assert!(
                (t.distance_m - sum).abs() < 1e-6,
                "{file}: {} vs {sum}",
                t.distance_m
            );
            assert!(t.distance_m >= s.min_trip_m);
            trips_m += t.distance_m;
        }
    }
    assert!(trips_m <= whole + 1e-6);
    segs
}

#[test]
fn lake_cerknica_has_three_stops_of_five_minutes_within_100_m() {
    let segs = check(
        "cerknicko-jezero.gpx",
        SegmentSettings::default(),
        &[(34, 46), (166, 187), (271, 281)],
    );
    let trips = segs
        .iter()
        .filter(|s| matches!(s, Segment::Trip(_)))
        .count();
    // between each two stops; the 380 m before the first are under min_trip_m
    assert_eq!(trips, 2, "{segs:?}");
    // no GPS jump turns the walk into a drive: at most a brisk cyclist's speed over half a
    // minute (between fixes a second apart one jump read 330 km/h)
    for s in &segs {
        if let Segment::Trip(t) = s {
            assert!(t.max_speed_kmh.unwrap() < 40.0, "{t:?}");
        }
    }
}

#[test]
fn the_korita_walk_has_ten_stops_including_a_40_minute_rest() {
    let segs = check(
        "korita-zbevnica.gpx",
        SegmentSettings::default(),
        &[
            (0, 6),
            (97, 104),
            (109, 133),
            (144, 153),
            (170, 176),
            (179, 190),
            (191, 208),
            (221, 238),
            (369, 392),
            (450, 460),
        ],
    );
    let longest = segs
        .iter()
        .filter_map(|s| match s {
            Segment::Stop(st) => Some(st.duration_s()),
            _ => None,
        })
        .fold(0.0, f64::max);
    assert_eq!(longest, 2456.0);
}

#[test]
fn the_car_ride_around_visnjan_stops_at_30_m_for_a_minute() {
    let s = SegmentSettings {
        stop_radius_m: 30.0,
        min_stop_s: 60.0,
        min_trip_m: 500.0,
    };
    check(
        "around-visnjan-with-car.gpx",
        s,
        &[(0, 9), (61, 73), (93, 103)],
    );
    // with the defaults the 8-minute ride is one trip and no stop
    let segs = check(
        "around-visnjan-with-car.gpx",
        SegmentSettings::default(),
        &[],
    );
    assert_eq!(segs.len(), 1);
    let Segment::Trip(t) = segs[0] else {
        panic!("{segs:?}")
    };
    // 2,733 m by the Python haversine sum
    assert!((t.distance_m - 2733.2).abs() < 5.0, "{}", t.distance_m);
}
