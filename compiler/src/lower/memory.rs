//! The memory planner: every intermediate tensor gets an offset in one arena, reusing
//! space between tensors whose lifetimes do not overlap.
//!
//! Placement is an instance of dynamic storage allocation (NP-hard), so several greedy
//! heuristics run and the smallest arena wins. Each one takes buffers in some order and
//! puts each at the lowest aligned offset where it overlaps no already placed buffer that
//! is live at the same time. The lower bound reported next to the result is the largest
//! total size of buffers live at one step: no placement can beat it.

/// A buffer to place: `size` bytes live from step `first` to step `last` inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub size: u64,
    pub first: usize,
    pub last: usize,
}

/// The chosen placement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Byte offset of each request, in request order.
    pub offsets: Vec<u64>,
    pub size: u64,
    /// Peak of simultaneously live bytes (after alignment).
    pub lower_bound: u64,
    /// Name of the heuristic that won.
    pub heuristic: &'static str,
}

fn align_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

fn overlaps(a: &Request, b: &Request) -> bool {
    a.first <= b.last && b.first <= a.last
}

/// Places requests in the given order, first fit by offset.
fn place(reqs: &[Request], order: &[usize], align: u64) -> (Vec<u64>, u64) {
    let mut offsets = vec![0u64; reqs.len()];
    let mut placed: Vec<usize> = Vec::with_capacity(reqs.len());
    let mut total = 0;
    for &i in order {
        let r = &reqs[i];
        let size = align_up(r.size, align);
        // Intervals taken by live-overlapping buffers, sorted by offset.
        let mut busy: Vec<(u64, u64)> = placed
            .iter()
            .filter(|&&j| overlaps(r, &reqs[j]))
            .map(|&j| (offsets[j], offsets[j] + align_up(reqs[j].size, align)))
            .collect();
        busy.sort_unstable();
        let mut at = 0;
        for (lo, hi) in busy {
            if at + size <= lo {
                break;
            }
            at = at.max(hi);
        }
        offsets[i] = at;
        total = total.max(at + size);
        placed.push(i);
    }
    (offsets, total)
}

/// Plans the arena. Deterministic: ties between heuristics go to the first listed.
pub fn plan(reqs: &[Request], align: u64) -> Plan {
    let steps = reqs.iter().map(|r| r.last + 1).max().unwrap_or(0);
    let mut live = vec![0u64; steps];
    for r in reqs {
        for s in &mut live[r.first..=r.last] {
            *s += align_up(r.size, align);
        }
    }
    let lower_bound = live.iter().copied().max().unwrap_or(0);
    let idx: Vec<usize> = (0..reqs.len()).collect();
    let conflicts: Vec<u64> = reqs
        .iter()
        .map(|r| reqs.iter().filter(|o| overlaps(r, o)).map(|o| o.size).sum())
        .collect();
    let peak_at = |r: &Request| live[r.first..=r.last].iter().copied().max().unwrap_or(0);
    let orders: [(&'static str, Vec<usize>); 4] = [
        ("greedy-by-size", {
            let mut o = idx.clone();
            o.sort_by_key(|&i| (std::cmp::Reverse(reqs[i].size), reqs[i].first, i));
            o
        }),
        ("greedy-by-conflicts", {
            let mut o = idx.clone();
            o.sort_by_key(|&i| {
                (
                    std::cmp::Reverse(conflicts[i]),
                    std::cmp::Reverse(reqs[i].size),
                    i,
                )
            });
            o
        }),
        ("greedy-by-peak", {
            // Buffers live at the busiest steps first, largest first among them.
            let mut o = idx.clone();
            o.sort_by_key(|&i| {
                (
                    std::cmp::Reverse(peak_at(&reqs[i])),
                    std::cmp::Reverse(reqs[i].size),
                    i,
                )
            });
            o
        }),
        ("first-fit-in-time", {
            let mut o = idx.clone();
            o.sort_by_key(|&i| (reqs[i].first, std::cmp::Reverse(reqs[i].size), i));
            o
        }),
    ];
    let mut best: Option<Plan> = None;
    for (name, order) in orders {
        let (offsets, size) = place(reqs, &order, align);
        if best.as_ref().is_none_or(|b| size < b.size) {
            best = Some(Plan {
                offsets,
                size,
                lower_bound,
                heuristic: name,
            });
        }
    }
    best.expect("at least one heuristic")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_valid(reqs: &[Request], p: &Plan, align: u64) {
        for (i, a) in reqs.iter().enumerate() {
            assert_eq!(p.offsets[i] % align, 0);
            assert!(p.offsets[i] + a.size <= p.size);
            for (j, b) in reqs.iter().enumerate().skip(i + 1) {
                if overlaps(a, b) {
                    let (ai, bi) = (p.offsets[i], p.offsets[j]);
                    assert!(
                        ai + a.size <= bi || bi + b.size <= ai,
                        "{i} and {j} collide"
                    );
                }
            }
        }
        assert!(p.size >= p.lower_bound);
    }

    #[test]
    fn chain_reuses_memory() {
        // A chain a→b→c→d: only two buffers are ever live at once.
        let reqs: Vec<Request> = (0..4)
            .map(|i| Request {
                size: 1024,
                first: i,
                last: i + 1,
            })
            .collect();
        let p = plan(&reqs, 64);
        check_valid(&reqs, &p, 64);
        assert_eq!(p.size, 2048);
        assert_eq!(p.lower_bound, 2048);
    }

    proptest::proptest! {
        #[test]
        fn plans_are_valid(raw in proptest::collection::vec((1u64..5000, 0usize..20, 0usize..6), 0..40)) {
            let reqs: Vec<Request> = raw.iter().map(|&(size, first, len)| Request { size, first, last: first + len }).collect();
            let p = plan(&reqs, 64);
            check_valid(&reqs, &p, 64);
        }
    }
}
