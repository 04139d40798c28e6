//! `hello`: the victim / heartbeat domain.
//!
//! It says who it is, takes a checksum of its own code and read-only data,
//! then prints a heartbeat every ~50 ms saying whether that checksum still
//! holds, so a test can see both that it keeps running and that nothing
//! changed its image. The name comes from the device tree, so one binary
//! serves as any number of domains.
//!
//! Output (each line ends in `\n`; `<name>` is `/chosen/bulkhead,domain-name`,
//! or `native` when started without a device tree):
//!
//! ```text
//! <name>: domain cpus=<n> memory=<base:#x>+<size:#x>[,<base:#x>+<size:#x>...]
//! <name>: integrity baseline fnv1a=<hash:#018x> over <len> bytes
//! <name>: heartbeat <k> integrity=ok
//! ```
//!
//! With the word `victim` in its bootargs (`cargo xtask audit --attack`,
//! docs/audit.md) it also fills all of its RAM outside its image and device
//! tree with a pattern derived from each word's address
//! (`bulkhead_rt::pattern`), re-checks it at every heartbeat, enables every
//! SGI and its own SPIs on its boot vCPU (it asks for none of them, so any
//! that arrives is one it did not ask for), and prints instead:
//!
//! ```text
//! <name>: victim ready: <bytes> bytes of pattern in <n> ranges, gic v<2|3|none>
//! <name>: unexpected interrupt <intid>         (once per interrupt taken)
//! <name>: heartbeat <k> integrity=ok|CORRUPTED@<addr:#x>
//! ```
//!
//! `CORRUPTED@<addr>` names the first word found changed (or `@code` for the
//! code and read-only data), and stays (a change later undone was still a
//! breach).
//!
//! `memory=none` when the device tree lists no memory. Heartbeats count
//! from one. `integrity=ok` turns into `integrity=CORRUPTED` as soon as the
//! checksum of code + read-only data differs from the baseline, and stays so
//! (a change that is later undone was still a breach).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use bulkhead_rt::{delay_ms, image, println};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

bulkhead_rt::entry!(main);

/// Time between heartbeats.
const HEARTBEAT_MS: u64 = 50;

fn main(_dtb: usize) -> ! {
    let info = bulkhead_rt::info();
    let name = info.name();

    bulkhead_rt::report_resources();
    if info
        .bootargs()
        .split_ascii_whitespace()
        .any(|w| w == "victim")
    {
        victim(name);
    }

    let baseline = image::checksum();
    let (start, end) = image::code_rodata();
    println!(
        "{name}: integrity baseline fnv1a={baseline:#018x} over {} bytes",
        end - start
    );

    let mut intact = true;
    let mut beat: u64 = 0;
    loop {
        delay_ms(HEARTBEAT_MS);
        beat += 1;
        intact = intact && image::checksum() == baseline;
        let state = if intact { "ok" } else { "CORRUPTED" };
        println!("{name}: heartbeat {beat} integrity={state}");
    }
}

/// Interrupts taken (none was asked for), and the last one's INTID.
static UNEXPECTED: AtomicU64 = AtomicU64::new(0);
static LAST_INTID: AtomicU32 = AtomicU32::new(0);

fn count_interrupt(intid: u32) {
    LAST_INTID.store(intid, Ordering::Relaxed);
    UNEXPECTED.fetch_add(1, Ordering::Relaxed);
}

/// The `victim` mode: see the module documentation.
fn victim(name: &str) -> ! {
    use bulkhead_rt::{gic, irq, pattern};
    let mut ranges = [(0usize, 0usize); 8];
    let n = pattern::free_ranges(&mut ranges);
    let ranges = &ranges[..n];
    let mut bytes = 0;
    for &(s, e) in ranges {
        if pattern::fill(s, e) {
            bytes += e - s;
        }
    }
    let version = irq::masked(|| match gic::init() {
        Ok(g) => {
            irq::set_handler(count_interrupt);
            for sgi in 0..16 {
                gic::configure(sgi, gic::DEFAULT_PRIORITY);
            }
            let mut spis = [0u32; 8];
            let k = bulkhead_rt::device_spis(&mut spis);
            for &intid in &spis[..k] {
                gic::configure(intid, gic::DEFAULT_PRIORITY);
            }
            match g.version {
                gic::Version::V2 => "v2",
                gic::Version::V3 => "v3",
            }
        }
        Err(_) => "none",
    });
    if version != "none" {
        irq::enable();
    }
    println!("{name}: victim ready: {bytes} bytes of pattern in {n} ranges, gic {version}");
    let baseline = image::checksum();
    let mut broken: Option<u64> = None;
    let mut code_broken = false;
    let mut seen = 0;
    let mut beat: u64 = 0;
    loop {
        delay_ms(HEARTBEAT_MS);
        beat += 1;
        let taken = UNEXPECTED.load(Ordering::Relaxed);
        while seen < taken {
            seen += 1;
            println!(
                "{name}: unexpected interrupt {}",
                LAST_INTID.load(Ordering::Relaxed)
            );
        }
        code_broken = code_broken || image::checksum() != baseline;
        if broken.is_none() {
            broken = ranges
                .iter()
                .find_map(|&(s, e)| pattern::check(s, e))
                .map(|a| a as u64);
        }
        match (code_broken, broken) {
            (true, _) => println!("{name}: heartbeat {beat} integrity=CORRUPTED@code"),
            (false, Some(a)) => println!("{name}: heartbeat {beat} integrity=CORRUPTED@{a:#x}"),
            (false, None) => println!("{name}: heartbeat {beat} integrity=ok"),
        }
    }
}
