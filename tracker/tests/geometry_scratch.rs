use rand::{Rng, SeedableRng, rngs::SmallRng};
use rstar::{
    RStarInsertionStrategy, RTree, RTreeParams,
    primitives::{GeomWithData, Rectangle},
};
use std::hint::black_box;
use std::ops::ControlFlow;
use std::time::Instant;
type E = GeomWithData<Rectangle<[f64; 2]>, u32>;
macro_rules! params {
    ($name:ident, $min:expr, $max:expr) => {
        struct $name;
        impl RTreeParams for $name {
            const MIN_SIZE: usize = $min;
            const MAX_SIZE: usize = $max;
            const REINSERTION_COUNT: usize = $max / 3;
            type DefaultInsertionStrategy = RStarInsertionStrategy;
        }
    };
}
params!(P6, 3, 6);
params!(P12, 5, 12);
params!(P24, 10, 24);
params!(P48, 20, 48);
fn run<P: RTreeParams>(name: &str, items: &[E], pts: &[[f64; 2]]) {
    let bulk: RTree<E, P> = RTree::bulk_load_with_params(items.to_vec());
    let mut inc: RTree<E, P> = RTree::new_with_params();
    let t = Instant::now();
    for e in items {
        inc.insert(*e);
    }
    let ins = t.elapsed();
    for (label, tree) in [("bulk", &bulk), ("incr", &inc)] {
        let mut best = f64::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            let mut c = 0u32;
            for p in pts {
                let _ = tree.locate_all_at_point_int(black_box(p), |e| {
                    c += e.data;
                    ControlFlow::<()>::Continue(())
                });
            }
            black_box(c);
            best = best.min(t.elapsed().as_nanos() as f64 / pts.len() as f64);
        }
        println!("{name} {label}: {best:.0} ns/query (insert all {ins:?})");
    }
}
#[test]
#[ignore]
fn rtree_params() {
    let mut rng = SmallRng::seed_from_u64(3);
    let items: Vec<E> = (0..10_000u32)
        .map(|i| {
            let (x, y) = (rng.random_range(-10.0..30.0), rng.random_range(35.0..60.0));
            let r: f64 = rng.random_range(0.002..0.05);
            GeomWithData::new(
                Rectangle::from_corners([x - r * 1.5, y - r], [x + r * 1.5, y + r]),
                i,
            )
        })
        .collect();
    let pts: Vec<[f64; 2]> = (0..200_000)
        .map(|_| [rng.random_range(-10.0..30.0), rng.random_range(35.0..60.0)])
        .collect();
    run::<P6>("max6", &items, &pts);
    run::<P12>("max12", &items, &pts);
    run::<P24>("max24", &items, &pts);
    run::<P48>("max48", &items, &pts);
}
