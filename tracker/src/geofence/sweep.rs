//! Whether the rings of a polygon (or of several) meet anywhere they should not: a sweep line
//! (Shamos and Hoey, 1976) in O(n log n) for n segments, with exact orientation predicates
//! (geo's `RobustKernel`).
//!
//! The rule: two segments of the same ring that follow each other share their common vertex
//! and nothing else (no folding back along the same line); any other two segments have no
//! point in common at all (no crossing, no touching, no overlap). So rings are simple and never
//! touch one another. That is stricter than OGC, which lets a hole touch its shell at a point:
//! a geofence never needs that, and refusing it keeps the test a plain sweep.
//!
//! How: segments sorted by their left (then lower) end; a sweep from left to right keeps the
//! segments it crosses in a `BTreeSet` ordered bottom to top. As long as no two segments have
//! met, the vertical order of two segments alive together is the same wherever both exist, so
//! it is computed from the two segments alone ([`Seg::cmp_alive`]). Each insertion compares
//! the new segment with its two neighbours, each removal its two former neighbours with each
//! other; the leftmost forbidden contact is always between two neighbours at some point, so
//! it is found (the classic argument), and the sweep stops there.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::ops::Bound::{Excluded, Unbounded};

use geo::kernels::{Kernel, Orientation, RobustKernel};
use geo_types::Coord;

/// Where a segment comes from: `(member, ring)` and its index in the ring (of `len` segments).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub member: u32,
    pub ring: u32,
    pub index: u32,
    pub len: u32,
}

/// Two segments that meet where they must not.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Contact {
    pub a: Origin,
    pub b: Origin,
    /// Whether they overlap along a line (collinear), rather than cross or touch at a point.
    pub along_a_line: bool,
    /// A point they share (an end of one of them, or their crossing, approximately).
    pub at: Coord<f64>,
}

/// A segment, its ends ordered: `l` before `r` by (x, y).
#[derive(Debug, Clone, Copy)]
pub struct Seg {
    pub l: Coord<f64>,
    pub r: Coord<f64>,
    pub origin: Origin,
    /// Position in the input, a tie-break that makes the order total.
    pub id: u32,
}

fn before(a: Coord<f64>, b: Coord<f64>) -> bool {
    (a.x, a.y) < (b.x, b.y)
}

fn orient(p: Coord<f64>, q: Coord<f64>, r: Coord<f64>) -> i8 {
    match RobustKernel::orient2d(p, q, r) {
        Orientation::CounterClockwise => 1,
        Orientation::Clockwise => -1,
        Orientation::Collinear => 0,
    }
}

impl Seg {
    pub fn new(a: Coord<f64>, b: Coord<f64>, origin: Origin, id: u32) -> Seg {
        let (l, r) = if before(b, a) { (b, a) } else { (a, b) };
        Seg { l, r, origin, id }
    }

    /// Whether `self` and `o` follow each other in one ring (they share a vertex by
    /// construction).
    fn adjacent(&self, o: &Seg) -> bool {
        let (a, b) = (self.origin, o.origin);
        a.member == b.member
            && a.ring == b.ring
            && ((a.index + 1) % a.len == b.index || (b.index + 1) % b.len == a.index)
    }

    /// Above (`Greater`) or below `o`, for two segments alive at one sweep position that have
    /// not met (or only at a shared end).
    fn cmp_alive(&self, o: &Seg) -> Ordering {
        if self.id == o.id {
            return Ordering::Equal;
        }
        // Place the one that starts later against the line of the other.
        let flip = before(self.l, o.l);
        let (first, later) = if flip { (self, o) } else { (o, self) };
        let mut side = orient(first.l, first.r, later.l);
        if side == 0 {
            side = orient(first.l, first.r, later.r);
        }
        let later_vs_first = match side {
            1 => Ordering::Greater,
            -1 => Ordering::Less,
            // Collinear: they overlap (a contact found by the neighbour checks); any consistent
            // order will do.
            _ => later.id.cmp(&first.id),
        };
        if flip {
            later_vs_first.reverse()
        } else {
            later_vs_first
        }
    }

    /// The forbidden contact of `self` and `o`, if any.
    pub fn contact(&self, o: &Seg) -> Option<Contact> {
        let found = |along_a_line, at| {
            Some(Contact {
                a: self.origin,
                b: o.origin,
                along_a_line,
                at,
            })
        };
        if self.adjacent(o) {
            // The shared vertex, and the other two ends: only folding back is forbidden.
            let (shared, p, q) = if self.l == o.l {
                (self.l, self.r, o.r)
            } else if self.l == o.r {
                (self.l, self.r, o.l)
            } else if self.r == o.l {
                (self.r, self.l, o.r)
            } else {
                (self.r, self.l, o.l)
            };
            if orient(p, shared, q) != 0 {
                return None;
            }
            // Collinear: they overlap iff p and q lie on the same side of the shared vertex.
            let same_side = if p.x != shared.x {
                (p.x > shared.x) == (q.x > shared.x)
            } else {
                (p.y > shared.y) == (q.y > shared.y)
            };
            return if same_side { found(true, shared) } else { None };
        }
        let (a, b, c, d) = (self.l, self.r, o.l, o.r);
        let (o1, o2) = (orient(a, b, c), orient(a, b, d));
        let (o3, o4) = (orient(c, d, a), orient(c, d, b));
        if o1 == 0 && o2 == 0 {
            // Collinear (then o3 = o4 = 0 too): along a line, (x, y) order is the order along
            // it, so they overlap iff each starts no later than the other ends.
            let overlap = !before(b, c) && !before(d, a);
            return if overlap {
                found(true, if before(c, a) { a } else { c })
            } else {
                None
            };
        }
        if o1 * o2 <= 0 && o3 * o4 <= 0 {
            let at = if o1 == 0 {
                c
            } else if o2 == 0 {
                d
            } else if o3 == 0 {
                a
            } else if o4 == 0 {
                b
            } else {
                // The crossing, approximately (for the message only).
                let (d1, d2) = (b - a, d - c);
                let den = d1.x * d2.y - d1.y * d2.x;
                let t = ((c.x - a.x) * d2.y - (c.y - a.y) * d2.x) / den;
                a + d1 * t
            };
            return found(false, at);
        }
        None
    }
}

/// A segment in the sweep's status, ordered by [`Seg::cmp_alive`].
#[derive(Clone, Copy)]
struct Alive(Seg);

impl PartialEq for Alive {
    fn eq(&self, o: &Self) -> bool {
        self.0.id == o.0.id
    }
}
impl Eq for Alive {}
impl PartialOrd for Alive {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Alive {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.cmp_alive(&o.0)
    }
}

/// The first forbidden contact among `segs` the sweep finds, or `None` when there is none.
/// `segs[i].id` must be `i`. Zero-length segments must be left out by the caller.
pub fn find_contact(segs: &[Seg]) -> Option<Contact> {
    // Events: (point, kind, segment); at one point insertions (0) come before removals (1), so
    // that segments meeting end to end are alive together and compared.
    let mut events: Vec<(Coord<f64>, u8, u32)> = Vec::with_capacity(segs.len() * 2);
    for s in segs {
        events.push((s.l, 0, s.id));
        events.push((s.r, 1, s.id));
    }
    events.sort_unstable_by(|a, b| {
        (a.0.x, a.0.y)
            .partial_cmp(&(b.0.x, b.0.y))
            .unwrap_or(Ordering::Equal)
            .then(a.1.cmp(&b.1))
            .then(a.2.cmp(&b.2))
    });
    let mut alive: BTreeSet<Alive> = BTreeSet::new();
    let check = |a: Option<&Alive>, b: Option<&Alive>| match (a, b) {
        (Some(a), Some(b)) => a.0.contact(&b.0),
        _ => None,
    };
    for (_, kind, id) in events {
        let s = Alive(segs[id as usize]);
        if kind == 0 {
            // Two segments starting at one point in the same direction: the set would call
            // them equal only by id, so compare them with everything near first.
            alive.insert(s);
            let below = alive.range(..s).next_back();
            let above = alive.range((Excluded(s), Unbounded)).next();
            if let Some(c) = check(Some(&s), below).or_else(|| check(Some(&s), above)) {
                return Some(c);
            }
        } else {
            let below = alive.range(..s).next_back().copied();
            let above = alive.range((Excluded(s), Unbounded)).next().copied();
            if !alive.remove(&s) {
                // Not found by the order: only possible if a contact not yet reported broke it
                // (which the argument above rules out); remove it by id, and go on.
                alive.retain(|a| a.0.id != s.0.id);
            }
            if let Some(c) = check(below.as_ref(), above.as_ref()) {
                return Some(c);
            }
        }
    }
    None
}

/// The contact [`find_contact`] would find exists iff this one finds any: every pair, O(n²).
/// The oracle of the tests.
#[cfg(test)]
pub fn find_contact_brute_force(segs: &[Seg]) -> Option<Contact> {
    for (i, a) in segs.iter().enumerate() {
        for b in &segs[i + 1..] {
            if let Some(c) = a.contact(b) {
                return Some(c);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo_types::coord;
    use proptest::prelude::*;

    /// The segments of closed rings given as vertex lists (`rings[k] = (member, vertices)`),
    /// consecutive repeats dropped as the caller of the sweep does.
    fn segments(rings: &[(u32, Vec<(f64, f64)>)]) -> Vec<Seg> {
        let mut segs = Vec::new();
        for (r, (member, ring)) in rings.iter().enumerate() {
            let mut v: Vec<Coord<f64>> = Vec::new();
            for &(x, y) in ring {
                let c = coord! { x: x, y: y };
                if v.last() != Some(&c) {
                    v.push(c);
                }
            }
            while v.len() > 1 && v.first() == v.last() {
                v.pop();
            }
            if v.len() < 2 {
                continue;
            }
            let len = v.len() as u32;
            for i in 0..v.len() {
                let origin = Origin {
                    member: *member,
                    ring: r as u32,
                    index: i as u32,
                    len,
                };
                let id = segs.len() as u32;
                segs.push(Seg::new(v[i], v[(i + 1) % v.len()], origin, id));
            }
        }
        segs
    }

    fn ring(points: &[(f64, f64)]) -> Vec<Seg> {
        segments(&[(0, points.to_vec())])
    }

    #[test]
    fn a_square_is_simple_and_a_bowtie_is_not() {
        assert_eq!(
            find_contact(&ring(&[(0., 0.), (1., 0.), (1., 1.), (0., 1.)])),
            None
        );
        let c = find_contact(&ring(&[(0., 0.), (1., 1.), (1., 0.), (0., 1.)])).unwrap();
        assert_eq!((c.at.x, c.at.y), (0.5, 0.5));
    }

    #[test]
    fn touching_itself_at_a_vertex_or_folding_back_is_a_contact() {
        // A figure of eight through (1, 1), twice the same vertex.
        let eight = [(0., 0.), (1., 1.), (2., 0.), (2., 2.), (1., 1.), (0., 2.)];
        assert!(find_contact(&ring(&eight)).is_some());
        // A spike going out and back along the same line.
        let spike = [(0., 0.), (2., 0.), (2., 1.), (3., 1.), (2., 1.), (0., 1.)];
        assert!(find_contact(&ring(&spike)).is_some());
        let back = [(0., 0.), (2., 0.), (1., 0.), (1., 1.)];
        assert!(find_contact(&ring(&back)).unwrap().along_a_line);
        // A vertex on another edge (T).
        let t = [(0., 0.), (4., 0.), (4., 2.), (2., 0.), (0., 2.)];
        assert!(find_contact(&ring(&t)).is_some());
    }

    #[test]
    fn vertical_and_collinear_edges_that_do_not_meet_are_fine() {
        let notch = [
            (0., 0.),
            (1., 0.),
            (2., 0.),
            (2., 1.),
            (2., 2.),
            (1., 2.),
            (1., 1.),
            (0., 1.),
        ];
        assert_eq!(find_contact(&ring(&notch)), None);
    }

    /// Rings of 3 to 9 vertices on a small integer grid: crossings, shared vertices, collinear
    /// overlaps and vertical edges are frequent.
    fn rings() -> impl Strategy<Value = Vec<(u32, Vec<(f64, f64)>)>> {
        let ring = prop::collection::vec((0..7i32, 0..7i32), 3..9).prop_map(|v| {
            v.into_iter()
                .map(|(x, y)| (f64::from(x), f64::from(y)))
                .collect()
        });
        prop::collection::vec((0..3u32, ring), 1..4)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        #[test]
        fn the_sweep_finds_a_contact_iff_brute_force_does(rings in rings()) {
            let segs = segments(&rings);
            let sweep = find_contact(&segs);
            let brute = find_contact_brute_force(&segs);
            prop_assert_eq!(sweep.is_some(), brute.is_some(), "sweep {:?} brute {:?}", sweep, brute);
            if let Some(c) = sweep {
                // What it reports is a real contact of those two segments.
                let find = |o: Origin| segs.iter().find(|s| s.origin == o).unwrap();
                prop_assert!(find(c.a).contact(find(c.b)).is_some());
            }
        }

        #[test]
        fn the_sweep_agrees_on_star_shaped_rings_which_are_mostly_simple(
            radii in prop::collection::vec(1.0..10.0f64, 3..60),
            cx in -5.0..5.0f64,
        ) {
            let n = radii.len();
            let pts: Vec<(f64, f64)> = radii.iter().enumerate().map(|(i, r)| {
                let a = i as f64 / n as f64 * std::f64::consts::TAU;
                (cx + r * a.cos(), r * a.sin())
            }).collect();
            let segs = ring(&pts);
            prop_assert_eq!(find_contact(&segs).is_some(), find_contact_brute_force(&segs).is_some());
        }
    }
}
