//! Interpolation maps: barycentric properties (weights, affine reproduction, Delaunay
//! triangles, hull fallback) against an independent convex hull, and zeros maps by hand.

#![allow(clippy::cast_possible_truncation, clippy::needless_range_loop)]
use perforate::{MapKind, Mask, ZERO_TAP};

fn cross(o: (i64, i64), a: (i64, i64), b: (i64, i64)) -> i64 {
    (a.0 - o.0) * (b.1 - o.1) - (a.1 - o.1) * (b.0 - o.0)
}

/// Convex hull (counter-clockwise in (x, y), collinear points dropped), monotone chain.
fn hull(mut pts: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    pts.sort_unstable();
    pts.dedup();
    if pts.len() < 3 {
        return pts;
    }
    let mut h: Vec<(i64, i64)> = Vec::new();
    for pass in 0..2 {
        let start = h.len();
        let iter: Box<dyn Iterator<Item = &(i64, i64)>> =
            if pass == 0 { Box::new(pts.iter()) } else { Box::new(pts.iter().rev()) };
        for &p in iter {
            while h.len() >= start + 2 && cross(h[h.len() - 2], h[h.len() - 1], p) <= 0 {
                h.pop();
            }
            h.push(p);
        }
        h.pop();
    }
    h
}

/// Whether p lies in the closed convex polygon (needs at least 3 vertices).
fn inside(h: &[(i64, i64)], p: (i64, i64)) -> bool {
    h.len() >= 3 && (0..h.len()).all(|i| cross(h[i], h[(i + 1) % h.len()], p) >= 0)
}

/// Whether d lies strictly inside the circumcircle of the triangle a, b, c.
fn in_circle(a: (i64, i64), b: (i64, i64), c: (i64, i64), d: (i64, i64)) -> bool {
    let m = |p: (i64, i64)| {
        let (x, y) = (i128::from(p.0 - d.0), i128::from(p.1 - d.1));
        (x, y, x * x + y * y)
    };
    let (a, b, c) = (m(a), m(b), m(c));
    let det = a.0 * (b.1 * c.2 - c.1 * b.2) - a.1 * (b.0 * c.2 - c.0 * b.2) + a.2 * (b.0 * c.1 - c.0 * b.1);
    let orient = (b.0 - a.0) * (c.1 - a.1) - (b.1 - a.1) * (c.0 - a.0);
    det * orient.signum() > 0
}

fn check_barycentric(label: &str, mask: &Mask) {
    let (h, w) = (mask.height(), mask.width());
    let xy = |p: u32| (i64::from(p) % w as i64, i64::from(p) / w as i64);
    let kept: Vec<(i64, i64)> = mask.positions().iter().map(|&p| xy(p)).collect();
    let hull = hull(kept.clone());
    let map = mask.barycentric_map(3).unwrap();
    let nearest = mask.interpolation_map(3);
    assert_eq!(
        (map.kind(), map.table().len(), map.compact_len()),
        (MapKind::Barycentric, 6 * h * w, mask.len())
    );
    // Two affine functions of (y, x), sampled at the kept positions.
    let f = |(x, y): (i64, i64)| 0.25 + 1.5 * y as f64 - 0.75 * x as f64;
    let values: Vec<f32> = kept.iter().map(|&p| f(p) as f32).collect();
    let (mut inner, mut outer) = (0, 0);
    for p in 0..h * w {
        let taps = map.taps(p);
        let at = xy(p as u32);
        assert_eq!(taps.len(), 3, "{label}: three taps at {p}");
        if inside(&hull, at) {
            inner += 1;
            let sum: f32 = taps.iter().map(|t| t.1).sum();
            assert!((sum - 1.0).abs() < 1e-6, "{label}: weights at {p} sum to {sum}");
            assert!(taps.iter().all(|t| t.1 >= 0.0), "{label}: negative weight at {p}: {taps:?}");
            for (g, name) in [(&f as &dyn Fn((i64, i64)) -> f64, "f"), (&|q: (i64, i64)| q.0 as f64, "x")] {
                let got: f64 = taps.iter().map(|&(i, wt)| f64::from(wt) * g(kept[i])).sum();
                assert!((got - g(at)).abs() < 1e-4, "{label}: {name} at {p}: got {got}, want {}", g(at));
            }
            let y: f64 = taps.iter().map(|&(i, wt)| f64::from(wt) * kept[i].1 as f64).sum();
            assert!((y - at.1 as f64).abs() < 1e-4, "{label}: y at {p}");
            // The triangle is Delaunay: no kept position strictly inside its circumcircle.
            let [a, b, c] = [kept[taps[0].0], kept[taps[1].0], kept[taps[2].0]];
            if cross(a, b, c) != 0 {
                assert!(
                    !kept.iter().any(|&d| in_circle(a, b, c, d)),
                    "{label}: triangle at {p} is not Delaunay"
                );
            }
        } else {
            outer += 1;
            let i = nearest.table()[p] as usize;
            assert_eq!(taps, vec![(i, 1.0), (i, 0.0), (i, 0.0)], "{label}: outside the hull at {p}: nearest");
        }
    }
    // The expanded plane of the affine values reproduces it inside the hull.
    let dense = map.expand(&values);
    for (p, v) in dense.iter().enumerate() {
        if inside(&hull, xy(p as u32)) {
            assert!((f64::from(*v) - f(xy(p as u32))).abs() < 1e-4, "{label}: expand at {p}");
        }
    }
    eprintln!("{label}: {inner} positions inside the hull, {outer} outside");
}

#[test]
fn barycentric_maps_interpolate_affine_functions_inside_the_hull() {
    for (h, w) in [(13, 17), (20, 20), (7, 31)] {
        for q in [0.1, 0.3, 0.5, 0.9] {
            check_barycentric(&format!("uniform {h}x{w} q={q}"), &Mask::uniform(h, w, q, 11).unwrap());
            check_barycentric(&format!("grid {h}x{w} q={q}"), &Mask::grid(h, w, q, 5).unwrap());
        }
    }
    // Every position kept: each maps to itself with weight 1.
    let dense = Mask::dense(6, 5).unwrap();
    check_barycentric("dense", &dense);
    let map = dense.barycentric_map(0).unwrap();
    for p in 0..30 {
        let own: f32 = map.taps(p).iter().filter(|t| t.0 == p).map(|t| t.1).sum();
        assert_eq!(own, 1.0, "kept position {p} keeps its value");
    }
}

#[test]
fn degenerate_masks_fall_back_to_nearest() {
    // One position, two positions, and a whole row: no triangle has area.
    for positions in [vec![7], vec![3, 40], (8..16).collect::<Vec<u32>>(), vec![0, 9, 18, 27]] {
        let mask = Mask::from_positions(6, 8, positions.clone()).unwrap();
        let map = mask.barycentric_map(1).unwrap();
        let nearest = mask.interpolation_map(1);
        for p in 0..48 {
            let i = nearest.table()[p] as usize;
            assert_eq!(map.taps(p), vec![(i, 1.0), (i, 0.0), (i, 0.0)], "{positions:?} at {p}");
        }
    }
}

#[test]
fn zeros_maps_by_hand() {
    // 2x3 map keeping positions 1 and 5.
    let mask = Mask::from_positions(2, 3, vec![5, 1]).unwrap();
    let map = mask.zeros_map();
    assert_eq!(map.kind(), MapKind::Zeros);
    assert_eq!(map.table(), &[ZERO_TAP, 0, ZERO_TAP, ZERO_TAP, ZERO_TAP, 1]);
    assert_eq!(map.expand(&[2.5, -4.0]), vec![0.0, 2.5, 0.0, 0.0, 0.0, -4.0]);
    assert_eq!(map.indices(), None, "indices() is for nearest maps only");
    // A 4x4 barycentric map of the four corners, checked by hand: the centre-ish point
    // (1, 1) lies on the shared diagonal or in one triangle; either way its value is the
    // bilinear-free affine interpolation of the corner values.
    let corners = Mask::from_positions(4, 4, vec![0, 3, 12, 15]).unwrap();
    let map = corners.barycentric_map(0).unwrap();
    // Values a + 2y + 3x at the corners: exact at every position on an edge or inside.
    let v = |y: f32, x: f32| 1.0 + 2.0 * y + 3.0 * x;
    let dense = map.expand(&[v(0.0, 0.0), v(0.0, 3.0), v(3.0, 0.0), v(3.0, 3.0)]);
    for p in 0..16 {
        let (y, x) = ((p / 4) as f32, (p % 4) as f32);
        assert!((dense[p] - v(y, x)).abs() < 1e-5, "corner map at ({y}, {x}): {}", dense[p]);
    }
}
