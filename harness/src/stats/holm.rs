//! Holm's step-down adjustment (Holm 1979): controls the family-wise error rate over all the
//! comparisons of a run without assuming they are independent (the workloads of one volume
//! are not).

/// Adjusted p-values, in the order given: sorted ascending, p₍ᵢ₎ becomes
/// max over j ≤ i of min(1, (m − j + 1)·p₍ⱼ₎). Rejecting where the adjusted value is below α
/// is exactly Holm's procedure at level α. NaN inputs are treated as 1.
pub fn holm_adjust(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    let val = |i: usize| if p[i].is_nan() { 1.0 } else { p[i] };
    order.sort_by(|&a, &b| val(a).total_cmp(&val(b)));
    let mut out = vec![1.0; m];
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        let adj = ((m - rank) as f64 * val(i)).min(1.0);
        running = running.max(adj);
        out[i] = running;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Holm's definition worked by hand (R's `p.adjust(…, method = "holm")` implements the
    /// same formula): sorted 0.005·4, 0.01·3, 0.03·2, 0.04·1 → 0.02, 0.03, 0.06,
    /// max(0.06, 0.04) = 0.06; back in input order 0.03 0.06 0.06 0.02.
    #[test]
    fn holm_matches_r_p_adjust() {
        let adj = holm_adjust(&[0.01, 0.04, 0.03, 0.005]);
        let want = [0.03, 0.06, 0.06, 0.02];
        for (a, w) in adj.iter().zip(want) {
            assert!((a - w).abs() < 1e-12, "{adj:?}");
        }
    }

    #[test]
    fn holm_caps_at_one_and_keeps_order_monotone() {
        let adj = holm_adjust(&[0.5, 0.9, f64::NAN]);
        assert_eq!(adj, vec![1.0, 1.0, 1.0]);
        assert!(holm_adjust(&[]).is_empty());
        assert_eq!(holm_adjust(&[0.2]), vec![0.2]);
    }
}
