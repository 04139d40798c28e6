//! The shared console under a flood, on GICv3 and GICv2. The attacker
//! faults, asks for a vCPU it does not have and prints on the virtual
//! console, each as fast as it can; the victim prints numbered lines as fast
//! as it can. The partitioner must rate-limit the lines the attacker makes it
//! print, say how many it suppressed, and share the console fairly: the
//! victim's lines keep flowing, none lost, with only a few attacker lines
//! between two of them.

use bulkhead_tests::{boot, expect_line, lines_with, Machine, UART0, WAIT};

/// Flood rounds the attacker makes before it pauses (its bootargs), and the
/// one round after the pause.
const ROUNDS: u64 = 2000 + 1;
/// At most this many partitioner lines about the attacker between two
/// consecutive victim lines: its burst (`bulkhead_core::ratelimit::BURST`,
/// 32) and a few more. Without a rate limit, hundreds.
const MAX_REPORTS_BETWEEN_VICTIM_LINES: usize = 40;
/// Between two consecutive victim lines, usually (in [`USUALLY`] of the
/// cases) at most this many other lines: with the console's FIFO turns, a
/// waiting victim prints after the line being printed and at most one more.
/// Not always: on a busy host, QEMU's thread for the victim's vCPU may not
/// run for a while, and the attacker prints on meanwhile.
const USUALLY_BETWEEN_VICTIM_LINES: usize = 2;
/// The share of the gaps between victim lines that [`USUALLY_BETWEEN_VICTIM_LINES`] bounds.
const USUALLY: f64 = 0.9;

#[test]
fn a_flood_is_rate_limited_and_the_console_stays_fair() {
    flood(3);
}

#[test]
fn a_flood_is_rate_limited_and_the_console_stays_fair_gicv2() {
    flood(2);
}

/// Sum of the counts of the suppression reports for `what`.
fn suppressed(log: &str, what: &str) -> (usize, u64) {
    let reports = lines_with(log, &format!("similar lines suppressed ({what})"));
    let sum = reports
        .iter()
        .map(|l| {
            l.split_once("domain \"attacker\": ")
                .and_then(|(_, r)| r.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("a suppression report of the attacker: {l}"))
        })
        .sum();
    (reports.len(), sum)
}

/// The victim's line number, if `l` is one of its lines.
fn victim_count(l: &str) -> Option<u64> {
    l.strip_prefix("[victim] victim: count ")?.parse().ok()
}

fn flood(gic: u32) {
    let m = Machine {
        gic,
        ..Machine::default()
    };
    let mut run = boot("console-flood", &format!("console-flood-v{gic}"), &m);
    let settled = expect_line(&mut run, UART0, "attacker: flood settled", WAIT);
    // Every round faulted and was refused, as the attacker saw it.
    assert!(
        settled.ends_with(&format!(
            "{ROUNDS} faults, {ROUNDS} cpu_on refused, {ROUNDS} aborted, {ROUNDS} refused"
        )),
        "{settled}"
    );
    // The victim keeps printing after the flood.
    let at_settle = run
        .output(UART0)
        .lines()
        .filter_map(victim_count)
        .max()
        .unwrap_or(0);
    run.wait_for(UART0, "victim lines after the flood", WAIT, |l| {
        victim_count(l).is_some_and(|k| k > at_settle + 100)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    run.stop();
    let out = run.output(UART0);
    // Whole lines only.
    let log = &out[..out.rfind('\n').map_or(0, |i| i + 1)];
    let excerpt = |n: usize| {
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| !l.contains("victim: count"))
            .collect();
        lines[..lines.len().min(n)].join("\n")
    };

    // Faults: the first ones and the last one are reported, most of the
    // rest suppressed and counted, and the counts add up.
    let faults = lines_with(
        log,
        "domain \"attacker\" vCPU 0 core 1: access outside the domain #",
    );
    let (fault_reports, fault_suppressed) = suppressed(log, "accesses outside the domain");
    assert!(
        fault_reports > 0 && fault_suppressed > 0,
        "suppressed faults are reported\n{}",
        excerpt(200)
    );
    assert_eq!(
        faults.len() as u64 + fault_suppressed,
        ROUNDS,
        "fault lines printed + suppressed = faults made\n{}",
        excerpt(200)
    );
    assert!(
        (faults.len() as u64) * 10 < ROUNDS,
        "{} of {ROUNDS} fault lines printed",
        faults.len()
    );
    assert!(faults[0].contains("#1: IPA 0x8080000 "), "{}", faults[0]);
    assert!(
        faults[faults.len() - 1].contains(&format!("#{ROUNDS}: IPA 0x8080000 ")),
        "the fault after the pause is reported: {}",
        faults[faults.len() - 1]
    );

    // The same for the refused CPU_ONs.
    let refusals = lines_with(
        log,
        "domain \"attacker\" vCPU 0: CPU_ON of MPIDR 0xff, which is not one of its vCPUs: refused",
    );
    let (cpu_on_reports, cpu_on_suppressed) = suppressed(log, "refused CPU_ON calls");
    assert!(
        cpu_on_reports > 0 && cpu_on_suppressed > 0,
        "suppressed CPU_ON refusals are reported\n{}",
        excerpt(200)
    );
    assert_eq!(
        refusals.len() as u64 + cpu_on_suppressed,
        ROUNDS,
        "CPU_ON lines printed + suppressed = calls made\n{}",
        excerpt(200)
    );
    assert!((refusals.len() as u64) * 10 < ROUNDS, "{}", refusals.len());

    // The attacker's own lines are all there: the virtual console is not
    // rate-limited, only shared fairly.
    for i in [1, ROUNDS / 2, ROUNDS] {
        assert!(
            log.lines()
                .any(|l| l == format!("[attacker] attacker: flood {i}")),
            "attacker line {i}"
        );
    }
    // The victim is never reported for anything.
    assert!(lines_with(log, "domain \"victim\" vCPU").is_empty());

    // The victim's lines: every number once, in order, from 1.
    let counts: Vec<u64> = log.lines().filter_map(victim_count).collect();
    assert!(!counts.is_empty());
    for (i, &k) in counts.iter().enumerate() {
        assert_eq!(k, i as u64 + 1, "victim line numbers run on without a gap");
    }

    // Fairness while the flood lasts, counted in lines (not time): the
    // lines between each two consecutive victim lines.
    let lines: Vec<&str> = log.lines().collect();
    let first = lines
        .iter()
        .position(|l| *l == "[attacker] attacker: flood 1")
        .unwrap();
    let done = lines
        .iter()
        .position(|l| l.starts_with("[attacker] attacker: flood done"))
        .unwrap();
    // (other lines, partitioner lines about the attacker) per gap.
    let mut gaps: Vec<(usize, usize)> = Vec::new();
    let mut between = (0, 0);
    let mut seen_victim = false;
    for l in &lines[first..=done] {
        if victim_count(l).is_some() {
            if seen_victim {
                gaps.push(between);
            }
            seen_victim = true;
            between = (0, 0);
        } else {
            between.0 += 1;
            if l.starts_with("bulkhead: ") && l.contains("domain \"attacker\"") {
                between.1 += 1;
            }
        }
    }
    assert!(
        !gaps.is_empty(),
        "the victim printed while the attacker flooded"
    );
    let mut others: Vec<usize> = gaps.iter().map(|g| g.0).collect();
    others.sort_unstable();
    let worst_reports = gaps.iter().map(|g| g.1).max().unwrap_or(0);
    let usually = others
        .iter()
        .filter(|&&n| n <= USUALLY_BETWEEN_VICTIM_LINES)
        .count() as f64
        / others.len() as f64;
    eprintln!(
        "GICv{gic}: {} victim lines during the flood; other lines between two of them: median {}, worst {}, at most {USUALLY_BETWEEN_VICTIM_LINES} in {:.1}%; partitioner lines about the attacker between two of them: worst {worst_reports}; {} fault lines and {} CPU_ON lines printed",
        gaps.len() + 1,
        others[others.len() / 2],
        others[others.len() - 1],
        usually * 100.0,
        faults.len(),
        refusals.len()
    );
    assert!(
        worst_reports <= MAX_REPORTS_BETWEEN_VICTIM_LINES,
        "at most {MAX_REPORTS_BETWEEN_VICTIM_LINES} partitioner lines about the attacker between two victim lines, saw {worst_reports}"
    );
    assert!(
        usually >= USUALLY,
        "at most {USUALLY_BETWEEN_VICTIM_LINES} other lines between two victim lines in {:.0}% of the cases, saw {:.1}%",
        USUALLY * 100.0,
        usually * 100.0
    );
}
