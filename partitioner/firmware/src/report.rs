//! Partitioner lines a domain can cause without bound (its faults, refused
//! CPU_ONs, vCPU power changes, crashes) go through the domain's rate limit,
//! `bulkhead_core::ratelimit`: a burst, then a steady rate, on the physical
//! counter. A suppressed line is counted, and the next line allowed is
//! preceded by `domain "<name>": <n> similar lines suppressed (<what>)`.

use aarch64_cpu::registers::{Readable, CNTFRQ_EL0, CNTPCT_EL0};
use bulkhead_core::plan::MAX_DOMAINS;
use bulkhead_core::ratelimit::{Kind, Limiter, Verdict, KINDS};
use log::warn;
use spin::Mutex;

/// Each domain's bucket; held only to decide, never while printing.
static LIMITS: [Mutex<Limiter>; MAX_DOMAINS] = [const { Mutex::new(Limiter::new()) }; MAX_DOMAINS];

/// Print a line about domain `$di` (whose plan is `$d`) through its rate
/// limit: `limited!(di, d, Kind::Fault, warn!(...))`.
macro_rules! limited {
    ($di:expr, $d:expr, $kind:expr, $log:expr) => {
        if $crate::report::allow($di, &$d.name, $kind) {
            $log;
        }
    };
}
pub(crate) use limited;

/// May a line of `kind` about domain `di` be printed now? If so, the counts
/// of lines suppressed since its last line are printed first.
pub fn allow(di: usize, name: &str, kind: Kind) -> bool {
    let now = CNTPCT_EL0.get();
    let freq = CNTFRQ_EL0.get();
    // A line about no domain (never: callers pass a domain's index) is
    // printed as it is.
    let Some(limit) = LIMITS.get(di) else {
        return true;
    };
    let verdict = limit.lock().check(kind, now, freq);
    match verdict {
        Verdict::Print { suppressed } => {
            print_suppressed(name, suppressed);
            true
        }
        Verdict::Suppress => false,
    }
}

/// Print the counts of lines suppressed so far for domain `di` (before a
/// line printed whatever the limit, such as its stop).
pub fn flush(di: usize, name: &str) {
    if let Some(limit) = LIMITS.get(di) {
        let suppressed = limit.lock().take_suppressed();
        print_suppressed(name, suppressed);
    }
}

fn print_suppressed(name: &str, suppressed: [u64; KINDS]) {
    for (kind, n) in Kind::ALL.iter().zip(suppressed) {
        if n > 0 {
            warn!(
                "domain \"{name}\": {n} similar lines suppressed ({})",
                kind.what()
            );
        }
    }
}
