//! The rate limit on the partitioner lines a domain can cause (a report of
//! each access outside the domain, each refused CPU_ON, each vCPU power
//! change it asks for, each crash). Every domain has one token bucket on the
//! physical counter: [`BURST`] lines at once, then [`PER_SECOND`] lines a
//! second. The first line of each [`Kind`] is always printed, whatever the
//! bucket holds. A line the bucket refuses is counted, per kind; the next
//! line it allows is preceded by one report per kind of how many were
//! suppressed, so the counts printed and suppressed always add up.
//!
//! The limit is per domain, so a domain can only ever spend its own share:
//! a flood from one domain never suppresses another's reports.

/// Lines a domain may cause at once (its bucket starts full).
pub const BURST: u64 = 32;
/// Lines a second a domain may cause once its burst is spent.
pub const PER_SECOND: u64 = 4;

/// What a line reports; suppressed lines are counted per kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An access outside the domain.
    Fault,
    /// A CPU_ON the partitioner refused.
    CpuOn,
    /// A vCPU powered on or off by the domain's own PSCI calls, a failed
    /// start, a crash. (A domain's restarts and stop are bounded by its
    /// restart-limit and always printed.)
    Lifecycle,
}

/// Number of [`Kind`]s.
pub const KINDS: usize = 3;

impl Kind {
    pub const ALL: [Kind; KINDS] = [Kind::Fault, Kind::CpuOn, Kind::Lifecycle];

    fn index(self) -> usize {
        self as usize
    }

    /// What the suppression report names: `<n> similar lines suppressed (<what>)`.
    pub fn what(self) -> &'static str {
        match self {
            Kind::Fault => "accesses outside the domain",
            Kind::CpuOn => "refused CPU_ON calls",
            Kind::Lifecycle => "vCPU power and crash reports",
        }
    }
}

/// What to do with a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Print it, after one report per kind with a non-zero count of lines
    /// suppressed since the last line printed (indexed like [`Kind::ALL`]).
    Print { suppressed: [u64; KINDS] },
    /// Do not print it (it is counted).
    Suppress,
}

/// One domain's bucket.
#[derive(Debug)]
pub struct Limiter {
    /// Credit in counter ticks: one line costs a second's ticks / [`PER_SECOND`].
    credit: u64,
    /// Counter value of the last refill; `None` until the first line.
    last: Option<u64>,
    seen: [bool; KINDS],
    suppressed: [u64; KINDS],
}

impl Default for Limiter {
    fn default() -> Self {
        Self::new()
    }
}

impl Limiter {
    pub const fn new() -> Self {
        Self {
            credit: 0,
            last: None,
            seen: [false; KINDS],
            suppressed: [0; KINDS],
        }
    }

    /// Decide about a line of `kind` at counter value `now`, the counter
    /// running at `freq` Hz.
    pub fn check(&mut self, kind: Kind, now: u64, freq: u64) -> Verdict {
        let cost = (freq / PER_SECOND).max(1);
        let capacity = cost.saturating_mul(BURST);
        // The counter never goes back; if two cores' reads cross, no refill.
        self.credit = match self.last {
            None => capacity,
            Some(last) => self
                .credit
                .saturating_add(now.saturating_sub(last))
                .min(capacity),
        };
        self.last = Some(match self.last {
            Some(last) => last.max(now),
            None => now,
        });
        let first = !self.seen[kind.index()];
        if first || self.credit >= cost {
            self.seen[kind.index()] = true;
            self.credit = self.credit.saturating_sub(cost);
            Verdict::Print {
                suppressed: core::mem::take(&mut self.suppressed),
            }
        } else {
            self.suppressed[kind.index()] += 1;
            Verdict::Suppress
        }
    }

    /// The counts of lines suppressed since the last line allowed, now
    /// reported elsewhere (before a line printed whatever the limit).
    pub fn take_suppressed(&mut self) -> [u64; KINDS] {
        core::mem::take(&mut self.suppressed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HZ: u64 = 62_500_000;
    const COST: u64 = HZ / PER_SECOND;

    fn printed(v: Verdict) -> bool {
        matches!(v, Verdict::Print { .. })
    }

    #[test]
    fn a_burst_then_the_steady_rate() {
        let mut l = Limiter::new();
        let t0 = 1_000_000;
        for i in 0..BURST {
            assert!(
                printed(l.check(Kind::Fault, t0, HZ)),
                "line {i} of the burst"
            );
        }
        assert_eq!(l.check(Kind::Fault, t0, HZ), Verdict::Suppress);
        assert_eq!(l.check(Kind::Fault, t0 + COST - 1, HZ), Verdict::Suppress);
        // One line's worth of time later, one line, with the count before it.
        assert_eq!(
            l.check(Kind::Fault, t0 + COST, HZ),
            Verdict::Print {
                suppressed: [2, 0, 0]
            }
        );
        assert_eq!(l.check(Kind::Fault, t0 + COST, HZ), Verdict::Suppress);
        // Over a long flood, about PER_SECOND lines a second get through.
        let mut n = 0;
        for t in 0..10 * PER_SECOND * 100 {
            n += printed(l.check(Kind::Fault, t0 + COST + t * COST / 100, HZ)) as u64;
        }
        assert_eq!(n, 10 * PER_SECOND - 1);
    }

    #[test]
    fn printed_and_suppressed_add_up() {
        let mut l = Limiter::new();
        let (mut printed_lines, mut suppressed) = (0u64, 0u64);
        let total = 100_000;
        for i in 0..total {
            match l.check(Kind::Fault, i * 1000, HZ) {
                Verdict::Print { suppressed: s } => {
                    printed_lines += 1;
                    suppressed += s[0];
                }
                Verdict::Suppress => {}
            }
        }
        // The rest is reported with the next line allowed.
        match l.check(Kind::Fault, total * 1000 + HZ, HZ) {
            Verdict::Print { suppressed: s } => suppressed += s[0],
            Verdict::Suppress => panic!("a second later the bucket has credit"),
        }
        assert_eq!(printed_lines + suppressed, total);
        assert!(printed_lines < BURST + 2 * PER_SECOND, "{printed_lines}");
    }

    #[test]
    fn the_first_line_of_each_kind_always_goes_out() {
        let mut l = Limiter::new();
        for _ in 0..1000 {
            l.check(Kind::Fault, 5, HZ);
        }
        assert_eq!(
            l.check(Kind::CpuOn, 5, HZ),
            Verdict::Print {
                suppressed: [1000 - BURST, 0, 0]
            }
        );
        assert_eq!(l.check(Kind::CpuOn, 5, HZ), Verdict::Suppress);
        // Counts are kept per kind, and all reported before the next line.
        assert_eq!(
            l.check(Kind::Lifecycle, 5, HZ),
            Verdict::Print {
                suppressed: [0, 1, 0]
            }
        );
        assert_eq!(l.check(Kind::Lifecycle, 5, HZ), Verdict::Suppress);
        assert_eq!(l.check(Kind::Fault, 5, HZ), Verdict::Suppress);
        assert_eq!(
            l.check(Kind::CpuOn, 5 + COST, HZ),
            Verdict::Print {
                suppressed: [1, 0, 1]
            }
        );
    }

    #[test]
    fn the_bucket_refills_only_to_the_burst() {
        let mut l = Limiter::new();
        for _ in 0..BURST {
            l.check(Kind::Fault, 0, HZ);
        }
        let later = 3600 * HZ;
        for _ in 0..BURST {
            assert!(printed(l.check(Kind::Fault, later, HZ)));
        }
        assert_eq!(l.check(Kind::Fault, later, HZ), Verdict::Suppress);
    }

    #[test]
    fn a_counter_read_from_the_past_refills_nothing() {
        let mut l = Limiter::new();
        for _ in 0..BURST {
            l.check(Kind::Fault, 10 * HZ, HZ);
        }
        assert_eq!(l.check(Kind::Fault, 9 * HZ, HZ), Verdict::Suppress);
        assert_eq!(l.check(Kind::Fault, 10 * HZ, HZ), Verdict::Suppress);
        assert!(printed(l.check(Kind::Fault, 10 * HZ + COST, HZ)));
    }

    #[test]
    fn taking_the_counts_resets_them() {
        let mut l = Limiter::new();
        for _ in 0..BURST + 3 {
            l.check(Kind::CpuOn, 0, HZ);
        }
        assert_eq!(l.take_suppressed(), [0, 3, 0]);
        assert_eq!(l.take_suppressed(), [0; KINDS]);
        assert_eq!(
            l.check(Kind::CpuOn, COST, HZ),
            Verdict::Print {
                suppressed: [0; KINDS]
            }
        );
    }

    #[test]
    fn a_zero_frequency_does_not_divide_by_zero() {
        let mut l = Limiter::new();
        assert!(printed(l.check(Kind::Fault, 0, 0)));
    }
}
