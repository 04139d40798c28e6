//! DMA isolation through the SMMUv3 of QEMU `virt`: a domain owns a PCI
//! function with a DMA engine (QEMU's `edu`) and points it at another
//! domain's RAM and at the partitioner. The SMMU translates the function's
//! DMA with the attacker's own stage-2 tables, so every such transfer
//! faults, is reported by the partitioner, and changes nothing, while a
//! transfer inside the attacker's own RAM works (the control) and the
//! victim keeps running. The negative control accepts the DMA risk for the
//! same function: then the same attack corrupts the victim, and the victim
//! sees it.

use bulkhead_tests::{
    boot, last_heartbeat, lines_with, wait_heartbeat_after, Machine, UART0, UART1, WAIT,
};

/// QEMU virt (with its SMMUv3 for `qemu-virt`, without for
/// `qemu-virt-noiommu`: each board's model says) and an `edu` at 00:02.0
/// whose DMA reaches 40-bit addresses.
fn machine(board: &str) -> Machine {
    Machine {
        board: board.into(),
        extra: vec![
            "-device".into(),
            "edu,addr=02.0,dma_mask=0xffffffffff".into(),
        ],
        ..Machine::default()
    }
}

#[test]
fn dma_of_a_pci_function_is_confined_to_its_domain_by_the_smmu() {
    let mut run = boot("dma-attack", "dma-attack", &machine("qemu-virt"));
    run.wait_line(UART0, "probe: dma attacks done: 4 attempted", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    let log = run.output(UART0);
    // The function was found, its BAR placed, the other function (QEMU's
    // default network card) switched off.
    assert_eq!(
        lines_with(&log, "PCI 00:02.0 BAR0: 0x100000 bytes at 0x10000000").len(),
        1,
        "{log}"
    );
    assert_eq!(
        lines_with(
            &log,
            "PCI 00:01.0: 1af4:1000 belongs to no domain: switched off"
        )
        .len(),
        1,
        "{log}"
    );
    // The control: DMA inside its own RAM works through the SMMU.
    assert_eq!(lines_with(&log, "probe: dma control: ok").len(), 1, "{log}");
    for (label, addr) in [
        ("victim-ram", 0x4800_0000u64),
        ("partitioner-ram", 0x4020_0000),
    ] {
        let read = lines_with(&log, &format!("probe: dma read {label} @{addr:#x}: "));
        assert!(
            read.len() == 1 && read[0].contains(": blocked ("),
            "{read:?}\n{log}"
        );
        for dir in ["write", "read"] {
            let reports = lines_with(
                &log,
                &format!(
                    "domain \"probe\" device \"edu\" (PCI 00:02.0): DMA {dir} of guest addresses {addr:#x}..{:#x} outside the domain: translation fault",
                    addr + 0x40
                ),
            );
            assert_eq!(reports.len(), 1, "{dir} {label}\n{log}");
            assert!(reports[0].ends_with("-> aborted"), "{}", reports[0]);
        }
    }
    assert!(lines_with(&log, "LEAKED").is_empty(), "{log}");
    // The victim kept running with its memory intact.
    let hb = last_heartbeat(&run.output(UART1), "hello").unwrap_or(0);
    wait_heartbeat_after(&mut run, UART1, "hello", hb + 3);
    let hello = run.output(UART1);
    assert!(!hello.contains("CORRUPTED"), "{hello}");
    assert!(lines_with(&hello, "integrity=ok").len() > 3, "{hello}");
    wait_heartbeat_after(&mut run, UART0, "probe", 1);
}

#[test]
fn the_same_dma_attack_without_the_smmu_corrupts_the_victim() {
    let mut run = boot(
        "dma-attack-unprotected",
        "dma-attack-unprotected",
        &machine("qemu-virt-noiommu"),
    );
    run.wait_line(UART0, "probe: dma attacks done: 2 attempted", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    let log = run.output(UART0);
    // The risk is said at boot, and the attack gets through.
    assert!(
        !lines_with(&log, "masters DMA").is_empty() || !lines_with(&log, "unprotected").is_empty(),
        "{log}"
    );
    // (Without an IOMMU the device's addresses are physical: the probe's
    // own transfers land elsewhere than its guest addresses, so neither its
    // control nor its read-back says anything here; the victim's check does.)
    assert!(
        lines_with(&log, "DMA write of guest addresses").is_empty(),
        "nothing faults\n{log}"
    );
    // The victim's own check sees its memory changed.
    run.wait_line(UART1, "CORRUPTED", WAIT)
        .unwrap_or_else(|e| panic!("the victim did not see the corruption: {e}"));
}

/// A Debian Linux domain owns an NVMe controller (00:03.0): it finds it on
/// its virtual root bus (and nothing else there), its driver runs it with
/// INTx through the partitioner, its DMA goes through the SMMU with the
/// domain's own tables, and a file on the disk reads back intact.
#[test]
fn linux_uses_its_own_nvme_disk_through_the_smmu() {
    let dir = xtask::target_dir()
        .join("bulkhead")
        .join("test-tmp")
        .join("linux-nvme");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("fs")).unwrap();
    // A file whose checksum only an intact read gives.
    let payload: Vec<u8> = (0..256 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(dir.join("fs/payload"), &payload).unwrap();
    let md5 = std::process::Command::new("md5sum")
        .arg(dir.join("fs/payload"))
        .output()
        .expect("md5sum runs");
    let md5 = String::from_utf8_lossy(&md5.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let disk = dir.join("disk.img");
    let mkfs = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(dir.join("fs"))
        .arg(&disk)
        .arg("16M")
        .status()
        .expect("mkfs.ext4 (e2fsprogs) runs");
    assert!(mkfs.success());
    let m = Machine {
        extra: vec![
            "-drive".into(),
            format!("if=none,id=disk0,format=raw,file={}", disk.display()),
            "-device".into(),
            "nvme,drive=disk0,serial=bulkhead,addr=03.0".into(),
        ],
        timeout: std::time::Duration::from_secs(400),
        ..Machine::default()
    };
    let mut run = boot("linux-nvme", "linux-nvme", &m);
    let linux = std::time::Duration::from_secs(300);
    let pci = run
        .wait_line(UART1, "linux-init: pci ", linux)
        .unwrap_or_else(|e| panic!("{e}"));
    // Only its own function, not QEMU's network card at 00:01.0.
    assert_eq!(
        pci.split_whitespace().skip(2).collect::<Vec<_>>(),
        ["0000:00:03.0"],
        "{pci}"
    );
    let disk = run
        .wait_line(UART1, "linux-init: disk ", linux)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        disk.trim(),
        format!("linux-init: disk payload md5 {md5}"),
        "{}",
        run.transcript()
    );
    let log = run.output(UART0);
    assert!(lines_with(&log, "outside the domain").is_empty(), "{log}");
    let hb = last_heartbeat(&log, "hello").unwrap_or(0);
    wait_heartbeat_after(&mut run, UART0, "hello", hb + 1);
}
