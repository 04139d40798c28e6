//! Building a bootable image: compile the config with dtc, build the firmware
//! and the domains, check the config exactly as the firmware will, and pack
//! firmware + package (config and images) into one arm64 `Image`.

use std::cell::RefCell;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use bulkhead_core::board::partitioner_footprint;
use bulkhead_core::package;
use bulkhead_core::plan::Plan;
use bulkhead_core::validate::{self, Errors, Layout};

use crate::{cargo, root, run_quiet, target_dir, Result};

/// Target the firmware is built for: soft-float, so EL2 code never touches
/// the FP/SIMD registers that belong to the domain it interrupted.
pub const FIRMWARE_TARGET: &str = "aarch64-unknown-none-softfloat";
/// Target of the bare-metal domains.
pub const DOMAIN_TARGET: &str = "aarch64-unknown-none";
/// Domain crates built for `image = "domain:<bin>"`.
pub const DOMAIN_CRATES: &[&str] = &["domain-hello", "domain-probe", "domain-irq"];

/// Image header fields filled in here (see `partitioner/firmware/src/boot.rs`).
const HEADER_IMAGE_SIZE: usize = 16;
const HEADER_PACKAGE_OFFSET: usize = 32;
/// The package starts on this boundary after the firmware's memory image.
const PACKAGE_ALIGN: usize = 64 * 1024;

/// The board a config is for when it names none that `board-support` has
/// (the check then reports the config's problem).
pub const DEFAULT_BOARD: &str = "qemu-virt";

/// Build the firmware for the default board and the domain programs (once;
/// cargo skips work already done). Other boards' firmware is built when an
/// image for them is ([`firmware_image_for`]).
pub fn build_binaries() -> Result<()> {
    crate::tools::ensure_rust()?;
    build_firmware(DEFAULT_BOARD)?;
    let mut c = cargo();
    c.args(["build", "--release", "--target", DOMAIN_TARGET]);
    for d in DOMAIN_CRATES {
        c.args(["-p", d]);
    }
    run_quiet(&mut c, "building the domains")
}

/// Build the firmware for `board` (once per process; cargo skips work
/// already done). The firmware picks its board at compile time
/// (`BULKHEAD_BOARD`): every board shares one target directory (so the
/// dependencies are built once), cargo rebuilds only the firmware crate
/// when the board changes, and each board's ELF is copied to a place of its
/// own ([`firmware_elf_for`]).
pub fn build_firmware(board: &str) -> Result<PathBuf> {
    use std::sync::Mutex;
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    if board_support::by_name(board).is_none() {
        return Err(format!(
            "no board \"{board}\" in board-support (boards: {})",
            board_names()
        )
        .into());
    }
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !built.iter().any(|b| b == board) {
        crate::tools::ensure_rust()?;
        let dir = target_dir().join("firmware");
        run_quiet(
            cargo()
                .args(["build", "--release", "-p", "bulkhead", "--target"])
                .arg(FIRMWARE_TARGET)
                .arg("--target-dir")
                .arg(&dir)
                .env("BULKHEAD_BOARD", board),
            &format!("building the firmware for board \"{board}\""),
        )?;
        let built_elf = dir.join(FIRMWARE_TARGET).join("release").join("bulkhead");
        let out = firmware_elf_for(board);
        if let Some(parent) = out.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::copy(&built_elf, &out)
            .map_err(|e| format!("copying {} to {}: {e}", built_elf.display(), out.display()))?;
        built.push(board.to_string());
    }
    Ok(firmware_elf_for(board))
}

/// Every board's name, for messages.
pub fn board_names() -> String {
    board_support::BOARDS
        .iter()
        .map(|b| b.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The firmware ELF for `board` (built by [`build_firmware`]).
pub fn firmware_elf_for(board: &str) -> PathBuf {
    target_dir()
        .join("firmware")
        .join("boards")
        .join(board)
        .join("bulkhead")
}

/// The firmware ELF for the default board.
pub fn firmware_elf() -> PathBuf {
    firmware_elf_for(DEFAULT_BOARD)
}

/// The board a compiled config names, if `board-support` has it.
pub fn board_of(blob: &[u8]) -> Option<&'static bulkhead_core::board::Board> {
    let mut errors = Errors::new();
    bulkhead_core::config::parse_into(blob, &mut errors)
        .and_then(|c| board_support::by_name(c.board))
}

/// Compile a `.dts` config into a blob with dtc.
pub fn compile_dts(dts: &Path) -> Result<Vec<u8>> {
    crate::tools::ensure_dtc()?;
    let out = Command::new("dtc")
        .args(["-I", "dts", "-O", "dtb", "-q"])
        .arg(dts)
        .output()
        .map_err(|e| format!("cannot run dtc: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{}: dtc could not compile it:\n{}",
            dts.display(),
            String::from_utf8_lossy(&out.stderr).trim_end()
        )
        .into());
    }
    Ok(out.stdout)
}

/// Where an `image` property points: `domain:<bin>` is a bare-metal domain
/// built from `domains/`, `linux:kernel` and `linux:initramfs` the Debian
/// Linux guest (fetched and built on first use, see `linux.rs`), anything
/// else a file relative to the config.
pub fn resolve_image(config: &Path, image: &str) -> PathBuf {
    if let Some(bin) = image.strip_prefix("domain:") {
        return target_dir().join(DOMAIN_TARGET).join("release").join(bin);
    }
    if let Some(part) = image.strip_prefix("linux:") {
        // A path that does not exist if the guest cannot be made (the error
        // is printed once), so the check reports the image as missing.
        return crate::linux::image_path(part);
    }
    config.parent().unwrap_or(Path::new(".")).join(image)
}

/// The bytes to load for an image: ELF files are flattened to their memory
/// image (from the lowest loaded address), `.dts` files are compiled, anything
/// else is loaded as is.
pub fn load_image(path: &Path) -> std::result::Result<Vec<u8>, String> {
    if path.extension().is_some_and(|e| e == "dts") {
        // A hand-written device tree source: compiled here.
        return compile_dts(path).map_err(|e| e.to_string());
    }
    let bytes = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.starts_with(b"\x7fELF") {
        crate::elf::flatten(&bytes)
            .map(|(_, img)| img)
            .map_err(|e| format!("{}: {e}", path.display()))
    } else {
        Ok(bytes)
    }
}

/// Outcome of checking a config on the host.
pub struct Checked {
    pub plan: Plan,
    pub blob: Vec<u8>,
    /// Each domain's image, in config order.
    pub images: Vec<(String, Vec<u8>)>,
}

/// A config the check refused.
pub struct Rejected {
    pub errors: Box<Errors>,
    /// Problems of hand-written device trees (`device-tree`), one line each.
    pub trees: Vec<String>,
    /// `(domain, image)` pairs the config names, for packing it anyway (tests).
    pub images: Vec<(String, String)>,
}

/// An image looked up during a check: domain, image string, contents if found.
type Seen = (String, String, Option<Vec<u8>>);

/// Check a compiled config exactly as the firmware will at boot, given the
/// firmware's size (which decides the partitioner's footprint).
pub fn check_blob(
    config: &Path,
    blob: Vec<u8>,
    firmware_len: u64,
) -> std::result::Result<Checked, Rejected> {
    let board = board_of(&blob).map_or(DEFAULT_BOARD, |b| b.name);
    let seen: RefCell<Vec<Seen>> = RefCell::new(Vec::new());
    let image_size = |domain: &str, image: &str| -> Option<u64> {
        let mut seen = seen.borrow_mut();
        if let Some((_, _, img)) = seen.iter().find(|(d, i, _)| d == domain && i == image) {
            return img.as_ref().map(|b| package::load_size(b));
        }
        let img = load_image(&resolve_image(config, image)).ok();
        let len = img.as_ref().map(|b| package::load_size(b));
        seen.push((domain.to_string(), image.to_string(), img));
        len
    };
    // The footprint depends on the package size, which depends on the images:
    // size the package from the images first, then check with that layout.
    let first = validate::check(
        &blob,
        &board_support::by_name,
        &layout_for(board, firmware_len, 0),
        &image_size,
    );
    let images: Vec<(String, Vec<u8>)> = seen
        .borrow()
        .iter()
        .filter_map(|(d, i, img)| {
            img.clone()
                .map(|b| (package::entry_name(&blob, d, i).to_string(), b))
        })
        .collect();
    let refs: Vec<(&str, &[u8])> = images
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    let pkg_len = package::build(&blob, &refs)
        .map(|p| p.len() as u64)
        .unwrap_or(0);
    drop(first);
    let result = validate::check(
        &blob,
        &board_support::by_name,
        &layout_for(board, firmware_len, pkg_len),
        &image_size,
    );
    let names = seen
        .borrow()
        .iter()
        .map(|(d, i, _)| (package::entry_name(&blob, d, i).to_string(), i.clone()))
        .collect();
    match result {
        Ok(plan) => {
            // Hand-written device trees may only name what their domain owns.
            let mut trees = Vec::new();
            for d in &plan.domains {
                let name = bulkhead_core::plan::dtb_name(&d.name);
                if let Some((_, tree)) = images.iter().find(|(n, _)| n.as_str() == name.as_str()) {
                    if let Err(problems) = bulkhead_core::dtb_check::check_supplied(d, None, tree) {
                        for p in problems.iter() {
                            trees.push(format!("domain \"{}\": device-tree: {p}", d.name));
                        }
                    }
                }
            }
            if trees.is_empty() {
                Ok(Checked { plan, blob, images })
            } else {
                Err(Rejected {
                    errors: Box::new(Errors::new()),
                    trees,
                    images: names,
                })
            }
        }
        Err(e) => Err(Rejected {
            errors: Box::new(e),
            trees: Vec::new(),
            images: names,
        }),
    }
}

/// The partitioner's footprint in RAM for a checked config's image (the
/// firmware of `firmware_len` bytes followed by the config's package).
pub fn footprint(c: &Checked, firmware_len: u64) -> Result<bulkhead_core::board::Range> {
    let refs: Vec<(&str, &[u8])> = c
        .images
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    let pkg = package::build(&c.blob, &refs)?;
    let board = board_of(&c.blob).map_or(DEFAULT_BOARD, |b| b.name);
    Ok(layout_for(board, firmware_len, pkg.len() as u64).partitioner)
}

/// The partitioner's footprint for a firmware of `firmware_len` bytes plus a
/// package of `package_len` bytes, loaded where `board`'s loader puts it.
pub fn layout_for(board: &str, firmware_len: u64, package_len: u64) -> Layout {
    let total = firmware_len.next_multiple_of(PACKAGE_ALIGN as u64) + package_len;
    let base = board_support::by_name(board)
        .map_or(board_support::qemu_virt::LOAD_ADDRESS, |b| b.image_base);
    Layout {
        partitioner: partitioner_footprint(base, total),
    }
}

/// The default board's firmware memory image (see [`firmware_image_for`]).
pub fn firmware_image() -> Result<Vec<u8>> {
    firmware_image_for(DEFAULT_BOARD)
}

/// Bytes of the firmware image for the board a compiled config names (the
/// default board's for a config naming none the checker knows, which it
/// then refuses): what the partitioner occupies before the package, so
/// the host check places domains exactly where that board's firmware will.
pub fn firmware_len_for_config(blob: &[u8]) -> Result<u64> {
    let board = board_of(blob).map_or(DEFAULT_BOARD, |b| b.name);
    Ok(firmware_image_for(board)?.len() as u64)
}

/// The firmware's memory image for `board` (with .bss as zeros), padded to
/// where the package goes; built first if needed.
pub fn firmware_image_for(board: &str) -> Result<Vec<u8>> {
    let path = build_firmware(board)?;
    let elf = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (base, mut img) = crate::elf::flatten(&elf).map_err(|e| format!("firmware ELF: {e}"))?;
    if base != 0 {
        return Err(format!(
            "firmware linked at {base:#x}: it must be linked at 0 (it relocates itself)"
        )
        .into());
    }
    if img.len() < 64 || &img[56..60] != b"ARM\x64" {
        return Err("firmware has no arm64 Image header".into());
    }
    img.resize(img.len().next_multiple_of(PACKAGE_ALIGN), 0);
    Ok(img)
}

/// Test-only ways to damage an image, to prove the firmware refuses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tamper {
    None,
    /// Skip the host check (the firmware must catch the problem itself).
    Unchecked,
    /// Cut the config blob short (with a matching checksum).
    TruncateConfig,
    /// Flip a byte of the config after checksumming.
    CorruptConfig,
    /// Flip a byte of this domain's image after checksumming.
    CorruptImage(&'static str),
}

/// Build `config` into a bootable image at `out`. Returns the plan (None when
/// the check was skipped).
pub fn build_image(config: &Path, out: &Path, tamper: Tamper) -> Result<Option<Plan>> {
    build_image_from_blob(config, compile_dts(config)?, out, tamper)
}

/// [`build_image`] of an already compiled config `blob` (images named in it
/// are found relative to `config`), e.g. one rewritten by the audit.
pub fn build_image_from_blob(
    config: &Path,
    blob: Vec<u8>,
    out: &Path,
    tamper: Tamper,
) -> Result<Option<Plan>> {
    let fw = firmware_image_for(board_of(&blob).map_or(DEFAULT_BOARD, |b| b.name))?;
    let (plan, blob, images) = if tamper == Tamper::None {
        match check_blob(config, blob, fw.len() as u64) {
            Ok(c) => (Some(c.plan), c.blob, c.images),
            Err(r) => {
                return Err(crate::report_rejected(config, &r).into());
            }
        }
    } else {
        // Pack whatever images the config names, without judging it.
        let images = match check_blob(config, blob.clone(), fw.len() as u64) {
            Ok(c) => c.images,
            Err(r) => r
                .images
                .iter()
                .filter_map(|(d, i)| {
                    load_image(&resolve_image(config, i))
                        .ok()
                        .map(|b| (d.clone(), b))
                })
                .collect(),
        };
        let blob = match tamper {
            Tamper::TruncateConfig => blob[..blob.len() / 2].to_vec(),
            _ => blob,
        };
        (None, blob, images)
    };
    let refs: Vec<(&str, &[u8])> = images
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    let mut pkg = package::build(&blob, &refs)?;
    if tamper == Tamper::CorruptConfig {
        let cfg_off = u64::from_le_bytes(pkg[24..32].try_into().expect("8 bytes")) as usize;
        pkg[cfg_off + 8] ^= 0x55;
    }
    if let Tamper::CorruptImage(domain) = tamper {
        let at = {
            let p = package::Package::parse(&pkg).map_err(|e| e.to_string())?;
            let image = p
                .image(domain)
                .ok_or(format!("no image of domain \"{domain}\" to corrupt"))?;
            image.as_ptr() as usize - pkg.as_ptr() as usize + image.len() / 2
        };
        pkg[at] ^= 0x55;
    }
    let mut img = fw;
    let pkg_off = img.len() as u64;
    img.extend_from_slice(&pkg);
    let total = img.len() as u64;
    img[HEADER_IMAGE_SIZE..HEADER_IMAGE_SIZE + 8].copy_from_slice(&total.to_le_bytes());
    img[HEADER_PACKAGE_OFFSET..HEADER_PACKAGE_OFFSET + 8].copy_from_slice(&pkg_off.to_le_bytes());
    if let Some(dir) = out.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(out, &img)?;
    Ok(plan)
}

/// Where `build` puts the image for a config.
pub fn image_path(config: &Path) -> PathBuf {
    let stem = config
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("image");
    target_dir().join("bulkhead").join(format!("{stem}.img"))
}

/// The default configuration.
pub fn default_config() -> PathBuf {
    root().join("configs/qemu-virt/default.dts")
}
