use proptest::prelude::*;

use super::*;

const LON0: f64 = 122.9946;
const LAT0: f64 = 41.1087;
const T0: i64 = 1_795_400_000_000;

fn settings() -> SegmentSettings {
    SegmentSettings::default()
}

/// A fix `x_m` east and `y_m` north of the origin, `t_s` seconds after `T0`.
fn fix(t_s: f64, x_m: f64, y_m: f64) -> (i64, f64, f64, Option<f64>) {
    let frame = geodesy::LocalFrame::new(LON0, LAT0);
    let (lon, lat) = frame.to_lon_lat(x_m, y_m);
    (T0 + (t_s * 1000.0).round() as i64, lon, lat, None)
}

fn stops(segs: &[Segment]) -> Vec<Stop> {
    segs.iter()
        .filter_map(|s| match s {
            Segment::Stop(s) => Some(*s),
            Segment::Trip(_) => None,
        })
        .collect()
}

fn trips(segs: &[Segment]) -> Vec<Trip> {
    segs.iter()
        .filter_map(|s| match s {
            Segment::Trip(t) => Some(*t),
            Segment::Stop(_) => None,
        })
        .collect()
}

/// Drives east at 15 m/s for `secs` from `(x, t)`, a fix every 10 s (150 m apart).
fn drive(out: &mut Vec<(i64, f64, f64, Option<f64>)>, t: &mut f64, x: &mut f64, secs: f64) {
    let end = *t + secs;
    while *t < end {
        *t += 10.0;
        *x += 150.0;
        out.push(fix(*t, *x, 0.0));
    }
}

/// Parks at `x` for `secs`, a fix every 10 s, jittering by up to `jitter_m`.
fn park(
    out: &mut Vec<(i64, f64, f64, Option<f64>)>,
    t: &mut f64,
    x: f64,
    secs: f64,
    jitter_m: f64,
) {
    let end = *t + secs;
    let mut k = 0.0_f64;
    while *t < end {
        *t += 10.0;
        k += 1.0;
        out.push(fix(
            *t,
            x + jitter_m * (k * 1.7).sin(),
            jitter_m * (k * 2.3).cos(),
        ));
    }
}

#[test]
fn jitter_while_parked_is_one_stop() {
    let mut pts = Vec::new();
    let mut t = 0.0;
    park(&mut pts, &mut t, 0.0, 3600.0, 35.0);
    let segs = segments_of(settings(), pts.clone()).unwrap();
    assert_eq!(stops(&segs).len(), 1, "{segs:?}");
    assert!(trips(&segs).is_empty(), "{segs:?}");
    let s = stops(&segs)[0];
    assert_eq!((s.start_ms, s.end_ms), (pts[0].0, pts.last().unwrap().0));
    assert_eq!(s.fixes as usize, pts.len());
    // the mean of the jittered fixes is near the parking place
    assert!(geodesy::distance_m((s.lon, s.lat), (LON0, LAT0)) < 10.0);
}

#[test]
fn drive_park_drive_is_a_trip_a_stop_and_a_trip() {
    let mut pts = Vec::new();
    let (mut t, mut x) = (0.0, 0.0);
    pts.push(fix(0.0, 0.0, 0.0));
    drive(&mut pts, &mut t, &mut x, 600.0); // 9 km
    let park_from = pts.len();
    park(&mut pts, &mut t, x, 900.0, 5.0);
    let park_to = pts.len() - 1;
    drive(&mut pts, &mut t, &mut x, 300.0);
    let segs = segments_of(settings(), pts.clone()).unwrap();
    let kinds: Vec<&str> = segs
        .iter()
        .map(|s| match s {
            Segment::Stop(_) => "stop",
            Segment::Trip(_) => "trip",
        })
        .collect();
    assert_eq!(kinds, ["trip", "stop", "trip"]);
    let (a, s, b) = (trips(&segs)[0], stops(&segs)[0], trips(&segs)[1]);
    // The stop starts at the last fix of the drive (the first within the radius of the
    // parking place stays the anchor) and ends at the last parked fix.
    assert_eq!(s.start_ms, pts[park_from - 1].0);
    assert_eq!(s.end_ms, pts[park_to].0);
    assert_eq!(a.start.ts_ms, pts[0].0);
    assert_eq!(a.end.ts_ms, s.start_ms);
    assert_eq!(b.start.ts_ms, s.end_ms);
    assert_eq!(b.end.ts_ms, pts.last().unwrap().0);
    assert!((a.distance_m - 9000.0).abs() < 5.0, "{}", a.distance_m);
    let v = a.avg_speed_kmh().unwrap();
    assert!((v - 54.0).abs() < 0.5, "{v}");
    assert!((a.max_speed_kmh.unwrap() - 54.0).abs() < 0.5);
}

#[test]
fn reported_speeds_win_over_computed_ones() {
    let pts = vec![
        (T0, LON0, LAT0, Some(30.0)),
        (T0 + 60_000, LON0 + 0.01, LAT0, Some(71.5)),
        (T0 + 120_000, LON0 + 0.02, LAT0, None),
    ];
    let segs = segments_of(settings(), pts).unwrap();
    assert_eq!(trips(&segs)[0].max_speed_kmh, Some(71.5));
}

#[test]
fn a_movement_shorter_than_min_trip_is_no_trip() {
    let mut pts = Vec::new();
    let mut t = 0.0;
    park(&mut pts, &mut t, 0.0, 600.0, 0.0);
    // 300 m to the next bay, then parked again
    pts.push(fix(t + 30.0, 150.0, 0.0));
    pts.push(fix(t + 60.0, 300.0, 0.0));
    t += 60.0;
    park(&mut pts, &mut t, 300.0, 600.0, 0.0);
    let segs = segments_of(settings(), pts).unwrap();
    assert_eq!(stops(&segs).len(), 2);
    assert!(trips(&segs).is_empty(), "{segs:?}");
}

#[test]
fn a_short_halt_is_no_stop() {
    let mut pts = vec![fix(0.0, 0.0, 0.0)];
    let (mut t, mut x) = (0.0, 0.0);
    drive(&mut pts, &mut t, &mut x, 300.0);
    park(&mut pts, &mut t, x, 200.0, 0.0); // a red light, under 300 s
    drive(&mut pts, &mut t, &mut x, 300.0);
    let segs = segments_of(settings(), pts.clone()).unwrap();
    assert!(stops(&segs).is_empty(), "{segs:?}");
    assert_eq!(trips(&segs).len(), 1);
    assert_eq!(trips(&segs)[0].start.ts_ms, pts[0].0);
    assert_eq!(trips(&segs)[0].end.ts_ms, pts.last().unwrap().0);
}

#[test]
fn a_stop_across_the_range_boundary_is_in_both_ranges_cut_at_the_boundary() {
    let mut pts = vec![fix(0.0, 0.0, 0.0)];
    let (mut t, mut x) = (0.0, 0.0);
    drive(&mut pts, &mut t, &mut x, 300.0);
    park(&mut pts, &mut t, x, 1800.0, 10.0);
    drive(&mut pts, &mut t, &mut x, 300.0);
    let whole = stops(&segments_of(settings(), pts.clone()).unwrap());
    assert_eq!(whole.len(), 1);
    let mid = whole[0].start_ms + (whole[0].end_ms - whole[0].start_ms) / 2;
    let cut = pts.iter().position(|p| p.0 > mid).unwrap();
    let first = stops(&segments_of(settings(), pts[..cut].to_vec()).unwrap());
    let second = stops(&segments_of(settings(), pts[cut..].to_vec()).unwrap());
    assert_eq!(first.len(), 1);
    assert_eq!(second.len(), 1);
    assert_eq!(first[0].start_ms, whole[0].start_ms);
    assert_eq!(first[0].end_ms, pts[cut - 1].0);
    assert_eq!(second[0].start_ms, pts[cut].0);
    assert_eq!(second[0].end_ms, whole[0].end_ms);
}

#[test]
fn readings_out_of_order_are_refused_and_duplicates_ignored() {
    let mut s = Segmenter::new(settings());
    let mut out = Vec::new();
    s.push(T0 + 10_000, LON0, LAT0, None, &mut out).unwrap();
    s.push(T0 + 10_000, LON0 + 1.0, LAT0, None, &mut out)
        .unwrap();
    let err = s.push(T0, LON0, LAT0, None, &mut out).unwrap_err();
    assert_eq!(
        err,
        OutOfOrder {
            previous_ms: T0 + 10_000,
            ts_ms: T0
        }
    );
    s.push(T0 + 20_000, LON0, LAT0, None, &mut out).unwrap();
    s.finish(&mut out);
    // the duplicate 1° east was ignored: no trip of 84 km
    assert!(out.is_empty(), "{out:?}");
}

// ---- property tests: against a brute-force finder of the definition ----

/// The definition, by brute force over the whole slice (no streaming, no held fixes): from
/// each fix, the longest run within the radius of it; a stop when it spans `min_stop_s`.
/// Returns stops as (first, last) indices. `pts` are `(ts_ms, lon, lat, ..)` (the real traces'
/// tests use it too).
pub(in crate::reports) fn brute_stops<P: Fix3>(
    pts: &[P],
    s: &SegmentSettings,
) -> Vec<(usize, usize)> {
    let pts: Vec<(i64, f64, f64)> = pts.iter().map(Fix3::fix3).collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < pts.len() {
        let mut j = i;
        while j + 1 < pts.len()
            && geodesy::distance_m((pts[i].1, pts[i].2), (pts[j + 1].1, pts[j + 1].2))
                <= s.stop_radius_m
        {
            j += 1;
        }
        if (pts[j].0 - pts[i].0) as f64 >= s.min_stop_s * 1000.0 {
            found.push((i, j));
            i = j + 1;
        } else {
            i += 1;
        }
    }
    found
}

/// A fix as the brute-force finder reads it: `(ts_ms, lon, lat)`.
pub(in crate::reports) trait Fix3 {
    fn fix3(&self) -> (i64, f64, f64);
}

impl Fix3 for (i64, f64, f64) {
    fn fix3(&self) -> (i64, f64, f64) {
        *self
    }
}

impl Fix3 for (i64, f64, f64, Option<f64>) {
    fn fix3(&self) -> (i64, f64, f64) {
        (self.0, self.1, self.2)
    }
}

/// Trips by brute force: the index ranges between the stops (and the ends), summed fix to fix.
fn brute_trips(pts: &[(i64, f64, f64, Option<f64>)], s: &SegmentSettings) -> Vec<(i64, i64, f64)> {
    let stops = brute_stops(pts, s);
    let mut bounds = Vec::new();
    let mut from = Some(0usize);
    for (a, b) in &stops {
        if let Some(f) = from {
            bounds.push((f, *a));
        }
        from = Some(*b);
    }
    if let Some(f) = from
        && !pts.is_empty()
        && stops.last().is_none_or(|(_, b)| *b != pts.len() - 1)
    {
        bounds.push((f, pts.len() - 1));
    }
    bounds
        .into_iter()
        .map(|(a, b)| {
            let d: f64 = (a..b)
                .map(|k| geodesy::distance_m((pts[k].1, pts[k].2), (pts[k + 1].1, pts[k + 1].2)))
                .sum();
            (pts[a].0, pts[b].0, d)
        })
        .filter(|(_, _, d)| *d >= s.min_trip_m)
        .collect()
}

/// A track of legs: (parked?, duration s, interval s, speed m/s, heading deg, jitter m).
fn track_strategy() -> impl Strategy<Value = Vec<(i64, f64, f64, Option<f64>)>> {
    prop::collection::vec(
        (
            any::<bool>(),
            10.0..1500.0_f64,
            1.0..90.0_f64,
            0.0..30.0_f64,
            0.0..360.0_f64,
            0.0..80.0_f64,
        ),
        1..8,
    )
    .prop_map(|legs| {
        let mut pts = Vec::new();
        let (mut t, mut x, mut y) = (0.0_f64, 0.0_f64, 0.0_f64);
        let mut k = 0.0_f64;
        pts.push(fix(t, x, y));
        for (parked, dur, dt, v, heading, jitter) in legs {
            let end = t + dur;
            while t < end {
                t += dt;
                k += 1.0;
                if parked {
                    pts.push(fix(
                        t,
                        x + jitter * (k * 1.7).sin(),
                        y + jitter * (k * 2.9).cos(),
                    ));
                } else {
                    x += v * dt * heading.to_radians().sin();
                    y += v * dt * heading.to_radians().cos();
                    pts.push(fix(t, x, y));
                }
            }
        }
        pts
    })
}

fn stop_spans(segs: &[Segment]) -> Vec<(i64, i64)> {
    stops(segs).iter().map(|s| (s.start_ms, s.end_ms)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn stops_and_trips_match_the_brute_force_definition(pts in track_strategy()) {
        let s = settings();
        let segs = segments_of(s, pts.clone()).unwrap();
        let want: Vec<(i64, i64)> =
            brute_stops(&pts, &s).iter().map(|(a, b)| (pts[*a].0, pts[*b].0)).collect();
        prop_assert_eq!(stop_spans(&segs), want);
        let got: Vec<(i64, i64, f64)> =
            trips(&segs).iter().map(|t| (t.start.ts_ms, t.end.ts_ms, t.distance_m)).collect();
        let want = brute_trips(&pts, &s);
        prop_assert_eq!(got.len(), want.len(), "{:?} vs {:?}", got, want);
        for (g, w) in got.iter().zip(&want) {
            prop_assert_eq!((g.0, g.1), (w.0, w.1));
            prop_assert!((g.2 - w.2).abs() < 1e-6 * w.2.max(1.0), "{} vs {}", g.2, w.2);
        }
        // segments come out in time order, and do not overlap
        let mut last = i64::MIN;
        for seg in &segs {
            let (a, b) = match seg {
                Segment::Stop(s) => (s.start_ms, s.end_ms),
                Segment::Trip(t) => (t.start.ts_ms, t.end.ts_ms),
            };
            prop_assert!(a >= last && b >= a);
            last = b;
        }
    }

    #[test]
    fn any_jitter_within_half_the_radius_while_parked_is_one_stop(
        fixes in prop::collection::vec((1.0..120.0_f64, 0.0..50.0_f64, 0.0..360.0_f64), 2..200),
    ) {
        // every fix within 50 m of the parking place: any two are within 100 m
        let mut t = 0.0;
        let pts: Vec<_> = fixes
            .iter()
            .map(|(dt, r, bearing)| {
                t += dt;
                fix(t, r * bearing.to_radians().sin(), r * bearing.to_radians().cos())
            })
            .collect();
        let segs = segments_of(settings(), pts.clone()).unwrap();
        let span_s = (pts.last().unwrap().0 - pts[0].0) as f64 / 1000.0;
        if span_s >= 300.0 {
            prop_assert_eq!(stop_spans(&segs), vec![(pts[0].0, pts.last().unwrap().0)]);
            prop_assert!(trips(&segs).is_empty(), "no trip while parked: {:?}", segs);
        } else {
            // too short for a stop (its jitter may add up to a trip: that is movement)
            prop_assert!(segs.iter().all(|s| !matches!(s, Segment::Stop(_))));
        }
    }

    #[test]
    fn splitting_a_track_in_two_ranges_never_invents_a_stop(
        pts in track_strategy(),
        cut in 0.0..1.0_f64,
    ) {
        let s = settings();
        let whole = stop_spans(&segments_of(s, pts.clone()).unwrap());
        let k = ((pts.len() as f64) * cut) as usize;
        for part in [&pts[..k], &pts[k..]] {
            for (a, b) in stop_spans(&segments_of(s, part.to_vec()).unwrap()) {
                // every stop of a part starts inside a stop of the whole track
                prop_assert!(
                    whole.iter().any(|(wa, wb)| *wa <= a && a <= *wb),
                    "part stop {:?} not in {:?}", (a, b), whole
                );
            }
        }
        // and the first part's stops are the whole's, the last one perhaps cut at the split
        let first = stop_spans(&segments_of(s, pts[..k].to_vec()).unwrap());
        for (i, (a, b)) in first.iter().enumerate() {
            prop_assert_eq!(*a, whole[i].0);
            prop_assert!(*b <= whole[i].1);
        }
    }

    #[test]
    fn duplicated_readings_change_nothing(
        pts in track_strategy(),
        dups in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
    ) {
        let s = settings();
        let clean = segments_of(s, pts.clone()).unwrap();
        let twice: std::collections::HashSet<usize> =
            dups.iter().map(|d| d.index(pts.len())).collect();
        let mut doubled = Vec::new();
        for (i, p) in pts.iter().enumerate() {
            doubled.push(*p);
            if twice.contains(&i) {
                // the same reading again, and another at the same time (the first one wins)
                let mut other = *p;
                other.1 += 0.001;
                doubled.push(*p);
                doubled.push(other);
            }
        }
        prop_assert_eq!(segments_of(s, doubled).unwrap(), clean);
    }

    #[test]
    fn a_track_out_of_order_is_refused_and_the_same_track_sorted_is_not(
        pts in track_strategy(),
        swap in any::<prop::sample::Index>(),
    ) {
        prop_assume!(pts.len() >= 2);
        let i = swap.index(pts.len() - 1);
        let mut shuffled = pts.clone();
        shuffled.swap(i, i + 1);
        prop_assert!(segments_of(settings(), shuffled.clone()).is_err());
        shuffled.sort_by_key(|p| p.0);
        prop_assert_eq!(
            segments_of(settings(), shuffled).unwrap(),
            segments_of(settings(), pts).unwrap()
        );
    }
}

#[test]
fn a_gps_jump_barely_moves_the_computed_max_speed() {
    // 36 km/h east, a fix a second, one fix thrown 150 m north
    let pts: Vec<_> = (0..300)
        .map(|s| {
            fix(
                s as f64,
                s as f64 * 10.0,
                if s == 150 { 150.0 } else { 0.0 },
            )
        })
        .collect();
    let segs = segments_of(settings(), pts).unwrap();
    let v = trips(&segs)[0].max_speed_kmh.unwrap();
    // between fixes a second apart the jump would read 540 km/h; over half a minute it adds
    // its 300 m detour: (300 + 300) m / 30 s = 72 km/h
    assert!((36.0..=73.0).contains(&v), "{v}");
}

#[test]
fn a_trip_shorter_than_the_speed_span_reports_its_mean_speed() {
    let pts = vec![
        fix(0.0, 0.0, 0.0),
        fix(10.0, 300.0, 0.0),
        fix(20.0, 600.0, 0.0),
    ];
    let segs = segments_of(settings(), pts).unwrap();
    let t = trips(&segs)[0];
    assert_eq!(t.max_speed_kmh, t.avg_speed_kmh());
    assert!((t.max_speed_kmh.unwrap() - 108.0).abs() < 0.5);
}
