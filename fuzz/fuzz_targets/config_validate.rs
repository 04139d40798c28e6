//! `validate::check` (config parser and checker) on arbitrary blobs, with the
//! qemu-virt board. Never panics; every error prints; a config it accepts
//! keeps domains apart (cores, physical memory, device pages, SPIs, the
//! partitioner's footprint), and the device tree generated for each of its
//! domains passes the checker of supplied trees.
#![no_main]

use bulkhead_core::dtb::{domain_tree, DTB_MAX};
use bulkhead_core::dtb_check::check_supplied;
use bulkhead_core::plan::GicVersion;
use bulkhead_fuzz::{check, layout};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let plan = match check(data) {
        Ok(plan) => plan,
        Err(errors) => {
            assert!(errors.len() > 0, "rejected without an error");
            for e in errors.iter() {
                let text = format!("{e}");
                assert!(!text.is_empty());
            }
            return;
        }
    };
    let footprint = layout().partitioner;
    for (i, a) in plan.domains.iter().enumerate() {
        assert!(!a.cpus.is_empty(), "domain {} without cores", a.name);
        assert!(
            a.ram.iter().any(|m| m
                .ipa_range()
                .contains(&bulkhead_core::board::Range::new(a.entry, 4))),
            "domain {}: entry {:#x} outside its RAM",
            a.name,
            a.entry
        );
        let maps = || a.mappings().map(|m| m.pa_range());
        for m in maps() {
            assert!(
                m.size > 0 && m.end().is_some(),
                "domain {}: bad mapping {m:?}",
                a.name
            );
            assert!(
                !m.overlaps(&footprint),
                "domain {} maps the partitioner: {m:?}",
                a.name
            );
        }
        for (j, x) in a.mappings().enumerate() {
            for y in a.mappings().skip(j + 1) {
                assert!(
                    !x.ipa_range().overlaps(&y.ipa_range()),
                    "domain {}: guest ranges overlap: {x:?} {y:?}",
                    a.name
                );
            }
        }
        for b in plan.domains.iter().skip(i + 1) {
            assert_ne!(a.vmid, b.vmid);
            assert_ne!(a.name, b.name);
            for c in &a.cpus {
                assert!(!b.cpus.contains(c), "core {c} in {} and {}", a.name, b.name);
            }
            for x in maps() {
                for y in b.mappings().map(|m| m.pa_range()) {
                    assert!(
                        !x.overlaps(&y),
                        "{} and {} share memory: {x:?} {y:?}",
                        a.name,
                        b.name
                    );
                }
            }
            for s in a.devices.iter().flat_map(|d| d.spis.iter()) {
                assert!(
                    !b.devices.iter().any(|d| d.spis.contains(s)),
                    "SPI {s} in {} and {}",
                    a.name,
                    b.name
                );
            }
        }
        let mut buf = vec![0u8; DTB_MAX];
        for gic in [GicVersion::V2, GicVersion::V3] {
            if let Ok(len) = domain_tree(a, gic, &mut buf) {
                if let Err(problems) = check_supplied(a, Some(gic), &buf[..len]) {
                    let first = problems.iter().next().map(|p| format!("{p}"));
                    panic!(
                        "the generated tree of {} ({gic:?}) fails its own check: {first:?}",
                        a.name
                    );
                }
            }
        }
    }
});
