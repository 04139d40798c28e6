//! Boot media (`cargo xtask image`, xtask/src/flash.rs): the Raspberry Pi 4
//! SD card image and the U-Boot route. What the images hold is read back
//! independently of the code that wrote them: the partition table is parsed
//! here, the FAT file system with mtools (`mdir`, `mtype`). The U-Boot
//! route is booted under QEMU: U-Boot's distro boot finds `boot.scr` on a
//! virtio disk, loads Bulkhead and `booti`s it at EL2, and the isolation
//! demo runs as it does when QEMU loads the image itself.

use std::path::{Path, PathBuf};
use std::process::Command;

use bulkhead_tests::{image, lines_with, wait_heartbeat_after, Machine, Run, UART0, UART1, WAIT};
use xtask::flash::{self, SdOptions};
use xtask::qemu::Boot;
use xtask::tools;

const RPI4_CONFIG: &str = "configs/rpi4/isolation.dts";
const FIRMWARE: &[&str] = &["start4.elf", "fixup4.dat", "bcm2711-rpi-4-b.dtb"];

/// An empty scratch directory for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = xtask::target_dir()
        .join("bulkhead")
        .join("test-media")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Stand-ins for the GPU firmware files (the tests check the layout, not
/// the firmware), each holding its own name.
fn dummy_firmware(dir: &Path, names: &[&str]) -> PathBuf {
    let fw = dir.join("firmware");
    std::fs::create_dir_all(&fw).unwrap();
    for n in names {
        std::fs::write(fw.join(n), format!("stand-in for {n}\n")).unwrap();
    }
    fw
}

/// The first MBR partition: (status, type, first LBA, sectors), after
/// checking the signature and that the other three entries are empty.
fn partition(disk: &[u8]) -> (u8, u8, u64, u64) {
    assert_eq!(&disk[510..512], &[0x55, 0xaa], "MBR signature");
    for i in 1..4 {
        let e = &disk[446 + 16 * i..446 + 16 * (i + 1)];
        assert!(e.iter().all(|&b| b == 0), "partition entry {i} is empty");
    }
    let e = &disk[446..462];
    let le = |b: &[u8]| u64::from(u32::from_le_bytes(b.try_into().unwrap()));
    (e[0], e[4], le(&e[8..12]), le(&e[12..16]))
}

/// mtools' `-i` argument for the partition at 1 MiB.
fn fat(disk: &Path) -> String {
    format!("{}@@1M", disk.display())
}

fn mtools(tool: &str) -> Command {
    let found = tools::ensure_packaged(&[tools::MCOPY]).expect("mtools");
    let mut c = Command::new(found[0].with_file_name(tool));
    c.env("MTOOLS_SKIP_CHECK", "1");
    c
}

/// The names in the FAT's root directory, sorted.
fn fat_files(disk: &Path) -> Vec<String> {
    let out = mtools("mdir")
        .args(["-b", "-i", &fat(disk), "::"])
        .output()
        .unwrap();
    assert!(out.status.success(), "mdir: {out:?}");
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_start_matches("::/").to_string())
        .filter(|l| !l.is_empty())
        .collect();
    v.sort();
    v
}

/// A file's bytes from the FAT.
fn fat_read(disk: &Path, name: &str) -> Vec<u8> {
    let out = mtools("mtype")
        .args(["-i", &fat(disk), &format!("::{name}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "mtype {name}: {out:?}");
    out.stdout
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// Checks the partition table of a disk image made by `flash`: one
/// bootable FAT32 (LBA) partition from 1 MiB to the end of the image, and
/// a FAT32 file system in it.
fn check_partition(disk: &Path) {
    let bytes = std::fs::read(disk).unwrap();
    let (status, kind, start, sectors) = partition(&bytes);
    assert_eq!(status, 0x80, "bootable");
    assert_eq!(kind, 0x0c, "FAT32 with LBA");
    assert_eq!(start * 512, 1 << 20, "starts at 1 MiB");
    assert_eq!(
        (start + sectors) * 512,
        bytes.len() as u64,
        "ends at the image's end"
    );
    assert!(sectors * 512 >= 64 << 20, "at least 64 MiB: {sectors}");
    let boot = &bytes[1 << 20..(1 << 20) + 512];
    assert_eq!(&boot[82..90], b"FAT32   ", "FAT32 boot sector");
    assert_eq!(&boot[510..512], &[0x55, 0xaa]);
    // Hidden sectors: the partition's own start, as the MBR says.
    assert_eq!(
        u64::from(u32::from_le_bytes(boot[28..32].try_into().unwrap())),
        start
    );
}

#[test]
fn sd_card_image_layout_and_contents() {
    let dir = scratch("sd-card");
    let fw = dummy_firmware(&dir, FIRMWARE);
    let config = xtask::root().join(RPI4_CONFIG);
    // The image `cargo xtask build` makes for the same config: the one the
    // rpi4 QEMU tests boot (`tests/rpi4.rs`).
    let built = std::fs::read(image("rpi4-isolation")).unwrap();
    let base = board_support::by_name("rpi4").unwrap().image_base;

    for armstub in [false, true] {
        let sd = dir.join(format!("sd-{armstub}.img"));
        let stub = dir.join("bl31.bin");
        std::fs::write(&stub, b"stand-in for TF-A BL31\n").unwrap();
        let opts = SdOptions {
            firmware_dir: Some(fw.clone()),
            armstub: armstub.then(|| stub.clone()),
        };
        let img = flash::sd_image(&config, &sd, &opts).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(img, xtask::image::image_path(&config), "build's own path");
        check_partition(&sd);

        let mut expect = vec!["config.txt", "bulkhead.img"];
        expect.extend(FIRMWARE);
        if armstub {
            expect.push("bl31.bin");
        }
        assert_eq!(fat_files(&sd), sorted(&expect), "exactly these files");

        let cfg = String::from_utf8(fat_read(&sd, "config.txt")).unwrap();
        let lines: Vec<&str> = cfg.lines().map(str::trim).collect();
        let addr = format!("kernel_address={base:#x}");
        for want in [
            "arm_64bit=1",
            "enable_gic=1",
            "kernel=bulkhead.img",
            addr.as_str(),
            "kernel_address=0x200000",
            "enable_uart=1",
            "uart_2ndstage=1",
            "dtoverlay=disable-bt",
        ] {
            assert!(lines.contains(&want), "config.txt has {want}:\n{cfg}");
        }
        assert_eq!(
            lines.contains(&"armstub=bl31.bin"),
            armstub,
            "armstub line only with --armstub:\n{cfg}"
        );

        // Byte for byte the image the rpi4 QEMU tests boot.
        let on_card = fat_read(&sd, "bulkhead.img");
        assert!(
            on_card == built,
            "bulkhead.img on the card differs from the built image"
        );
        assert!(on_card == std::fs::read(&img).unwrap());
        for f in FIRMWARE {
            assert_eq!(fat_read(&sd, f), std::fs::read(fw.join(f)).unwrap(), "{f}");
        }
        if armstub {
            assert_eq!(fat_read(&sd, "bl31.bin"), std::fs::read(&stub).unwrap());
        }
    }
}

#[test]
fn sd_card_missing_firmware_is_named() {
    let dir = scratch("sd-missing");
    let fw = dummy_firmware(&dir, &["start4.elf"]);
    let out = dir.join("sd.img");
    let opts = SdOptions {
        firmware_dir: Some(fw.clone()),
        armstub: None,
    };
    let e = flash::sd_image(&xtask::root().join(RPI4_CONFIG), &out, &opts)
        .expect_err("firmware files are missing")
        .to_string();
    let missing = format!("{} lacks fixup4.dat, bcm2711-rpi-4-b.dtb:", fw.display());
    assert!(e.contains(&missing), "{e}");
    assert!(
        e.contains("https://github.com/raspberrypi/firmware/tree/master/boot"),
        "{e}"
    );
    assert!(!out.exists(), "nothing written");

    // An armstub that is not there is named too.
    let fw = dummy_firmware(&dir, FIRMWARE);
    let opts = SdOptions {
        firmware_dir: Some(fw),
        armstub: Some(dir.join("no-bl31.bin")),
    };
    let e = flash::sd_image(&xtask::root().join(RPI4_CONFIG), &out, &opts)
        .expect_err("armstub missing")
        .to_string();
    assert!(e.contains("--armstub") && e.contains("no-bl31.bin"), "{e}");
    assert!(!out.exists(), "nothing written");
}

#[test]
fn sd_card_refuses_boards_without_a_layout() {
    let dir = scratch("sd-wrong-board");
    let fw = dummy_firmware(&dir, FIRMWARE);
    let out = dir.join("sd.img");
    let opts = SdOptions {
        firmware_dir: Some(fw),
        armstub: None,
    };
    let e = flash::sd_image(
        &xtask::root().join("configs/qemu-virt/isolation.dts"),
        &out,
        &opts,
    )
    .expect_err("qemu-virt has no SD card")
    .to_string();
    assert!(
        e.contains("board \"qemu-virt\" has no SD card layout") && e.contains("\"rpi4\""),
        "{e}"
    );
    assert!(!out.exists(), "nothing written");
}

/// The isolation demo booted by U-Boot (Debian's u-boot-qemu) from a disk
/// made by `write_uboot`: U-Boot finds boot.scr, loads bulkhead.img at the
/// board's image_base and `booti`s it; the attacks are reported and the
/// victims keep running.
#[test]
fn uboot_boots_the_isolation_demo_from_a_virtio_disk() {
    let dir = scratch("uboot");
    let board = board_support::by_name("qemu-virt").unwrap();
    let img = image("isolation");
    let files = flash::write_uboot(board, &img, &dir.join("out")).unwrap_or_else(|e| panic!("{e}"));
    check_partition(&files.disk);
    assert_eq!(
        fat_files(&files.disk),
        sorted(&["boot.scr", "bulkhead.img"])
    );
    assert!(fat_read(&files.disk, "bulkhead.img") == std::fs::read(&img).unwrap());
    let scr = fat_read(&files.disk, "boot.scr");
    // A legacy U-Boot image (magic 0x27051956) of type script (6).
    assert_eq!(&scr[..4], &[0x27, 0x05, 0x19, 0x56], "U-Boot image magic");
    assert_eq!(scr[30], 6, "image type script");
    let text = String::from_utf8_lossy(&scr);
    assert!(
        text.contains("booti 0x40200000 - ${fdtcontroladdr}"),
        "{text}"
    );

    // The disk takes virtio-mmio transport 31 (0x0a003e00, page
    // virtio-mmio3): the config gives that page to no domain.
    let config = xtask::root().join("configs/qemu-virt/isolation.dts");
    let blob = xtask::image::compile_dts(&config).unwrap();
    let fw = xtask::image::firmware_image().unwrap();
    let Ok(checked) = xtask::image::check_blob(&config, blob, fw.len() as u64) else {
        panic!("isolation.dts is accepted");
    };
    for d in &checked.plan.domains {
        for m in d.mappings() {
            assert!(
                m.pa + m.size <= 0x0a00_0000 || m.pa >= 0x0a00_4000,
                "domain {} holds a virtio-mmio page",
                d.name
            );
        }
    }

    let uboot = tools::ensure_packaged(&[tools::UBOOT_QEMU_ARM64]).unwrap()[0].clone();
    let m = Machine {
        boot: Boot::FirmwareWithDisk(uboot),
        ..Machine::default()
    };
    let mut run = Run::start(&m, &files.disk, &dir.join("run")).expect("QEMU starts");
    run.wait_line(UART0, "Found U-Boot script /boot.scr", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    run.wait_line(UART0, "Starting kernel", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    let el = run
        .wait_line(UART0, "bulkhead: Bulkhead ", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(el.ends_with("on qemu-virt, at EL2"), "{el}");
    // U-Boot left the image where it loaded it: the board's image_base.
    let at = run
        .wait_line(UART0, "partitioner occupies ", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        at.contains(&format!("partitioner occupies {:#x}..", board.image_base)),
        "{at}"
    );
    run.wait_line(UART0, "probe: attacks done", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    let log = run.output(UART0);
    let n = 8;
    assert!(
        log.contains(&format!("probe: attacks done: {n} attempted, {n} aborted")),
        "{log}"
    );
    assert_eq!(
        lines_with(&log, "access outside the domain").len(),
        n,
        "every attack reported once\n{log}"
    );
    assert_eq!(lines_with(&log, ": aborted esr=").len(), n, "{log}");
    assert!(lines_with(&log, "NOT STOPPED").is_empty(), "{log}");
    // The victims keep running.
    let hello = bulkhead_tests::last_heartbeat(&run.output(UART1), "hello").unwrap_or(0);
    wait_heartbeat_after(&mut run, UART1, "hello", hello + 2);
    wait_heartbeat_after(&mut run, UART0, "ticker", 2);
    assert!(!run.output(UART1).contains("CORRUPTED") && !run.output(UART0).contains("CORRUPTED"));
}
