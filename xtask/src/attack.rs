//! `cargo xtask audit CONFIG --attack`: the dynamic half of the audit. For
//! each domain D of a configuration in turn, a derived configuration keeps
//! every domain's resources but runs the attack program (`probe` in its
//! `audit` mode) as D and the victim program (`hello` in its `victim` mode)
//! as every other domain; it is built through the host check like any
//! config and booted under the board's QEMU model. The attacker learns its
//! targets from the audit's own data (the static [`Report`]): every guest
//! address it does not map where something else lives, every SPI it does
//! not hold that belongs to another domain or the partitioner, every core
//! it does not own. Each (attacker, vector, target) cell is judged from
//! both consoles: see `docs/audit.md`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bulkhead_core::board::{Board, Range};
use bulkhead_core::dtb::FdtWriter;
use bulkhead_core::fdt_check::{self, Node};
use bulkhead_core::plan::{
    vgic_window, DomainPlan, GicVersion, Plan, VIRTUAL_CONSOLE_IPA, VIRTUAL_CONSOLE_SPI,
};

use crate::audit::{report, Holder, Report};
use crate::image::{self, Tamper};
use crate::qemu::{Machine, Run, UART0, UART1};
use crate::Result;

/// The attack program and the victim program.
pub const ATTACKER_IMAGE: &str = "domain:probe";
pub const VICTIM_IMAGE: &str = "domain:hello";
/// Where the bare-metal programs are linked.
pub const PROGRAM_BASE: u64 = 0x4000_0000;
/// Faulting accesses and PSCI calls of the flood.
pub const FLOOD_ROUNDS: u64 = 2000;
/// Partitioner report lines a boot may cause: below the rate limit's burst
/// (`bulkhead_core::ratelimit::BURST`), so every report is printed.
const REPORT_BUDGET: usize = bulkhead_core::ratelimit::BURST as usize - 2;
/// End of every domain's guest address space (the stage-2 tables' reach).
const IPA_LIMIT: u64 = 1 << 39;
/// Victim heartbeats to see after the attacker is done.
const BEATS_AFTER: u64 = 3;

/// Options of a dynamic audit.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Victims keep the config's real images (only the attacker is replaced).
    pub keep_images: bool,
    /// Where the derived configs, images and console logs go.
    pub out: PathBuf,
    /// Only these attackers (all domains when empty).
    pub only: Vec<String>,
    /// Test only: give the attacker a page of RAM at the guest address of
    /// the first victim's first RAM page, as a partitioner that leaked a
    /// mapping would, while still attacking it as foreign: the audit must
    /// see a breach.
    pub test_breach: bool,
}

/// The outcome of one cell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// A breach, or a check that did not hold.
    Fail(String),
    /// No outcome could be established (counts as a failure).
    NotJudged(String),
    /// The target is the attacker's own guest address (or vCPU, or SPI).
    NotReachable(String),
}

/// One (attacker, vector, target) cell.
#[derive(Clone, Debug)]
pub struct Cell {
    pub vector: &'static str,
    pub target: String,
    pub verdict: Verdict,
    /// Relevant console lines (partitioner's, attacker's, victims').
    pub evidence: Vec<String>,
}

/// One attacker's row.
#[derive(Clone, Debug)]
pub struct Row {
    pub attacker: String,
    pub cells: Vec<Cell>,
    /// Why the whole row could not be judged, if so.
    pub not_judged: Option<String>,
    pub boots: usize,
    pub seconds: f64,
}

/// The dynamic audit of one configuration.
#[derive(Clone, Debug)]
pub struct Attack {
    pub config: String,
    pub board: &'static str,
    pub rows: Vec<Row>,
    pub seconds: f64,
}

/// The vectors, in matrix column order.
pub const VECTORS: &[&str] = &[
    "read", "write", "exec", "spi", "sgi", "cpu_on", "smc", "hvc", "setway", "flood",
];

/// A memory target: a guest address of the attacker where something else is.
#[derive(Clone, Debug)]
struct Target {
    addr: u64,
    label: String,
    /// Why it is not reachable, if the attacker maps that guest address.
    own: Option<&'static str>,
}

/// What one attacker is to try.
#[derive(Clone, Debug, Default)]
struct Targets {
    pages: Vec<Target>,
    /// SPI number, label, own reason.
    spis: Vec<(u32, String, Option<&'static str>)>,
    /// MPIDR, label, own reason.
    cores: Vec<(u64, String, Option<&'static str>)>,
}

/// The GIC generation a board's QEMU model runs with (`Machine::default`'s
/// GICv3 where the model offers a choice).
fn gic_of(board: &Board) -> GicVersion {
    match board.qemu {
        Some(m) if !m.machine.contains("{gic}") => GicVersion::V2,
        _ => GicVersion::V3,
    }
}

/// Why `addr` is the attacker's own guest address, if it is.
fn own_ipa(d: &DomainPlan, gic: GicVersion, addr: u64) -> Option<&'static str> {
    let page = Range::new(addr, 0x1000);
    if addr >= IPA_LIMIT {
        return Some("beyond the 512 GiB guest address space (no guest address can name it)");
    }
    if d.mappings().any(|m| m.ipa_range().overlaps(&page)) {
        return Some("the attacker maps this guest address itself");
    }
    if vgic_window(gic, d.cpus.len())
        .iter()
        .any(|w| w.overlaps(&page))
    {
        return Some("the attacker's own virtual GIC is at this guest address");
    }
    if d.virtual_console.is_some() && Range::new(VIRTUAL_CONSOLE_IPA, 0x1000).overlaps(&page) {
        return Some("the attacker's own virtual console is at this guest address");
    }
    None
}

/// The targets of domain `d` from the static report `r` of the plan it runs in.
fn targets(r: &Report, board: &Board, d: &DomainPlan) -> Targets {
    let gic = gic_of(board);
    let me = Holder::Domain(d.name.to_string());
    let mut t = Targets::default();
    for region in r.regions.iter().filter(|x| x.holder != me) {
        let first = region.pa & !0xfff;
        let last = (region.pa + region.size - 1) & !0xfff;
        let holder = match &region.holder {
            Holder::Domain(n) => format!("domain {n}"),
            Holder::Partitioner(_) => "partitioner".into(),
            Holder::Nobody => "nobody".into(),
        };
        let mut add = |addr: u64, which: &str| {
            if t.pages.iter().any(|p| p.addr == addr) {
                return;
            }
            t.pages.push(Target {
                addr,
                label: format!("{addr:#x} ({holder}: {}, {which})", region.what),
                own: own_ipa(d, gic, addr),
            });
        };
        if first == last {
            add(first, "its page");
        } else {
            add(first, "first page");
            add(last, "last page");
        }
    }
    for (spi, dev, holder) in &r.spis {
        let whose = match holder {
            Holder::Domain(n) if *n != d.name.as_str() => format!("domain {n}"),
            Holder::Partitioner(why) => format!("partitioner: {why}"),
            _ => continue,
        };
        let own = (d.virtual_console.is_some() && *spi == VIRTUAL_CONSOLE_SPI)
            .then_some("the attacker's own virtual console interrupt has this number");
        t.spis
            .push((*spi, format!("SPI {spi} ({dev}, {whose})"), own));
    }
    for (i, mpidr, holder) in &r.cores {
        if *holder == me {
            continue;
        }
        let own = ((*mpidr & 0xff_00ff_ffff) < d.cpus.len() as u64)
            .then_some("the attacker's own vCPU has this MPIDR");
        t.cores
            .push((*mpidr, format!("core {i} (MPIDR {mpidr:#x})"), own));
    }
    t
}

/// Whether `d` can run a bare-metal program of `size` bytes (linked at
/// [`PROGRAM_BASE`]; the last 64 KiB of the region hold its device tree).
fn runs_programs(d: &DomainPlan, size: u64) -> bool {
    d.ram_at(PROGRAM_BASE)
        .is_some_and(|m| m.ipa + m.size >= PROGRAM_BASE + size + 0x1_0000)
}

/// How one domain is rewritten in a derived config.
#[derive(Clone, Debug)]
struct Rewrite {
    image: &'static str,
    bootargs: String,
    console_virtual: bool,
    /// Test only: an extra RAM region (guest address, size).
    extra_ram: Option<(u64, u64)>,
}

/// Re-emits `node` (named `name`) into `w`, rewriting domains under `/domains`.
fn copy_node(
    w: &mut FdtWriter<'_>,
    node: &Node<'_>,
    path: &str,
    rewrites: &[(String, Rewrite)],
) -> std::result::Result<(), String> {
    let e = |e: bulkhead_core::dtb::DtbError| format!("rewriting the config: {e:?}");
    w.begin_node(node.name()).map_err(e)?;
    let rewrite = path
        .strip_prefix("/domains/")
        .filter(|n| !n.contains('/'))
        .and_then(|n| rewrites.iter().find(|(d, _)| d == n))
        .map(|(_, r)| r);
    const REPLACED: &[&str] = &[
        "image",
        "entry",
        "bootargs",
        "initrd",
        "device-tree",
        "fault-policy",
        "console",
    ];
    for p in node.props() {
        if rewrite.is_some() && REPLACED.contains(&p.name) {
            if p.name == "console" && !rewrite.is_some_and(|r| r.console_virtual) {
                w.property(p.name, p.value).map_err(e)?;
            }
            continue;
        }
        w.property(p.name, p.value).map_err(e)?;
    }
    if let Some(r) = rewrite {
        w.prop_str("image", r.image).map_err(e)?;
        w.prop_u64s("entry", &[PROGRAM_BASE]).map_err(e)?;
        if !r.bootargs.is_empty() {
            w.prop_str("bootargs", &r.bootargs).map_err(e)?;
        }
        w.prop_str("fault-policy", "inject-abort").map_err(e)?;
        if r.console_virtual {
            w.prop_str("console", "virtual").map_err(e)?;
        }
    }
    for c in node.children() {
        let child_path = if path == "/" {
            format!("/{}", c.name())
        } else {
            format!("{path}/{}", c.name())
        };
        copy_node(w, &c, &child_path, rewrites)?;
    }
    if let Some((ipa, size)) = path
        .strip_suffix("/memory")
        .and_then(|d| d.strip_prefix("/domains/"))
        .and_then(|n| rewrites.iter().find(|(d, _)| d == n))
        .and_then(|(_, r)| r.extra_ram)
    {
        w.begin_node("audit-leak").map_err(e)?;
        w.prop_u64s("guest-address", &[ipa]).map_err(e)?;
        w.prop_u64s("size", &[size]).map_err(e)?;
        w.end_node().map_err(e)?;
    }
    w.end_node().map_err(e)
}

/// `blob` with the domains of `rewrites` rewritten.
fn derive(blob: &[u8], rewrites: &[(String, Rewrite)]) -> std::result::Result<Vec<u8>, String> {
    let fdt = fdt_check::check(blob).map_err(|e| format!("the config blob: {e:?}"))?;
    let mut buf = vec![0u8; blob.len() + 8192];
    let mut w = FdtWriter::new(&mut buf).map_err(|e| format!("{e:?}"))?;
    copy_node(&mut w, &fdt.root(), "/", rewrites)?;
    let len = w.finish().map_err(|e| format!("{e:?}"))?;
    buf.truncate(len);
    Ok(buf)
}

/// One boot's bootargs for the attacker: pages `pages`, and in the first
/// boot the SPIs, cores, extras and flood.
fn attacker_bootargs(pages: &[u64], first: bool, t: &Targets) -> String {
    let mut s = String::from("audit");
    if first {
        s.push_str(&format!(" x f={FLOOD_ROUNDS}"));
        let spis: Vec<String> = t
            .spis
            .iter()
            .filter(|x| x.2.is_none())
            .map(|x| x.0.to_string())
            .collect();
        if !spis.is_empty() {
            s.push_str(&format!(" s={}", spis.join(".")));
        }
        let cores: Vec<String> = t
            .cores
            .iter()
            .filter(|x| x.2.is_none())
            .map(|x| format!("{:x}", x.0))
            .collect();
        if !cores.is_empty() {
            s.push_str(&format!(" c={}", cores.join(".")));
        }
    }
    if !pages.is_empty() {
        let p: Vec<String> = pages.iter().map(|a| format!("{:x}", a >> 12)).collect();
        s.push_str(&format!(" m={}", p.join(".")));
    }
    s
}

/// Splits the reachable pages into boots whose bootargs fit and whose
/// partitioner reports stay within the rate limit's burst.
fn batches(t: &Targets) -> Vec<(Vec<u64>, bool)> {
    let pages: Vec<u64> = t
        .pages
        .iter()
        .filter(|p| p.own.is_none())
        .map(|p| p.addr)
        .collect();
    let mut out: Vec<(Vec<u64>, bool)> = vec![(Vec::new(), true)];
    let cores = t.cores.iter().filter(|c| c.2.is_none()).count();
    for p in pages {
        let (cur, first) = out.last_mut().expect("one batch");
        let mut next = cur.clone();
        next.push(p);
        let budget = 3 * next.len() + if *first { cores + 1 } else { 0 };
        let args = attacker_bootargs(&next, *first, t);
        if args.len() <= bulkhead_core::config::MAX_BOOTARGS && budget <= REPORT_BUDGET {
            *cur = next;
        } else {
            out.push((vec![p], false));
        }
    }
    out
}

/// What a boot showed about the victims: problems, and their lines.
struct VictimCheck {
    problems: Vec<String>,
    /// Victim IPA of a `CORRUPTED@` report, with the victim's name.
    corrupted: Vec<(String, u64)>,
}

fn heartbeat_numbers(log: &str, name: &str) -> Vec<u64> {
    let marker = format!("{name}: heartbeat ");
    log.lines()
        .filter_map(|l| {
            l.split_once(&marker)?
                .1
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// Lines of the partitioner about domain `name` that say something went wrong.
fn partitioner_trouble<'a>(log: &'a str, name: &str) -> Vec<&'a str> {
    let tag = format!("domain \"{name}\"");
    log.lines()
        .filter(|l| {
            l.contains(&tag)
                && !l.contains(&format!("[{name}]"))
                && [
                    "access outside",
                    "stopped",
                    "restart",
                    "crash",
                    "unexpected exception",
                    "set/way",
                    "refused",
                ]
                .iter()
                .any(|w| l.contains(w))
        })
        .collect()
}

fn check_victims(log: &str, victims: &[(String, bool)]) -> VictimCheck {
    let mut v = VictimCheck {
        problems: Vec::new(),
        corrupted: Vec::new(),
    };
    for (name, program) in victims {
        for l in partitioner_trouble(log, name) {
            v.problems
                .push(format!("partitioner about victim {name}: {l}"));
        }
        // A victim that keeps its real image is judged by the partitioner's
        // reports, and by its heartbeats if it prints any (as `hello` does).
        let beats_seen = log.contains(&format!("{name}: heartbeat "));
        if !program && !beats_seen {
            continue;
        }
        if *program && !log.contains(&format!("{name}: victim ready")) {
            v.problems
                .push(format!("victim {name} never said \"victim ready\""));
        }
        let beats = heartbeat_numbers(log, name);
        for (i, b) in beats.iter().enumerate() {
            if *b != i as u64 + 1 {
                v.problems.push(format!(
                    "victim {name}: heartbeat {b} where {} was due (a gap)",
                    i + 1
                ));
                break;
            }
        }
        for l in log.lines() {
            if l.contains(&format!("{name}: heartbeat")) && l.contains("CORRUPTED") {
                v.problems.push(format!("victim {name}: {l}"));
                if let Some(a) = l
                    .split("CORRUPTED@0x")
                    .nth(1)
                    .and_then(|a| u64::from_str_radix(a.trim(), 16).ok())
                {
                    v.corrupted.push((name.clone(), a));
                }
                break;
            }
        }
        for l in log
            .lines()
            .filter(|l| l.contains(&format!("{name}: unexpected interrupt")))
        {
            v.problems.push(format!("victim {name}: {l}"));
        }
        for l in log.lines().filter(|l| {
            l.contains(&format!("{name}: UNEXPECTED")) || l.contains(&format!("{name}: PANIC"))
        }) {
            v.problems.push(format!("victim {name}: {l}"));
        }
    }
    v
}

/// The attacker's line for `what` (`audit <what>`), if any.
fn attacker_line<'a>(log: &'a str, name: &str, what: &str) -> Vec<&'a str> {
    let needle = format!("{name}: audit {what}");
    log.lines().filter(|l| l.contains(&needle)).collect()
}

fn hex_after(line: &str, key: &str) -> Option<u64> {
    let v = line.split(key).nth(1)?.split_whitespace().next()?;
    u64::from_str_radix(v.trim_start_matches("0x"), 16).ok()
}

/// The number `n` of a partitioner report `... access outside the domain #n: ...`.
fn fault_number(line: &str) -> Option<u64> {
    line.split("access outside the domain #")
        .nth(1)?
        .split(':')
        .next()?
        .parse()
        .ok()
}

/// Judges a memory cell from the console. Only the domain's first
/// `attack_faults` faults are the memory attacks (the flood comes later).
fn judge_memory(
    log: &str,
    attacker: &str,
    vector: &'static str,
    addr: u64,
    attack_faults: u64,
) -> (Verdict, Vec<String>) {
    let lines = attacker_line(log, attacker, &format!("{vector} {addr:#x}:"));
    let mut ev: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let access = match vector {
        "read" => "data abort, read",
        "write" => "data abort, write",
        _ => "instruction fetch abort",
    };
    let reports: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains(&format!("domain \"{attacker}\" vCPU"))
                && l.contains("access outside the domain")
                && l.contains(&format!("IPA {addr:#x} "))
                && l.contains(access)
                && fault_number(l).is_some_and(|n| n <= attack_faults)
        })
        .collect();
    ev.extend(reports.iter().map(|l| l.to_string()));
    let verdict = match lines.as_slice() {
        [] => Verdict::NotJudged("the attacker printed no outcome (it stopped before?)".into()),
        [l] if l.contains("NOT STOPPED") => Verdict::Fail("the access was not stopped".into()),
        [l] if l.contains(": aborted") => {
            let esr = hex_after(l, "esr=").unwrap_or(0);
            let far = hex_after(l, "far=");
            let want_ec = if vector == "exec" { 0x21 } else { 0x25 };
            let wnr = (esr >> 6) & 1 == 1;
            if esr >> 26 != want_ec {
                Verdict::Fail(format!(
                    "abort class {:#x}, expected {want_ec:#x}",
                    esr >> 26
                ))
            } else if esr & 0x3f != 0x10 {
                Verdict::Fail(format!(
                    "fault status {:#x}, expected 0x10 (synchronous external abort)",
                    esr & 0x3f
                ))
            } else if vector != "exec" && wnr != (vector == "write") {
                Verdict::Fail("ESR.WnR does not match the access".into())
            } else if far != Some(addr) {
                Verdict::Fail(format!("FAR {far:#x?}, expected {addr:#x}"))
            } else if reports.len() != 1 {
                Verdict::Fail(format!(
                    "{} partitioner reports of the access, expected exactly 1",
                    reports.len()
                ))
            } else if !reports[0].ends_with("-> injected synchronous external abort") {
                Verdict::Fail("the partitioner did not inject an abort".into())
            } else {
                Verdict::Pass
            }
        }
        [l] => Verdict::NotJudged(format!("unexpected outcome: {l}")),
        _ => Verdict::Fail("more than one outcome line".into()),
    };
    (verdict, ev)
}

fn judge_spi(log: &str, attacker: &str, spi: u32) -> (Verdict, Vec<String>) {
    let lines = attacker_line(log, attacker, &format!("spi {spi} "));
    let ev: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let parts = ["enable", "priority", "route", "pending"];
    for p in parts {
        let Some(l) = lines
            .iter()
            .find(|l| l.contains(&format!("spi {spi} {p}:")))
        else {
            return (
                Verdict::NotJudged(format!("no outcome of the {p} write")),
                ev,
            );
        };
        let ok = l.contains(": aborted") || l.trim_end().ends_with("read 0x0");
        if !ok {
            return (Verdict::Fail(format!("the {p} write took effect: {l}")), ev);
        }
    }
    (Verdict::Pass, ev)
}

fn judge_status(lines: &[&str], ok: &[&str]) -> Verdict {
    match lines {
        [] => Verdict::NotJudged("the attacker printed no outcome".into()),
        [l] => {
            let status = l.rsplit(": ").next().unwrap_or("").trim();
            if ok.contains(&status) {
                Verdict::Pass
            } else {
                Verdict::Fail(format!("answered {status}, expected one of {ok:?}"))
            }
        }
        _ => Verdict::Fail("more than one outcome line".into()),
    }
}

/// Judges one boot's cells. `pages` are the memory targets of this boot.
#[allow(clippy::too_many_arguments)]
fn judge_boot(
    log: &str,
    attacker: &str,
    t: &Targets,
    pages: &[u64],
    first: bool,
    victims: &[(String, bool)],
    plan: &Plan,
    finished: Result<()>,
    cells: &mut Vec<Cell>,
) {
    let mut boot_cells: Vec<Cell> = Vec::new();
    for &addr in pages {
        let label = t
            .pages
            .iter()
            .find(|p| p.addr == addr)
            .map_or(String::new(), |p| p.label.clone());
        for vector in ["read", "write", "exec"] {
            let (verdict, evidence) =
                judge_memory(log, attacker, vector, addr, 3 * pages.len() as u64);
            boot_cells.push(Cell {
                vector,
                target: label.clone(),
                verdict,
                evidence,
            });
        }
    }
    if first {
        for (spi, label, own) in &t.spis {
            if own.is_some() {
                continue;
            }
            let (verdict, evidence) = judge_spi(log, attacker, *spi);
            boot_cells.push(Cell {
                vector: "spi",
                target: label.clone(),
                verdict,
                evidence,
            });
        }
        for (mpidr, label, own) in &t.cores {
            if own.is_some() {
                continue;
            }
            let lines = attacker_line(log, attacker, &format!("cpu_on {mpidr:#x}:"));
            boot_cells.push(Cell {
                vector: "cpu_on",
                target: label.clone(),
                verdict: judge_status(&lines, &["-2", "-3"]),
                evidence: lines.iter().map(|l| l.to_string()).collect(),
            });
        }
        let sgi = attacker_line(log, attacker, "sgi ");
        boot_cells.push(Cell {
            vector: "sgi",
            target: "every vCPU but its own (victims count any interrupt)".into(),
            verdict: if sgi.iter().any(|l| l.ends_with(": sent")) {
                Verdict::Pass
            } else {
                Verdict::NotJudged("no SGI was sent".into())
            },
            evidence: sgi.iter().map(|l| l.to_string()).collect(),
        });
        for (vector, what) in [("smc", "smc:"), ("hvc", "hvc:")] {
            let lines = attacker_line(log, attacker, what);
            boot_cells.push(Cell {
                vector,
                target: format!("vendor {} call", vector.to_uppercase()),
                verdict: judge_status(&lines, &["-1"]),
                evidence: lines.iter().map(|l| l.to_string()).collect(),
            });
        }
        let sw = attacker_line(log, attacker, "setway ");
        let reported: Vec<&str> = log
            .lines()
            .filter(|l| {
                l.contains(&format!("domain \"{attacker}\" core"))
                    && l.contains("set/way cache maintenance")
            })
            .collect();
        let mut ev: Vec<String> = sw.iter().map(|l| l.to_string()).collect();
        ev.extend(reported.iter().map(|l| l.to_string()));
        boot_cells.push(Cell {
            vector: "setway",
            target: "DC CISW, DC ISW".into(),
            verdict: if sw.len() != 2 {
                Verdict::NotJudged("the attacker did not finish both operations".into())
            } else if reported.len() != 1 || !reported[0].contains("its own memory only") {
                Verdict::Fail(format!(
                    "{} partitioner reports of confined set/way maintenance, expected 1",
                    reported.len()
                ))
            } else {
                Verdict::Pass
            },
            evidence: ev,
        });
        let flood = attacker_line(log, attacker, "flood:");
        let want = format!(
            ": audit flood: {FLOOD_ROUNDS} rounds, {FLOOD_ROUNDS} aborted, {FLOOD_ROUNDS} refused"
        );
        boot_cells.push(Cell {
            vector: "flood",
            target: format!("{FLOOD_ROUNDS} faulting reads and foreign CPU_ONs"),
            verdict: match flood.as_slice() {
                [] => Verdict::NotJudged("the flood did not finish".into()),
                [l] if l.ends_with(&want) => Verdict::Pass,
                [l] => Verdict::Fail(format!("not every access aborted / call refused: {l}")),
                _ => Verdict::Fail("more than one flood line".into()),
            },
            evidence: flood.iter().map(|l| l.to_string()).collect(),
        });
    }
    // The boot as a whole: it finished, and the victims never noticed.
    let vc = check_victims(log, victims);
    let mut unattributed = vc.problems.clone();
    for (victim, ipa) in &vc.corrupted {
        // A corrupted word is the write at its physical page, if one was made.
        let pa = plan
            .domains
            .iter()
            .find(|x| x.name.as_str() == victim)
            .and_then(|x| x.ram_at(*ipa))
            .map(|m| m.pa + (ipa - m.ipa));
        if let Some(cell) = pa.and_then(|pa| {
            boot_cells.iter_mut().find(|c| {
                c.vector == "write" && c.target.starts_with(&format!("{:#x} ", pa & !0xfff))
            })
        }) {
            cell.verdict = Verdict::Fail(format!(
                "victim {victim}'s memory changed at its IPA {ipa:#x}"
            ));
            cell.evidence.extend(vc.problems.iter().cloned());
            unattributed.clear();
        }
    }
    if !unattributed.is_empty() {
        for c in boot_cells.iter_mut() {
            if matches!(c.verdict, Verdict::Pass) {
                c.verdict = Verdict::Fail("a victim noticed (see its lines)".into());
            }
            c.evidence.extend(unattributed.iter().cloned());
        }
    }
    if let Err(e) = finished {
        // What the attacker last said, and what the partitioner said about it.
        let tag = format!("domain \"{attacker}\"");
        let last: Vec<String> = log
            .lines()
            .filter(|l| {
                l.contains(&format!("{attacker}: UNEXPECTED"))
                    || l.contains(&format!("{attacker}: core halted"))
                    || l.contains(&format!("{attacker}: PANIC"))
                    || (l.contains(&tag) && !l.contains("access outside"))
            })
            .map(String::from)
            .collect();
        for c in boot_cells.iter_mut() {
            if matches!(c.verdict, Verdict::Pass | Verdict::NotJudged(_)) {
                c.verdict = Verdict::NotJudged(format!("the boot did not finish: {e}"));
                c.evidence.extend(last.iter().cloned());
            }
        }
    }
    cells.extend(boot_cells);
}

fn not_reachable_cells(t: &Targets) -> Vec<Cell> {
    let mut v = Vec::new();
    for p in &t.pages {
        if let Some(why) = p.own {
            for vector in ["read", "write", "exec"] {
                v.push(Cell {
                    vector,
                    target: p.label.clone(),
                    verdict: Verdict::NotReachable(why.into()),
                    evidence: Vec::new(),
                });
            }
        }
    }
    for (_, label, own) in &t.spis {
        if let Some(why) = own {
            v.push(Cell {
                vector: "spi",
                target: label.clone(),
                verdict: Verdict::NotReachable((*why).into()),
                evidence: Vec::new(),
            });
        }
    }
    for (_, label, own) in &t.cores {
        if let Some(why) = own {
            v.push(Cell {
                vector: "cpu_on",
                target: label.clone(),
                verdict: Verdict::NotReachable((*why).into()),
                evidence: Vec::new(),
            });
        }
    }
    v
}

fn program_size(image: &str) -> u64 {
    let path = image::resolve_image(Path::new("."), image);
    image::load_image(&path)
        .map(|b| bulkhead_core::package::load_size(&b))
        .unwrap_or(u64::MAX)
}

/// Checks a derived config; the plan, its report and the image's firmware.
fn check_derived(
    config: &Path,
    blob: &[u8],
    fw_len: u64,
) -> std::result::Result<(Plan, Report), String> {
    let c = image::check_blob(config, blob.to_vec(), fw_len)
        .map_err(|r| crate::report_rejected(config, &r))?;
    let board = board_support::by_name(c.plan.board).ok_or_else(|| "unknown board".to_string())?;
    let fp = image::footprint(&c, fw_len).map_err(|e| e.to_string())?;
    let r = report(&config.display().to_string(), board, &c.plan, fp);
    Ok((c.plan, r))
}

/// Audits `config` dynamically.
pub fn attack(config: &Path, opts: &Options) -> Result<Attack> {
    let started = Instant::now();
    let blob = image::compile_dts(config)?;
    let board = image::board_of(&blob).ok_or("the config names no known board")?;
    if board.qemu.is_none() {
        return Err(format!(
            "board \"{}\" has no QEMU model: the dynamic audit cannot boot it",
            board.name
        )
        .into());
    }
    let fw_len = image::firmware_image_for(board.name)?.len() as u64;
    let original = image::check_blob(config, blob.clone(), fw_len)
        .map_err(|r| crate::report_rejected(config, &r))?;
    let stem = config
        .file_stem()
        .map_or("config".into(), |s| s.to_string_lossy().to_string());
    let attacker_size = program_size(ATTACKER_IMAGE);
    let victim_size = program_size(VICTIM_IMAGE);
    let mut rows = Vec::new();
    for d in &original.plan.domains {
        let name = d.name.to_string();
        if !opts.only.is_empty() && !opts.only.contains(&name) {
            continue;
        }
        let row_start = Instant::now();
        let mut row = Row {
            attacker: name.clone(),
            cells: Vec::new(),
            not_judged: None,
            boots: 0,
            seconds: 0.0,
        };
        if let Err(why) = attack_row(
            config,
            &blob,
            board,
            &original.plan,
            d,
            opts,
            fw_len,
            (attacker_size, victim_size),
            &opts.out.join(&stem).join(&name),
            &mut row,
        ) {
            row.not_judged = Some(why);
        }
        row.seconds = row_start.elapsed().as_secs_f64();
        rows.push(row);
    }
    Ok(Attack {
        config: config.display().to_string(),
        board: board.name,
        rows,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[allow(clippy::too_many_arguments)]
fn attack_row(
    config: &Path,
    blob: &[u8],
    board: &'static Board,
    plan: &Plan,
    d: &DomainPlan,
    opts: &Options,
    fw_len: u64,
    (attacker_size, victim_size): (u64, u64),
    dir: &Path,
    row: &mut Row,
) -> std::result::Result<(), String> {
    let name = d.name.to_string();
    if !runs_programs(d, attacker_size) {
        return Err(format!(
            "its RAM has no region holding guest address {PROGRAM_BASE:#x} with room for the attack program ({attacker_size} bytes + the 64 KiB device-tree window), where the bare-metal programs are linked"
        ));
    }
    // Victims: the victim program where it can run (and unless the real
    // images are kept); otherwise their own image.
    let victims: Vec<(String, bool)> = plan
        .domains
        .iter()
        .filter(|x| x.name != d.name)
        .map(|x| {
            (
                x.name.to_string(),
                !opts.keep_images && runs_programs(x, victim_size),
            )
        })
        .collect();
    let leak = if opts.test_breach {
        let v = plan
            .domains
            .iter()
            .find(|x| x.name != d.name)
            .ok_or("no victim to leak")?;
        Some((v.ram[0].pa, 0x1000))
    } else {
        None
    };
    let make = |bootargs: &str, console_virtual: bool| -> Vec<(String, Rewrite)> {
        let mut rw = vec![(
            name.clone(),
            Rewrite {
                image: ATTACKER_IMAGE,
                bootargs: bootargs.to_string(),
                console_virtual,
                extra_ram: leak,
            },
        )];
        for (v, program) in &victims {
            if *program {
                rw.push((
                    v.clone(),
                    Rewrite {
                        image: VICTIM_IMAGE,
                        bootargs: "victim".into(),
                        console_virtual,
                        extra_ram: None,
                    },
                ));
            }
        }
        rw
    };
    // The layout of the derived config (its placed regions may move with
    // the images): with the virtual console where the checker allows it.
    let mut console_virtual = true;
    let probe_args = "audit".to_string();
    let (dplan, dreport) = match derive(blob, &make(&probe_args, true))
        .and_then(|b| check_derived(config, &b, fw_len))
    {
        Ok(x) => x,
        Err(_) => {
            console_virtual = false;
            derive(blob, &make(&probe_args, false))
                .and_then(|b| check_derived(config, &b, fw_len))
                .map_err(|e| format!("the derived config is refused:\n{e}"))?
        }
    };
    let dd = dplan
        .domains
        .iter()
        .find(|x| x.name == d.name)
        .ok_or("attacker missing from the derived plan")?;
    let mut t = targets(&dreport, board, dd);
    if opts.test_breach {
        // The leaked page is attacked as foreign all the same.
        for p in t.pages.iter_mut() {
            if Some(p.addr) == leak.map(|l| l.0) {
                p.own = None;
            }
        }
    }
    row.cells.extend(not_reachable_cells(&t));
    let machine = Machine {
        board: board.name.to_string(),
        timeout: Duration::from_secs(120),
        ..Machine::default()
    };
    for (i, (pages, first)) in batches(&t).into_iter().enumerate() {
        let args = attacker_bootargs(&pages, first, &t);
        let derived = derive(blob, &make(&args, console_virtual))?;
        let (bplan, breport) = check_derived(config, &derived, fw_len)
            .map_err(|e| format!("the derived config of boot {i} is refused:\n{e}"))?;
        if breport.regions != dreport.regions {
            return Err("the derived configs place memory differently from boot to boot".into());
        }
        let boot_dir = dir.join(format!("boot{i}"));
        let img = boot_dir.with_extension("img");
        let cfg = dir.join(format!("boot{i}.dtb"));
        let _ = std::fs::create_dir_all(dir);
        let _ = std::fs::write(&cfg, &derived);
        image::build_image_from_blob(config, derived, &img, Tamper::None)
            .map_err(|e| format!("building boot {i}: {e}"))?;
        row.boots += 1;
        let mut run = Run::start(&machine, &img, &boot_dir)
            .map_err(|e| format!("starting QEMU for boot {i}: {e}"))?;
        let finished = run_boot(&mut run, &name, &victims);
        run.stop();
        let log = format!("{}\n{}", run.output(UART0), run.output(UART1));
        judge_boot(
            &log,
            &name,
            &t,
            &pages,
            first,
            &victims,
            &bplan,
            finished,
            &mut row.cells,
        );
    }
    Ok(())
}

/// Waits for the attacker to finish and the victims to beat on.
fn run_boot(run: &mut Run, attacker: &str, victims: &[(String, bool)]) -> Result<()> {
    let wait = Duration::from_secs(60);
    let both = |run: &Run| format!("{}\n{}", run.output(UART0), run.output(UART1));
    let done = format!("{attacker}: audit done");
    let deadline = Instant::now() + wait;
    let crashed = [
        format!("{attacker}: core halted"),
        format!("{attacker}: PANIC"),
        format!("domain \"{attacker}\" stopped"),
    ];
    loop {
        let log = both(run);
        if log.contains(&done) {
            break;
        }
        if let Some(c) = crashed.iter().find(|c| log.contains(c.as_str())) {
            return Err(format!("the attacker stopped before it was done (\"{c}\")").into());
        }
        if Instant::now() > deadline || run.finished() {
            return Err("the attacker never said \"audit done\"".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = both(run);
    let at_done: Vec<(String, u64)> = victims
        .iter()
        .filter(|(_, p)| *p)
        .map(|(v, _)| {
            (
                v.clone(),
                heartbeat_numbers(&log, v).into_iter().max().unwrap_or(0),
            )
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = both(run);
        let behind: Vec<&String> = at_done
            .iter()
            .filter(|(v, n)| {
                heartbeat_numbers(&log, v).into_iter().max().unwrap_or(0) < n + BEATS_AFTER
            })
            .map(|(v, _)| v)
            .collect();
        let attacker_alive = log.contains(&format!("{attacker}: heartbeat 1"));
        if behind.is_empty() && attacker_alive {
            return Ok(());
        }
        if Instant::now() > deadline || run.finished() {
            return Err(format!(
                "victims {behind:?} stopped beating (or the attacker never beat after its attacks)"
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Row {
    fn count(&self, vector: &str) -> (usize, usize, usize, usize) {
        let mut c = (0, 0, 0, 0);
        for x in self.cells.iter().filter(|x| x.vector == vector) {
            match x.verdict {
                Verdict::Pass => c.0 += 1,
                Verdict::Fail(_) => c.1 += 1,
                Verdict::NotJudged(_) => c.2 += 1,
                Verdict::NotReachable(_) => c.3 += 1,
            }
        }
        c
    }
}

impl Attack {
    /// Cells that failed or could not be judged, plus rows not judged.
    pub fn failures(&self) -> usize {
        self.rows
            .iter()
            .map(|r| {
                usize::from(r.not_judged.is_some())
                    + r.cells
                        .iter()
                        .filter(|c| matches!(c.verdict, Verdict::Fail(_) | Verdict::NotJudged(_)))
                        .count()
            })
            .sum()
    }

    /// Cells that passed.
    pub fn passed(&self) -> usize {
        self.rows
            .iter()
            .flat_map(|r| &r.cells)
            .filter(|c| c.verdict == Verdict::Pass)
            .count()
    }

    /// Breaches: cells that failed.
    pub fn breaches(&self) -> usize {
        self.rows
            .iter()
            .flat_map(|r| &r.cells)
            .filter(|c| matches!(c.verdict, Verdict::Fail(_)))
            .count()
    }

    /// The matrix for a terminal, then every failure with its lines.
    pub fn text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "dynamic audit of {} (board {}): each cell pass/fail/not judged (+ not reachable)",
            self.config, self.board
        );
        let _ = write!(o, "  {:<12}", "attacker");
        for v in VECTORS {
            let _ = write!(o, " {v:>10}");
        }
        let _ = writeln!(o, " {:>6} {:>7}", "boots", "time");
        for r in &self.rows {
            let _ = write!(o, "  {:<12}", r.attacker);
            if let Some(why) = &r.not_judged {
                let _ = writeln!(o, " NOT JUDGED: {why}");
                continue;
            }
            for v in VECTORS {
                let (p, f, n, u) = r.count(v);
                let cell = if u > 0 {
                    format!("{p}/{f}/{n}+{u}")
                } else {
                    format!("{p}/{f}/{n}")
                };
                let _ = write!(o, " {cell:>10}");
            }
            let _ = writeln!(o, " {:>6} {:>6.1}s", r.boots, r.seconds);
        }
        for r in &self.rows {
            for c in &r.cells {
                let why = match &c.verdict {
                    Verdict::Fail(w) => format!("BREACH: {w}"),
                    Verdict::NotJudged(w) => format!("NOT JUDGED: {w}"),
                    _ => continue,
                };
                let _ = writeln!(o, "  {} / {} / {}: {why}", r.attacker, c.vector, c.target);
                for l in c.evidence.iter().take(12) {
                    let _ = writeln!(o, "      | {}", l.trim_end());
                }
            }
        }
        let _ = writeln!(
            o,
            "  {} passed, {} breached, {} failed or not judged in all, in {:.1}s",
            self.passed(),
            self.breaches(),
            self.failures(),
            self.seconds
        );
        o
    }

    /// The JUnit testcases of this config (a `<testsuite>`).
    pub fn junit_suite(&self) -> String {
        let mut o = String::new();
        let cases: usize = self.rows.iter().map(|r| r.cells.len().max(1)).sum();
        let skipped = self
            .rows
            .iter()
            .flat_map(|r| &r.cells)
            .filter(|c| matches!(c.verdict, Verdict::NotReachable(_)))
            .count();
        let _ = writeln!(
            o,
            "  <testsuite name=\"audit {}\" tests=\"{cases}\" failures=\"{}\" skipped=\"{skipped}\" time=\"{:.1}\">",
            x(&self.config),
            self.failures(),
            self.seconds
        );
        for r in &self.rows {
            let class = format!("audit.{}.{}", self.board, r.attacker);
            if let Some(why) = &r.not_judged {
                let _ = writeln!(
                    o,
                    "    <testcase classname=\"{}\" name=\"attacker {}\"><failure type=\"not-judged\" message=\"{}\"/></testcase>",
                    x(&class),
                    x(&r.attacker),
                    x(why)
                );
                continue;
            }
            for c in &r.cells {
                let _ = write!(
                    o,
                    "    <testcase classname=\"{}\" name=\"{} {}\">",
                    x(&class),
                    c.vector,
                    x(&c.target)
                );
                match &c.verdict {
                    Verdict::Pass => {}
                    Verdict::NotReachable(w) => {
                        let _ = write!(o, "<skipped message=\"not reachable: {}\"/>", x(w));
                    }
                    Verdict::Fail(w) | Verdict::NotJudged(w) => {
                        let kind = if matches!(c.verdict, Verdict::Fail(_)) {
                            "breach"
                        } else {
                            "not-judged"
                        };
                        let _ = write!(
                            o,
                            "<failure type=\"{kind}\" message=\"{}\">{}</failure>",
                            x(w),
                            x(&c.evidence.join("\n"))
                        );
                    }
                }
                let _ = writeln!(o, "</testcase>");
            }
        }
        o.push_str("  </testsuite>\n");
        o
    }
}

/// `cargo xtask audit CONFIG... --attack`: every config in turn, the
/// matrix on the terminal, JUnit XML in `junit`; an error on any breach or
/// cell not judged.
pub fn run_cli(configs: &[PathBuf], opts: &Options, junit_file: Option<&Path>) -> Result<()> {
    let mut audits = Vec::new();
    let mut errors = Vec::new();
    for c in configs {
        match attack(c, opts) {
            Ok(a) => {
                print!("{}", a.text());
                audits.push(a);
            }
            Err(e) => {
                eprintln!("{}: the dynamic audit could not run: {e}", c.display());
                errors.push(c.display().to_string());
            }
        }
    }
    if let Some(f) = junit_file {
        std::fs::write(f, junit(&audits)).map_err(|e| format!("{}: {e}", f.display()))?;
        println!("written: {}", f.display());
    }
    outcome(&audits, errors.len())
}

/// The exit status of a dynamic audit: an error on any breach, any cell
/// or row not judged, or any config (of `not_audited`) that could not run.
pub fn outcome(audits: &[Attack], not_audited: usize) -> Result<()> {
    let failures: usize = audits.iter().map(Attack::failures).sum();
    let breaches: usize = audits.iter().map(Attack::breaches).sum();
    if failures > 0 || not_audited > 0 {
        return Err(format!(
            "the dynamic audit failed: {breaches} breach(es), {} cell(s) or attacker(s) not judged, {not_audited} config(s) not audited",
            failures - breaches
        )
        .into());
    }
    Ok(())
}

/// A JUnit XML document of several configs' audits.
pub fn junit(audits: &[Attack]) -> String {
    let mut o = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"bulkhead audit --attack\">\n");
    for a in audits {
        o.push_str(&a.junit_suite());
    }
    o.push_str("</testsuites>\n");
    o
}

fn x(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() || *c == '\n')
        .collect::<String>()
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bootargs_are_compact_and_split_to_fit() {
        let t = Targets {
            pages: (0..40)
                .map(|i| Target {
                    addr: 0x4800_0000 + i * 0x1000,
                    label: String::new(),
                    own: None,
                })
                .collect(),
            spis: vec![(8, String::new(), None), (1, String::new(), Some("own"))],
            cores: vec![(2, String::new(), None)],
        };
        let b = batches(&t);
        assert!(b.len() >= 4, "{b:?}");
        assert_eq!(b.iter().map(|x| x.0.len()).sum::<usize>(), 40);
        for (pages, first) in &b {
            let args = attacker_bootargs(pages, *first, &t);
            assert!(args.len() <= bulkhead_core::config::MAX_BOOTARGS, "{args}");
            assert!(3 * pages.len() <= REPORT_BUDGET);
        }
        let first = attacker_bootargs(&b[0].0, true, &t);
        assert!(
            first.starts_with("audit x f=2000 s=8 c=2 m=48000.48001"),
            "{first}"
        );
    }

    #[test]
    fn a_derived_config_keeps_the_resources_and_replaces_the_programs() {
        // The default config: a Linux domain with an initrd, a passthrough UART.
        let blob = image::compile_dts(&crate::root().join("configs/qemu-virt/default.dts"))
            .expect("dtc compiles the default config");
        let mut errors = bulkhead_core::validate::Errors::new();
        let before = bulkhead_core::config::parse_into(&blob, &mut errors).expect("parses");
        let attacker = before.domains[0].name.to_string();
        let rw = |name: &str, image: &'static str, bootargs: &str| {
            (
                name.to_string(),
                Rewrite {
                    image,
                    bootargs: bootargs.into(),
                    console_virtual: true,
                    extra_ram: None,
                },
            )
        };
        let mut rewrites = vec![rw(&attacker, ATTACKER_IMAGE, "audit m=48000")];
        for d in before.domains.iter().skip(1) {
            rewrites.push(rw(d.name, VICTIM_IMAGE, "victim"));
        }
        assert!(before.domains.iter().any(|d| d.initrd.is_some()));
        let derived = derive(&blob, &rewrites).expect("rewrites");
        let mut errors = bulkhead_core::validate::Errors::new();
        let after = bulkhead_core::config::parse_into(&derived, &mut errors).expect("parses");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(after.board, before.board);
        assert_eq!(after.domains.len(), before.domains.len());
        for (a, b) in after.domains.iter().zip(&before.domains) {
            assert_eq!(a.name, b.name);
            assert_eq!(a.cpus, b.cpus);
            assert_eq!(a.regions, b.regions);
            assert_eq!(a.devices, b.devices);
            assert_eq!(a.entry, Some(PROGRAM_BASE));
            assert_eq!(a.initrd, None);
            assert_eq!(a.device_tree, None);
            assert_eq!(a.console, Some(bulkhead_core::config::Console::Virtual));
            assert_eq!(
                a.fault_policy,
                bulkhead_core::plan::FaultPolicy::InjectAbort
            );
            let (image, args) = if a.name == attacker {
                (ATTACKER_IMAGE, "audit m=48000")
            } else {
                (VICTIM_IMAGE, "victim")
            };
            assert_eq!((a.image, a.bootargs), (Some(image), args));
        }
    }

    #[test]
    fn a_memory_cell_needs_the_right_abort_and_one_report() {
        let log = "probe: audit read 0x48000000: aborted esr=0x96000010 far=0x48000000\n\
                   bulkhead: domain \"probe\" vCPU 0 core 1: access outside the domain #1: IPA 0x48000000 (VA 0x48000000, PC 0x40000000): data abort, read [ESR_EL2 0x1] -> injected synchronous external abort\n\
                   probe: audit write 0x48000000: NOT STOPPED value=0x1\n\
                   probe: audit exec 0x48000000: aborted esr=0x96000010 far=0x48000000\n";
        assert_eq!(
            judge_memory(log, "probe", "read", 0x4800_0000, 3).0,
            Verdict::Pass
        );
        assert!(matches!(
            judge_memory(log, "probe", "write", 0x4800_0000, 3).0,
            Verdict::Fail(_)
        ));
        // An exec must come back as an instruction abort.
        assert!(matches!(
            judge_memory(log, "probe", "exec", 0x4800_0000, 3).0,
            Verdict::Fail(_)
        ));
        assert!(matches!(
            judge_memory(log, "probe", "read", 0x4900_0000, 3).0,
            Verdict::NotJudged(_)
        ));
    }

    #[test]
    fn victims_must_beat_without_gaps_and_stay_intact() {
        let ok =
            "v: victim ready: 1 bytes\nv: heartbeat 1 integrity=ok\nv: heartbeat 2 integrity=ok\n";
        let victims = [("v".to_string(), true)];
        assert!(check_victims(ok, &victims).problems.is_empty());
        let gap =
            "v: victim ready: 1 bytes\nv: heartbeat 1 integrity=ok\nv: heartbeat 3 integrity=ok\n";
        assert_eq!(check_victims(gap, &victims).problems.len(), 1);
        let bad = "v: victim ready: 1 bytes\nv: heartbeat 1 integrity=CORRUPTED@0x40100000\n";
        let c = check_victims(bad, &victims);
        assert_eq!(c.corrupted, [("v".to_string(), 0x4010_0000)]);
        let irq = format!("{ok}v: unexpected interrupt 1\n");
        assert_eq!(check_victims(&irq, &victims).problems.len(), 1);
    }
}
