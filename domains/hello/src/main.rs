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
//! `memory=none` when the device tree lists no memory. Heartbeats count
//! from one. `integrity=ok` turns into `integrity=CORRUPTED` as soon as the
//! checksum of code + read-only data differs from the baseline, and stays so
//! (a change that is later undone was still a breach).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use bulkhead_rt::{delay_ms, image, println};

bulkhead_rt::entry!(main);

/// Time between heartbeats.
const HEARTBEAT_MS: u64 = 50;

fn main(_dtb: usize) -> ! {
    let info = bulkhead_rt::info();
    let name = info.name();

    bulkhead_rt::report_resources();

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
