//! Boot media for real boards and boot loaders, `cargo xtask image`:
//!
//! - `--sd OUT.img`: a flashable SD card image for a board whose boot ROM
//!   reads a FAT partition (the Raspberry Pi 4): an MBR with one bootable
//!   FAT32 partition at 1 MiB holding the board's firmware files, its
//!   `config.txt` and the Bulkhead image. Everything board-specific is one
//!   [`SdCard`] entry of [`SD_CARDS`].
//! - `--uboot OUT_DIR`: the Bulkhead image, a U-Boot `boot.scr` that loads
//!   it at the board's `image_base` and `booti`s it, and a disk image with
//!   both in its first FAT partition, where U-Boot's distro boot finds them.
//!
//! - `--bif OUT_DIR`: for a board whose boot ROM reads a `BOOT.BIN` (the
//!   Xilinx ZynqMP ZCU102): the Bulkhead image and the BIF that AMD's
//!   `bootgen` packs into BOOT.BIN with the vendor's boot firmware (FSBL,
//!   PMU firmware, TF-A BL31). Everything board-specific is one
//!   [`BootBin`] entry of [`BOOT_BINS`].
//!
//! The MBR is written here; the FAT file system by `mkfs.vfat --offset`
//! and `mcopy -i` (Debian's dosfstools and mtools), so no root, loop device
//! or partitioning tool is needed.

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use bulkhead_core::board::Board;

use crate::image::{self, Tamper};
use crate::tools::{self, MCOPY, MKFS_VFAT, MKIMAGE};
use crate::{root, run_quiet, Result};

/// Bytes per sector of the disk images.
pub const SECTOR: u64 = 512;
/// Where the (only) partition starts: 1 MiB, as SD cards come formatted
/// (erase-block aligned).
pub const PARTITION_START: u64 = 1 << 20;
/// The smallest partition made: FAT32 needs 65525 clusters at least.
pub const MIN_PARTITION: u64 = 64 << 20;
/// MBR partition type: FAT32 with LBA addressing.
pub const PARTITION_TYPE_FAT32_LBA: u8 = 0x0c;
/// The MBR's disk signature (Linux's PARTUUID is `4b4c5542-01`), fixed
/// so that the same inputs give the same image.
pub const DISK_SIGNATURE: u32 = u32::from_le_bytes(*b"BULK");
/// The FAT volume ID, fixed for the same reason (`mkfs.vfat -i`).
const VOLUME_ID: &str = "4b4c5542";
/// The Bulkhead image's name on every boot medium.
pub const IMAGE_NAME: &str = "bulkhead.img";
/// U-Boot's boot script (`mkimage -T script`) and its source.
pub const UBOOT_SCRIPT: &str = "boot.scr";
pub const UBOOT_SCRIPT_SOURCE: &str = "boot.cmd";
/// The disk image `--uboot` writes next to the files.
pub const UBOOT_DISK: &str = "disk.img";

/// What a board's SD card holds besides the Bulkhead image.
#[derive(Debug)]
pub struct SdCard {
    /// The board-support name this layout is for.
    pub board: &'static str,
    /// The FAT volume label.
    pub label: &'static str,
    /// Boot firmware files copied from the firmware directory, which must
    /// have every one of them.
    pub firmware_files: &'static [&'static str],
    /// Where those files come from, for the error that names missing ones.
    pub firmware_source: &'static str,
    /// The firmware directory when `--firmware-dir` is not given: this
    /// environment variable, else this path under the workspace.
    pub firmware_env: &'static str,
    pub firmware_default: &'static str,
    /// The name an armstub (`--armstub`) gets on the card.
    pub armstub_name: &'static str,
    /// The boot configuration file and its contents, given the board's
    /// load address and whether an armstub is on the card.
    pub config_name: &'static str,
    pub config: fn(image_base: u64, armstub: bool) -> String,
}

/// The Raspberry Pi 4 Model B: the GPU boots from the first FAT partition
/// of the SD card, reads `config.txt`, loads the image at `kernel_address`
/// and starts it at EL2 (`docs/boards/rpi4.md`).
pub const RPI4: SdCard = SdCard {
    board: "rpi4",
    label: "RPIBOOT",
    firmware_files: &["start4.elf", "fixup4.dat", "bcm2711-rpi-4-b.dtb"],
    firmware_source: "https://github.com/raspberrypi/firmware/tree/master/boot",
    firmware_env: "BULKHEAD_RPI4_FIRMWARE",
    firmware_default: "firmware/rpi4",
    armstub_name: "bl31.bin",
    config_name: "config.txt",
    config: rpi4_config,
};

/// Every board with an SD card layout.
pub const SD_CARDS: &[&SdCard] = &[&RPI4];

fn rpi4_config(image_base: u64, armstub: bool) -> String {
    let mut s = format!(
        "# Bulkhead on a Raspberry Pi 4 Model B (written by `cargo xtask image --sd`;\n\
         # docs/boards/rpi4.md).\n\
         # The cores start in AArch64; the image is entered at EL2 with the\n\
         # device tree in x0.\n\
         arm_64bit=1\n\
         # The GIC-400 (the board file's interrupt controller), not the legacy\n\
         # ARM-local one.\n\
         enable_gic=1\n\
         kernel={IMAGE_NAME}\n\
         # Where the firmware loads the image: the rpi4 board's image_base, the\n\
         # address Bulkhead's config check assumes for its own footprint.\n\
         kernel_address={image_base:#x}\n\
         # The serial console. enable_uart=1 turns the primary UART on;\n\
         # disable-bt gives the PL011 (UART0, Bulkhead's console) to GPIO 14/15\n\
         # instead of the Bluetooth module, and moves Bluetooth off it.\n\
         enable_uart=1\n\
         dtoverlay=disable-bt\n\
         # The boot loader and start4.elf log to that UART too.\n\
         uart_2ndstage=1\n"
    );
    if armstub {
        s.push_str(
            "# TF-A BL31 instead of the stock armstub: PSCI over SMC (it adds a psci\n\
             # node to the device tree, and Bulkhead then starts cores with CPU_ON).\n\
             armstub=bl31.bin\n",
        );
    }
    s
}

/// The SD card layout of `board`, or an error naming the boards that have one.
pub fn sd_card_for(board: &str) -> Result<&'static SdCard> {
    SD_CARDS
        .iter()
        .copied()
        .find(|c| c.board == board)
        .ok_or_else(|| {
            format!(
                "board \"{board}\" has no SD card layout: --sd supports {} (the SD card \
             holds the board's own boot firmware); for a board that boots through \
             U-Boot use --uboot",
                SD_CARDS
                    .iter()
                    .map(|c| format!("\"{}\"", c.board))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
            .into()
        })
}

/// Options of `--sd`.
#[derive(Clone, Debug, Default)]
pub struct SdOptions {
    /// Where the board's firmware files are (`--firmware-dir`).
    pub firmware_dir: Option<PathBuf>,
    /// An armstub to put on the card (`--armstub`, TF-A's `bl31.bin`).
    pub armstub: Option<PathBuf>,
}

impl SdCard {
    /// The firmware directory: given, from the environment, or the default.
    pub fn firmware_dir(&self, given: Option<&Path>) -> PathBuf {
        given
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os(self.firmware_env).map(PathBuf::from))
            .unwrap_or_else(|| root().join(self.firmware_default))
    }

    /// Every file to put on the card but the generated `config.txt` and
    /// the image, as (name on the card, source), after checking that each
    /// exists: an error names every missing file and where it comes from.
    pub fn inputs(&self, opts: &SdOptions) -> Result<Vec<(String, PathBuf)>> {
        let dir = self.firmware_dir(opts.firmware_dir.as_deref());
        let missing: Vec<&str> = self
            .firmware_files
            .iter()
            .copied()
            .filter(|f| !dir.join(f).is_file())
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "the {} firmware directory {} lacks {}: download {} from {} into it \
                 (or name another directory with --firmware-dir or {})",
                self.board,
                dir.display(),
                missing.join(", "),
                if missing.len() == 1 { "it" } else { "them" },
                self.firmware_source,
                self.firmware_env
            )
            .into());
        }
        let mut files: Vec<(String, PathBuf)> = self
            .firmware_files
            .iter()
            .map(|f| (f.to_string(), dir.join(f)))
            .collect();
        if let Some(stub) = &opts.armstub {
            if !stub.is_file() {
                return Err(format!(
                    "--armstub {}: no such file (TF-A's BL31 for {}: Debian's arm-trusted-firmware \
                     package has /usr/lib/arm-trusted-firmware/rpi4/bl31.bin)",
                    stub.display(),
                    self.board
                )
                .into());
            }
            files.push((self.armstub_name.to_string(), stub.clone()));
        }
        Ok(files)
    }
}

/// What a board's BOOT.BIN holds besides the Bulkhead image: the boot
/// firmware partitions, in boot order, that `bootgen` packs before it.
#[derive(Debug)]
pub struct BootBin {
    /// The board-support name this layout is for.
    pub board: &'static str,
    /// (BIF attributes, file name in the firmware directory) of each
    /// firmware partition.
    pub firmware: &'static [(&'static str, &'static str)],
    /// Where those files come from.
    pub firmware_source: &'static str,
    /// The firmware directory when `--firmware-dir` is not given: this
    /// environment variable, else this path under the workspace.
    pub firmware_env: &'static str,
    pub firmware_default: &'static str,
    /// `bootgen -arch` value.
    pub arch: &'static str,
}

/// The Xilinx ZCU102 (Zynq UltraScale+ MPSoC): the boot ROM loads the PMU
/// firmware and the FSBL from BOOT.BIN, the FSBL loads BL31 and Bulkhead,
/// and BL31 enters Bulkhead at EL2 (`docs/boards/zcu102.md`).
pub const ZCU102: BootBin = BootBin {
    board: "zcu102",
    firmware: &[
        ("bootloader, destination_cpu=a53-0", "fsbl.elf"),
        ("pmufw_image", "pmufw.elf"),
        (
            "destination_cpu=a53-0, exception_level=el-3, trustzone",
            "bl31.elf",
        ),
    ],
    firmware_source: concat!(
        "AMD/Xilinx: zynqmp_fsbl and zynqmp_pmufw from embeddedsw (Vitis or ",
        "PetaLinux builds them), bl31.elf from Xilinx's arm-trusted-firmware ",
        "(PLAT=zynqmp)"
    ),
    firmware_env: "BULKHEAD_ZCU102_FIRMWARE",
    firmware_default: "firmware/zcu102",
    arch: "zynqmp",
};

/// Every board with a BOOT.BIN layout.
pub const BOOT_BINS: &[&BootBin] = &[&ZCU102];

/// The BOOT.BIN layout of `board`, or an error naming the boards that have one.
pub fn boot_bin_for(board: &str) -> Result<&'static BootBin> {
    BOOT_BINS
        .iter()
        .copied()
        .find(|b| b.board == board)
        .ok_or_else(|| {
            format!(
                "board \"{board}\" has no BOOT.BIN layout: --bif supports {}",
                BOOT_BINS
                    .iter()
                    .map(|b| format!("\"{}\"", b.board))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
            .into()
        })
}

/// The BIF name `--bif` writes.
pub const BIF_NAME: &str = "boot.bif";

impl BootBin {
    /// The firmware directory: given, from the environment, or the default.
    pub fn firmware_dir(&self, given: Option<&Path>) -> PathBuf {
        given
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os(self.firmware_env).map(PathBuf::from))
            .unwrap_or_else(|| root().join(self.firmware_default))
    }

    /// The BIF: the firmware partitions from `firmware_dir`, then the
    /// Bulkhead image `image` as a raw binary. bootgen takes an ELF's entry
    /// from `e_entry`, and Bulkhead is a position-independent image linked
    /// at 0: it is handed over as a binary with its load and start address
    /// given, the board's `image_base`, and started at EL2 (non-secure).
    pub fn bif(&self, image_base: u64, firmware_dir: &Path, image: &Path) -> String {
        let mut s = format!(
            "// BOOT.BIN for Bulkhead on the {} (written by `cargo xtask image --bif`;\n\
             // docs/boards/{}.md). Pack it with:\n\
             //   bootgen -arch {} -image {BIF_NAME} -o BOOT.BIN -w on\n\
             the_ROM_image:\n{{\n",
            self.board, self.board, self.arch
        );
        for (attrs, file) in self.firmware {
            s.push_str(&format!(
                "\t[{attrs}] {}\n",
                firmware_dir.join(file).display()
            ));
        }
        s.push_str(&format!(
            "\t[destination_cpu=a53-0, exception_level=el-2, load={image_base:#x}, startup={image_base:#x}] {}\n}}\n",
            image.display()
        ));
        s
    }
}

/// What `--bif` wrote, and the firmware files it names that are missing.
#[derive(Debug)]
pub struct BifFiles {
    pub image: PathBuf,
    pub bif: PathBuf,
    pub missing: Vec<PathBuf>,
    pub layout: &'static BootBin,
}

/// `cargo xtask image CONFIG --bif DIR`: build the image of `config` and
/// write it and the BIF for its board into `dir`.
pub fn bif_image(config: &Path, dir: &Path, firmware_dir: Option<&Path>) -> Result<BifFiles> {
    let board = board_of_config(config)?;
    let layout = boot_bin_for(board.name)?;
    let img = build(config)?;
    write_bif(layout, board, &img, dir, firmware_dir)
}

/// Write `bulkhead.img` (a copy of `image`) and `boot.bif` into `dir`.
pub fn write_bif(
    layout: &'static BootBin,
    board: &Board,
    image: &Path,
    dir: &Path,
    firmware_dir: Option<&Path>,
) -> Result<BifFiles> {
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let fw = layout.firmware_dir(firmware_dir);
    let fw = fw.canonicalize().unwrap_or(fw);
    let files = BifFiles {
        image: dir.join(IMAGE_NAME),
        bif: dir.join(BIF_NAME),
        missing: layout
            .firmware
            .iter()
            .map(|(_, f)| fw.join(f))
            .filter(|p| !p.is_file())
            .collect(),
        layout,
    };
    fs::copy(image, &files.image)
        .map_err(|e| format!("cannot copy {} to {}: {e}", image.display(), dir.display()))?;
    fs::write(&files.bif, layout.bif(board.image_base, &fw, &files.image))?;
    Ok(files)
}

/// The board a config is for, by compiling it.
fn board_of_config(config: &Path) -> Result<&'static Board> {
    let blob = image::compile_dts(config)?;
    image::board_of(&blob).ok_or_else(|| {
        format!(
            "{}: names no board that board-support has (boards: {}); `cargo xtask check` says more",
            config.display(),
            image::board_names()
        )
        .into()
    })
}

/// Build the image of `config` (as `cargo xtask build` does, to its usual
/// path) and return that path.
fn build(config: &Path) -> Result<PathBuf> {
    image::build_binaries()?;
    let out = image::image_path(config);
    image::build_image(config, &out, Tamper::None)?;
    Ok(out)
}

/// `cargo xtask image CONFIG --sd OUT`: build the image of `config` and
/// write the SD card image for its board. The board and the firmware files
/// are checked before anything is built. Returns the Bulkhead image's path.
pub fn sd_image(config: &Path, out: &Path, opts: &SdOptions) -> Result<PathBuf> {
    let board = board_of_config(config)?;
    let card = sd_card_for(board.name)?;
    card.inputs(opts)?;
    tools::ensure_packaged(&[MKFS_VFAT, MCOPY])?;
    let img = build(config)?;
    write_sd(card, board, &img, out, opts)?;
    Ok(img)
}

/// Write the SD card image `out` for `card` with `image` as the Bulkhead image.
pub fn write_sd(
    card: &SdCard,
    board: &Board,
    image: &Path,
    out: &Path,
    opts: &SdOptions,
) -> Result<()> {
    let mut files = card.inputs(opts)?;
    let staging = staging_dir(out)?;
    let config = staging.join(card.config_name);
    fs::write(
        &config,
        (card.config)(board.image_base, opts.armstub.is_some()),
    )?;
    files.insert(0, (card.config_name.to_string(), config));
    files.insert(1, (IMAGE_NAME.to_string(), image.to_path_buf()));
    let r = write_fat_disk(out, card.label, &files);
    let _ = fs::remove_dir_all(&staging);
    r
}

/// The U-Boot script that boots Bulkhead for `board`: load the image from
/// the partition distro boot found the script on (`devtype`, `devnum`,
/// `distro_bootpart` and `prefix` are set by `distro_bootcmd` and by
/// standard boot's script method) to the board's `image_base`, and `booti`
/// it with U-Boot's own device tree. The Image header says "may be placed
/// anywhere" (flags bit 3), so booti runs it where it was loaded when that
/// is 2 MiB aligned, which every board's `image_base` is.
pub fn uboot_script(board: &Board) -> String {
    let at = board.image_base;
    format!(
        "echo \"bulkhead: loading ${{prefix}}{IMAGE_NAME} from ${{devtype}} ${{devnum}}:${{distro_bootpart}} to {at:#x} (board {})\"\n\
         load ${{devtype}} ${{devnum}}:${{distro_bootpart}} {at:#x} ${{prefix}}{IMAGE_NAME}\n\
         booti {at:#x} - ${{fdtcontroladdr}}\n",
        board.name
    )
}

/// What `--uboot` wrote.
#[derive(Debug)]
pub struct UbootFiles {
    pub image: PathBuf,
    pub script: PathBuf,
    pub disk: PathBuf,
}

/// `cargo xtask image CONFIG --uboot DIR`: build the image of `config`
/// and write the U-Boot boot files for its board into `dir`.
pub fn uboot_image(config: &Path, dir: &Path) -> Result<UbootFiles> {
    let board = board_of_config(config)?;
    tools::ensure_packaged(&[MKFS_VFAT, MCOPY, MKIMAGE])?;
    let img = build(config)?;
    write_uboot(board, &img, dir)
}

/// Write `bulkhead.img` (a copy of `image`), `boot.cmd`, `boot.scr` and
/// `disk.img` (an MBR disk whose FAT partition holds the image and the
/// script) into `dir`.
pub fn write_uboot(board: &Board, image: &Path, dir: &Path) -> Result<UbootFiles> {
    let found = tools::ensure_packaged(&[MKIMAGE])?;
    let [mkimage] = &found[..] else {
        unreachable!("one tool asked for")
    };
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let files = UbootFiles {
        image: dir.join(IMAGE_NAME),
        script: dir.join(UBOOT_SCRIPT),
        disk: dir.join(UBOOT_DISK),
    };
    fs::copy(image, &files.image)
        .map_err(|e| format!("cannot copy {} to {}: {e}", image.display(), dir.display()))?;
    let source = dir.join(UBOOT_SCRIPT_SOURCE);
    fs::write(&source, uboot_script(board))?;
    run_quiet(
        Command::new(mkimage)
            .args(["-A", "arm64", "-O", "linux", "-T", "script", "-C", "none"])
            .args(["-n", "bulkhead boot script", "-d"])
            .arg(&source)
            .arg(&files.script),
        "mkimage (making boot.scr)",
    )?;
    write_fat_disk(
        &files.disk,
        "BULKHEAD",
        &[
            (UBOOT_SCRIPT.to_string(), files.script.clone()),
            (IMAGE_NAME.to_string(), files.image.clone()),
        ],
    )?;
    Ok(files)
}

/// A scratch directory next to `out`.
fn staging_dir(out: &Path) -> Result<PathBuf> {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "image".into());
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join(format!(".{name}.staging"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

/// Size of the partition holding `files`: their clusters (4 KiB at most
/// each, 1 MiB headroom for FAT and directories), doubled for room to
/// replace files on the card, at least [`MIN_PARTITION`], whole MiB.
pub fn partition_size(file_sizes: impl IntoIterator<Item = u64>) -> u64 {
    let data: u64 = file_sizes
        .into_iter()
        .map(|s| s.next_multiple_of(4096))
        .sum();
    ((data + (1 << 20)) * 2)
        .max(MIN_PARTITION)
        .next_multiple_of(1 << 20)
}

/// Write a disk image `out`: an MBR with one bootable FAT32 (LBA)
/// partition from [`PARTITION_START`] holding `files` (name on the disk,
/// source) in its root directory.
pub fn write_fat_disk(out: &Path, label: &str, files: &[(String, PathBuf)]) -> Result<()> {
    let found = tools::ensure_packaged(&[MKFS_VFAT, MCOPY])?;
    let [mkfs, mcopy] = &found[..] else {
        unreachable!("two tools asked for")
    };
    let mut sizes = Vec::new();
    for (_, src) in files {
        sizes.push(
            fs::metadata(src)
                .map_err(|e| format!("{}: {e}", src.display()))?
                .len(),
        );
    }
    let part = partition_size(sizes);
    if let Some(dir) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    {
        let mut f =
            fs::File::create(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
        f.set_len(PARTITION_START + part)?;
        f.seek(SeekFrom::Start(0))?;
        f.write_all(&mbr(
            PARTITION_START / SECTOR,
            part / SECTOR,
            PARTITION_TYPE_FAT32_LBA,
        ))?;
    }
    let start = (PARTITION_START / SECTOR).to_string();
    run_quiet(
        Command::new(mkfs)
            .args(["-F", "32", "-S", "512", "-n", label, "-i", VOLUME_ID])
            .args(["-h", &start, "--offset", &start])
            .arg(out)
            .arg((part / 1024).to_string()),
        "mkfs.vfat (making the FAT partition)",
    )?;
    let fat = format!("{}@@{}", out.display(), PARTITION_START);
    for (name, src) in files {
        run_quiet(
            Command::new(mcopy)
                .env("MTOOLS_SKIP_CHECK", "1")
                .args(["-i", &fat])
                .arg(src)
                .arg(format!("::{name}")),
            &format!("mcopy (copying {} in as {name})", src.display()),
        )?;
    }
    Ok(())
}

/// A classic MBR with one bootable partition of `sectors` sectors from
/// `start` (LBA), of type `kind`; no boot code (the boards' ROMs and U-Boot
/// read the table, not the code).
pub fn mbr(start: u64, sectors: u64, kind: u8) -> [u8; 512] {
    let mut m = [0u8; 512];
    m[440..444].copy_from_slice(&DISK_SIGNATURE.to_le_bytes());
    let e = &mut m[446..462];
    e[0] = 0x80; // bootable
    e[1..4].copy_from_slice(&chs(start));
    e[4] = kind;
    e[5..8].copy_from_slice(&chs(start + sectors - 1));
    e[8..12].copy_from_slice(&(start as u32).to_le_bytes());
    e[12..16].copy_from_slice(&(sectors as u32).to_le_bytes());
    m[510] = 0x55;
    m[511] = 0xaa;
    m
}

/// The CHS address of `lba` in an MBR entry (255 heads, 63 sectors per
/// track; past cylinder 1023, the conventional 1023/254/63).
fn chs(lba: u64) -> [u8; 3] {
    let (c, h, s) = (lba / (255 * 63), (lba / 63) % 255, lba % 63 + 1);
    let (c, h, s) = if c > 1023 { (1023, 254, 63) } else { (c, h, s) };
    [h as u8, (s as u8) | (((c >> 8) as u8) << 6), c as u8]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbr_has_one_bootable_lba_partition() {
        let m = mbr(2048, 131072, PARTITION_TYPE_FAT32_LBA);
        assert_eq!(&m[510..], &[0x55, 0xaa]);
        assert_eq!(m[446], 0x80);
        assert_eq!(m[450], 0x0c);
        assert_eq!(u32::from_le_bytes(m[454..458].try_into().unwrap()), 2048);
        assert_eq!(u32::from_le_bytes(m[458..462].try_into().unwrap()), 131072);
        // 2048 = head 32, sector 33 of cylinder 0.
        assert_eq!(&m[447..450], &[32, 33, 0]);
        assert!(m[462..510].iter().all(|&b| b == 0), "one entry only");
    }

    #[test]
    fn chs_saturates_past_cylinder_1023() {
        assert_eq!(chs(u64::from(u32::MAX)), [254, 0xff, 0xff]);
        assert_eq!(chs(0), [0, 1, 0]);
    }

    #[test]
    fn partitions_hold_their_files_with_room() {
        assert_eq!(partition_size([100]), MIN_PARTITION);
        let big = partition_size([100 << 20]);
        assert!(big >= 200 << 20 && big.is_multiple_of(1 << 20), "{big:#x}");
    }

    #[test]
    fn rpi4_config_loads_at_the_image_base() {
        let c = (RPI4.config)(0x20_0000, false);
        for l in [
            "arm_64bit=1",
            "enable_gic=1",
            "kernel=bulkhead.img",
            "kernel_address=0x200000",
            "enable_uart=1",
            "uart_2ndstage=1",
            "dtoverlay=disable-bt",
        ] {
            assert!(c.lines().any(|x| x == l), "{l} in\n{c}");
        }
        assert!(!c.contains("armstub="));
        assert!((RPI4.config)(0x20_0000, true)
            .lines()
            .any(|x| x == "armstub=bl31.bin"));
    }

    #[test]
    fn the_uboot_script_boots_the_imx8mp_evk_at_its_image_base() {
        let s = uboot_script(&board_support::imx8mp_evk::BOARD);
        let lines: Vec<_> = s.lines().collect();
        assert!(
            lines[1].starts_with("load ${devtype} ${devnum}:${distro_bootpart} 0x40200000 "),
            "{s}"
        );
        assert_eq!(lines[2], "booti 0x40200000 - ${fdtcontroladdr}");
        // booti runs an Image in place only when it is 2 MiB aligned.
        assert_eq!(board_support::imx8mp_evk::BOARD.image_base % (2 << 20), 0);
    }

    #[test]
    fn zcu102_bif_starts_bulkhead_at_el2_at_the_image_base() {
        let bif = ZCU102.bif(0x20_0000, Path::new("/fw"), Path::new("/out/bulkhead.img"));
        let parts: Vec<&str> = bif
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with('['))
            .collect();
        assert_eq!(
            parts,
            [
                "[bootloader, destination_cpu=a53-0] /fw/fsbl.elf",
                "[pmufw_image] /fw/pmufw.elf",
                "[destination_cpu=a53-0, exception_level=el-3, trustzone] /fw/bl31.elf",
                "[destination_cpu=a53-0, exception_level=el-2, load=0x200000, startup=0x200000] /out/bulkhead.img",
            ],
            "{bif}"
        );
        assert!(bif.contains("the_ROM_image:\n{\n") && bif.trim_end().ends_with('}'));
        assert!(boot_bin_for("zcu102").is_ok());
        let e = boot_bin_for("rpi4").unwrap_err().to_string();
        assert!(e.contains("\"rpi4\"") && e.contains("\"zcu102\""), "{e}");
    }

    #[test]
    fn only_boards_with_a_layout_get_an_sd_card() {
        assert!(sd_card_for("rpi4").is_ok());
        let e = sd_card_for("qemu-virt").unwrap_err().to_string();
        assert!(e.contains("\"qemu-virt\"") && e.contains("\"rpi4\""), "{e}");
    }
}
