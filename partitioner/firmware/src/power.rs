//! CPU power control: how the partitioner starts and stops the board's
//! physical cores. Two drivers behind one interface, chosen at boot
//! ([`init`]):
//!
//! - **PSCI**: the platform firmware's `CPU_ON` and `CPU_OFF` over SMC or
//!   HVC (TF-A, QEMU's built-in PSCI).
//! - **Spin table**: a core waits in the boot firmware's loop for an entry
//!   address in its mailbox. Once released it belongs to the partitioner,
//!   which can never hand it back: "off" is then a `wfe` loop of our own
//!   ([`park`]) that the next start request ends.
//!
//! Domains never see either: their PSCI calls trap to EL2 and are answered
//! by `crate::psci`.

use bulkhead_core::board::{Conduit, CpuStart};
use bulkhead_core::plan::MAX_CPUS;
use core::sync::atomic::{AtomicBool, Ordering};
use spin::Once;

const CPU_OFF: u32 = 0x8400_0002;
const CPU_ON: u32 = 0xc400_0003;

/// The method in use, decided once at boot.
static METHOD: Once<CpuStart> = Once::new();

/// Spin table: whether core `n` has left the boot firmware's loop.
static RELEASED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// Spin table: a start request for parked core `n`.
static WAKE: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// Use `method` from now on (called once, by the boot core, before any other
/// core is started).
pub fn init(method: CpuStart) {
    METHOD.call_once(|| method);
}

fn method() -> CpuStart {
    *METHOD.get().unwrap_or(&crate::board().cpu_start)
}

/// Human-readable name of the method in use, for the boot log.
pub fn describe() -> &'static str {
    match method() {
        CpuStart::Psci(Conduit::Smc) => "PSCI over SMC",
        CpuStart::Psci(Conduit::Hvc) => "PSCI over HVC",
        CpuStart::SpinTable { .. } => "spin table",
    }
}

fn firmware_call(conduit: Conduit, func: u32, a1: u64, a2: u64, a3: u64) -> i64 {
    let mut r0 = func as u64;
    match conduit {
        // SAFETY: a PSCI call changes only the power state of cores, never
        // memory the partitioner relies on; the registers it may clobber
        // per SMCCC (x0-x17) are declared as clobbered or outputs.
        Conduit::Smc => unsafe {
            core::arch::asm!(
                "smc #0",
                inout("x0") r0,
                inout("x1") a1 => _, inout("x2") a2 => _, inout("x3") a3 => _,
                out("x4") _, out("x5") _, out("x6") _, out("x7") _,
                out("x8") _, out("x9") _, out("x10") _, out("x11") _,
                out("x12") _, out("x13") _, out("x14") _, out("x15") _,
                out("x16") _, out("x17") _,
                options(nostack)
            )
        },
        // SAFETY: as for the SMC above (an HVC from EL2 reaches firmware
        // that put itself at EL2's vector, e.g. under a nested hypervisor).
        Conduit::Hvc => unsafe {
            core::arch::asm!(
                "hvc #0",
                inout("x0") r0,
                inout("x1") a1 => _, inout("x2") a2 => _, inout("x3") a3 => _,
                out("x4") _, out("x5") _, out("x6") _, out("x7") _,
                out("x8") _, out("x9") _, out("x10") _, out("x11") _,
                out("x12") _, out("x13") _, out("x14") _, out("x15") _,
                out("x16") _, out("x17") _,
                options(nostack)
            )
        },
    }
    r0 as i64
}

/// Start physical core `core` (board index) at the partitioner's secondary
/// entry. Returns a PSCI status: 0, or the platform's error (ALREADY_ON
/// while a core is still on its way off; the caller retries).
pub fn cpu_on(core: usize) -> i64 {
    crate::mmu::publish_for_secondary(core);
    match method() {
        CpuStart::Psci(conduit) => {
            // PSCI wants the affinity fields only: bits [31:24] zero.
            let mpidr = crate::board().cpus[core] & 0xff_00ff_ffff;
            let entry = crate::boot::secondary_entry as *const () as u64;
            firmware_call(conduit, CPU_ON, mpidr, entry, core as u64)
        }
        CpuStart::SpinTable { mailboxes } => {
            // A core without a mailbox never leaves the boot firmware's
            // loop: refused, and never marked released (else the next
            // start would only "wake" it, report success, and leave its
            // vCPU pending for ever).
            let Some(&mailbox) = mailboxes.get(core) else {
                return bulkhead_core::psci::INVALID_PARAMETERS;
            };
            if RELEASED[core].swap(true, Ordering::AcqRel) {
                // Parked in `park`: wake it.
                WAKE[core].store(true, Ordering::Release);
            } else {
                let entry = crate::boot::spin_table_entry(core);
                // SAFETY: the mailbox is this core's spin-table slot, mapped
                // as device memory at EL2 (`mmu`) and written only here; the
                // core waiting on it jumps to `entry`, our own code.
                unsafe { core::ptr::write_volatile(mailbox as *mut u64, entry) };
            }
            aarch64_cpu::asm::barrier::dsb(aarch64_cpu::asm::barrier::SY);
            aarch64_cpu::asm::sev();
            bulkhead_core::psci::SUCCESS
        }
    }
}

/// Switch this core off until the next [`cpu_on`] of it, which starts it
/// afresh at the secondary entry. Never returns: a platform that refuses
/// `CPU_OFF` gets the core halted instead.
pub fn park(core: usize) -> ! {
    match method() {
        CpuStart::Psci(conduit) => {
            let r = firmware_call(conduit, CPU_OFF, 0, 0, 0);
            log::warn!(
                "PSCI CPU_OFF failed ({}); halting the core instead",
                crate::debug::I64(r)
            );
            crate::halt()
        }
        CpuStart::SpinTable { .. } => {
            while !WAKE[core].swap(false, Ordering::AcqRel) {
                aarch64_cpu::asm::wfe();
            }
            crate::boot::restart_secondary(core)
        }
    }
}
