//! Exact integer arithmetic of the books: proportional splits whose parts
//! add up to the whole (largest-remainder method).

/// The parts of `weights` that fall in `num/den` of their span: the whole is
/// scaled down and split exactly, so each part is at most its weight.
pub(super) fn scaled(weights: &[u64], num: u64, den: u64) -> Vec<u64> {
    if den == 0 {
        return weights.to_vec();
    }
    let total: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    let target = total * u128::from(num.min(den)) / u128::from(den);
    split(target, weights)
        .into_iter()
        .map(|p| p as u64)
        .collect()
}

/// Splits `total` over `weights` in proportion, exactly: the parts add up to
/// `total` (largest-remainder method). All-zero weights give all zeros.
pub fn split(total: u128, weights: &[u64]) -> Vec<u128> {
    let sum: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    if sum == 0 {
        return vec![0; weights.len()];
    }
    // total·w/sum as (q·w) + (r·w)/sum with q = total/sum, r = total%sum:
    // no intermediate exceeds u128 while the weights sum below 2^64.
    let (q, r) = (total / sum, total % sum);
    let mut parts = Vec::with_capacity(weights.len());
    let mut rems = Vec::with_capacity(weights.len());
    let mut given = 0u128;
    for (i, &w) in weights.iter().enumerate() {
        let w = u128::from(w);
        let num = r * w;
        let part = q * w + num / sum;
        parts.push(part);
        rems.push((num % sum, i));
        given += part;
    }
    // Fewer than `weights.len()` units are left: one each to the largest
    // remainders (ties to the earlier entry), found in linear time.
    let left = (total - given) as usize;
    if left > 0 {
        let by_rem = |a: &(u128, usize), b: &(u128, usize)| b.0.cmp(&a.0).then(a.1.cmp(&b.1));
        if left < rems.len() {
            rems.select_nth_unstable_by(left - 1, by_rem);
        }
        for &(_, i) in rems.iter().take(left) {
            parts[i] += 1;
        }
    }
    parts
}
