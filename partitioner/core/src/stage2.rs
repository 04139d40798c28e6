//! A domain's stage-2 tables: exactly its RAM (normal memory, RWX) and its
//! passthrough devices (device memory, RW, never executable). Nothing else.

use crate::pagetable::{Attrs, FrameAllocator, MapError, Regime, Tables};
use crate::plan::{DomainPlan, MemKind};

/// Attributes a mapping kind gets in stage 2.
pub fn attrs(kind: MemKind) -> Attrs {
    match kind {
        MemKind::Ram => Attrs::RAM_RWX,
        MemKind::Device => Attrs::DEVICE,
    }
}

/// Build the stage-2 tables of one domain.
pub fn build(plan: &DomainPlan, alloc: &mut dyn FrameAllocator) -> Result<Tables, MapError> {
    let mut t = Tables::new(Regime::Stage2, alloc)?;
    for m in plan.mappings() {
        t.map(alloc, m.ipa, m.pa, m.size, attrs(m.kind))?;
    }
    Ok(t)
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
            })
            .unwrap();
        p
    }

    #[test]
    fn maps_exactly_the_domains_ranges_and_nothing_else() {
        let p = plan();
        let mut a = HostFrames::new(32);
        let t = build(&p, &mut a).unwrap();
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
            build(&p, &mut a),
            Err(MapError::AlreadyMapped { input: 0x4030_0000 })
        ));
    }
}
