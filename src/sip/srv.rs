//! RFC 2782's ordering of targets by priority and weight, shared by DNS SRV
//! resolution and the destinations configured for a trunk.

/// Orders `(priority, weight, item)`: lower priority first; within a priority, RFC
/// 2782's weighted random selection (weight-0 entries first, then each pick with a
/// chance proportional to its weight).
pub fn weighted_order<T>(mut items: Vec<(u16, u16, T)>) -> Vec<T> {
    items.sort_by_key(|i| i.0);
    let mut out = Vec::with_capacity(items.len());
    while !items.is_empty() {
        let priority = items[0].0;
        let end = items.iter().take_while(|i| i.0 == priority).count();
        let mut group: Vec<_> = items.drain(..end).collect();
        group.sort_by_key(|i| i.1 != 0);
        while !group.is_empty() {
            let total: u32 = group.iter().map(|i| u32::from(i.1)).sum();
            let pick = if total == 0 {
                0
            } else {
                rand::random_range(0..=total)
            };
            let mut running = 0;
            let at = group
                .iter()
                .position(|i| {
                    running += u32::from(i.1);
                    running >= pick
                })
                .unwrap_or(0);
            out.push(group.remove(at).2);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_first_then_weight_shares() {
        let mut heavy_first = 0;
        for _ in 0..2000 {
            let order = weighted_order(vec![
                (20, 0, "backup"),
                (10, 90, "heavy"),
                (10, 10, "light"),
            ]);
            assert_eq!(order[2], "backup", "lower priority last");
            heavy_first += usize::from(order[0] == "heavy");
        }
        // Expected 90 %; the bounds are far outside any plausible random swing.
        assert!((1600..=1960).contains(&heavy_first), "{heavy_first}");
    }
}
