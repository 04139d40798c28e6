//! `bulkhead-rt`: the minimal runtime of Bulkhead's bare-metal test and demo
//! domains.
//!
//! Boot contract (set by the partitioner): the domain is entered at guest
//! address `0x4000_0000` at EL1h, MMU off, interrupts masked, with `x0` = the
//! guest address of its device tree. The runtime
//!
//! * sets up a stack, zeroes `.bss`, records the registers it was entered
//!   with ([`reset_state`]), enables FP/SIMD and installs its exception
//!   vectors (`_start`),
//! * checks the device tree (magic, size, readable, outside the image) and
//!   falls back to defaults without one (name `native`, console `0x0900_0000`),
//!   which lets a domain run directly under QEMU without the partitioner,
//! * finds its console (a PL011) through `/chosen/stdout-path`,
//! * then calls the domain's `main(dtb: usize) -> !`, registered with
//!   [`entry!`], with the raw `x0` it was entered with.
//!
//! It offers [`print!`]/[`println!`], [`info`] (what the device tree says
//! about the domain), [`try_read`]/[`try_write`] (accesses that report an
//! abort instead of dying of it), [`delay_ms`] and [`image::checksum`];
//! and for domains that use interrupts and several vCPUs: [`gic`] (GICv3 or
//! GICv2, found through the device tree), [`irq`] (the IRQ vector, a
//! handler, masking, waiting), [`timer`] (the virtual timer), [`psci`]
//! (over the device tree's conduit) and [`smp`] (starting vCPUs with
//! their own stacks). Interrupts stay masked until a domain unmasks them.
//!
//! Secondary vCPUs: [`smp::start`] starts vCPU `n` with PSCI `CPU_ON`
//! (target MPIDR `n`, entry [`smp::entry`], context id `n`); the partitioner
//! (or QEMU's PSCI) enters it there at EL1h with the MMU off, like the boot
//! vCPU. It runs on its own 16 KiB stack, chosen by `MPIDR_EL1.Aff0`.
//! vCPU 0, once it has done CPU_OFF, can be started there too
//! ([`smp::set_main`]), on its boot stack; [`smp::context`] is the context
//! id a vCPU came up with.
//!
//! [`hardening`] holds small probes of what a domain reaches on its own
//! core, among them a Thumb program run at AArch32 EL0 through [`el0`]
//! (which returns to EL1 on the program's `SVC`). [`stage1`] turns on a
//! minimal stage-1 identity map for the length of a closure, so that an
//! address can be reached as Normal memory (a misaligned access).
//!
//! Any exception other than an abort of a `try_*` access (or the UNDEFINED
//! instruction of a [`psci::try_call`], or the `SVC` that ends a run of
//! AArch32 EL0 code) prints
//! `<name>: UNEXPECTED EXCEPTION: ...` (vector, ESR decoded, FAR, ELR, SPSR,
//! LR, SP) then `<name>: core halted`, and halts the core; a panic prints
//! `<name>: PANIC at <file>:<line>: <message>` and halts.
#![no_std]

mod boot;
pub mod console;
pub mod cpu;
mod dtb;
pub mod el0;
mod exception;
pub mod gic;
pub mod hardening;
pub mod image;
mod info;
pub mod irq;
pub mod pattern;
mod probe;
pub mod psci;
pub mod reset_state;
pub mod smp;
pub mod stage1;
mod sysreg;
pub mod time;
pub mod timer;

use core::sync::atomic::{AtomicBool, Ordering};

pub use info::{
    console_intid, device_reg, device_spis, info, name, DomainInfo, MemRegion, MAX_MEM_REGIONS,
};
pub use irq::{disable as irq_disable, enable as irq_enable};
pub use probe::{try_exec, try_read, try_read32, try_write, try_write32, Abort};
pub use time::delay_ms;

/// Console used when the device tree names none (QEMU `virt`'s first PL011).
pub const DEFAULT_CONSOLE: usize = 0x0900_0000;
/// Its interrupt without a device tree (QEMU `virt`'s first PL011: SPI 1).
pub const DEFAULT_CONSOLE_INTID: u32 = 33;
/// Domain name used when the device tree gives none.
pub const DEFAULT_NAME: &str = "native";

/// Registers the domain's entry function, `fn main(dtb: usize) -> !`.
///
/// ```ignore
/// bulkhead_rt::entry!(main);
/// fn main(_dtb: usize) -> ! { bulkhead_rt::println!("hi"); bulkhead_rt::halt() }
/// ```
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        /// The domain's entry point, called by `bulkhead-rt` once set up.
        #[doc(hidden)]
        #[no_mangle]
        pub extern "Rust" fn __bulkhead_domain_main(dtb: usize) -> ! {
            let main: fn(usize) -> ! = $main;
            main(dtb)
        }
    };
}

/// Print the resources the domain was given, as its device tree describes
/// them, in one line: `<name>: domain cpus=<n> memory=<base>+<size>[,...]`
/// (`memory=none` without RAM regions). Tests compare it with the config.
pub fn report_resources() {
    let info = info();
    print!("{}: domain cpus={} memory=", info.name(), info.cpus());
    if info.memory().is_empty() {
        print!("none");
    }
    for (i, region) in info.memory().iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        print!("{sep}{:#x}+{:#x}", region.base, region.size);
    }
    println!();
}

/// Whether `[addr, addr + len)` overlaps the domain's own image (code, data,
/// stacks) or its device tree, which [`try_write`] refuses to write.
pub fn is_own_memory(addr: u64, len: u64) -> bool {
    let start = addr as usize;
    let end = addr.saturating_add(len) as usize;
    let in_dtb = dtb::range().is_some_and(|(s, e)| start < e && s < end);
    image::overlaps(start, end) || in_dtb
}

/// Stops this core for good.
pub fn halt() -> ! {
    loop {
        // SAFETY: `wfi` only waits for an interrupt or event; it touches no
        // memory or registers Rust relies on.
        unsafe { core::arch::asm!("wfi", options(nomem, nostack, preserves_flags)) };
    }
}

/// Rust entry, called by `_start` (see `boot.rs`) with the `x0` the domain
/// was entered with, once the stack, `.bss`, FP/SIMD and the vectors are set.
#[no_mangle]
extern "C" fn __bulkhead_rt_start(x0: usize) -> ! {
    dtb::init(x0);
    console::init(info::console_from_dtb());
    info::init_name();

    extern "Rust" {
        fn __bulkhead_domain_main(dtb: usize) -> !;
    }
    // SAFETY: the symbol is defined by `entry!` in the domain binary with
    // exactly this signature (a safe Rust function); a domain without
    // `entry!` fails to link rather than reaching this call.
    unsafe { __bulkhead_domain_main(x0) }
}

/// Prints `<name>: PANIC at <file>:<line>: <message>` and halts.
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    static PANICKING: AtomicBool = AtomicBool::new(false);
    if PANICKING.load(Ordering::SeqCst) {
        // Panicked while reporting a panic: just stop.
        halt();
    }
    PANICKING.store(true, Ordering::SeqCst);
    let name = name();
    match info.location() {
        Some(at) => println!(
            "{name}: PANIC at {}:{}: {}",
            at.file(),
            at.line(),
            info.message()
        ),
        None => println!("{name}: PANIC: {}", info.message()),
    }
    halt()
}
