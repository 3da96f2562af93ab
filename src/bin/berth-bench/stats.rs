//! The arithmetic of the figures: medians, nearest-rank percentiles, ratios taken pair by
//! pair, and a least-squares line through (count, cost) points.

/// The `p`-th percentile (0..=100) by nearest rank; `None` for no samples.
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

pub fn median(samples: &[f64]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The median of `a[i] / b[i]`: runs interleaved in time, so each pair saw the same machine.
pub fn pairwise_ratio(a: &[f64], b: &[f64]) -> Option<f64> {
    let ratios: Vec<f64> = a
        .iter()
        .zip(b)
        .filter(|(_, y)| **y > 0.0)
        .map(|(x, y)| x / y)
        .collect();
    median(&ratios)
}

/// A fitted line `y = intercept + slope * x`, and how well it fits (R²).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line {
    pub intercept: f64,
    pub slope: f64,
    pub r2: f64,
}

/// Least squares through `points`; `None` with fewer than two distinct x.
pub fn fit(points: &[(f64, f64)]) -> Option<Line> {
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if points.len() < 2 || sxx == 0.0 {
        return None;
    }
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let ss_tot: f64 = points.iter().map(|p| (p.1 - my).powi(2)).sum();
    let ss_res: f64 = points
        .iter()
        .map(|p| (p.1 - (intercept + slope * p.0)).powi(2))
        .sum();
    let r2 = if ss_tot == 0.0 {
        1.0
    } else {
        1.0 - ss_res / ss_tot
    };
    Some(Line {
        intercept,
        slope,
        r2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_nearest_rank_p90() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&v, 90.0), Some(18.0));
        assert_eq!(percentile(&[5.0], 90.0), Some(5.0));
    }

    #[test]
    fn ratios_pair_by_pair() {
        assert_eq!(
            pairwise_ratio(&[10.0, 30.0, 20.0], &[5.0, 10.0, 20.0]),
            Some(2.0)
        );
    }

    #[test]
    fn a_line_through_points_on_it_fits_exactly() {
        let l = fit(&[(0.0, 1.0), (50.0, 11.0), (200.0, 41.0)]).unwrap();
        assert!((l.slope - 0.2).abs() < 1e-9);
        assert!((l.intercept - 1.0).abs() < 1e-9);
        assert!((l.r2 - 1.0).abs() < 1e-9);
        assert_eq!(fit(&[(1.0, 1.0), (1.0, 2.0)]), None);
    }
}
