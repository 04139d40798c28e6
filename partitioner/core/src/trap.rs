//! Traps from a domain into the partitioner: decoding ESR_EL2 and computing
//! the register values that reflect a fault back into the domain as a
//! synchronous external abort, exactly as a bus error on real hardware.

use core::fmt;

/// Exception classes (ESR_ELx.EC) the partitioner handles.
pub mod ec {
    pub const WFX: u8 = 0x01;
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
    Wfx,
    Other {
        ec: u8,
    },
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
