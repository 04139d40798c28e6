//! The `audit` mode: the attacker of `cargo xtask audit --attack`
//! (docs/audit.md). Its targets come in compact bootargs words, computed by
//! the audit from the configuration's plan:
//!
//! | word | meaning |
//! |---|---|
//! | `audit` | this mode |
//! | `m=<page>.<page>...` | guest addresses to attack, as hex page numbers (address >> 12) |
//! | `s=<spi>.<spi>...` | foreign SPI numbers (decimal; INTID = n + 32) |
//! | `c=<mpidr>.<mpidr>...` | foreign cores' MPIDRs (hex) for PSCI CPU_ON |
//! | `x` | also SGIs, vendor SMC/HVC, set/way cache maintenance |
//! | `f=<n>` | a flood of `n` faulting reads (of the first `m=` page) and CPU_ONs |
//!
//! Output, one line per (vector, target), after `<name>: ` (parsed by
//! `xtask/src/attack.rs`):
//!
//! ```text
//! audit start: <n> pages, <s> spis, <c> cores
//! audit read <addr:#x>: aborted esr=<esr:#x> far=<far:#x>   | NOT STOPPED value=<v:#x>
//! audit write <addr:#x>: aborted esr=<esr:#x> far=<far:#x>  | NOT STOPPED
//! audit exec <addr:#x>: aborted esr=<esr:#x> far=<far:#x>   | NOT STOPPED x0=<v:#x>
//! audit <read|write|exec> <addr:#x>: skipped (own memory)
//! audit spi <n> <enable|priority|route|pending>: wrote <v:#x> read <v:#x> | aborted esr=<esr:#x>
//! audit spi <n>: no gic
//! audit cpu_on <mpidr:#x>: <status>
//! audit sgi <what>: sent
//! audit smc: <status|undefined>
//! audit hvc: <status|undefined>
//! audit setway <cisw|isw>: done
//! audit flood: <n> rounds, <a> aborted, <r> refused
//! audit done
//! ```
//!
//! Then heartbeats, like the other modes.

use bulkhead_rt::gic::{self, regs::*, Version};
use bulkhead_rt::psci::{self, Conduit};
use bulkhead_rt::{println, try_exec, try_read, try_read32, try_write, try_write32, Abort};

/// Value the write attacks store.
const PATTERN: u64 = 0xbad0_c0de_dead_beef;
/// Virtual MPIDR of a vCPU no domain has (for the flood's CPU_ONs).
const NO_VCPU: u64 = 0xff;

/// The `.`-separated values of bootargs word `key=`, in `radix`.
fn list<'a>(bootargs: &'a str, key: &'a str, radix: u32) -> impl Iterator<Item = u64> + 'a {
    bootargs
        .split_ascii_whitespace()
        .filter_map(move |w| w.strip_prefix(key)?.strip_prefix('='))
        .flat_map(|v| v.split('.'))
        .filter_map(move |v| u64::from_str_radix(v, radix).ok())
}

fn outcome(name: &str, what: &str, addr: u64, r: Result<u64, Abort>) {
    match r {
        Ok(v) => println!("{name}: audit {what} {addr:#x}: NOT STOPPED value={v:#x}"),
        Err(a) => println!(
            "{name}: audit {what} {addr:#x}: aborted esr={:#x} far={:#x}",
            a.esr, a.far
        ),
    }
}

fn memory(name: &str, addr: u64) {
    if bulkhead_rt::is_own_memory(addr, 8) {
        for what in ["read", "write", "exec"] {
            println!("{name}: audit {what} {addr:#x}: skipped (own memory)");
        }
        return;
    }
    outcome(name, "read", addr, try_read(addr));
    outcome(
        name,
        "write",
        addr,
        try_write(addr, PATTERN).map(|()| PATTERN),
    );
    outcome(name, "exec", addr, try_exec(addr));
}

/// Writes `value` to the 32-bit register `reg` (RMW of `mask`) and reads
/// back what of `mask` it holds.
fn poke(reg: usize, mask: u32, value: u32) -> Result<(u32, u32), Abort> {
    let old = try_read32(reg as u64)?;
    try_write32(reg as u64, (old & !mask) | (value & mask))?;
    Ok((value & mask, try_read32(reg as u64)? & mask))
}

fn spi(name: &str, info: &gic::GicInfo, spi: u32) {
    let intid = spi + 32;
    let dist = info.dist;
    let word = 4 * (intid as usize / 32);
    let bit = 1u32 << (intid % 32);
    let byte = intid as usize & !3;
    let shift = (intid % 4) * 8;
    let show = |what: &str, r: Result<(u64, u64), Abort>| match r {
        Ok((w, v)) => println!("{name}: audit spi {spi} {what}: wrote {w:#x} read {v:#x}"),
        Err(a) => println!("{name}: audit spi {spi} {what}: aborted esr={:#x}", a.esr),
    };
    let wide = |r: Result<(u32, u32), Abort>| r.map(|(w, v)| (u64::from(w), u64::from(v)));
    bulkhead_rt::irq::masked(|| {
        show("enable", wide(poke(dist + GICD_ISENABLER + word, bit, bit)));
        show(
            "priority",
            wide(poke(
                dist + GICD_IPRIORITYR + byte,
                0xff << shift,
                0x10 << shift,
            )),
        );
        let route = match info.version {
            Version::V3 => {
                let reg = (dist + GICD_IROUTER + 8 * intid as usize) as u64;
                let value = (1 << 31) | 1;
                (|| {
                    try_write(reg, value)?;
                    Ok((value, try_read(reg)?))
                })()
            }
            Version::V2 => wide(poke(
                dist + GICD_ITARGETSR + byte,
                0xff << shift,
                u32::from(gic::cpu_mask(0)) << shift,
            )),
        };
        show("route", route);
        show("pending", wide(poke(dist + GICD_ISPENDR + word, bit, bit)));
        let _ = try_write32((dist + GICD_ICPENDR + word) as u64, bit);
        let _ = try_write32((dist + GICD_ICENABLER + word) as u64, bit);
    });
}

fn extras(name: &str, have_gic: Option<Version>) {
    match have_gic {
        Some(Version::V3) => {
            for (what, value) in [
                ("irm=1 (all but self)", 1u64 << 40),
                ("aff0 list 0-15", 0xffff),
                ("aff1=1 list 0-15", (1 << 16) | 0xffff),
            ] {
                gic::send_sgi1r(value | (1 << 24));
                println!("{name}: audit sgi {what}: sent");
            }
        }
        Some(Version::V2) => {
            for (what, value) in [("all-but-self", 0b01 << 24), ("list=0xff", 0xff << 16)] {
                gic::send_sgir(value | 1);
                println!("{name}: audit sgi {what}: sent");
            }
        }
        None => println!("{name}: audit sgi: no gic"),
    }
    for (what, conduit, fid) in [
        ("smc", Conduit::Smc, 0xc200_0000),
        ("hvc", Conduit::Hvc, 0x8600_0000),
    ] {
        match psci::try_call(conduit, fid, [0; 3]) {
            Ok(v) => println!("{name}: audit {what}: {v}"),
            Err(psci::Undefined) => println!("{name}: audit {what}: undefined"),
        }
    }
    bulkhead_rt::hardening::dc_cisw();
    println!("{name}: audit setway cisw: done");
    bulkhead_rt::hardening::dc_isw();
    println!("{name}: audit setway isw: done");
}

/// Runs the audit attacks the bootargs name.
pub fn run(name: &str, bootargs: &str) {
    let pages = list(bootargs, "m", 16).count();
    let spis = list(bootargs, "s", 10).count();
    let cores = list(bootargs, "c", 16).count();
    println!("{name}: audit start: {pages} pages, {spis} spis, {cores} cores");
    for page in list(bootargs, "m", 16) {
        memory(name, page << 12);
    }
    let info = bulkhead_rt::irq::masked(|| gic::init().ok());
    for s in list(bootargs, "s", 10) {
        match &info {
            Some(i) => spi(name, i, s as u32),
            None => println!("{name}: audit spi {s}: no gic"),
        }
    }
    for mpidr in list(bootargs, "c", 16) {
        let ret = psci::cpu_on(mpidr, bulkhead_rt::smp::entry(), mpidr);
        println!("{name}: audit cpu_on {mpidr:#x}: {ret}");
    }
    if bootargs.split_ascii_whitespace().any(|w| w == "x") {
        extras(name, info.map(|i| i.version));
    }
    if let Some(n) = list(bootargs, "f", 10).next() {
        let at = list(bootargs, "m", 16).next().map(|p| p << 12);
        let (mut aborted, mut refused) = (0u64, 0u64);
        for _ in 0..n {
            if let Some(at) = at {
                aborted += try_read(at).is_err() as u64;
            }
            let r = psci::cpu_on(NO_VCPU, bulkhead_rt::smp::entry(), 0);
            refused += (r == psci::INVALID_PARAMETERS || r == psci::DENIED) as u64;
        }
        let aborted = if at.is_some() { aborted } else { n };
        println!("{name}: audit flood: {n} rounds, {aborted} aborted, {refused} refused");
    }
    println!("{name}: audit done");
}
