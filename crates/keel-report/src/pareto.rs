//! The non-dominated (Pareto) frontier of (domain change, general change), both to maximize,
//! with the base model at the origin as one of the candidates: a point below and left of the
//! base is dominated by not fine-tuning at all.

/// Which points (and whether the base) are on the frontier.
#[derive(Debug, Clone, PartialEq)]
pub struct Frontier {
    /// Per point, in the order given.
    pub points: Vec<bool>,
    /// Whether the base at (0, 0) is on it.
    pub base: bool,
}

/// `a` dominates `b` when it is at least as good on both axes and better on one.
fn dominates(a: (f64, f64), b: (f64, f64)) -> bool {
    a.0 >= b.0 && a.1 >= b.1 && (a.0 > b.0 || a.1 > b.1)
}

/// The frontier of `points` (x: domain change, y: general change) and the base at the origin.
/// Equal points are all on it or all off it.
pub fn frontier(points: &[(f64, f64)]) -> Frontier {
    let origin = (0.0, 0.0);
    let candidates: Vec<(f64, f64)> = points.iter().copied().chain(std::iter::once(origin)).collect();
    let on = |p: (f64, f64)| !candidates.iter().any(|&q| dominates(q, p));
    Frontier { points: points.iter().map(|&p| on(p)).collect(), base: on(origin) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_checked_frontier() {
        // (0.30, -0.10) best domain; (0.20, 0.02) beats the base on both; (0.10, -0.05) is
        // dominated by (0.20, 0.02); (-0.01, 0.05) trades a little domain for more general and stays;
        // (-0.02, -0.01) is dominated by the base.
        let points = [(0.30, -0.10), (0.20, 0.02), (0.10, -0.05), (-0.01, 0.05), (-0.02, -0.01)];
        let f = frontier(&points);
        assert_eq!(f.points, vec![true, true, false, true, false]);
        assert!(!f.base, "(0.20, 0.02) dominates the origin");
    }

    #[test]
    fn the_base_is_on_the_frontier_when_nothing_beats_it_on_both() {
        let f = frontier(&[(0.1, -0.1), (-0.1, -0.2)]);
        assert_eq!(f.points, vec![true, false]);
        assert!(f.base);
    }

    #[test]
    fn ties_stay_together() {
        let f = frontier(&[(0.1, 0.1), (0.1, 0.1), (0.1, 0.0)]);
        assert_eq!(f.points, vec![true, true, false]);
    }
}
