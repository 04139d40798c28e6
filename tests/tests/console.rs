//! The shared console under a flood, on GICv3 and GICv2. The attacker
//! faults, asks for a vCPU it does not have and prints on the virtual
//! console, each as fast as it can, then powers its second vCPU on and off
//! as fast as it can; the victim prints numbered lines as fast as it can. The partitioner must rate-limit the lines the attacker makes it
//! print, say how many it suppressed, and share the console fairly: the
//! victim's lines keep flowing, none lost, with only a few attacker lines
//! between two of them.

use std::time::{Duration, Instant};

use bulkhead_core::ratelimit::{BURST, KINDS, PER_SECOND};
use bulkhead_tests::{boot, expect_line, lines_with, Machine, UART0, WAIT};

/// What the suppression reports of vCPU power changes name.
const LIFECYCLE: &str = "vCPU power and crash reports";

/// Flood rounds the attacker makes before it pauses (its bootargs), and the
/// one round after the pause.
const ROUNDS: u64 = 1000 + 1;
/// Power-flood rounds (bootargs `power-flood=`), with the one after the pause.
const POWER_ROUNDS: u64 = 200 + 1;
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

/// The partitioner lines about the attacker's vCPU power changes: starts,
/// power-offs and failed starts.
fn power_lines(log: &str) -> usize {
    log.lines()
        .filter(|l| {
            l.starts_with("bulkhead: ")
                && (l.contains("domain \"attacker\": vCPU ")
                    || l.contains("domain \"attacker\": PSCI CPU_ON of core "))
        })
        .count()
}

/// The number just before `word` in `line` (`<n> <word>`).
fn number_before(line: &str, word: &str) -> u64 {
    let words: Vec<&str> = line.split_whitespace().collect();
    words
        .iter()
        .position(|w| w.trim_end_matches(',') == word)
        .and_then(|i| words.get(i.checked_sub(1)?)?.parse().ok())
        .unwrap_or_else(|| panic!("a number before \"{word}\" in {line}"))
}

/// The counter's milliseconds since reset, `uptime <ms> ms`, in `line`.
fn uptime_ms(line: &str) -> u64 {
    line.split_once("uptime ")
        .and_then(|(_, r)| r.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("an uptime in {line}"))
}

/// The most lines the rate limit lets a domain cause in its first `ms`
/// milliseconds after reset: its burst, the first line of each kind, one
/// more for a line that raced the count, and the steady rate.
fn allowed_by(ms: u64) -> u64 {
    BURST + KINDS as u64 + 1 + PER_SECOND * ms.div_ceil(1000)
}

/// `text` up to its last newline: the guest may be in the middle of a line.
fn whole_lines(text: &str) -> &str {
    &text[..text.rfind('\n').map_or(0, |i| i + 1)]
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
        settled.contains(&format!(
            "{ROUNDS} faults, {ROUNDS} cpu_on refused, {ROUNDS} aborted, {ROUNDS} refused, "
        )),
        "{settled}"
    );
    // Then vCPU power changes: each start and power-off (and any start
    // the platform refused) is a line, or counted as suppressed. The last
    // power-off may follow the attacker's own line, so wait for the counts
    // to add up (bounded by WAIT; the assertions below say what was seen).
    let power = expect_line(&mut run, UART0, "attacker: power-flood settled", WAIT);
    let (started, refused) = (
        number_before(&power, "started"),
        number_before(&power, "refused"),
    );
    assert_eq!(started + refused, POWER_ROUNDS, "{power}");
    // vCPU 0's own start, then a start and a power-off per round started,
    // a failure line per round refused.
    let expected_power = 1 + 2 * started + refused;
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        let out = run.output(UART0);
        let log = whole_lines(&out);
        if power_lines(log) as u64 + suppressed(log, LIFECYCLE).1 >= expected_power {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
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
    let log = whole_lines(&out);
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

    // Far fewer printed than made: the rate limit's contract, a count of
    // lines against the time of the counter the attacker and the
    // partitioner both read (how long the flood took depends on the host;
    // the bound follows it). vCPU 0's start is a limited line too.
    let flood_ms = uptime_ms(&settled);
    let flood_lines = faults.len() as u64 + refusals.len() as u64 + 1;
    eprintln!(
        "GICv{gic}: {flood_ms} ms to the end of the flood: {} of {ROUNDS} fault lines and {} of {ROUNDS} CPU_ON lines printed",
        faults.len(),
        refusals.len()
    );
    assert!(
        flood_lines <= allowed_by(flood_ms),
        "{flood_lines} lines about the attacker in {flood_ms} ms, the limit allows {}",
        allowed_by(flood_ms)
    );

    // The same for the vCPU power changes.
    let printed_power = power_lines(log) as u64;
    let (power_reports, power_suppressed) = suppressed(log, LIFECYCLE);
    assert!(
        power_reports > 0 && power_suppressed > 0,
        "suppressed power changes are reported\n{}",
        excerpt(400)
    );
    assert_eq!(
        printed_power + power_suppressed,
        expected_power,
        "power lines printed + suppressed = power changes made ({started} started, {refused} refused)\n{}",
        excerpt(400)
    );
    let power_ms = uptime_ms(&power);
    let all_lines = flood_lines + printed_power - 1;
    eprintln!(
        "GICv{gic}: {power_ms} ms to the end of the power flood: {printed_power} of {expected_power} power lines printed ({started} started, {refused} refused)"
    );
    assert!(
        all_lines <= allowed_by(power_ms),
        "{all_lines} lines about the attacker in {power_ms} ms, the limit allows {}",
        allowed_by(power_ms)
    );

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
