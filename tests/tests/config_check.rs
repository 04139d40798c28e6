//! Configs are checked on the host exactly as the firmware checks them at
//! boot. Every file in tests/configs/invalid/ triggers exactly the one error
//! its first line names (`// expect: <code>`); every shipped config passes.

use std::path::Path;

use xtask::image::{check_blob, compile_dts, firmware_image};

fn firmware_len() -> u64 {
    firmware_image()
        .expect("firmware built by `cargo xtask test`")
        .len() as u64
}

fn dts_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "dts"))
        .collect();
    v.sort();
    v
}

#[test]
fn each_invalid_config_reports_exactly_its_error() {
    let fw = firmware_len();
    let files = dts_files(&xtask::root().join("tests/configs/invalid"));
    assert!(
        files.len() >= 20,
        "expected a negative config per error kind, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("// expect: "))
            .unwrap_or_else(|| panic!("{}: first line must be `// expect: <code>`", f.display()))
            .trim()
            .to_string();
        let blob = match compile_dts(f) {
            Ok(b) => b,
            Err(e) => {
                failures.push(format!("{}: {e}", f.display()));
                continue;
            }
        };
        match check_blob(f, blob, fw) {
            Ok(_) => failures.push(format!("{}: accepted, expected {expect}", f.display())),
            Err(r) => {
                let errors = r.errors;
                let codes: Vec<_> = errors.iter().map(|e| e.code()).collect();
                if codes != [expect.as_str()] {
                    let msgs: Vec<_> = errors
                        .iter()
                        .map(|e| format!("[{}] {e}", e.code()))
                        .collect();
                    failures.push(format!(
                        "{}: expected exactly [{expect}], got {msgs:?}",
                        f.display()
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn shipped_configs_pass() {
    let fw = firmware_len();
    let root = xtask::root();
    // Every board's directory under configs/, and the test configs.
    let mut dirs: Vec<_> = std::fs::read_dir(root.join("configs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.push(root.join("tests/configs"));
    assert!(dirs.iter().any(|d| d.ends_with("configs/rpi4")), "{dirs:?}");
    for dir in dirs {
        for f in dts_files(&dir) {
            let blob = compile_dts(&f).unwrap_or_else(|e| panic!("{e}"));
            if let Err(r) = check_blob(&f, blob, fw) {
                panic!("{}", xtask::report_rejected(&f, &r));
            }
        }
    }
}

#[test]
fn host_check_refuses_overlap_with_the_partitioner_image() {
    // The partitioner's footprint grows with its package: a domain placed at
    // the first free 2 MiB after a small image must be refused once the image
    // is large enough to reach it.
    let root = xtask::root();
    let f = root.join("configs/qemu-virt/isolation.dts");
    let blob = compile_dts(&f).unwrap();
    let big_firmware = 0x1000_0000; // 256 MiB: covers every fixed region
    let errors = match check_blob(&f, blob, big_firmware) {
        Ok(_) => panic!("a 256 MiB partitioner cannot leave room for the default domains"),
        Err(r) => r.errors,
    };
    assert!(
        errors.iter().any(|e| e.code().contains("partitioner")),
        "{:?}",
        errors.iter().map(|e| e.code()).collect::<Vec<_>>()
    );
}

#[test]
fn hand_written_device_trees_may_name_only_owned_hardware() {
    let fw = firmware_len();
    let root = xtask::root();
    let good = root.join("tests/configs/supplied-tree.dts");
    let blob = compile_dts(&good).unwrap_or_else(|e| panic!("{e}"));
    let checked = check_blob(&good, blob, fw)
        .unwrap_or_else(|r| panic!("{}", xtask::report_rejected(&good, &r)));
    // The supplied tree travels in the package in place of the generated one.
    assert!(checked.images.iter().any(|(n, _)| n == "handmade.dtb"));
    let bad = root.join("tests/configs/rejected-trees/foreign-uart.dts");
    let blob = compile_dts(&bad).unwrap_or_else(|e| panic!("{e}"));
    let r = match check_blob(&bad, blob, fw) {
        Ok(_) => panic!("a tree naming another domain's UART was accepted"),
        Err(r) => r,
    };
    assert!(r.errors.is_empty(), "only the tree is wrong");
    assert_eq!(r.trees.len(), 1, "{:?}", r.trees);
    assert!(
        r.trees[0].contains("/stolen@9040000") && r.trees[0].contains("does not own"),
        "{}",
        r.trees[0]
    );
}

#[test]
fn an_accepted_dma_risk_passes_with_a_warning() {
    let fw = firmware_len();
    let f = xtask::root().join("tests/configs/dma-accepted.dts");
    let blob = compile_dts(&f).unwrap_or_else(|e| panic!("{e}"));
    let checked =
        check_blob(&f, blob, fw).unwrap_or_else(|r| panic!("{}", xtask::report_rejected(&f, &r)));
    let blk = &checked.plan.domains[0].devices[1];
    assert!(blk.dma_unprotected, "the plan records the accepted risk");
    // What `cargo xtask check` prints after its `ok` line.
    assert_eq!(
        xtask::report_warnings(&f, &checked.plan),
        [format!(
            "{}: warning[dma-unprotected]: domain \"hello\": device \"blk\" masters DMA and no IOMMU covers it; accepted by dma = \"unprotected\": the domain can read and write any physical address through it, including other domains' memory and the partitioner",
            f.display()
        )]
    );
    // The other shipped configs accept no such risk (but the negative
    // control of the DMA attack test, on the machine without its SMMU).
    for dir in ["configs/qemu-virt", "tests/configs"] {
        for g in dts_files(&xtask::root().join(dir)) {
            if g == f || g.ends_with("dma-attack-unprotected.dts") {
                continue;
            }
            let blob = compile_dts(&g).unwrap_or_else(|e| panic!("{e}"));
            if let Ok(c) = check_blob(&g, blob, fw) {
                assert!(
                    xtask::report_warnings(&g, &c.plan).is_empty(),
                    "{}",
                    g.display()
                );
            }
        }
    }
}

/// The real board file lists the virtio-mmio pages as DMA-capable devices:
/// a page by name is refused without the opt-in and accepted with it, with
/// its eight transports' SPIs.
#[test]
fn virtio_mmio_pages_of_qemu_virt_master_dma() {
    let fw = firmware_len();
    let dir = std::env::temp_dir().join(format!("bulkhead-dma-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, extra: &str| {
        let path = dir.join(name);
        std::fs::write(
            &path,
            format!(
                r#"/dts-v1/;
/ {{
    compatible = "bulkhead,config-v1";
    board = "qemu-virt";
    domains {{
        hello {{
            compatible = "bulkhead,domain";
            cpus = <0>;
            image = "domain:hello";
            entry = <0x0 0x40000000>;
            memory {{ ram {{ guest-address = <0x0 0x40000000>; size = <0x0 0x200000>; }}; }};
            devices {{ net {{ board-device = "virtio-mmio1"; {extra} }}; }};
        }};
    }};
}};
"#
            ),
        )
        .unwrap();
        path
    };
    let refused = write("refused.dts", "");
    let accepted = write("accepted.dts", r#"dma = "unprotected";"#);
    let run = |f: &std::path::Path| check_blob(f, compile_dts(f).unwrap(), fw);
    let r = match run(&refused) {
        Ok(_) => panic!("a DMA master without an IOMMU was accepted"),
        Err(r) => r,
    };
    let codes: Vec<_> = r.errors.iter().map(|e| e.code()).collect();
    assert_eq!(
        codes,
        ["dma-unprotected"],
        "{}",
        xtask::report_rejected(&refused, &r)
    );
    let text = r.errors.iter().next().unwrap().to_string();
    assert!(
        text.contains("board device \"virtio-mmio1\" masters DMA")
            && text.contains("other domains' memory and the partitioner"),
        "{text}"
    );
    let c = run(&accepted).unwrap_or_else(|r| panic!("{}", xtask::report_rejected(&accepted, &r)));
    let net = &c.plan.domains[0].devices[0];
    assert_eq!(
        net.mapping.pa_range(),
        bulkhead_core::board::Range::new(0x0a00_1000, 0x1000)
    );
    assert_eq!(net.spis.as_slice(), [24, 25, 26, 27, 28, 29, 30, 31]);
    let w = xtask::report_warnings(&accepted, &c.plan);
    assert!(
        w.len() == 1 && w[0].contains("device \"net\" (board device \"virtio-mmio1\")"),
        "{w:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The Pi 4 has no IOMMU: its SD controller (SDHCI ADMA) and USB controller
/// master DMA, so giving one to a domain is refused with the reason, unless
/// the config accepts the risk.
#[test]
fn rpi4_dma_capable_devices_are_refused_without_an_iommu() {
    let fw = firmware_len();
    let dir = tempdir("rpi4-dma");
    for (device, accept) in [("emmc2", false), ("usb", false), ("emmc2", true)] {
        let dma = if accept { "dma = \"unprotected\";" } else { "" };
        let dts = format!(
            r#"/dts-v1/;
/ {{
    compatible = "bulkhead,config-v1";
    board = "rpi4";
    domains {{
        sd {{
            compatible = "bulkhead,domain";
            cpus = <0>;
            image = "domain:hello";
            entry = <0x0 0x40000000>;
            memory {{ ram@40000000 {{ guest-address = <0x0 0x40000000>; size = <0x0 0x200000>; }}; }};
            devices {{ card {{ board-device = "{device}"; {dma} }}; }};
        }};
    }};
}};
"#
        );
        let f = dir.join(format!("{device}-{accept}.dts"));
        std::fs::write(&f, dts).unwrap();
        let blob = compile_dts(&f).unwrap_or_else(|e| panic!("{e}"));
        match (check_blob(&f, blob, fw), accept) {
            (Err(r), false) => {
                let errors: Vec<_> = r.errors.iter().map(|e| (e.code(), e.to_string())).collect();
                assert_eq!(errors.len(), 1, "{errors:?}");
                assert_eq!(errors[0].0, "dma-unprotected", "{errors:?}");
                assert!(errors[0].1.contains(device), "{errors:?}");
            }
            (Ok(c), true) => assert_eq!(c.plan.unprotected_dma().count(), 1),
            (Ok(_), false) => panic!("{device} accepted without an IOMMU"),
            (Err(r), true) => panic!("{}", xtask::report_rejected(&f, &r)),
        }
    }
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let d = xtask::target_dir()
        .join("bulkhead")
        .join("test-tmp")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `cargo xtask check`, `audit` and `dtb` size the partitioner with the
/// firmware of the board the config names, as `build` does: a board's
/// firmware differs in size from QEMU virt's (whose stage-2 table pool is
/// larger), and the domains go right after it.
#[test]
fn the_host_check_places_domains_where_the_boards_own_firmware_will() {
    let root = xtask::root();
    for (config, board) in [
        ("configs/rpi4/isolation.dts", "rpi4"),
        ("configs/zcu102/isolation.dts", "zcu102"),
    ] {
        let f = root.join(config);
        let blob = compile_dts(&f).unwrap_or_else(|e| panic!("{e}"));
        let len = xtask::image::firmware_len_for_config(&blob).unwrap();
        let own = xtask::image::firmware_image_for(board).unwrap().len() as u64;
        assert_eq!(len, own, "{config}");
        assert_ne!(
            own,
            firmware_len(),
            "{config}: the test needs a firmware whose size differs from QEMU virt's"
        );
        let checked = check_blob(&f, blob, len)
            .unwrap_or_else(|r| panic!("{}", xtask::report_rejected(&f, &r)));
        let out = std::env::temp_dir().join(format!("bulkhead-place-{board}.img"));
        let built = xtask::image::build_image(&f, &out, xtask::image::Tamper::None)
            .unwrap_or_else(|e| panic!("{e}"))
            .expect("a checked build has a plan");
        let _ = std::fs::remove_file(&out);
        for (c, b) in checked.plan.domains.iter().zip(built.domains.iter()) {
            let pa = |d: &bulkhead_core::plan::DomainPlan| -> Vec<u64> {
                d.ram.iter().map(|m| m.pa).collect()
            };
            assert_eq!(pa(c), pa(b), "{config}: domain {}", c.name);
        }
    }
}
