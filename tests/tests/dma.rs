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

/// QEMU virt's default network card (00:01.0) is a transitional
/// virtio-net-pci, whose DMA QEMU never sends through the SMMU: a domain
/// given it could write any memory. The firmware reads what the function is
/// at boot, says why, and starts nothing.
#[test]
fn a_virtio_function_whose_dma_bypasses_the_smmu_is_refused() {
    let mut run = boot(
        "virtio-bypass",
        "virtio-bypass",
        &Machine {
            board: "qemu-virt".into(),
            ..Machine::default()
        },
    );
    run.wait_line(UART0, "refusing to start any domain", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    let log = run.output(UART0);
    let why = lines_with(
        &log,
        "config: domain \"hello\": device \"nic\": PCI function 00:01.0 is a transitional virtio device",
    );
    assert_eq!(why.len(), 1, "{log}");
    assert!(
        why[0].contains("iommu_platform=on,disable-legacy=on"),
        "{log}"
    );
    assert!(lines_with(&log, "vCPU 0 starts").is_empty(), "{log}");
    assert!(
        !run.output(UART1).contains("hello:"),
        "{}",
        run.transcript()
    );
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
    // The SMMU's fault reports are taken on probe's core (1), not on the
    // boot core, which runs hello: the attacker pays for its own faults.
    assert_eq!(
        lines_with(&log, "bulkhead: IOMMU events taken on core 1").len(),
        1,
        "{log}"
    );
    // The function came with decoding on and bus mastering off (probe
    // turned mastering on itself, as a driver does).
    assert_eq!(
        lines_with(&log, "probe: dma: command 0x2 at start").len(),
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

/// On GICv2 each domain's stage 2 maps the GIC's virtual CPU interface
/// (GICV) where its GICC is: one physical device for every core, which
/// tells cores apart by who asks, so a device's DMA must never reach it
/// (on QEMU a DMA there has no CPU to stand for; on a GIC-400 it would act
/// on some core's virtual interrupts). The SMMU translates probe's DMA with
/// tables that hold its RAM and devices only: both transfers fault and are
/// reported, and the domain on the other core keeps taking its interrupts.
#[test]
fn dma_never_reaches_the_gicv2_virtual_cpu_interface() {
    let mut m = machine("qemu-virt");
    m.gic = 2;
    let mut run = boot("dma-attack-gicv2", "dma-attack-gicv2", &m);
    run.wait_line(UART0, "probe: dma attacks done: 2 attempted", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    let log = run.output(UART0);
    assert!(!lines_with(&log, "GICv2 CPU interface").is_empty(), "{log}");
    assert_eq!(lines_with(&log, "probe: dma control: ok").len(), 1, "{log}");
    for dir in ["write", "read"] {
        let reports = lines_with(
            &log,
            &format!(
                "domain \"probe\" device \"edu\" (PCI 00:02.0): DMA {dir} of guest addresses 0x8010000..0x8010040 outside the domain: translation fault"
            ),
        );
        assert_eq!(reports.len(), 1, "{dir}\n{log}");
    }
    let read = lines_with(&log, "probe: dma read gicv @0x8010000: ");
    assert!(
        read.len() == 1 && read[0].contains(": blocked ("),
        "{read:?}\n{log}"
    );
    // The CPUs' own view is unchanged: both domains keep running (hello's
    // heartbeats need its timer interrupt, through the GICV of its core).
    let hb = last_heartbeat(&run.output(UART1), "hello").unwrap_or(0);
    wait_heartbeat_after(&mut run, UART1, "hello", hb + 3);
    let p = last_heartbeat(&run.output(UART0), "probe").unwrap_or(0);
    wait_heartbeat_after(&mut run, UART0, "probe", p + 2);
}

/// A config fixes probe's edu BAR0 (`bars`) at the window's base, where
/// the partitioner would otherwise have put hello's edu (hello comes first):
/// probe's goes there, hello's around it, probe finds its edu at the fixed
/// address and its DMA works there, and is confined, as ever.
#[test]
fn a_bar_fixed_by_the_config_goes_where_it_says() {
    let mut m = machine("qemu-virt");
    m.extra.extend([
        "-device".into(),
        "edu,addr=03.0,dma_mask=0xffffffffff".into(),
    ]);
    let mut run = boot("dma-fixed-bar", "dma-fixed-bar", &m);
    run.wait_line(UART0, "probe: dma attacks done: 4 attempted", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    let log = run.output(UART0);
    assert_eq!(
        lines_with(
            &log,
            "domain \"probe\": PCI 00:02.0 BAR0: 0x100000 bytes at 0x10000000 (fixed by the config)"
        )
        .len(),
        1,
        "{log}"
    );
    assert_eq!(
        lines_with(
            &log,
            "domain \"hello\": PCI 00:03.0 BAR0: 0x100000 bytes at 0x10100000"
        )
        .len(),
        1,
        "{log}"
    );
    assert_eq!(
        lines_with(&log, "probe: dma: edu registers at 0x10000000").len(),
        1,
        "{log}"
    );
    assert_eq!(lines_with(&log, "probe: dma control: ok").len(), 1, "{log}");
    assert_eq!(
        lines_with(&log, "domain \"probe\" device \"edu\" (PCI 00:02.0): DMA write of guest addresses 0x48000000..0x48000040 outside the domain").len(),
        1,
        "{log}"
    );
    assert!(lines_with(&log, "LEAKED").is_empty(), "{log}");
    // probe powers itself off: its edu (no Function Level Reset) is
    // switched off, and the console says it could not be reset.
    run.wait_line(
        UART0,
        "domain \"probe\": device \"edu\": PCI 00:02.0 cannot be reset (no Function Level Reset): bus mastering and decoding off",
        WAIT,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let hb = last_heartbeat(&run.output(UART1), "hello").unwrap_or(0);
    wait_heartbeat_after(&mut run, UART1, "hello", hb + 2);
    let hello = run.output(UART1);
    assert!(!hello.contains("CORRUPTED"), "{hello}");
}

/// A fixed BAR address the host check cannot fault (it does not know the
/// BAR's size) is refused at boot once the BAR is sized: the console names
/// the domain, device, function, BAR, address and why, and nothing starts.
#[test]
fn a_fixed_bar_that_is_not_aligned_to_its_size_is_refused_at_boot() {
    let mut m = machine("qemu-virt");
    m.extra.extend([
        "-device".into(),
        "edu,addr=03.0,dma_mask=0xffffffffff".into(),
    ]);
    let mut run = boot("dma-fixed-bar-misaligned", "dma-fixed-bar-misaligned", &m);
    run.wait_line(UART0, "refusing to start any domain", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    let log = run.output(UART0);
    assert_eq!(
        lines_with(
            &log,
            "config: domain \"probe\": device \"edu\": PCI 00:02.0 BAR0 cannot go at 0x10080000: the address is not aligned to the BAR's size (0x100000 bytes)"
        )
        .len(),
        1,
        "{log}"
    );
    assert!(lines_with(&log, "[probe]").is_empty(), "{log}");
    assert!(run.output(UART1).is_empty(), "{}", run.output(UART1));
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
/// An ext4 disk image in `dir/<name>.img` holding one file, `payload`,
/// whose bytes depend on `seed`; returns the image and the file's md5.
fn disk(dir: &std::path::Path, name: &str, seed: u32) -> (std::path::PathBuf, String) {
    let fs = dir.join(format!("{name}-fs"));
    std::fs::create_dir_all(&fs).unwrap();
    // A file whose checksum only an intact read gives.
    let payload: Vec<u8> = (0..256 * 1024u32)
        .map(|i| ((i ^ seed).wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(fs.join("payload"), &payload).unwrap();
    let md5 = std::process::Command::new("md5sum")
        .arg(fs.join("payload"))
        .output()
        .expect("md5sum runs");
    let md5 = String::from_utf8_lossy(&md5.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let img = dir.join(format!("{name}.img"));
    let mkfs = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&fs)
        .arg(&img)
        .arg("16M")
        .stdout(std::process::Stdio::null())
        .status()
        .expect("mkfs.ext4 (e2fsprogs) runs");
    assert!(mkfs.success());
    (img, md5)
}

/// QEMU arguments for an NVMe controller at `slot` with disk `img`.
fn nvme(id: &str, img: &std::path::Path, slot: u8) -> Vec<String> {
    vec![
        "-drive".into(),
        format!("if=none,id={id},format=raw,file={}", img.display()),
        "-device".into(),
        format!("nvme,drive={id},serial={id},addr={slot:02x}.0"),
    ]
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = xtask::target_dir()
        .join("bulkhead")
        .join("test-tmp")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn linux_uses_its_own_nvme_disk_through_the_smmu() {
    let dir = scratch("linux-nvme");
    let (img, md5) = disk(&dir, "disk", 0);
    let m = Machine {
        extra: nvme("disk0", &img, 3),
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

/// Two Linux domains, each with its own NVMe controller: each sees and
/// reads only its own disk; beta reboots (its function is quiesced, reset
/// with a Function Level Reset, and brought back, and it reads its disk
/// again), while alpha's disk keeps
/// working throughout.
#[test]
fn two_linux_domains_keep_their_own_disks_across_a_restart() {
    let dir = scratch("linux-nvme-pair");
    let (a_img, a_md5) = disk(&dir, "alpha", 1);
    let (b_img, b_md5) = disk(&dir, "beta", 2);
    assert_ne!(a_md5, b_md5);
    let mut extra = nvme("alpha", &a_img, 3);
    extra.extend(nvme("beta", &b_img, 4));
    let m = Machine {
        extra,
        timeout: std::time::Duration::from_secs(500),
        ..Machine::default()
    };
    let mut run = boot("linux-nvme-pair", "linux-nvme-pair", &m);
    let linux = std::time::Duration::from_secs(300);
    let expect = |run: &mut bulkhead_tests::Run, uart: &str, needle: &str| {
        run.wait_line(uart, needle, linux)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let a_pci = expect(&mut run, UART1, "linux-init: pci ");
    assert!(a_pci.ends_with("pci 0000:00:03.0 "), "{a_pci}");
    let b_pci = expect(&mut run, UART0, "[beta] linux-init: pci ");
    assert!(b_pci.ends_with("pci 0000:00:04.0 "), "{b_pci}");
    expect(
        &mut run,
        UART1,
        &format!("linux-init: disk payload md5 {a_md5}"),
    );
    expect(
        &mut run,
        UART0,
        &format!("[beta] linux-init: disk payload md5 {b_md5}"),
    );
    // beta reboots: its disk works again afterwards.
    expect(
        &mut run,
        UART0,
        "domain \"beta\" restarting (1 of at most 1)",
    );
    let restart_at = run
        .output(UART0)
        .find("domain \"beta\" restarting")
        .unwrap();
    let after = |run: &bulkhead_tests::Run| {
        run.output(UART0)[restart_at..]
            .matches(&format!("[beta] linux-init: disk payload md5 {b_md5}"))
            .count()
    };
    // Its NVMe function was reset (QEMU's nvme advertises Function Level
    // Reset) before its memory was reused, and only its.
    expect(
        &mut run,
        UART0,
        "domain \"beta\": device \"disk\": PCI 00:04.0 reset (Function Level Reset, 100 ms)",
    );
    assert!(
        lines_with(&run.output(UART0), "PCI 00:03.0 reset").is_empty(),
        "{}",
        run.transcript()
    );
    let start = std::time::Instant::now();
    while after(&run) == 0 {
        assert!(
            start.elapsed() < linux,
            "beta never read its disk after the restart\n{}",
            run.transcript()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // alpha kept reading its own disk the whole time, and still does.
    let alpha_reads = |run: &bulkhead_tests::Run| {
        run.output(UART1)
            .matches(&format!("linux-init: disk payload md5 {a_md5}"))
            .count()
    };
    let n = alpha_reads(&run);
    while alpha_reads(&run) < n + 2 {
        assert!(
            start.elapsed() < linux,
            "alpha stopped reading its disk\n{}",
            run.transcript()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let out = run.output(UART1);
    assert!(lines_with(&out, "linux-init: disk:").is_empty(), "{out}");
    assert!(
        lines_with(&run.output(UART0), "outside the domain").is_empty(),
        "{}",
        run.transcript()
    );
}

/// QEMU arguments for a modern-only `virtio-net-pci` at `slot` with MAC
/// `mac` on QEMU's user networking (DHCP server and gateway 10.0.2.2 inside
/// QEMU). `iommu_platform=on`: QEMU's virtio devices otherwise DMA straight
/// to physical memory, past the SMMU (a real device's DMA cannot), so the
/// guest addresses its driver gives them would land in whatever memory has
/// those physical addresses; with it, the device's DMA is translated by the
/// SMMU like the NVMe controller's. A transitional (legacy) device cannot
/// have it: `disable-legacy=on`, device id 1af4:1041.
fn virtio_net(id: &str, slot: u8, mac: &str) -> Vec<String> {
    vec![
        "-netdev".into(),
        format!("user,id={id}"),
        "-device".into(),
        format!(
            "virtio-net-pci,netdev={id},addr={slot:02x}.0,mac={mac},disable-legacy=on,iommu_platform=on"
        ),
    ]
}

/// The `<address>=<vendor>:<device>` words of a `pci-ids` line.
fn pci_ids(line: &str) -> Vec<&str> {
    line.split_once("pci-ids")
        .map_or(vec![], |(_, ids)| ids.split_whitespace().collect())
}

/// Two Linux domains, each owning a PCIe function of a different kind
/// behind the SMMU: `disk` an NVMe controller (00:03.0), `net` a
/// virtio-net-pci (00:04.0) on QEMU's user networking. Each sees exactly
/// its own function, with its ids, and not the other's; disk reads its file
/// intact; net loads its driver from the initramfs, gets a DHCP lease from
/// QEMU and a ping reply from its gateway, which needs both directions of
/// the card's DMA (through the SMMU, with net's own tables) and its INTx.
#[test]
fn two_linux_domains_own_a_disk_and_a_network_card_each() {
    let dir = scratch("linux-nvme-net");
    let (img, md5) = disk(&dir, "disk", 3);
    let mac = "52:54:00:b0:1c:04";
    let mut extra = nvme("disk0", &img, 3);
    extra.extend(virtio_net("net0", 4, mac));
    let m = Machine {
        extra,
        timeout: std::time::Duration::from_secs(400),
        ..Machine::default()
    };
    let started = std::time::Instant::now();
    let mut run = boot("linux-nvme-net", "linux-nvme-net", &m);
    let linux = std::time::Duration::from_secs(300);
    let expect = |run: &mut bulkhead_tests::Run, uart: &str, needle: &str| {
        run.wait_line(uart, needle, linux)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    // disk owns the second UART; net is on the virtual console, tagged.
    let disk_pci = expect(&mut run, UART1, "linux-init: pci-ids ");
    assert_eq!(pci_ids(&disk_pci), ["0000:00:03.0=1b36:0010"], "{disk_pci}");
    let net_pci = expect(&mut run, UART0, "[net] linux-init: pci-ids ");
    assert_eq!(pci_ids(&net_pci), ["0000:00:04.0=1af4:1041"], "{net_pci}");
    let read = expect(&mut run, UART1, "linux-init: disk ");
    assert_eq!(
        read.trim(),
        format!("linux-init: disk payload md5 {md5}"),
        "{}",
        run.transcript()
    );
    for module in ["virtio_pci", "virtio_net"] {
        let line = expect(
            &mut run,
            UART0,
            &format!("[net] linux-init: module {module}"),
        );
        assert!(line.ends_with(" loaded"), "{line}");
    }
    let nic = expect(&mut run, UART0, "[net] linux-init: net ");
    assert!(
        nic.ends_with(&format!(" {mac} virtio_net")),
        "{nic}\n{}",
        run.transcript()
    );
    let dhcp = expect(&mut run, UART0, "[net] linux-init: dhcp ");
    assert!(
        dhcp.ends_with(" 10.0.2.15/24 router 10.0.2.2"),
        "{dhcp}\n{}",
        run.transcript()
    );
    let ping = expect(&mut run, UART0, "[net] linux-init: ping 10.0.2.2: ");
    assert!(
        ping.ends_with("ping 10.0.2.2: reply"),
        "{ping}\n{}",
        run.transcript()
    );
    let counts = expect(&mut run, UART0, " rx-packets ");
    let count = |key: &str| -> u64 {
        counts
            .split_once(key)
            .and_then(|(_, r)| r.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    assert!(
        count("rx-packets ") >= 2 && count("tx-packets ") >= 2,
        "{counts}"
    );
    let log = run.output(UART0);
    // The partitioner placed each function for its own domain, and no DMA
    // of either went outside its domain.
    for (domain, function) in [("disk", "00:03.0"), ("net", "00:04.0")] {
        assert!(
            !lines_with(&log, &format!("domain \"{domain}\": PCI {function} BAR")).is_empty(),
            "{log}"
        );
    }
    assert!(lines_with(&log, "outside the domain").is_empty(), "{log}");
    assert!(
        lines_with(&run.output(UART1), "linux-init: disk:").is_empty(),
        "{}",
        run.transcript()
    );
    eprintln!(
        "disk and network checked {:.1} s after QEMU started",
        started.elapsed().as_secs_f64()
    );
}
