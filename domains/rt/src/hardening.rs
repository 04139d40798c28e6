//! Probes of what a domain can reach on its own core: implementation
//! defined and auxiliary control registers, the PMU, set/way cache
//! maintenance, the SVE and pointer-authentication extensions, and AArch32
//! Thumb code at EL0 whose trapped stores and coprocessor reads the
//! partitioner emulates. Used by the `probe` domain's `cpu-checks`,
//! `thumb-el0`, `thumb-el0-coproc` and `thumb-el0-sgir` modes; each function
//! says what it does on bare hardware, the partitioner decides what the
//! domain really gets.

use crate::sysreg::{isb, read_sysreg, write_sysreg};

/// L2CTLR_EL1 of Cortex-A53/A57/A72 (S3_1_C11_C0_2): cluster-wide L2
/// control. Bulkhead traps implementation defined registers (HCR_EL2.TIDCP):
/// reads as zero.
pub fn l2ctlr() -> u64 {
    read_sysreg!("S3_1_C11_C0_2")
}

/// CPUECTLR_EL1 of Cortex-A53/A57/A72 (S3_1_C15_C2_1), whose SMPEN bit
/// takes the core out of the cluster's coherency.
pub fn cpuectlr() -> u64 {
    read_sysreg!("S3_1_C15_C2_1")
}

/// Writes CPUECTLR_EL1.
pub fn set_cpuectlr(value: u64) {
    write_sysreg!("S3_1_C15_C2_1", value);
    isb();
}

/// ACTLR_EL1 (trapped by HCR_EL2.TACR under Bulkhead).
pub fn actlr_el1() -> u64 {
    read_sysreg!("actlr_el1")
}

/// ID_AA64DFR0_EL1.PMUVer (0 = no PMU).
pub fn pmu_version() -> u64 {
    (read_sysreg!("id_aa64dfr0_el1") >> 8) & 0xf
}

/// PMCR_EL0 (only with a PMU).
pub fn pmcr() -> u64 {
    read_sysreg!("pmcr_el0")
}

/// `DC CISW` on set 0, way 0 of level 1: clean and invalidate by set/way.
pub fn dc_cisw() {
    // SAFETY: cleaning and invalidating a data cache line by set/way never
    // loses data (it is written back first), so no memory Rust relies on
    // changes.
    unsafe { core::arch::asm!("dc cisw, {}", in(reg) 0u64, options(nostack, preserves_flags)) };
}

/// `DC ISW` on set 0, way 0 of level 1: invalidate by set/way. Bulkhead
/// traps it (HCR_EL2.TSW) and cleans and invalidates the domain's own
/// memory instead, so no dirty line of anyone is lost.
pub fn dc_isw() {
    // SAFETY: under Bulkhead the operation is trapped and carried out as a clean and invalidate of the
    // domain's own memory, which loses nothing; with caches off (MMU off, as this runtime runs) no line
    // holds data Rust wrote that is not in memory already.
    unsafe { core::arch::asm!("dc isw, {}", in(reg) 0u64, options(nostack, preserves_flags)) };
}

/// The SVE vector length in bytes (`RDVL`), after enabling SVE and FP at
/// EL1 and EL0 (CPACR_EL1.ZEN, FPEN) and asking for the longest vector
/// (ZCR_EL1.LEN); `None` if the core has no SVE.
pub fn sve_vector_bytes() -> Option<u64> {
    if (read_sysreg!("id_aa64pfr0_el1") >> 32) & 0xf == 0 {
        return None;
    }
    let cpacr = read_sysreg!("cpacr_el1");
    write_sysreg!("cpacr_el1", cpacr | (0b11 << 16) | (0b11 << 20));
    isb();
    write_sysreg!("S3_0_C1_C2_0", 0xf);
    isb();
    let bytes: u64;
    // SAFETY: RDVL only reads the vector length into a register.
    unsafe {
        core::arch::asm!(
            ".arch_extension sve",
            "rdvl {}, #1",
            out(reg) bytes,
            options(nomem, nostack, preserves_flags)
        )
    };
    Some(bytes)
}

/// Signs and authenticates a pointer with the IA key (PACIA/AUTIA) after
/// setting the key and SCTLR_EL1.EnIA: `Some(true)` if the pointer came
/// back intact, `None` if the core has no address authentication.
pub fn pointer_auth_round_trip() -> Option<bool> {
    let isar1 = read_sysreg!("id_aa64isar1_el1");
    let isar2 = read_sysreg!("S3_0_C0_C6_2");
    let apa_api = (isar1 >> 4) & 0xff;
    let apa3 = (isar2 >> 12) & 0xf;
    if apa_api == 0 && apa3 == 0 {
        return None;
    }
    write_sysreg!("S3_0_C2_C1_0", 0x0123_4567_89ab_cdef); // APIAKeyLo_EL1
    write_sysreg!("S3_0_C2_C1_1", 0xfedc_ba98_7654_3210); // APIAKeyHi_EL1
    let sctlr = read_sysreg!("sctlr_el1");
    write_sysreg!("sctlr_el1", sctlr | (1 << 31));
    isb();
    let pointer: u64 = 0x4000_1234;
    let mut p = pointer;
    // SAFETY: PACIA/AUTIA only compute on registers.
    unsafe {
        core::arch::asm!(
            ".arch_extension pauth",
            "pacia {p}, {m}",
            "autia {p}, {m}",
            p = inout(reg) p,
            m = in(reg) 42u64,
            options(nomem, nostack, preserves_flags)
        )
    };
    write_sysreg!("sctlr_el1", sctlr);
    isb();
    Some(p == pointer)
}

/// A T32 program for AArch32 EL0, hand-assembled (all 16-bit encodings):
/// `r0` = the console's data register, `r1..r6` = the characters of a
/// line. Each `STR (immediate)` T1 encoding is `0110 0 imm5 Rn Rt`, here
/// with imm5 = 0 and Rn = r0: on the partitioner's virtual console every
/// one of them traps to EL2, which emulates it and must step the PC over
/// exactly 2 bytes. Stepping 4 would skip every second store (`t`, `u`,
/// `b` only, no newline) and still reach the `SVC` at an even offset.
static THUMB_LINE: [u16; 7] = [
    0x6001, // +0x0: str r1, [r0]
    0x6002, // +0x2: str r2, [r0]
    0x6003, // +0x4: str r3, [r0]
    0x6004, // +0x6: str r4, [r0]
    0x6005, // +0x8: str r5, [r0]
    0x6006, // +0xa: str r6, [r0]
    0xdf00, // +0xc: svc #0 (T1: 1101 1111 imm8)
];

/// The characters [`thumb_el0_line`] prints, in `r1..r6`.
const THUMB_TEXT: &[u8; 6] = b"thumb\n";

/// Runs `THUMB_LINE` in AArch32 User mode, Thumb state, writing the line
/// `thumb` to the console from EL0 (under the console lock), and returns
/// how it ended: `Some((svc immediate, offset of the SVC in the program))`
/// (`(0, 0xc)` when every instruction ran), `None` if the core has no
/// AArch32 at EL0. The stores do not wait for room in the transmit FIFO:
/// the virtual console never has it full, nor does QEMU's PL011.
pub fn thumb_el0_line() -> Option<(u16, u64)> {
    let Ok(console) = u32::try_from(crate::console::base()) else {
        return None; // out of reach of AArch32
    };
    let mut args = [0u32; 8];
    args[0] = console;
    for (arg, &c) in args[1..].iter_mut().zip(THUMB_TEXT) {
        *arg = u32::from(c);
    }
    // SAFETY: the program only stores to the console's data register (a device, not memory Rust
    // owns: see `console::write_byte`) and ends in an SVC; it uses no FP/SIMD register. Under the
    // console lock, its characters are the only ones written meanwhile.
    let exit = crate::console::locked(|| unsafe { crate::el0::run_t32(&THUMB_LINE, args) })?;
    let svc = exit.elr.wrapping_sub(2 + THUMB_LINE.as_ptr() as u64);
    Some((exit.imm(), svc))
}

/// A T32 program for AArch32 EL0, hand-assembled, that reads the debug ROM
/// address registers through coprocessor 14. Both are readable at EL0
/// and Bulkhead traps them (MDCR_EL2.TDRA): EC 0x05, which reads as zero.
/// `MRC` T1 is `1110 1110 opc1 1 CRn` then `Rt coproc opc2 1 CRm`, 32 bits
/// (ESR_EL2.IL set: the partitioner steps 4 bytes); `IT` T1 is
/// `1011 1111 firstcond mask`, with `ITE NE` = firstcond 0b0001, mask
/// 0b0100 (the second instruction is the else: EQ). The flags are all
/// clear at entry (Z = 0), so the first `MRC` of the block passes its
/// condition and the second fails: a core may still trap it, and the
/// partitioner must then leave `r2` alone, and stepping over the first must
/// advance the IT block, or the second would run as NE and be read.
/// SCTLR_EL1.ITD is clear (its reset value), so an IT block may hold 32-bit
/// instructions.
static THUMB_COPROC: [u16; 8] = [
    0xee11, 0x0e10, // +0x0: mrc p14, 0, r0, c1, c0, 0 (DBGDRAR)
    0xbf14, //         +0x4: ite ne
    0xee12, 0x1e10, // +0x6: mrcne p14, 0, r1, c2, c0, 0 (DBGDSAR)
    0xee11, 0x2e10, // +0xa: mrceq p14, 0, r2, c1, c0, 0 (DBGDRAR, not run)
    0xdf00, //         +0xe: svc #0
];

/// What [`thumb_el0_coproc`] preloads into `r0..r2`, so that a read that
/// does not happen shows.
pub const COPROC_UNREAD: u32 = 0x5a5a_5a5a;

/// Runs `THUMB_COPROC` in AArch32 User mode, Thumb state, and returns
/// `Some(([r0, r1, r2], offset of the SVC in the program))`: `r0` and `r1`
/// as the two reads left them (zero under Bulkhead), `r2` as it was
/// ([`COPROC_UNREAD`]: its read failed its condition), and `0xe` when every
/// instruction was stepped over by its 4 bytes. `None` if the core has no
/// AArch32 at EL0.
pub fn thumb_el0_coproc() -> Option<([u32; 3], u64)> {
    let mut args = [0u32; 8];
    args[..3].fill(COPROC_UNREAD);
    // SAFETY: the program only reads coprocessor registers into r0..r2 and ends in an SVC; it
    // touches no memory and no FP/SIMD register.
    let exit = unsafe { crate::el0::run_t32(&THUMB_COPROC, args) }?;
    let svc = exit.elr.wrapping_sub(2 + THUMB_COPROC.as_ptr() as u64);
    Some(([exit.regs[0], exit.regs[1], exit.regs[2]], svc))
}

/// A 16-bit Thumb store to the GICv2 virtual distributor's `GICD_SGIR`
/// inside an `ITE NE` block: `STR` T1 is `0110 0 imm5 Rn Rt`, `ADD` T2
/// (no flags inside an IT block) `0011 0 Rdn imm8`. The flags are clear
/// at entry (Z = 0): the store passes its condition and traps, the `ADDEQ`
/// fails its own. The value stored (`r1`, 0: TargetListFilter 0 with an
/// empty target list) sends no SGI, but a GICv2 partitioner still takes the
/// store on its SGI fast path, and whoever steps over it must advance the
/// IT block too: left at the store's slot, the `ADD` would run as NE and
/// the `SVC` be skipped as the block's else.
static THUMB_SGIR: [u16; 4] = [
    0xbf14, // +0x0: ite ne
    0x6001, // +0x2: strne r1, [r0] (GICD_SGIR)
    0x3201, // +0x4: addeq r2, #1 (not run)
    0xdf00, // +0x6: svc #0
];

/// Runs `THUMB_SGIR` in AArch32 User mode, Thumb state, with `r0` the
/// address of `GICD_SGIR` (`sgir`, below 4 GiB), `r1` 0 and `r2`
/// [`COPROC_UNREAD`]. Returns `Some((r2, offset of the SVC))`: `r2`
/// unchanged and `0x6` when the store was stepped over by its 2 bytes and
/// the IT block advanced. `None` if the core has no AArch32 at EL0.
pub fn thumb_el0_sgir(sgir: u32) -> Option<(u32, u64)> {
    let mut args = [0u32; 8];
    args[0] = sgir;
    args[2] = COPROC_UNREAD;
    // SAFETY: the program stores one word (0) to the given GICD_SGIR, a
    // device register outside all memory Rust owns, and ends in an SVC; it
    // touches no other memory and no FP/SIMD register.
    let exit = unsafe { crate::el0::run_t32(&THUMB_SGIR, args) }?;
    let svc = exit.elr.wrapping_sub(2 + THUMB_SGIR.as_ptr() as u64);
    Some((exit.regs[2], svc))
}
