//! The fast path of virtual SGIs between the vCPUs of one domain: the pure
//! part (which trap is an SGI, whom it is for, how it waits for its list
//! register). The firmware's `irq` module carries it out.
//!
//! A vCPU's SGI to vCPUs of its own domain is the one virtual interrupt a
//! guest raises itself, and the one inter-processor interrupts (Linux's
//! IPIs, the `irq` test program's ping-pong) are made of. Through the
//! general path ([`crate::vgic::VDistributor::sgi1r`], the per-core queue
//! of [`crate::vgic::PendingIrqs`]) it costs the model's lock, the queue's
//! lock and its sorted insert on the sender, and the queue again on the
//! receiver. The fast path instead:
//!
//! 1. recognises the trap from the syndrome alone ([`sgi1r_write`] for a
//!    GICv3 `ICC_SGI1R_EL1` write, [`word_write`] plus the address for a
//!    GICv2 `GICD_SGIR` write);
//! 2. decodes the target list ([`sgi1r_targets`], [`sgir_targets`]) with
//!    exactly the model's rules, and gives up (the general path takes the
//!    write, which then reports it) on anything foreign: a vCPU can only
//!    ever signal vCPUs of its own domain;
//! 3. delivers only if every target has the SGI enabled with its
//!    distributor on (a lock-free copy of the model's state, refreshed by
//!    the firmware after every change to the model:
//!    [`crate::vgic::VDistributor::sgi_fast_state`]) and runs; otherwise
//!    the general path latches it in the model, as a GIC keeps a disabled
//!    SGI pending;
//! 4. sets one bit per target in that target core's pending-SGI bitmap
//!    ([`pending_bit`]: SGI and, on GICv2, source vCPU) with one atomic OR,
//!    and kicks the core with the partitioner's physical SGI;
//! 5. the receiving core takes the whole bitmap with one atomic swap on its
//!    way back to the vCPU ([`next_pending`] enumerates it) and writes list
//!    registers directly, merging with one that already holds the SGI, or
//!    queues what finds no free list register behind what already waits.
//!
//! An SGI in a bitmap is, like one in the queue, the CPU interface's
//! business: the model's pending bits (`GICR_ISPENDR0`, `GICD_SPENDSGIR`)
//! show latched SGIs only, as before.

use crate::plan::MAX_CPUS;

/// An SGI and the vCPUs (bit `n` = vCPU `n`) it is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sgi {
    /// SGI INTID, 0-15.
    pub intid: u32,
    /// Target vCPUs, all the domain's own.
    pub targets: u8,
}

/// ESR_EL2 exception class of a trapped MSR/MRS.
const EC_SYSREG: u64 = 0x18;
/// ESR_EL2 exception class of a data abort from a lower exception level.
const EC_DABT_LOWER: u64 = 0x24;
const EC_SHIFT: u32 = 26;
/// Every bit of an MSR/MRS syndrome but Rt (9:5) and IL (25).
pub const SYSREG_MASK: u64 = (0x3f << EC_SHIFT) | 0x3f_fc1f;
/// `MSR ICC_SGI1R_EL1, Xt`: op0 3, op2 5, op1 0, CRn 12, CRm 11, write.
pub const SGI1R_WRITE_ESR: u64 =
    (EC_SYSREG << EC_SHIFT) | (3 << 20) | (5 << 17) | (12 << 10) | (11 << 1);

/// The register (Rt) of a trapped `MSR ICC_SGI1R_EL1, Xt` with syndrome
/// `esr`, or `None` for any other trap (including `ICC_ASGI1R_EL1`,
/// `ICC_SGI0R_EL1` and reads, which take the general path).
pub fn sgi1r_write(esr: u64) -> Option<u8> {
    (esr & SYSREG_MASK == SGI1R_WRITE_ESR).then_some(((esr >> 5) & 0x1f) as u8)
}

/// Whether a trapped system register access (its `op0, op1, CRn, CRm,
/// op2`) is a GICv3 SGI generation write: `ICC_SGI1R_EL1` (op2 5),
/// `ICC_ASGI1R_EL1` (6) or `ICC_SGI0R_EL1` (7), all `S3_0_C12_C11_n`.
/// The exit statistics count these as `sgi`, whichever path takes them.
pub fn is_sgi_register(read: bool, op0: u8, op1: u8, crn: u8, crm: u8, op2: u8) -> bool {
    !read && (op0, op1, crn, crm) == (3, 0, 12, 11) && (5..=7).contains(&op2)
}

/// The syndrome bits [`word_write`] looks at: the exception class, ISV,
/// SAS, FnV, EA, S1PTW, WnR and the fault status class (DFSC 5:2).
pub const WORD_WRITE_MASK: u64 = (0x3f << EC_SHIFT)
    | (1 << 24)
    | (0b11 << 22)
    | (1 << 10)
    | (1 << 9)
    | (1 << 7)
    | (1 << 6)
    | (0b1111 << 2);
/// Their values for a 32-bit store that faulted in stage 2: a data abort
/// from a lower exception level, valid syndrome, word sized, FAR valid, no
/// external abort, no stage-1 walk, write, a translation fault (of any
/// level: DFSC 0b0001xx). Only then does HPFAR_EL2 hold the faulting
/// address (an external abort, say from a passed-through device, leaves it
/// UNKNOWN).
pub const WORD_WRITE_ESR: u64 =
    (EC_DABT_LOWER << EC_SHIFT) | (1 << 24) | (0b10 << 22) | (1 << 6) | (0b0001 << 2);

/// The register (SRT) of a trapped 32-bit store described by its syndrome
/// (a stage-2 translation fault from the domain with a valid instruction
/// syndrome, write, word sized, no stage-1 walk), or `None`.
pub fn word_write(esr: u64) -> Option<u8> {
    (esr & WORD_WRITE_MASK == WORD_WRITE_ESR).then_some(((esr >> 16) & 0x1f) as u8)
}

/// The SGI a GICv3 `ICC_SGI1R_EL1` write of `value` by vCPU `sender` of a
/// domain whose vCPUs are `vcpus` (a bitmask) raises, by the rules of
/// [`crate::vgic::VDistributor::sgi1r`]: `IRM` = every other vCPU; else
/// `Aff3.Aff2.Aff1` and the range selector must be 0 and the target list
/// names vCPUs by `Aff0`. `None` when the write names anything outside
/// the domain (the general path drops and reports it).
pub fn sgi1r_targets(value: u64, sender: usize, vcpus: u8) -> Option<Sgi> {
    let intid = ((value >> 24) & 0xf) as u32;
    let targets = if value & (1 << 40) != 0 {
        vcpus & !bit(sender)
    } else {
        let list = value & 0xffff;
        let high = value & ((0xff << 48) | (0xf << 44) | (0xff << 32) | (0xff << 16));
        if list == 0 {
            0
        } else if high != 0 || list & !u64::from(vcpus) != 0 {
            return None;
        } else {
            list as u8
        }
    };
    Some(Sgi { intid, targets })
}

/// The SGI a GICv2 `GICD_SGIR` write of `value` by vCPU `sender` raises,
/// by the rules of the model's `GICD_SGIR`: `TargetListFilter` 0 the
/// listed CPUs, 1 all others, 2 itself, 3 (reserved) nothing. `None` when
/// the list names CPUs the domain does not have.
pub fn sgir_targets(value: u32, sender: usize, vcpus: u8) -> Option<Sgi> {
    let intid = value & 0xf;
    let list = ((value >> 16) & 0xff) as u8;
    let targets = match (value >> 24) & 0b11 {
        0 if list & !vcpus != 0 => return None,
        0 => list,
        1 => vcpus & !bit(sender),
        2 => bit(sender) & vcpus,
        _ => 0,
    };
    Some(Sgi { intid, targets })
}

fn bit(v: usize) -> u8 {
    u32::try_from(v)
        .ok()
        .and_then(|v| 1u8.checked_shl(v))
        .unwrap_or(0)
}

/// Words of one core's pending-SGI bitmap: 16 SGIs from each of
/// [`MAX_CPUS`] sources.
pub const PENDING_WORDS: usize = (16 * MAX_CPUS).div_ceil(64);
/// Sources per word.
const SOURCES_PER_WORD: usize = 64 / 16;

/// The word and bit of SGI `intid` from source vCPU `source` (GICv2; 0 on
/// GICv3, where SGIs from several senders merge) in a pending-SGI bitmap.
/// Sources beyond [`MAX_CPUS`] and INTIDs beyond 15 fold into range; the
/// firmware never passes them.
#[inline]
pub const fn pending_bit(source: usize, intid: u32) -> (usize, u64) {
    let source = source % MAX_CPUS;
    let word = source / SOURCES_PER_WORD;
    let shift = (source % SOURCES_PER_WORD) * 16 + (intid & 0xf) as usize;
    (word, 1 << shift)
}

/// Take the lowest set bit of word `word` of a pending-SGI bitmap
/// (`bits`, cleared as it goes): its SGI INTID and source vCPU.
#[inline]
pub fn next_pending(word: usize, bits: &mut u64) -> Option<(u32, u8)> {
    if *bits == 0 {
        return None;
    }
    let b = bits.trailing_zeros() as usize;
    *bits &= *bits - 1;
    let source = word * SOURCES_PER_WORD + b / 16;
    Some(((b % 16) as u32, source as u8))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::GicVersion;
    use crate::vgic::regs::{GICD_ISENABLER, GICR_SGI_BASE};
    use crate::vgic::{Domain, PhysGic, VDistributor, VirtualLine, WithLine};

    /// A physical GIC that holds nothing (SGIs never reach it).
    #[derive(Default)]
    struct Null;

    impl PhysGic for Null {
        fn set_enabled(&mut self, _: u32, _: Option<usize>, _: bool) {}
        fn enabled(&self, _: u32, _: Option<usize>) -> bool {
            false
        }
        fn set_pending(&mut self, _: u32, _: Option<usize>, _: bool) {}
        fn pending(&self, _: u32, _: Option<usize>) -> bool {
            false
        }
        fn set_active(&mut self, _: u32, _: Option<usize>, _: bool) {}
        fn active(&self, _: u32, _: Option<usize>) -> bool {
            false
        }
        fn set_priority(&mut self, _: u32, _: Option<usize>, _: u8) {}
        fn priority(&self, _: u32, _: Option<usize>) -> u8 {
            0
        }
        fn set_edge(&mut self, _: u32, _: Option<usize>, _: bool) {}
        fn edge(&self, _: u32, _: Option<usize>) -> bool {
            false
        }
        fn route(&mut self, _: u32, _: usize) {}
    }

    /// `MSR ICC_SGI1R_EL1, X<rt>` as it traps.
    fn sgi1r_esr(rt: u64) -> u64 {
        SGI1R_WRITE_ESR | (1 << 25) | (rt << 5)
    }

    #[test]
    fn recognises_only_sgi1r_writes() {
        for rt in 0..31 {
            assert_eq!(sgi1r_write(sgi1r_esr(rt)), Some(rt as u8));
        }
        // A read of it, ICC_ASGI1R_EL1 (op2 6), ICC_SGI0R_EL1 (op2 7), another
        // register (ICC_EOIR1_EL1: CRm 12 op2 1), another class.
        assert_eq!(sgi1r_write(sgi1r_esr(3) | 1), None);
        assert_eq!(sgi1r_write(sgi1r_esr(3) ^ (5 << 17) | (6 << 17)), None);
        assert_eq!(sgi1r_write(sgi1r_esr(3) ^ (5 << 17) | (7 << 17)), None);
        let eoir = (EC_SYSREG << 26) | (3 << 20) | (1 << 17) | (12 << 10) | (12 << 1);
        assert_eq!(sgi1r_write(eoir), None);
        assert_eq!(
            sgi1r_write((0x24 << 26) | (sgi1r_esr(3) & 0x1ff_ffff)),
            None
        );
        // What the general decoder makes of it.
        match crate::trap::decode(sgi1r_esr(7)) {
            crate::trap::Exit::SysReg {
                read: false,
                reg: 7,
                op0,
                op1,
                crn,
                crm,
                op2,
            } => assert_eq!(
                crate::vgic::SgiRegister::decode((op0, op1, crn, crm, op2)),
                Some(crate::vgic::SgiRegister::Sgi1r)
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn recognises_word_writes() {
        // str w5, [..]: ISV, SAS word, SRT 5, WnR, translation fault level 3.
        let esr = (0x24 << 26) | (1 << 25) | (1 << 24) | (0b10 << 22) | (5 << 16) | (1 << 6) | 7;
        assert_eq!(word_write(esr), Some(5));
        assert_eq!(word_write(esr & !(1 << 6)), None, "a read");
        assert_eq!(word_write(esr & !(1 << 24)), None, "no syndrome");
        assert_eq!(word_write(esr ^ (0b11 << 22)), None, "a byte");
        assert_eq!(word_write(esr | (0b11 << 22)), None, "a double word");
        assert_eq!(word_write(esr | (1 << 7)), None, "a stage-1 walk");
        assert_eq!(word_write(esr & !0b11), Some(5), "level 0");
        assert_eq!(word_write(esr & !0x3f | 0x10), None, "an external abort");
        assert_eq!(word_write(esr | (1 << 9)), None, "EA");
        assert_eq!(word_write(esr | (1 << 10)), None, "FAR not valid");
        assert_eq!(word_write(esr & !0x3f | 0b1111), None, "a permission fault");
        assert_eq!(word_write(esr ^ (0x24 << 26) | (0x25 << 26)), None);
        match crate::trap::decode(esr) {
            crate::trap::Exit::DataAbort {
                write: true,
                access: Some(a),
                ..
            } => assert_eq!((a.size, a.reg), (4, 5)),
            other => panic!("{other:?}"),
        }
    }

    /// A model with every SGI of every vCPU enabled and its distributor on.
    fn model(version: GicVersion, vcpus: usize) -> (Domain, VDistributor) {
        let dom = Domain::with_spis(version, vcpus, &[]);
        let mut vd = VDistributor::new(&dom);
        let mut phys = Null;
        let mut line = VirtualLine::new(33);
        let mut p = WithLine {
            phys: &mut phys,
            line: &mut line,
        };
        vd.write(&dom, &mut p, 0, 0, 4, 0b11);
        for v in 0..vcpus {
            if version == GicVersion::V3 {
                let o = v as u64 * crate::plan::VGICR_STRIDE + GICR_SGI_BASE + GICD_ISENABLER;
                vd.write_redist(&dom, &mut p, v, o, 4, 0xffff);
            } else {
                vd.write(&dom, &mut p, v, GICD_ISENABLER, 4, 0xffff);
            }
            let (on, _) = vd.sgi_fast_state(&dom, v);
            assert_eq!(on, 0xffff);
        }
        (dom, vd)
    }

    /// Interesting ICC_SGI1R_EL1 values: every field at its edges.
    fn sgi1r_values() -> impl Iterator<Item = u64> {
        let lists = [
            0u64, 1, 2, 3, 4, 0xf, 0x10, 0x80, 0xff, 0x100, 0x8000, 0xffff,
        ];
        let intids = [0u64, 1, 15];
        let highs = [
            0u64,
            1 << 16,
            0xff << 16,
            1 << 32,
            1 << 40,
            (1 << 40) | (1 << 16),
            1 << 44,
            0xf << 44,
            1 << 48,
            0xff << 48,
        ];
        lists.into_iter().flat_map(move |l| {
            intids
                .into_iter()
                .flat_map(move |i| highs.into_iter().map(move |h| l | (i << 24) | h))
        })
    }

    #[test]
    fn sgi1r_targets_agree_with_the_model() {
        for vcpus in 1..=MAX_CPUS {
            let (dom, _) = model(GicVersion::V3, vcpus);
            for sender in 0..vcpus {
                for value in sgi1r_values() {
                    let (_, mut vd) = model(GicVersion::V3, vcpus);
                    let req = vd.sgi1r(&dom, sender, value);
                    let fast = sgi1r_targets(value, sender, dom.vcpu_mask());
                    if req.foreign {
                        assert_eq!(fast, None, "{value:#x} from {sender} of {vcpus}");
                    } else {
                        assert_eq!(
                            fast,
                            Some(Sgi {
                                intid: req.intid,
                                targets: req.targets
                            }),
                            "{value:#x} from {sender} of {vcpus}"
                        );
                        assert_eq!(req.latched, 0);
                    }
                }
            }
        }
    }

    #[test]
    fn sgir_targets_agree_with_the_model() {
        for vcpus in 1..=MAX_CPUS {
            for sender in 0..vcpus {
                for filter in 0..4u32 {
                    for list in 0..=0xffu32 {
                        for intid in [0u32, 1, 15] {
                            let value = (filter << 24) | (list << 16) | intid | 0x8000;
                            let (dom, mut vd) = model(GicVersion::V2, vcpus);
                            let mut phys = Null;
                            let mut line = VirtualLine::new(33);
                            let mut p = WithLine {
                                phys: &mut phys,
                                line: &mut line,
                            };
                            let out = vd.write(&dom, &mut p, sender, 0xf00, 4, u64::from(value));
                            let req = out.sgi.expect("GICD_SGIR gives a request");
                            let fast = sgir_targets(value, sender, dom.vcpu_mask());
                            if req.foreign {
                                assert_eq!(fast, None, "{value:#x} from {sender} of {vcpus}");
                            } else {
                                assert_eq!(
                                    fast,
                                    Some(Sgi {
                                        intid: req.intid,
                                        targets: req.targets
                                    }),
                                    "{value:#x} from {sender} of {vcpus}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_fast_state_is_what_the_model_would_deliver() {
        for version in [GicVersion::V3, GicVersion::V2] {
            let (dom, mut vd) = model(version, 2);
            let mut phys = Null;
            let mut line = VirtualLine::new(33);
            let mut p = WithLine {
                phys: &mut phys,
                line: &mut line,
            };
            // SGI 3 of vCPU 1 disabled, its priority raised.
            let (icenabler, ipriorityr) = if version == GicVersion::V3 {
                let f = crate::plan::VGICR_STRIDE + GICR_SGI_BASE;
                (f + 0x180, f + 0x400)
            } else {
                (0x180, 0x400)
            };
            if version == GicVersion::V3 {
                vd.write_redist(&dom, &mut p, 1, icenabler, 4, 1 << 3);
                vd.write_redist(&dom, &mut p, 1, ipriorityr + 2, 1, 0x40);
            } else {
                vd.write(&dom, &mut p, 1, icenabler, 4, 1 << 3);
                vd.write(&dom, &mut p, 1, ipriorityr + 2, 1, 0x40);
            }
            let (on, prio) = vd.sgi_fast_state(&dom, 1);
            assert_eq!(on, !(1 << 3));
            assert_eq!(prio[2], 0x40);
            assert_eq!(prio[3], crate::vgic::RESET_PRIORITY);
            for sgi in 0..16u32 {
                assert_eq!(
                    on & (1 << sgi) != 0,
                    vd.deliverable(&dom, &Null, 1, sgi),
                    "{version:?} SGI {sgi}"
                );
                assert_eq!(prio[sgi as usize], vd.priority(&dom, &Null, 1, sgi));
            }
            // vCPU 0 untouched; no vCPU 2; the distributor off turns all off.
            assert_eq!(vd.sgi_fast_state(&dom, 0).0, 0xffff);
            assert_eq!(vd.sgi_fast_state(&dom, 2).0, 0);
            vd.write(&dom, &mut p, 0, 0, 4, 0);
            assert_eq!(vd.sgi_fast_state(&dom, 0).0, 0);
            assert_eq!(vd.sgi_fast_state(&dom, 1).0, 0);
        }
    }

    #[test]
    fn pending_bits_round_trip() {
        let mut seen = std::collections::HashSet::new();
        let mut words = [0u64; PENDING_WORDS];
        for source in 0..MAX_CPUS {
            for intid in 0..16 {
                let (w, b) = pending_bit(source, intid);
                assert!(w < PENDING_WORDS);
                assert_eq!(b.count_ones(), 1);
                assert!(seen.insert((w, b)), "{source} {intid}");
                words[w] |= b;
            }
        }
        let mut out = Vec::new();
        for (w, bits) in words.iter_mut().enumerate() {
            while let Some(x) = next_pending(w, bits) {
                out.push(x);
            }
            assert_eq!(*bits, 0);
        }
        assert_eq!(out.len(), 16 * MAX_CPUS);
        for source in 0..MAX_CPUS {
            for intid in 0..16 {
                assert!(out.contains(&(intid, source as u8)));
            }
        }
        // GICv3 SGIs (source 0) are all in the first word, lowest INTID first.
        let mut bits = pending_bit(0, 9).1 | pending_bit(0, 2).1;
        assert_eq!(pending_bit(0, 9).0, 0);
        assert_eq!(next_pending(0, &mut bits), Some((2, 0)));
        assert_eq!(next_pending(0, &mut bits), Some((9, 0)));
        assert_eq!(next_pending(0, &mut bits), None);
    }

    #[test]
    fn sgi_generation_writes_are_told_from_other_registers() {
        for op2 in 5..=7 {
            assert!(is_sgi_register(false, 3, 0, 12, 11, op2));
            // Reads of them are not SGIs (they trap as undefined).
            assert!(!is_sgi_register(true, 3, 0, 12, 11, op2));
        }
        // ICC_EOIR1_EL1, ICC_IAR1_EL1 (C12_C12) and ICC_DIR_EL1 (C12_C11_1)
        // are neighbours, not SGIs; nor is an EL2 register at the same place.
        assert!(!is_sgi_register(false, 3, 0, 12, 12, 1));
        assert!(!is_sgi_register(false, 3, 0, 12, 11, 1));
        assert!(!is_sgi_register(false, 3, 0, 12, 11, 4));
        assert!(!is_sgi_register(false, 3, 4, 12, 11, 5));
        // The syndrome the fast path recognises is one of them.
        let esr = SGI1R_WRITE_ESR | (7 << 5);
        assert_eq!(sgi1r_write(esr), Some(7));
    }
}
