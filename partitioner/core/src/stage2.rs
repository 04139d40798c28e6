//! A domain's stage-2 tables: exactly its RAM (normal memory, RWX) and its
//! passthrough devices (device memory, RW, never executable). Nothing else.
//!
//! [`verify`] walks tables once built and proves that: every leaf maps a page
//! the domain owns, at the planned output address, with the planned
//! attributes, and every owned page is mapped. [`disjoint`] then proves that
//! no physical page belongs to two domains (or twice to one) and that no
//! domain maps anything the partitioner keeps. The firmware runs both at boot
//! before any domain starts; the host tests run them on random plans.

use crate::board::{Board, Gic, Range, Stage2Leaves};
use crate::pagetable::{Attrs, FrameAllocator, MapError, Regime, Tables, PAGE};
use crate::plan::{
    DomainPlan, GicVersion, Mapping, MemKind, MAX_DEVICES, MAX_REGIONS, VGICC_IPA, VGICC_SIZE,
};
use core::fmt;

/// Attributes a mapping kind gets in stage 2.
pub fn attrs(kind: MemKind) -> Attrs {
    match kind {
        MemKind::Ram => Attrs::RAM_RWX,
        MemKind::Device => Attrs::DEVICE,
    }
}

/// The attributes [`verify`] demands of a mapping kind. The same policy as
/// [`attrs`], stated a second time on purpose: the check must not take its
/// expectation from the code it checks.
fn required(kind: MemKind) -> Attrs {
    match kind {
        // Normal memory, read/write/execute.
        MemKind::Ram => Attrs {
            device: false,
            writable: true,
            executable: true,
        },
        // Device memory, read/write, never executable.
        MemKind::Device => Attrs {
            device: true,
            writable: true,
            executable: false,
        },
    }
}

/// Build the stage-2 tables of one domain, with the board's kind of leaves.
pub fn build(
    plan: &DomainPlan,
    leaves: Stage2Leaves,
    alloc: &mut dyn FrameAllocator,
) -> Result<Tables, MapError> {
    let mut t = Tables::new(Regime::Stage2, alloc)?;
    for m in plan.mappings() {
        match leaves {
            Stage2Leaves::Blocks => t.map(alloc, m.ipa, m.pa, m.size, attrs(m.kind))?,
            Stage2Leaves::Pages => t.map_pages(alloc, m.ipa, m.pa, m.size, attrs(m.kind))?,
        }
    }
    Ok(t)
}

/// The mapping the partitioner adds to every domain's stage 2 on a GICv2
/// board: the physical virtual CPU interface (GICV) where the domain's GICC
/// is (`VGICC_IPA`). `None` on GICv3 (its CPU interface is system registers).
pub fn gicv2_virtual_cpu_interface(board: &Board, version: GicVersion) -> Option<Mapping> {
    if version != GicVersion::V2 {
        return None;
    }
    board.gics.iter().find_map(|g| match *g {
        Gic::V2 { virtual_cpu, .. } => Some(Mapping {
            ipa: VGICC_IPA,
            pa: virtual_cpu.base,
            size: VGICC_SIZE,
            kind: MemKind::Device,
        }),
        Gic::V3 { .. } => None,
    })
}

/// Whether domain `plan`'s PCI functions need DMA tables of their own:
/// when it has a function the IOMMU translates and its CPUs' tables map
/// more than the plan (the GICv2 virtual CPU interface, which must never
/// be reachable by DMA). Elsewhere DMA shares the CPUs' tables.
pub fn dma_needs_own_tables(plan: &DomainPlan, board: &Board, version: GicVersion) -> bool {
    let translated = plan
        .devices
        .iter()
        .any(|d| d.pci.is_some() && !d.dma_unprotected);
    translated && gicv2_virtual_cpu_interface(board, version).is_some()
}

/// Most mappings [`verify`] accepts besides the plan's own.
pub const MAX_EXTRA: usize = 2;

/// Something a domain's stage-2 tables, or the set of all domains' tables,
/// do that the plan does not allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finding<'p> {
    /// The tables map guest range `ipa..ipa + size` (to `pa`), which is none
    /// of the domain's mappings.
    Unowned {
        domain: &'p str,
        ipa: u64,
        pa: u64,
        size: u64,
    },
    /// An owned guest page is mapped to `pa` instead of `expected`.
    WrongOutput {
        domain: &'p str,
        ipa: u64,
        pa: u64,
        expected: u64,
    },
    /// Owned guest range `ipa..ipa + size` has attributes `attrs` instead of
    /// `expected`.
    WrongAttrs {
        domain: &'p str,
        ipa: u64,
        size: u64,
        attrs: Attrs,
        expected: Attrs,
    },
    /// Owned guest range `ipa..ipa + size` is not mapped.
    Unmapped {
        domain: &'p str,
        ipa: u64,
        size: u64,
    },
    /// Physical range `pa..pa + size` is mapped by both domains (or twice by
    /// one, when they are the same).
    Shared {
        pa: u64,
        size: u64,
        first: &'p str,
        second: &'p str,
    },
    /// A domain maps physical range `pa..pa + size`, which overlaps
    /// something the partitioner keeps.
    Partitioner {
        domain: &'p str,
        pa: u64,
        size: u64,
        what: &'static str,
    },
}

struct Describe(Attrs);

impl fmt::Display for Describe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = self.0;
        write!(
            f,
            "{} R{}{}",
            if a.device { "device" } else { "normal" },
            if a.writable { "W" } else { "" },
            if a.executable { "X" } else { " XN" }
        )
    }
}

impl fmt::Display for Finding<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Finding::Unowned {
                domain,
                ipa,
                pa,
                size,
            } => write!(
                f,
                "domain \"{domain}\": stage 2 maps guest {ipa:#x}..{:#x} (to PA {pa:#x}), which none of its mappings covers",
                ipa + size
            ),
            Finding::WrongOutput {
                domain,
                ipa,
                pa,
                expected,
            } => write!(
                f,
                "domain \"{domain}\": stage 2 maps guest {ipa:#x} to PA {pa:#x}, its plan to PA {expected:#x}"
            ),
            Finding::WrongAttrs {
                domain,
                ipa,
                size,
                attrs,
                expected,
            } => write!(
                f,
                "domain \"{domain}\": stage 2 maps guest {ipa:#x}..{:#x} as {}, its plan as {}",
                ipa + size,
                Describe(attrs),
                Describe(expected)
            ),
            Finding::Unmapped { domain, ipa, size } => write!(
                f,
                "domain \"{domain}\": guest {ipa:#x}..{:#x} of its plan is not mapped in stage 2",
                ipa + size
            ),
            Finding::Shared {
                pa,
                size,
                first,
                second,
            } if first == second => write!(
                f,
                "PA {pa:#x}..{:#x} is mapped twice by domain \"{first}\"",
                pa + size
            ),
            Finding::Shared {
                pa,
                size,
                first,
                second,
            } => write!(
                f,
                "PA {pa:#x}..{:#x} is mapped by both domain \"{first}\" and domain \"{second}\"",
                pa + size
            ),
            Finding::Partitioner {
                domain,
                pa,
                size,
                what,
            } => write!(
                f,
                "domain \"{domain}\": stage 2 maps PA {pa:#x}..{:#x}, which the partitioner keeps ({what})",
                pa + size
            ),
        }
    }
}

/// What [`verify`] walked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Walked {
    /// 4 KiB pages the tables map (the plan's and the extra mappings').
    pub pages: u64,
    /// Runs of contiguous leaves with one attribute set ([`Tables::runs`]).
    pub runs: u64,
}

/// Walk a domain's stage-2 tables and check them against its plan: every
/// leaf maps a page of one of `plan.mappings()` (or of `extra`, the
/// mappings the partitioner adds to every domain, see
/// [`gicv2_virtual_cpu_interface`]) at its planned output address with the
/// attributes its kind requires (RAM normal RWX, devices device RW XN), and
/// every such page is mapped. The
/// walk goes by runs of leaves (2 MiB and 1 GiB blocks whole), not page by
/// page, so it costs about what reading the tables once costs. The first
/// finding, in guest address order, is returned.
pub fn verify<'p>(
    plan: &'p DomainPlan,
    extra: &[Mapping],
    tables: &Tables,
    alloc: &mut dyn FrameAllocator,
) -> Result<Walked, Finding<'p>> {
    let domain = plan.name.as_str();
    let mut want: heapless::Vec<Mapping, { MAX_REGIONS + MAX_DEVICES + MAX_EXTRA }> =
        heapless::Vec::new();
    // (One over the capacity is left out, and then reported as unowned.)
    for m in plan.mappings().chain(extra.iter()) {
        if m.size > 0 {
            let _ = want.push(*m);
        }
    }
    crate::sort_by_key(&mut want, |m| m.ipa);
    // The next owned byte not yet seen mapped: `want[k].ipa + off`.
    let (mut k, mut off) = (0usize, 0u64);
    let mut walked = Walked::default();
    let mut found: Option<Finding<'p>> = None;
    tables.runs(alloc, |mut ipa, mut pa, mut size, got| {
        walked.runs += 1;
        walked.pages += size / PAGE;
        // Runs come in guest address order and never overlap, as do the
        // sorted owned mappings: one merge pass pairs them up.
        while size > 0 && found.is_none() {
            let Some(m) = want.get(k) else {
                found = Some(Finding::Unowned {
                    domain,
                    ipa,
                    pa,
                    size,
                });
                break;
            };
            let next = m.ipa + off;
            if ipa > next {
                found = Some(Finding::Unmapped {
                    domain,
                    ipa: next,
                    size: (m.ipa + m.size).min(ipa) - next,
                });
            } else if ipa < next {
                found = Some(Finding::Unowned {
                    domain,
                    ipa,
                    pa,
                    size: size.min(next - ipa),
                });
            } else {
                let len = size.min(m.size - off);
                if pa != m.pa + off {
                    found = Some(Finding::WrongOutput {
                        domain,
                        ipa,
                        pa,
                        expected: m.pa + off,
                    });
                } else if got != required(m.kind) {
                    found = Some(Finding::WrongAttrs {
                        domain,
                        ipa,
                        size: len,
                        attrs: got,
                        expected: required(m.kind),
                    });
                }
                ipa += len;
                pa += len;
                size -= len;
                off += len;
                if off == m.size {
                    k += 1;
                    off = 0;
                }
            }
        }
    });
    if let Some(f) = found {
        return Err(f);
    }
    if let Some(m) = want.get(k) {
        return Err(Finding::Unmapped {
            domain,
            ipa: m.ipa + off,
            size: m.size - off,
        });
    }
    Ok(walked)
}

/// Check that no physical page is mapped by two domains (or twice by one)
/// and that no domain maps any of the partitioner's ranges: `partitioner`
/// (its image, package, tables and stacks in RAM) and the board's reserved
/// MMIO (console, interrupt controller, reserved devices). Run it after
/// [`verify`] passed for every domain: the domains' tables then map exactly
/// their plans' mappings (plus the `extra` ones, which are the partitioner's
/// own choice and are not checked here), so comparing the mappings compares
/// the tables.
#[inline(never)]
pub fn disjoint<'p>(
    domains: &'p [DomainPlan],
    board: &Board,
    partitioner: Range,
) -> Result<(), Finding<'p>> {
    // What the partitioner keeps: its own memory, then the board's
    // reserved MMIO; the first of them `hit` accepts.
    let kept = |hit: &mut dyn FnMut(&Range) -> bool| {
        if hit(&partitioner) {
            Some((partitioner, "its image, package, tables and stacks"))
        } else {
            board.reserved_mmio_find(hit)
        }
    };
    // The PCIe memory window is the partitioner's, but for the BARs it
    // placed there for a domain's own functions.
    let pci_window = board.pcie.map(|p| p.mmio32);
    for (i, d) in domains.iter().enumerate() {
        for (j, (m, is_pci)) in d.mappings_tagged().enumerate() {
            let pa = m.pa_range();
            let placed_bars = |r: &Range| is_pci && Some(*r) == pci_window && r.contains(&pa);
            if let Some((_, what)) = kept(&mut |r| r.overlaps(&pa) && !placed_bars(r)) {
                return Err(Finding::Partitioner {
                    domain: d.name.as_str(),
                    pa: m.pa,
                    size: m.size,
                    what,
                });
            }
            // Every later mapping, of this domain and of the later ones.
            for (n, e) in domains[i..].iter().enumerate() {
                let skip = if n == 0 { j + 1 } else { 0 };
                for o in e.mappings().skip(skip) {
                    let base = m.pa.max(o.pa);
                    let end = (m.pa + m.size).min(o.pa + o.size);
                    if base < end {
                        return Err(Finding::Shared {
                            pa: base,
                            size: end - base,
                            first: d.name.as_str(),
                            second: e.name.as_str(),
                        });
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pagetable::tests::HostFrames;
    use crate::plan::{DevicePlan, FaultPolicy, Mapping};

    fn plan() -> DomainPlan {
        let mut p = DomainPlan {
            name: "hello".try_into().unwrap(),
            vmid: 1,
            cpus: heapless::Vec::new(),
            ram: heapless::Vec::new(),
            devices: heapless::Vec::new(),
            entry: 0x4000_0000,
            image_size: 0x1000,
            initrd_size: 0,
            bootargs: heapless::String::new(),
            fault_policy: FaultPolicy::InjectAbort,
            restart_limit: crate::plan::RESTART_LIMIT,
            virtual_console: None,
        };
        p.ram
            .push(Mapping {
                ipa: 0x4000_0000,
                pa: 0x4840_0000,
                size: 0x40_0000,
                kind: MemKind::Ram,
            })
            .unwrap();
        p.ram
            .push(Mapping {
                ipa: 0x8000_0000,
                pa: 0x5000_3000,
                size: 0x3000,
                kind: MemKind::Ram,
            })
            .unwrap();
        p.devices
            .push(DevicePlan {
                name: "serial".try_into().unwrap(),
                board_device: Some("uart1"),
                compatible: "arm,pl011".try_into().unwrap(),
                mapping: Mapping {
                    ipa: 0x0904_0000,
                    pa: 0x0904_0000,
                    size: 0x1000,
                    kind: MemKind::Device,
                },
                spis: heapless::Vec::new(),
                dma_unprotected: false,
                pci: None,
                pci_bars: heapless::Vec::new(),
            })
            .unwrap();
        p
    }

    #[test]
    fn dma_gets_its_own_tables_only_where_cpus_reach_the_gicv() {
        let board = crate::validate::tests::QEMU_VIRT;
        let mut p = plan();
        // A board device only: no PCI function, nothing to translate.
        assert!(!dma_needs_own_tables(&p, &board, GicVersion::V2));
        p.devices[0].pci = Some(crate::pci::Bdf::new(0, 2, 0));
        assert!(dma_needs_own_tables(&p, &board, GicVersion::V2));
        assert!(!dma_needs_own_tables(&p, &board, GicVersion::V3));
        // A function the IOMMU lets through untranslated has no tables.
        p.devices[0].dma_unprotected = true;
        assert!(!dma_needs_own_tables(&p, &board, GicVersion::V2));
        // The tables built for DMA hold the plan only: no GICV.
        p.devices[0].dma_unprotected = false;
        let mut a = HostFrames::new(32);
        let t = build(&p, Stage2Leaves::Blocks, &mut a).unwrap();
        assert!(verify(&p, &[], &t, &mut a).is_ok());
        assert_eq!(t.translate(&mut a, crate::plan::VGICC_IPA), None);
    }

    #[test]
    fn maps_exactly_the_domains_ranges_and_nothing_else() {
        let p = plan();
        let mut a = HostFrames::new(32);
        let t = build(&p, Stage2Leaves::Blocks, &mut a).unwrap();
        let mut got = std::vec::Vec::new();
        t.runs(&mut a, |i, o, s, at| got.push((i, o, s, at)));
        assert_eq!(
            got,
            vec![
                (0x0904_0000, 0x0904_0000, 0x1000, Attrs::DEVICE),
                (0x4000_0000, 0x4840_0000, 0x40_0000, Attrs::RAM_RWX),
                (0x8000_0000, 0x5000_3000, 0x3000, Attrs::RAM_RWX),
            ]
        );
        // 2 MiB blocks for the aligned RAM region.
        assert_eq!(t.translate(&mut a, 0x4020_0000).unwrap().1, 2);
    }

    #[test]
    fn the_walk_accepts_the_built_tables_and_names_what_it_finds() {
        let p = plan();
        let mut a = HostFrames::new(32);
        let mut t = build(&p, Stage2Leaves::Blocks, &mut a).unwrap();
        assert_eq!(
            verify(&p, &[], &t, &mut a),
            Ok(Walked {
                pages: 1024 + 3 + 1,
                runs: 3
            })
        );
        assert_eq!(attrs(MemKind::Ram), required(MemKind::Ram));
        assert_eq!(attrs(MemKind::Device), required(MemKind::Device));
        // The serial page executable.
        t.unmap(&mut a, 0x0904_0000, PAGE).unwrap();
        let rwx = Attrs {
            device: true,
            ..Attrs::RAM_RWX
        };
        t.map(&mut a, 0x0904_0000, 0x0904_0000, PAGE, rwx).unwrap();
        let f = verify(&p, &[], &t, &mut a).unwrap_err();
        assert_eq!(
            f.to_string(),
            "domain \"hello\": stage 2 maps guest 0x9040000..0x9041000 as device RWX, its plan as device RW XN"
        );
        // One page missing, one too many.
        t.unmap(&mut a, 0x0904_0000, PAGE).unwrap();
        assert_eq!(
            verify(&p, &[], &t, &mut a).unwrap_err().to_string(),
            "domain \"hello\": guest 0x9040000..0x9041000 of its plan is not mapped in stage 2"
        );
        t.map(&mut a, 0x0904_0000, 0x0904_0000, PAGE, Attrs::DEVICE)
            .unwrap();
        t.map(&mut a, 0x0904_1000, 0x0904_1000, PAGE, Attrs::DEVICE)
            .unwrap();
        assert_eq!(
            verify(&p, &[], &t, &mut a).unwrap_err().to_string(),
            "domain \"hello\": stage 2 maps guest 0x9041000..0x9042000 (to PA 0x9041000), which none of its mappings covers"
        );
        // Another domain's page, and the partitioner's.
        let mut q = p.clone();
        q.name = "other".try_into().unwrap();
        q.ram.truncate(1);
        q.ram[0].pa = 0x5000_4000;
        q.ram[0].size = PAGE;
        q.devices.clear();
        let board = crate::validate::tests::QEMU_VIRT;
        let both = [p.clone(), q];
        assert_eq!(
            disjoint(&both, &board, Range::new(0x4020_0000, 0x40_0000))
                .unwrap_err()
                .to_string(),
            "PA 0x50004000..0x50005000 is mapped by both domain \"hello\" and domain \"other\""
        );
        assert_eq!(
            disjoint(&both[..1], &board, Range::new(0x4840_0000, 0x1000))
                .unwrap_err()
                .to_string(),
            "domain \"hello\": stage 2 maps PA 0x48400000..0x48800000, which the partitioner keeps (its image, package, tables and stacks)"
        );
        let mut twice = p.clone();
        twice.ram[1].pa = 0x4840_0000;
        assert_eq!(
            disjoint(&[twice], &board, Range::new(0x4020_0000, 0x1000))
                .unwrap_err()
                .to_string(),
            "PA 0x48400000..0x48403000 is mapped twice by domain \"hello\""
        );
        let mut uart0 = p.clone();
        uart0.devices[0].mapping.pa = 0x0900_0000;
        assert_eq!(
            disjoint(&[uart0], &board, Range::new(0x4020_0000, 0x1000))
                .unwrap_err()
                .to_string(),
            "domain \"hello\": stage 2 maps PA 0x9000000..0x9001000, which the partitioner keeps (partitioner console)"
        );
        assert_eq!(
            disjoint(&both[..1], &board, Range::new(0x4020_0000, 0x1000)),
            Ok(())
        );
    }

    #[test]
    fn overlapping_plan_is_refused() {
        let mut p = plan();
        p.ram
            .push(Mapping {
                ipa: 0x4030_0000,
                pa: 0x6000_0000,
                size: 0x1000,
                kind: MemKind::Ram,
            })
            .unwrap();
        let mut a = HostFrames::new(32);
        assert!(matches!(
            build(&p, Stage2Leaves::Blocks, &mut a),
            Err(MapError::AlreadyMapped { input: 0x4030_0000 })
        ));
    }
}

/// Property tests: random plans the checker accepts, on the qemu-virt board
/// fixture of `validate`'s tests, built and walked.
#[cfg(test)]
mod props {
    use super::*;
    use crate::fdt_check::builder::{node, Node};
    use crate::pagetable::tests::HostFrames;
    use crate::pagetable::BLOCK_2M;
    use crate::plan::Plan;
    use crate::validate::tests::{
        board_device, config, explicit, region, run, Rng, LAYOUT, MIB, QEMU_VIRT,
    };
    use std::collections::BTreeMap;
    use std::string::String;
    use std::vec::Vec;
    use std::{format, vec};

    /// What the architecture wants for each kind: [`required`], written out
    /// independently of [`attrs`].
    fn expected(kind: MemKind) -> Attrs {
        super::required(kind)
    }

    fn gicv() -> Mapping {
        gicv2_virtual_cpu_interface(&QEMU_VIRT, GicVersion::V2).unwrap()
    }

    /// Which of the generator's features the accepted plans exercised.
    #[derive(Default, Debug)]
    struct Seen {
        plans: usize,
        domains: BTreeMap<usize, usize>,
        fixed: usize,
        identity: usize,
        regions: usize,
        board_devices: usize,
        explicit_devices: usize,
        moved_devices: usize,
        sub_page_devices: usize,
        blocks: usize,
        pages: usize,
        merged: usize,
        gicv2: usize,
        pages_only: usize,
    }

    /// Regions of a generated config with a fixed physical address, and
    /// identity mapped ones.
    #[derive(Default)]
    struct Placed {
        fixed: usize,
        identity: usize,
    }

    /// A page-aligned address in `[lo, hi)`, 2 MiB aligned half the time.
    fn addr(rng: &mut Rng, lo: u64, hi: u64) -> u64 {
        let a = (lo + rng.next() % (hi - lo)) & !(PAGE - 1);
        if rng.below(2) == 0 {
            a & !(BLOCK_2M - 1)
        } else {
            a
        }
    }

    fn size(rng: &mut Rng) -> u64 {
        match rng.below(10) {
            0..=3 => PAGE * (1 + rng.below(40) as u64),
            4..=7 => BLOCK_2M * (1 + rng.below(4) as u64),
            8 => BLOCK_2M * (1 + rng.below(4) as u64) + PAGE * (1 + rng.below(8) as u64),
            _ => 16 * MIB * (1 + rng.below(8) as u64),
        }
    }

    const RAM: (u64, u64) = (0x4000_0000, 0x8000_0000);
    const IMAGES: [&str; 3] = ["domain:hello", "domain:probe", "domain:irq"];
    const DEVICES: [&str; 7] = [
        "uart1", "rtc", "gpio", "virtio0", "virtio1", "virtio2", "virtio3",
    ];

    /// A random config: 1 to 4 domains on the 4 cores, RAM regions
    /// allocated, fixed, identity mapped, adjacent to the one before,
    /// board and explicit devices at their own or another guest address.
    /// Many are invalid; the checker decides.
    fn random_config(rng: &mut Rng, placed: &mut Placed) -> Node {
        let n = [1, 2, 2, 3, 3, 3, 4, 4, 4, 4][rng.below(10)];
        let mut cores: Vec<u32> = vec![0, 1, 2, 3];
        for i in (1..cores.len()).rev() {
            cores.swap(i, rng.below(i + 1));
        }
        let mut cpus: Vec<Vec<u32>> = (0..n).map(|d| vec![cores[d]]).collect();
        for &c in &cores[n..] {
            let d = rng.below(n + 1);
            if d < n {
                cpus[d].push(c);
            }
        }
        let mut domains = Vec::new();
        for (d, cpus) in cpus.iter().enumerate() {
            let mut memory = node("memory");
            // The entry region: room for the largest image and the tree.
            let first = match rng.below(3) {
                0 => 0x6_0000 + PAGE * rng.below(64) as u64,
                _ => size(rng).max(BLOCK_2M),
            };
            let mut ram = region("ram", 0x4000_0000, first);
            let mut prev = (0x4000_0000, first, None);
            match rng.below(4) {
                0 => {
                    let pa = addr(rng, RAM.0, RAM.1 - first);
                    ram = ram.u64("physical-address", pa);
                    prev.2 = Some(pa);
                    placed.fixed += 1;
                }
                1 => {
                    ram = ram.flag("identity");
                    prev.2 = Some(0x4000_0000);
                    placed.identity += 1;
                }
                _ => {}
            }
            memory = memory.child(ram);
            for r in 0..rng.below(4) {
                let size = size(rng);
                let (guest, placement) = match rng.below(6) {
                    // Right after the one before, in both address spaces
                    // when that one's physical address is known.
                    0 => (prev.0 + prev.1, prev.2.map(|pa| pa + prev.1)),
                    1 => (addr(rng, 0x1000_0000, 0x3000_0000), None),
                    2 => (addr(rng, 0x8000_0000, (1 << 39) - size), None),
                    3 => {
                        let g = addr(rng, RAM.0, RAM.1 - size);
                        (g, Some(g))
                    }
                    _ => {
                        let g = addr(rng, 0x1_0000_0000, 0x2_0000_0000);
                        (g, Some(addr(rng, RAM.0, RAM.1 - size)))
                    }
                };
                let mut node = region(&format!("r{r}"), guest, size);
                let placement = match placement {
                    Some(pa) if pa == guest && rng.below(2) == 0 => {
                        node = node.flag("identity");
                        placed.identity += 1;
                        Some(pa)
                    }
                    Some(pa) if rng.below(5) > 0 => {
                        node = node.u64("physical-address", pa);
                        placed.fixed += 1;
                        Some(pa)
                    }
                    _ => None,
                };
                memory = memory.child(node);
                prev = (guest, size, placement);
            }
            let mut dom = node(&format!("d{d}"))
                .str("compatible", "bulkhead,domain")
                .cells("cpus", cpus)
                .str("image", IMAGES[rng.below(IMAGES.len())])
                .u64("entry", 0x4000_0000)
                .child(memory);
            let ndev = rng.below(4);
            if ndev > 0 {
                let mut devices = node("devices");
                for i in 0..ndev {
                    let name = DEVICES[rng.below(DEVICES.len())];
                    let dev = QEMU_VIRT.device(name).unwrap();
                    let mut n = if rng.below(2) == 0 {
                        board_device(&format!("v{i}"), name)
                    } else {
                        let spis = if rng.below(2) == 0 { dev.spis } else { &[] };
                        explicit(&format!("v{i}"), dev.reg.base, dev.reg.size, spis)
                    };
                    if rng.below(2) == 0 {
                        n = n.u64("guest-address", addr(rng, 0x1c00_0000, 0x2000_0000));
                    }
                    // DMA masters (the virtio transports) need the explicit
                    // opt-in on a board without an IOMMU.
                    if dev.dma {
                        n = n.str("dma", "unprotected");
                    }
                    devices = devices.child(n);
                }
                dom = dom.child(devices);
            }
            domains.push(dom);
        }
        config(domains)
    }

    fn note(seen: &mut Seen, placed: &Placed, plan: &Plan) {
        seen.plans += 1;
        *seen.domains.entry(plan.domains.len()).or_default() += 1;
        seen.fixed += placed.fixed;
        seen.identity += placed.identity;
        for d in &plan.domains {
            seen.regions += d.ram.len();
            for dev in &d.devices {
                if dev.board_device.is_some() {
                    seen.board_devices += 1;
                } else {
                    seen.explicit_devices += 1;
                }
                if dev.mapping.ipa != dev.mapping.pa {
                    seen.moved_devices += 1;
                }
                if QEMU_VIRT
                    .devices
                    .iter()
                    .any(|b| b.reg.base == dev.mapping.pa && b.reg.size < PAGE)
                {
                    seen.sub_page_devices += 1;
                }
            }
        }
    }

    /// Every domain's tables, built the way the firmware builds them
    /// (with `leaves`, and the GICv2 virtual CPU interface when `gicv2`).
    fn build_all(
        plan: &Plan,
        leaves: Stage2Leaves,
        gicv2: bool,
        a: &mut HostFrames,
    ) -> Vec<Tables> {
        plan.domains
            .iter()
            .map(|d| {
                let mut t = build(d, leaves, a).unwrap_or_else(|e| panic!("{e:?}: {plan:#?}"));
                if gicv2 {
                    let g = gicv();
                    t.map(a, g.ipa, g.pa, g.size, attrs(g.kind)).unwrap();
                }
                t
            })
            .collect()
    }

    /// The oracle: walk each domain's tables page by page and check every
    /// page against a plain search of the plan; then the union.
    fn check_by_pages(
        plan: &Plan,
        tables: &[Tables],
        extra: &[Mapping],
        a: &mut HostFrames,
        seen: &mut Seen,
    ) {
        let mut owners: Vec<(u64, usize)> = Vec::new();
        let kept: Vec<(Range, &str)> = core::iter::once((LAYOUT.partitioner, "partitioner"))
            .chain(QEMU_VIRT.reserved_mmio())
            .collect();
        for (di, (d, t)) in plan.domains.iter().zip(tables).enumerate() {
            let owned: Vec<(Mapping, bool)> = d
                .mappings()
                .map(|m| (*m, false))
                .chain(extra.iter().map(|m| (*m, true)))
                .collect();
            for (i, (m, _)) in owned.iter().enumerate() {
                for (n, _) in &owned[i + 1..] {
                    assert!(
                        !m.ipa_range().overlaps(&n.ipa_range()),
                        "{m:?} and {n:?} overlap in guest space"
                    );
                }
            }
            // The walk under test first, then the oracle.
            let walked = verify(d, extra, t, a).unwrap_or_else(|f| panic!("{f}"));
            let mut count = 0;
            let mut runs = 0;
            t.runs(a, |ipa, pa, size, got| {
                runs += 1;
                for off in (0..size).step_by(PAGE as usize) {
                    let (ipa, pa) = (ipa + off, pa + off);
                    let (m, is_extra) = owned
                        .iter()
                        .find(|(m, _)| m.ipa <= ipa && ipa < m.ipa + m.size)
                        .unwrap_or_else(|| panic!("{}: {ipa:#x} is not the domain's", d.name));
                    assert_eq!(pa, m.pa + (ipa - m.ipa), "{}: output of {ipa:#x}", d.name);
                    assert_eq!(got, expected(m.kind), "{}: attributes of {ipa:#x}", d.name);
                    count += 1;
                    if !is_extra {
                        owners.push((pa, di));
                        if let Some((_, what)) =
                            kept.iter().find(|(r, _)| r.overlaps(&Range::new(pa, PAGE)))
                        {
                            panic!("{}: maps {pa:#x} of the partitioner's {what}", d.name);
                        }
                    }
                }
            });
            let total: u64 = owned.iter().map(|(m, _)| m.size / PAGE).sum();
            assert_eq!(count, total, "{}: every owned page is mapped", d.name);
            assert_eq!(walked.pages, total);
            if runs < owned.len() {
                seen.merged += 1;
            }
            for (m, _) in &owned {
                match t.translate(a, m.ipa).unwrap().1 {
                    3 => seen.pages += 1,
                    _ => seen.blocks += 1,
                }
            }
        }
        owners.sort();
        for w in owners.windows(2) {
            assert_ne!(
                w[0].0, w[1].0,
                "PA {:#x} is mapped by domains {} and {}",
                w[0].0, w[0].1, w[1].1
            );
        }
        disjoint(&plan.domains, &QEMU_VIRT, LAYOUT.partitioner).unwrap_or_else(|f| panic!("{f}"));
    }

    /// The leaf holding `ipa`: its first guest address, output and span.
    fn leaf(t: &Tables, a: &mut HostFrames, ipa: u64) -> (u64, u64, u64) {
        let (out, level, _, _) = t.translate(a, ipa).unwrap();
        let span = 1u64 << (39 - 9 * level);
        (ipa & !(span - 1), out & !(span - 1), span)
    }

    /// Damage one domain's tables (or plan) in every way the walk must
    /// catch, and check it reports exactly that.
    fn check_damage(
        plan: &Plan,
        gicv2: bool,
        tables: &[Tables],
        built: &HostFrames,
        rng: &mut Rng,
    ) {
        let extra: Vec<Mapping> = gicv2.then(gicv).into_iter().collect();
        let di = rng.below(plan.domains.len());
        let d = &plan.domains[di];
        let name = d.name.as_str();
        let maps: Vec<Mapping> = d.mappings().copied().collect();
        let m = maps[rng.below(maps.len())];
        let page = m.ipa + PAGE * (rng.next() % (m.size / PAGE));
        // Each damage is done to a copy of the tables.
        let fresh = |a: &mut HostFrames| {
            *a = built.clone();
            tables
                .iter()
                .map(|t| Tables {
                    regime: t.regime,
                    root: t.root,
                })
                .collect::<Vec<_>>()
        };

        // One page too many, right after a mapping (where that is free).
        let mut a = HostFrames::new(0);
        let mut t = fresh(&mut a);
        let end = m.ipa + m.size;
        if end < 1 << 39 && t[di].translate(&mut a, end).is_none() {
            t[di]
                .map(&mut a, end, m.pa + m.size, PAGE, attrs(m.kind))
                .unwrap();
            assert_eq!(
                verify(d, &extra, &t[di], &mut a),
                Err(Finding::Unowned {
                    domain: name,
                    ipa: end,
                    pa: m.pa + m.size,
                    size: PAGE
                })
            );
        }

        // A leaf missing.
        let mut a = HostFrames::new(0);
        let mut t = fresh(&mut a);
        let (base, out, span) = leaf(&t[di], &mut a, page);
        t[di].unmap(&mut a, base, span).unwrap();
        assert_eq!(
            verify(d, &extra, &t[di], &mut a),
            Err(Finding::Unmapped {
                domain: name,
                ipa: base,
                size: span
            })
        );

        // The same leaf with other attributes.
        let wrongs = [
            Attrs::RAM_RW,
            Attrs::RAM_RX,
            Attrs::RAM_RO,
            Attrs::RAM_RWX,
            Attrs::DEVICE,
            Attrs {
                device: true,
                writable: true,
                executable: true,
            },
            Attrs {
                device: true,
                writable: false,
                executable: false,
            },
        ];
        let wrong = loop {
            let w = wrongs[rng.below(wrongs.len())];
            if w != expected(m.kind) {
                break w;
            }
        };
        t[di].map(&mut a, base, out, span, wrong).unwrap();
        assert_eq!(
            verify(d, &extra, &t[di], &mut a),
            Err(Finding::WrongAttrs {
                domain: name,
                ipa: base,
                size: span,
                attrs: wrong,
                expected: expected(m.kind)
            })
        );

        // The same leaf elsewhere.
        t[di].unmap(&mut a, base, span).unwrap();
        t[di]
            .map(&mut a, base, out + span, span, attrs(m.kind))
            .unwrap();
        assert_eq!(
            verify(d, &extra, &t[di], &mut a),
            Err(Finding::WrongOutput {
                domain: name,
                ipa: base,
                pa: out + span,
                expected: out
            })
        );

        // The virtual CPU interface, mapped but not declared.
        if gicv2 {
            let mut a = HostFrames::new(0);
            let t = fresh(&mut a);
            let g = gicv();
            assert_eq!(
                verify(d, &[], &t[di], &mut a),
                Err(Finding::Unowned {
                    domain: name,
                    ipa: g.ipa,
                    pa: g.pa,
                    size: g.size
                })
            );
        }

        // A page of some domain (maybe this one) given to this one again,
        // and a page the partitioner keeps: the tables match the plans, the
        // union does not.
        let free = (0x7f_0000_0000u64..)
            .step_by(BLOCK_2M as usize)
            .find(|&g| {
                !maps
                    .iter()
                    .any(|m| m.ipa_range().overlaps(&Range::new(g, PAGE)))
            })
            .unwrap();
        let other = rng.below(plan.domains.len());
        let victim: Vec<Mapping> = plan.domains[other].mappings().copied().collect();
        let v = victim[rng.below(victim.len())];
        let stolen = v.pa + PAGE * (rng.next() % (v.size / PAGE));
        let kept = [
            (
                LAYOUT.partitioner.base + PAGE * (rng.next() % (LAYOUT.partitioner.size / PAGE)),
                MemKind::Ram,
            ),
            (QEMU_VIRT.console.reg.base, MemKind::Device),
            (0x0800_0000, MemKind::Device),
            (0x0801_0000, MemKind::Device),
            (gicv().pa, MemKind::Device),
            (0x0902_0000, MemKind::Device),
        ];
        let (reserved, reserved_kind) = kept[rng.below(kept.len())];
        for (pa, kind) in [(stolen, v.kind), (reserved, reserved_kind)] {
            let mut p = plan.clone();
            if p.domains[di]
                .ram
                .push(Mapping {
                    ipa: free,
                    pa,
                    size: PAGE,
                    kind,
                })
                .is_err()
            {
                continue;
            }
            // As `build` would make them from `p`.
            let mut a = HostFrames::new(0);
            let mut t = fresh(&mut a);
            t[di].map(&mut a, free, pa, PAGE, attrs(kind)).unwrap();
            for (e, t) in p.domains.iter().zip(&t) {
                verify(e, &extra, t, &mut a).unwrap_or_else(|f| panic!("{f}"));
            }
            let found = disjoint(&p.domains, &QEMU_VIRT, LAYOUT.partitioner);
            if pa == stolen {
                let (x, y) = (name, plan.domains[other].name.as_str());
                assert!(
                    matches!(
                        found,
                        Err(Finding::Shared { pa: at, size: PAGE, first, second })
                            if at == stolen && ((first, second) == (x, y) || (first, second) == (y, x))
                    ),
                    "{found:?}"
                );
            } else {
                assert!(
                    matches!(
                        found,
                        Err(Finding::Partitioner { domain, pa: at, size: PAGE, .. })
                            if domain == name && at == reserved
                    ),
                    "{found:?}"
                );
            }
        }
    }

    #[test]
    fn random_plans_map_exactly_what_each_domain_owns_and_no_page_twice() {
        assert_eq!(
            gicv2_virtual_cpu_interface(&QEMU_VIRT, GicVersion::V3),
            None
        );
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut seen = Seen::default();
        let mut tries = 0;
        while seen.plans < 400 {
            tries += 1;
            assert!(tries < 100_000, "too few valid configs: {seen:?}");
            let mut placed = Placed::default();
            let root = random_config(&mut rng, &mut placed);
            let Ok(plan) = run(&root) else { continue };
            note(&mut seen, &placed, &plan);
            let gicv2 = rng.below(2) == 0;
            seen.gicv2 += usize::from(gicv2);
            let extra: Vec<Mapping> = gicv2.then(gicv).into_iter().collect();
            // Half the plans in pages only (`Stage2Leaves::Pages`): the
            // same pages must be mapped, the same way.
            let leaves = if rng.below(2) == 0 {
                Stage2Leaves::Blocks
            } else {
                seen.pages_only += 1;
                Stage2Leaves::Pages
            };
            let mut a = HostFrames::new(1 << 13);
            let tables = build_all(&plan, leaves, gicv2, &mut a);
            if leaves == Stage2Leaves::Pages {
                // No block anywhere: every owned page is a level-3 leaf.
                for (d, t) in plan.domains.iter().zip(&tables) {
                    for m in d.mappings() {
                        for ipa in (m.ipa..m.ipa + m.size).step_by(PAGE as usize) {
                            assert_eq!(t.translate(&mut a, ipa).map(|x| x.1), Some(3));
                        }
                    }
                }
            }
            check_by_pages(&plan, &tables, &extra, &mut a, &mut seen);
            check_damage(&plan, gicv2, &tables, &a, &mut rng);
        }
        // The generator reached everything it is meant to.
        let s: String = format!("{seen:?} after {tries} tries");
        for (what, n) in [
            (
                "2+ domains",
                seen.domains.range(2..).map(|(_, n)| n).sum::<usize>(),
            ),
            ("4 domains", seen.domains.get(&4).copied().unwrap_or(0)),
            ("fixed", seen.fixed),
            ("identity", seen.identity),
            ("board devices", seen.board_devices),
            ("explicit devices", seen.explicit_devices),
            ("moved devices", seen.moved_devices),
            ("sub-page devices", seen.sub_page_devices),
            ("blocks", seen.blocks),
            ("pages", seen.pages),
            ("merged runs", seen.merged),
            ("gicv2", seen.gicv2),
            ("pages only", seen.pages_only),
        ] {
            assert!(n >= 20, "{what}: {s}");
        }
        std::println!("{s}");
    }
}
