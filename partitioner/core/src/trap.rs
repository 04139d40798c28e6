//! Traps from a domain into the partitioner: decoding ESR_EL2 and computing
//! the register values that reflect a fault back into the domain as a
//! synchronous external abort, exactly as a bus error on real hardware.

use core::fmt;

/// Exception classes (ESR_ELx.EC) the partitioner handles.
pub mod ec {
    pub const WFX: u8 = 0x01;
    /// MCR/MRC to coprocessor 15, from AArch32.
    pub const CP15_32: u8 = 0x03;
    /// MCRR/MRRC to coprocessor 15, from AArch32.
    pub const CP15_64: u8 = 0x04;
    /// MCR/MRC to coprocessor 14, from AArch32.
    pub const CP14_32: u8 = 0x05;
    /// MRRC (and MCRR) to coprocessor 14, from AArch32.
    pub const CP14_64: u8 = 0x0c;
    pub const HVC64: u8 = 0x16;
    pub const SMC64: u8 = 0x17;
    pub const SYSREG: u8 = 0x18;
    pub const IABT_LOWER: u8 = 0x20;
    pub const IABT_CURRENT: u8 = 0x21;
    pub const DABT_LOWER: u8 = 0x24;
    pub const DABT_CURRENT: u8 = 0x25;
}

/// Fault status code of a synchronous external abort (not on a table walk).
pub const FSC_EXTERNAL_ABORT: u8 = 0x10;

/// A single-register load or store the hardware fully described (ISV = 1),
/// so the partitioner can emulate it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// Bytes accessed: 1, 2, 4 or 8.
    pub size: u8,
    /// General-purpose register number (31 = xzr).
    pub reg: u8,
    /// Load sign-extends.
    pub sign_extend: bool,
    /// The register is 64-bit.
    pub sixty_four: bool,
}

impl Access {
    /// Whether this access at `addr` is misaligned: `addr` not a multiple
    /// of its size. A guest can make one with stage 1 mapping an emulated
    /// device's page as Normal memory (where the architecture allows it),
    /// and its syndrome is as valid as any other; but every emulated
    /// register is naturally aligned, and a forwarded access would be a
    /// misaligned one of the partitioner's own to Device memory, an
    /// alignment fault at EL2. The partitioner refuses it instead.
    pub const fn misaligned(&self, addr: u64) -> bool {
        let size = if self.size == 0 { 1 } else { self.size as u64 };
        !addr.is_multiple_of(size)
    }

    /// What a load writes to its register when the emulated device answers
    /// `raw` (its low `size` bytes): sign-extended for LDRSB/LDRSH/LDRSW,
    /// and a 32-bit register (Wt) gets bits 63:32 zero, as the hardware
    /// load would.
    pub const fn load_value(&self, raw: u64) -> u64 {
        let mut v = raw;
        if self.size < 8 {
            let shift = 64 - 8 * self.size as u32;
            v = if self.sign_extend {
                ((v << shift) as i64 >> shift) as u64
            } else {
                (v << shift) >> shift
            };
        }
        if !self.sixty_four {
            v &= 0xffff_ffff;
        }
        v
    }
}

/// Why a domain left the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Data abort (stage-2 fault) on a load or store.
    DataAbort {
        write: bool,
        fsc: u8,
        access: Option<Access>,
        s1ptw: bool,
    },
    /// Instruction abort (stage-2 fault) on an instruction fetch.
    InstructionAbort {
        fsc: u8,
        s1ptw: bool,
    },
    Hvc {
        imm: u16,
    },
    /// SMC trapped by HCR_EL2.TSC: ELR_EL2 points at the SMC itself.
    Smc {
        imm: u16,
    },
    /// MSR/MRS/system instruction trapped.
    SysReg {
        read: bool,
        reg: u8,
        op0: u8,
        op1: u8,
        crn: u8,
        crm: u8,
        op2: u8,
    },
    /// MCR/MRC or MCRR/MRRC (AArch32) trapped.
    Coproc(Coproc),
    Wfx,
    Other {
        ec: u8,
    },
}

/// A trapped AArch32 coprocessor register access: `MRC`/`MCR` (one
/// transfer register) or `MRRC`/`MCRR` (two), to coprocessor 14 (debug) or
/// 15 (system control), decoded from ESR_EL2 classes 0x03, 0x04, 0x05 and
/// 0x0c. The ISS layout (Arm ARM, ESR_EL2, the ISS encodings for an
/// exception from an MCR or MRC access and from an MCRR or MRRC access):
/// CV\[24\], COND\[23:20\], then for the one-register forms Opc2\[19:17\],
/// Opc1\[16:14\], CRn\[13:10\], Rt\[9:5\], CRm\[4:1\], Direction\[0\]; for
/// the two-register forms Opc1\[19:16\], Rt2\[14:10\], Rt\[9:5\], CRm\[4:1\],
/// Direction\[0\]. Direction 1 is a read (MRC, MRRC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Coproc {
    /// 14 or 15.
    pub cp: u8,
    /// MRC/MRRC: the register's value goes to Rt (and Rt2).
    pub read: bool,
    /// The (first) transfer register, r0..r15 (r15 only in the
    /// `MRC ..., APSR_nzcv, ...` form, whose value goes to the flags).
    pub rt: u8,
    /// The second transfer register of MCRR/MRRC; `None` for MCR/MRC.
    pub rt2: Option<u8>,
    pub opc1: u8,
    /// Zero for MCRR/MRRC, which have no CRn.
    pub crn: u8,
    pub crm: u8,
    /// Zero for MCRR/MRRC, which have no opc2.
    pub opc2: u8,
    /// The instruction's condition (ISS.COND) where the syndrome gives it
    /// (ISS.CV = 1); `None` where it leaves it to the ITSTATE of the SPSR
    /// (a T32 instruction, on an implementation that says so). See
    /// [`aarch32_condition_passed`].
    pub cond: Option<u8>,
}

impl Coproc {
    /// The AArch64 X registers (`x0..x14` are `r0..r14` of AArch32 User
    /// mode) a read writes: Rt, and Rt2 of MRRC. Never r15: for MRC it is
    /// the flags form (see [`Coproc::reads_into_flags`]), for MRRC
    /// UNPREDICTABLE (nothing is written). Empty for a write.
    pub fn read_registers(&self) -> [Option<u8>; 2] {
        if !self.read {
            return [None, None];
        }
        let r = |n: u8| (n < 15).then_some(n);
        [r(self.rt), self.rt2.and_then(r)]
    }

    /// `MRC p14/p15, ..., APSR_nzcv, ...`: the value's bits 31:28 go to the
    /// N, Z, C and V flags rather than to a register.
    pub fn reads_into_flags(&self) -> bool {
        self.read && self.rt2.is_none() && self.rt == 15
    }
}

/// PSTATE.M\[4\]: the exception came from AArch32.
const SPSR_AARCH32: u64 = 1 << 4;
/// PSTATE.M of AArch32 User mode (EL0).
const SPSR_M_USER: u64 = 0b1_0000;

/// Whether a trap was taken from AArch32 User mode, that is EL0 of a domain
/// running 32-bit code under its AArch64 kernel. It is the only AArch32
/// state a domain has: Bulkhead sets HCR_EL2.RW, so its EL1 is AArch64
/// (and AArch64 code never raises the AArch32 coprocessor classes).
pub fn from_aarch32_el0(spsr: u64) -> bool {
    spsr & 0x1f == SPSR_M_USER
}

/// The condition check of the Arm ARM (`ConditionHolds`): whether
/// condition `cond` (0..=15) holds with the flags `nzcv` (N in bit 3,
/// Z 2, C 1, V 0). 0b1110 (AL) and 0b1111 always hold.
pub fn condition_holds(cond: u8, nzcv: u8) -> bool {
    let (n, z, c, v) = (nzcv & 8 != 0, nzcv & 4 != 0, nzcv & 2 != 0, nzcv & 1 != 0);
    let base = match (cond >> 1) & 0b111 {
        0b000 => z,
        0b001 => c,
        0b010 => n,
        0b011 => v,
        0b100 => c && !z,
        0b101 => n == v,
        0b110 => n == v && !z,
        _ => true,
    };
    if cond & 1 != 0 && cond != 0b1111 {
        !base
    } else {
        base
    }
}

/// ITSTATE of an AArch32 SPSR: IT\[7:2\] in bits 15:10, IT\[1:0\] in
/// bits 26:25. Zero outside an IT block.
pub fn itstate(spsr: u64) -> u8 {
    ((((spsr >> 10) & 0x3f) << 2) | ((spsr >> 25) & 0b11)) as u8
}

fn with_itstate(spsr: u64, it: u8) -> u64 {
    let it = u64::from(it);
    (spsr & !((0x3f << 10) | (0b11 << 25))) | ((it >> 2) << 10) | ((it & 0b11) << 25)
}

/// Whether a trapped AArch32 instruction passes its condition check, with
/// the flags and ITSTATE of `spsr` (SPSR_EL2 at the trap). The Arm ARM
/// lets an implementation trap a conditional instruction whose condition
/// fails; the handler must then do nothing but step over it. The condition
/// is ISS.COND where ISS.CV = 1 (0b1110 for an unconditional one); where
/// CV = 0 (allowed for T32 only) it is the current IT block's, IT\[7:4\]
/// when IT\[3:0\] is not zero, and none (always) outside an IT block.
pub fn aarch32_condition_passed(cond: Option<u8>, spsr: u64) -> bool {
    let cond = cond.unwrap_or_else(|| {
        let it = itstate(spsr);
        if it & 0xf != 0 {
            it >> 4
        } else {
            0b1110
        }
    });
    condition_holds(cond, ((spsr >> 28) & 0xf) as u8)
}

/// SPSR_EL2 after stepping over a trapped instruction: unchanged for
/// AArch64; for AArch32 the ITSTATE advances as the instruction's own
/// completion would have advanced it (`ITAdvance`: the block ends after
/// its last instruction, otherwise IT\[4:0\] shifts left by one), so the
/// instructions after it in an IT block keep their own conditions.
pub fn step_spsr(spsr: u64) -> u64 {
    if spsr & SPSR_AARCH32 == 0 {
        return spsr;
    }
    let it = itstate(spsr);
    if it == 0 {
        return spsr;
    }
    let next = if it & 0b111 == 0 {
        0
    } else {
        (it & 0xe0) | ((it << 1) & 0x1f)
    };
    with_itstate(spsr, next)
}

/// Decode an ESR_EL2 value (aborts from the current EL decode like those from
/// a lower EL, for reports).
pub fn decode(esr: u64) -> Exit {
    let ec = ((esr >> 26) & 0x3f) as u8;
    let iss = esr & 0x1ff_ffff;
    match ec {
        ec::DABT_LOWER | ec::DABT_CURRENT => Exit::DataAbort {
            write: iss & (1 << 6) != 0,
            fsc: (iss & 0x3f) as u8,
            s1ptw: iss & (1 << 7) != 0,
            access: (iss & (1 << 24) != 0).then(|| Access {
                size: 1 << ((iss >> 22) & 0b11),
                reg: ((iss >> 16) & 0x1f) as u8,
                sign_extend: iss & (1 << 21) != 0,
                sixty_four: iss & (1 << 15) != 0,
            }),
        },
        ec::IABT_LOWER | ec::IABT_CURRENT => Exit::InstructionAbort {
            fsc: (iss & 0x3f) as u8,
            s1ptw: iss & (1 << 7) != 0,
        },
        ec::HVC64 => Exit::Hvc {
            imm: (iss & 0xffff) as u16,
        },
        ec::SMC64 => Exit::Smc {
            imm: (iss & 0xffff) as u16,
        },
        ec::SYSREG => Exit::SysReg {
            read: iss & 1 != 0,
            reg: ((iss >> 5) & 0x1f) as u8,
            op0: ((iss >> 20) & 0b11) as u8,
            op2: ((iss >> 17) & 0b111) as u8,
            op1: ((iss >> 14) & 0b111) as u8,
            crn: ((iss >> 10) & 0xf) as u8,
            crm: ((iss >> 1) & 0xf) as u8,
        },
        ec::CP15_32 | ec::CP14_32 | ec::CP15_64 | ec::CP14_64 => {
            let wide = ec == ec::CP15_64 || ec == ec::CP14_64;
            Exit::Coproc(Coproc {
                cp: if ec == ec::CP15_32 || ec == ec::CP15_64 {
                    15
                } else {
                    14
                },
                read: iss & 1 != 0,
                rt: ((iss >> 5) & 0x1f) as u8,
                rt2: wide.then_some(((iss >> 10) & 0x1f) as u8),
                opc1: if wide {
                    ((iss >> 16) & 0xf) as u8
                } else {
                    ((iss >> 14) & 0b111) as u8
                },
                crn: if wide { 0 } else { ((iss >> 10) & 0xf) as u8 },
                crm: ((iss >> 1) & 0xf) as u8,
                opc2: if wide { 0 } else { ((iss >> 17) & 0b111) as u8 },
                cond: (iss & (1 << 24) != 0).then_some(((iss >> 20) & 0xf) as u8),
            })
        }
        ec::WFX => Exit::Wfx,
        _ => Exit::Other { ec },
    }
}

/// Bytes of the trapped instruction (ESR_EL2.IL): 4, or 2 for a 16-bit
/// T32 instruction from a domain's AArch32 EL0. An emulated instruction is
/// stepped over by exactly this much.
pub fn instruction_len(esr: u64) -> u64 {
    if esr & (1 << 25) != 0 {
        4
    } else {
        2
    }
}

/// Data cache maintenance by set/way (`DC ISW`, `DC CSW`, `DC CISW`), as a
/// trapped system instruction's encoding; `None` for anything else.
pub fn set_way_op(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8) -> Option<&'static str> {
    match (op0, op1, crn, crm, op2) {
        (1, 0, 7, 6, 2) => Some("DC ISW"),
        (1, 0, 7, 10, 2) => Some("DC CSW"),
        (1, 0, 7, 14, 2) => Some("DC CISW"),
        _ => None,
    }
}

/// A fault status code in words.
pub fn fsc_name(fsc: u8) -> &'static str {
    match fsc {
        0x00..=0x03 => "address size fault",
        0x04..=0x07 => "translation fault",
        0x08..=0x0b => "access flag fault",
        0x0c..=0x0f => "permission fault",
        0x10 => "synchronous external abort",
        0x21 => "alignment fault",
        0x30 => "TLB conflict",
        _ => "other fault",
    }
}

/// Human-readable ESR_EL2, for the partitioner's fault reports.
pub struct Syndrome(pub u64);

impl fmt::Display for Syndrome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let esr = self.0;
        match decode(esr) {
            Exit::DataAbort {
                write,
                fsc,
                access,
                s1ptw,
            } => {
                write!(f, "data abort, {}", if write { "write" } else { "read" })?;
                if let Some(a) = access {
                    write!(
                        f,
                        " of {} bytes via x{}",
                        u64::from(a.size),
                        u64::from(a.reg)
                    )?;
                }
                write!(f, ", {} level {}", fsc_name(fsc), u64::from(fsc & 3))?;
                if s1ptw {
                    write!(f, " on a stage-1 table walk")?;
                }
                Ok(())
            }
            Exit::InstructionAbort { fsc, s1ptw } => {
                write!(
                    f,
                    "instruction fetch abort, {} level {}",
                    fsc_name(fsc),
                    u64::from(fsc & 3)
                )?;
                if s1ptw {
                    write!(f, " on a stage-1 table walk")?;
                }
                Ok(())
            }
            Exit::Hvc { imm } => write!(f, "HVC #{}", u64::from(imm)),
            Exit::Smc { imm } => write!(f, "SMC #{}", u64::from(imm)),
            Exit::SysReg {
                read,
                op0,
                op1,
                crn,
                crm,
                op2,
                reg,
            } => {
                // As u64: the same digits, without linking u8's Display (smaller code).
                let [op0, op1, crn, crm, op2, reg] = [op0, op1, crn, crm, op2, reg].map(u64::from);
                write!(
                    f,
                    "{} S{op0}_{op1}_C{crn}_C{crm}_{op2} {} x{reg}",
                    if read { "MRS" } else { "MSR" },
                    if read { "into" } else { "from" }
                )
            }
            Exit::Coproc(c) => {
                let [cp, opc1, crn, crm, opc2, rt] =
                    [c.cp, c.opc1, c.crn, c.crm, c.opc2, c.rt].map(u64::from);
                let name = match (c.rt2.is_some(), c.read) {
                    (false, true) => "MRC",
                    (false, false) => "MCR",
                    (true, true) => "MRRC",
                    (true, false) => "MCRR",
                };
                write!(f, "{name} p{cp}, {opc1}, ")?;
                if c.reads_into_flags() {
                    write!(f, "APSR_nzcv")?;
                } else {
                    write!(f, "r{rt}")?;
                }
                match c.rt2 {
                    Some(rt2) => write!(f, ", r{}, c{crm}", u64::from(rt2))?,
                    None => write!(f, ", c{crn}, c{crm}, {opc2}")?,
                }
                write!(f, " (AArch32)")
            }
            Exit::Wfx => write!(f, "WFI/WFE"),
            Exit::Other { ec } => write!(f, "exception class {:#04x}", u32::from(ec)),
        }
    }
}

/// Register values that deliver an exception to the domain's EL1 vectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Injection {
    pub esr_el1: u64,
    pub far_el1: u64,
    /// Where the domain resumes after handling: the faulting instruction.
    pub elr_el1: u64,
    pub spsr_el1: u64,
    /// Where the domain continues now: its vector.
    pub elr_el2: u64,
    /// PSTATE at the vector: EL1h, all of DAIF masked.
    pub spsr_el2: u64,
}

/// PSTATE.M of EL1 using SP_EL1, with D, A, I and F masked.
pub const SPSR_EL1H_DAIF_MASKED: u64 = 0b0101 | (0b1111 << 6);

/// VBAR_EL1 bits 10:0: RES0, the vector table is 2 KiB aligned.
const VBAR_RES0: u64 = 0x7ff;

/// Reflect a stage-2 abort into the domain as a synchronous external abort.
///
/// `esr_el2` is the abort's syndrome (instruction or data abort from a lower
/// EL); `spsr_el2`/`elr_el2` the domain's state at the fault; `far` the
/// faulting virtual address; `vbar_el1` the domain's vector base. Its
/// bits 10:0 are RES0 and, as on exception entry, ignored: an implementation
/// may keep whatever the domain wrote there.
pub fn external_abort(
    esr_el2: u64,
    spsr_el2: u64,
    elr_el2: u64,
    far: u64,
    vbar_el1: u64,
) -> Injection {
    let ec = ((esr_el2 >> 26) & 0x3f) as u8;
    let from_el1 = (spsr_el2 >> 2) & 0b11 == 1;
    let aarch32 = spsr_el2 & (1 << 4) != 0;
    let instruction = ec == ec::IABT_LOWER || ec == ec::IABT_CURRENT;
    let new_ec = match (instruction, from_el1) {
        (true, true) => ec::IABT_CURRENT,
        (true, false) => ec::IABT_LOWER,
        (false, true) => ec::DABT_CURRENT,
        (false, false) => ec::DABT_LOWER,
    };
    let il = esr_el2 & (1 << 25);
    // Keep WnR for data aborts; everything else in the ISS is zero (no valid
    // instruction syndrome, FAR valid, not a cache maintenance operation).
    let wnr = if instruction { 0 } else { esr_el2 & (1 << 6) };
    let esr_el1 = ((new_ec as u64) << 26) | il | wnr | FSC_EXTERNAL_ABORT as u64;
    let offset = if from_el1 {
        if spsr_el2 & 1 != 0 {
            0x200
        } else {
            0x000
        }
    } else if aarch32 {
        0x600
    } else {
        0x400
    };
    Injection {
        esr_el1,
        far_el1: far,
        elr_el1: elr_el2,
        spsr_el1: spsr_el2,
        elr_el2: (vbar_el1 & !VBAR_RES0) + offset,
        spsr_el2: SPSR_EL1H_DAIF_MASKED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::format;

    // str x1, [x0] at EL1 hitting an unmapped IPA: EC 0x24, IL, ISV, SAS=3
    // (8 bytes), SRT=1, SF, WnR, DFSC translation fault level 1.
    const STORE_FAULT: u64 =
        (0x24 << 26) | (1 << 25) | (1 << 24) | (3 << 22) | (1 << 16) | (1 << 15) | (1 << 6) | 0x05;

    #[test]
    fn loads_extend_and_truncate_as_the_hardware_would() {
        let a = |size, sign_extend, sixty_four| Access {
            size,
            reg: 0,
            sign_extend,
            sixty_four,
        };
        // LDRB/LDRH/LDR Wt: zero-extended, upper bytes of the answer dropped.
        assert_eq!(a(1, false, false).load_value(0x1_23f0), 0xf0);
        assert_eq!(a(2, false, false).load_value(0xffff_8001), 0x8001);
        // LDRSB Wt, LDRSH Xt, LDRSW Xt: sign-extended to the register.
        assert_eq!(a(1, true, false).load_value(0x80), 0xffff_ff80);
        assert_eq!(a(2, true, true).load_value(0x8001), 0xffff_ffff_ffff_8001);
        assert_eq!(a(4, true, true).load_value(0x7fff_ffff), 0x7fff_ffff);
        assert_eq!(
            a(4, true, true).load_value(0x8000_0000),
            0xffff_ffff_8000_0000
        );
        // LDR Xt: all of it.
        assert_eq!(a(8, false, true).load_value(u64::MAX), u64::MAX);
    }

    #[test]
    fn decodes_a_store_to_an_unmapped_ipa() {
        assert_eq!(
            decode(STORE_FAULT),
            Exit::DataAbort {
                write: true,
                fsc: 0x05,
                s1ptw: false,
                access: Some(Access {
                    size: 8,
                    reg: 1,
                    sign_extend: false,
                    sixty_four: true
                })
            }
        );
        assert_eq!(
            format!("{}", Syndrome(STORE_FAULT)),
            "data abort, write of 8 bytes via x1, translation fault level 1"
        );
    }

    #[test]
    fn misaligned_accesses_are_recognised() {
        let access = |size| Access {
            size,
            reg: 0,
            sign_extend: false,
            sixty_four: false,
        };
        // The report's example: `ldr w0` at offset 0x3e of a function's
        // configuration space in the virtual ECAM window.
        assert!(access(4).misaligned(0x3f01_003e));
        assert!(!access(4).misaligned(0x3f01_003c));
        assert!(access(4).misaligned(0x0800_0102));
        assert!(!access(2).misaligned(0x0800_0102));
        assert!(access(2).misaligned(0x0800_0101));
        assert!(access(8).misaligned(0x0800_0104));
        assert!(!access(8).misaligned(0x0800_0108));
        for addr in 0..16 {
            assert!(!access(1).misaligned(addr), "a byte is always aligned");
        }
        // Decoded from a syndrome: SAS=2 (4 bytes).
        let Exit::DataAbort {
            access: Some(a), ..
        } = decode((0x24 << 26) | (1 << 25) | (1 << 24) | (2 << 22) | 0x06)
        else {
            panic!("not a data abort with a valid syndrome");
        };
        assert!(a.misaligned(0x3f01_003e) && !a.misaligned(0x3f01_0040));
    }

    #[test]
    fn decodes_calls_and_sysregs() {
        assert_eq!(decode((0x16 << 26) | (1 << 25) | 7), Exit::Hvc { imm: 7 });
        assert_eq!(decode((0x17 << 26) | (1 << 25)), Exit::Smc { imm: 0 });
        // MSR ICC_SGI1R_EL1, x3: op0=3 op1=0 CRn=12 CRm=11 op2=5.
        let iss = (3 << 20) | (5 << 17) | (12 << 10) | (3 << 5) | (11 << 1);
        assert_eq!(
            decode((0x18 << 26) | (1 << 25) | iss),
            Exit::SysReg {
                read: false,
                reg: 3,
                op0: 3,
                op1: 0,
                crn: 12,
                crm: 11,
                op2: 5
            }
        );
        assert_eq!(
            format!("{}", Syndrome((0x18 << 26) | iss)),
            "MSR S3_0_C12_C11_5 from x3"
        );
        assert_eq!(decode(0x3f << 26), Exit::Other { ec: 0x3f });
    }

    // MRC p14, 0, r0, c1, c0, 0 (DBGDRAR) from T32 at AArch32 EL0, as QEMU
    // reports it: EC 0x05, IL, CV = 1 with COND = AL, read.
    const MRC_DBGDRAR: u64 = (0x05 << 26) | (1 << 25) | (1 << 24) | (0xe << 20) | (1 << 10) | 1;

    #[test]
    fn decodes_aarch32_coprocessor_accesses() {
        assert_eq!(
            decode(MRC_DBGDRAR),
            Exit::Coproc(Coproc {
                cp: 14,
                read: true,
                rt: 0,
                rt2: None,
                opc1: 0,
                crn: 1,
                crm: 0,
                opc2: 0,
                cond: Some(0xe),
            })
        );
        assert_eq!(
            format!("{}", Syndrome(MRC_DBGDRAR)),
            "MRC p14, 0, r0, c1, c0, 0 (AArch32)"
        );
        // MCR p15, 7, r12, c15, c9, 5 (an implementation defined register),
        // conditional NE, a write: EC 0x03, every field at its extreme.
        let iss = (1 << 24) | (1 << 20) | (5 << 17) | (7 << 14) | (15 << 10) | (12 << 5) | (9 << 1);
        let Exit::Coproc(c) = decode((0x03 << 26) | (1 << 25) | iss) else {
            panic!()
        };
        assert_eq!(
            (c.cp, c.read, c.rt, c.rt2, c.opc1, c.crn, c.crm, c.opc2, c.cond),
            (15, false, 12, None, 7, 15, 9, 5, Some(1))
        );
        assert_eq!(c.read_registers(), [None, None], "a write writes nothing");
        // MRRC p15, 2, r3, r14, c14 (CNTP_CVAL), CV = 0: EC 0x04.
        let iss = (2 << 16) | (14 << 10) | (3 << 5) | (14 << 1) | 1;
        let esr = (0x04 << 26) | (1 << 25) | iss;
        let Exit::Coproc(c) = decode(esr) else {
            panic!()
        };
        assert_eq!(
            (c.cp, c.read, c.rt, c.rt2, c.opc1, c.crn, c.crm, c.opc2, c.cond),
            (15, true, 3, Some(14), 2, 0, 14, 0, None)
        );
        assert_eq!(c.read_registers(), [Some(3), Some(14)]);
        assert_eq!(
            format!("{}", Syndrome(esr)),
            "MRRC p15, 2, r3, r14, c14 (AArch32)"
        );
        // MRRC p14, 0, r0, r1, c1 (64-bit DBGDRAR): EC 0x0c, coprocessor 14.
        let Exit::Coproc(c) = decode((0x0c << 26) | (1 << 25) | (1 << 10) | (1 << 1) | 1) else {
            panic!()
        };
        assert_eq!((c.cp, c.rt, c.rt2, c.crm), (14, 0, Some(1), 1));
        // MRC p14, 0, APSR_nzcv, c0, c1, 0 (DBGDSCRint): the flags, no register.
        let Exit::Coproc(c) = decode((0x05 << 26) | (1 << 25) | (15 << 5) | (1 << 1) | 1) else {
            panic!()
        };
        assert!(c.reads_into_flags());
        assert_eq!(c.read_registers(), [None, None]);
        assert_eq!(
            format!("{}", Syndrome((0x05 << 26) | (15 << 5) | (1 << 1) | 1)),
            "MRC p14, 0, APSR_nzcv, c0, c1, 0 (AArch32)"
        );
        // LDC/STC (0x06) and FP/SIMD (0x07) are not register accesses.
        assert_eq!(decode(0x06 << 26), Exit::Other { ec: 0x06 });
        assert_eq!(decode(0x07 << 26), Exit::Other { ec: 0x07 });
    }

    #[test]
    fn conditions_hold_as_the_arm_arm_says() {
        const N: u8 = 8;
        const Z: u8 = 4;
        const C: u8 = 2;
        const V: u8 = 1;
        let cases: &[(u8, u8, bool)] = &[
            (0x0, Z, true),      // EQ
            (0x0, 0, false),     //
            (0x1, 0, true),      // NE
            (0x1, Z, false),     //
            (0x2, C, true),      // CS
            (0x3, C, false),     // CC
            (0x4, N, true),      // MI
            (0x5, N, false),     // PL
            (0x6, V, true),      // VS
            (0x7, V, false),     // VC
            (0x8, C, true),      // HI
            (0x8, C | Z, false), //
            (0x9, C | Z, true),  // LS
            (0xa, N | V, true),  // GE
            (0xa, N, false),     //
            (0xb, N, true),      // LT
            (0xc, 0, true),      // GT
            (0xc, Z, false),     //
            (0xd, Z, true),      // LE
            (0xd, N | V, false), //
            (0xe, 0, true),      // AL
            (0xf, N | Z | C | V, true),
        ];
        for &(cond, nzcv, holds) in cases {
            assert_eq!(
                condition_holds(cond, nzcv),
                holds,
                "cond {cond:#x} nzcv {nzcv:#06b}"
            );
        }
        for nzcv in 0..16 {
            for cond in 0..14 {
                assert_ne!(
                    condition_holds(cond, nzcv),
                    condition_holds(cond ^ 1, nzcv),
                    "odd conditions invert even ones"
                );
            }
        }
    }

    /// An AArch32 User-mode SPSR with flags `nzcv` and ITSTATE `it`.
    fn user_spsr(nzcv: u64, it: u8) -> u64 {
        with_itstate((nzcv << 28) | (1 << 5) | SPSR_M_USER, it)
    }

    #[test]
    fn the_condition_of_a_trapped_aarch32_instruction() {
        assert!(from_aarch32_el0(user_spsr(0, 0)));
        assert!(!from_aarch32_el0(0b0101), "EL1h, AArch64");
        assert!(!from_aarch32_el0(0b1_0011), "AArch32 Supervisor mode");
        // CV = 1: ISS.COND against the flags; unconditional (AL) always.
        assert!(aarch32_condition_passed(Some(0x0), user_spsr(0b0100, 0)));
        assert!(!aarch32_condition_passed(Some(0x0), user_spsr(0, 0)));
        assert!(aarch32_condition_passed(Some(0xe), user_spsr(0, 0)));
        // CV = 0: the IT block's condition, IT[7:4] while IT[3:0] != 0.
        // `ITE NE` (IT = 0x14): the first instruction is NE.
        assert_eq!(itstate(user_spsr(0, 0x14)), 0x14);
        assert!(aarch32_condition_passed(None, user_spsr(0, 0x14)));
        assert!(!aarch32_condition_passed(None, user_spsr(0b0100, 0x14)));
        // Its second (IT = 0x08) is EQ.
        assert!(!aarch32_condition_passed(None, user_spsr(0, 0x08)));
        assert!(aarch32_condition_passed(None, user_spsr(0b0100, 0x08)));
        // Outside an IT block: unconditional, whatever the flags.
        assert!(aarch32_condition_passed(None, user_spsr(0, 0)));
        assert!(aarch32_condition_passed(None, user_spsr(0b1111, 0)));
    }

    #[test]
    fn stepping_over_an_aarch32_instruction_advances_the_it_block() {
        // ITE NE: NE (0x14), then EQ (0x08), then out of the block.
        let s = user_spsr(0b0010, 0x14);
        let s1 = step_spsr(s);
        assert_eq!(itstate(s1), 0x08);
        assert_eq!(step_spsr(s1), user_spsr(0b0010, 0), "the block is over");
        // ITTTT GT (IT = 0xc1): four instructions, each GT.
        let mut s = user_spsr(0, 0xc1);
        for want in [0xc2, 0xc4, 0xc8, 0x00] {
            s = step_spsr(s);
            assert_eq!(itstate(s), want);
        }
        // Everything else in the SPSR is kept; outside a block nothing moves.
        assert_eq!(s, user_spsr(0, 0));
        assert_eq!(step_spsr(user_spsr(0b1010, 0)), user_spsr(0b1010, 0));
        // AArch64 SPSRs are never touched (their bits 25, 26 and 15:10 mean
        // other things).
        let a64 = (1 << 25) | (1 << 12) | 0b0101;
        assert_eq!(step_spsr(a64), a64);
    }

    #[test]
    fn emulated_instructions_are_stepped_by_their_length() {
        assert_eq!(instruction_len(STORE_FAULT), 4);
        // A 16-bit T32 store from AArch32 EL0: IL clear.
        assert_eq!(instruction_len(STORE_FAULT & !(1 << 25)), 2);
    }

    #[test]
    fn set_way_operations_are_recognised() {
        // DC CISW, x0: op0=1 op1=0 CRn=7 CRm=14 op2=2.
        let iss = (1 << 20) | (2 << 17) | (7 << 10) | (14 << 1);
        let Exit::SysReg {
            op0,
            op1,
            crn,
            crm,
            op2,
            read,
            ..
        } = decode((0x18 << 26) | (1 << 25) | iss)
        else {
            panic!("not a system instruction trap")
        };
        assert!(!read);
        assert_eq!(set_way_op(op0, op1, crn, crm, op2), Some("DC CISW"));
        assert_eq!(set_way_op(1, 0, 7, 6, 2), Some("DC ISW"));
        assert_eq!(set_way_op(1, 0, 7, 10, 2), Some("DC CSW"));
        // DC CIVAC (by address) and DC ZVA are not set/way operations.
        assert_eq!(set_way_op(1, 3, 7, 14, 1), None);
        assert_eq!(set_way_op(1, 3, 7, 4, 1), None);
    }

    #[test]
    fn data_abort_from_el1h_goes_to_current_el_spx_vector() {
        let spsr = 0x3c5; // EL1h, DAIF masked
        let inj = external_abort(STORE_FAULT, spsr, 0x4000_1234, 0x4800_0000, 0x4000_0800);
        assert_eq!(inj.elr_el2, 0x4000_0a00);
        assert_eq!(inj.elr_el1, 0x4000_1234);
        assert_eq!(inj.spsr_el1, spsr);
        assert_eq!(inj.far_el1, 0x4800_0000);
        // EC 0x25 (same EL), IL, WnR, DFSC 0x10; no ISV.
        assert_eq!(inj.esr_el1, (0x25 << 26) | (1 << 25) | (1 << 6) | 0x10);
        assert_eq!(inj.spsr_el2, 0x3c5);
    }

    #[test]
    fn aborts_from_el1t_el0_and_fetches_use_their_vectors_and_classes() {
        let read_fault = (0x24 << 26) | (1 << 25) | 0x06;
        assert_eq!(
            external_abort(read_fault, 0x3c4, 0, 0, 0x1000).elr_el2,
            0x1000
        );
        let el0 = external_abort(read_fault, 0x0, 0, 0, 0x1000);
        assert_eq!(el0.elr_el2, 0x1400);
        assert_eq!(el0.esr_el1 >> 26, 0x24);
        assert_eq!(el0.esr_el1 & (1 << 6), 0, "a read stays a read");
        assert_eq!(
            external_abort(read_fault, 0x10, 0, 0, 0x1000).elr_el2,
            0x1600
        );
        let fetch = external_abort(
            (0x20 << 26) | (1 << 25) | 0x07,
            0x3c5,
            0x5000_0000,
            0x5000_0000,
            0x1000,
        );
        assert_eq!(fetch.esr_el1, (0x21 << 26) | (1 << 25) | 0x10);
        assert_eq!(fetch.elr_el2, 0x1200);
    }

    /// Found by the `trap` fuzz target: a VBAR_EL1 with its RES0 bits set
    /// near the top of the address space overflowed (a panic in a debug
    /// build of the firmware, a guest-triggered EL2 crash).
    #[test]
    fn the_vector_ignores_vbar_res0_bits_and_cannot_overflow() {
        let data_fault = (0x24 << 26) | (1 << 25) | 0x06;
        let inj = external_abort(data_fault, 0x0, 0, 0, u64::MAX);
        assert_eq!(inj.elr_el2, 0xffff_ffff_ffff_f800 + 0x400);
        assert_eq!(
            external_abort(data_fault, 0x3c5, 0, 0, 0x1000 | 0x7ff).elr_el2,
            0x1200
        );
    }
}
