//! The external tools Bulkhead needs (QEMU 10, dtc, the Rust targets): found,
//! or installed when this machine allows it (root with apt), or a clear
//! message that says exactly what to install.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::{run_quiet, Result};

pub const QEMU: &str = "qemu-system-aarch64";
/// Oldest QEMU with two PL011 UARTs on `virt` and the board models we use.
pub const QEMU_MIN_MAJOR: u32 = 10;

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(tool))
            .find(|p| p.is_file())
    })
}

fn qemu_major() -> Option<u32> {
    let out = Command::new(QEMU).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text.split("version ").nth(1)?;
    v.split('.').next()?.trim().parse().ok()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn debian_codename() -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|s| s.trim_matches('"').to_string())
}

const BACKPORTS_SOURCES: &str = "/etc/apt/sources.list.d/bulkhead-backports.sources";

fn apt_install(args: &[&str]) -> Result<()> {
    let mut cmd = Command::new("apt-get");
    cmd.env("DEBIAN_FRONTEND", "noninteractive")
        .arg("install")
        .arg("-y")
        .arg("-q")
        .args(args);
    run_quiet(&mut cmd, "apt-get install")
}

/// Make sure dtc and QEMU >= 10 are present, installing them on a Debian
/// machine where we are root; otherwise fail naming the missing tool.
pub fn ensure() -> Result<()> {
    let need_dtc = which("dtc").is_none();
    let qemu = qemu_major();
    let need_qemu = qemu.is_none_or(|m| m < QEMU_MIN_MAJOR);
    if !need_dtc && !need_qemu {
        return Ok(());
    }
    let what = match (need_dtc, qemu) {
        (true, _) if !need_qemu => "dtc (Debian package device-tree-compiler)".to_string(),
        (_, None) => format!("{QEMU} {QEMU_MIN_MAJOR} or newer (Debian bookworm-backports: qemu-system-arm)"),
        (_, Some(m)) => format!("{QEMU} {QEMU_MIN_MAJOR} or newer (found {m}; Debian bookworm-backports: qemu-system-arm)"),
    };
    let apt = which("apt-get").is_some();
    if !apt || !is_root() {
        return Err(format!(
            "missing {what}. On Debian bookworm, as root: add the bookworm-backports suite to apt's sources, then \
             `apt-get install -t bookworm-backports qemu-system-arm device-tree-compiler`"
        )
        .into());
    }
    eprintln!("xtask: installing {what}");
    let codename = debian_codename().unwrap_or_else(|| "bookworm".into());
    if need_qemu && !std::path::Path::new(BACKPORTS_SOURCES).exists() {
        std::fs::write(
            BACKPORTS_SOURCES,
            format!(
                "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: {codename}-backports\nComponents: main\n\
                 Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
            ),
        )
        .map_err(|e| format!("cannot add {codename}-backports to apt's sources ({BACKPORTS_SOURCES}): {e}"))?;
    }
    run_quiet(
        Command::new("apt-get").args(["update", "-q"]),
        "apt-get update",
    )?;
    if need_dtc {
        apt_install(&["device-tree-compiler"])?;
    }
    if need_qemu {
        let suite = format!("{codename}-backports");
        apt_install(&["-t", &suite, "qemu-system-arm"])?;
    }
    match qemu_major() {
        Some(m) if m >= QEMU_MIN_MAJOR => {}
        found => {
            return Err(format!(
                "installed QEMU is still too old ({found:?}); need {QEMU_MIN_MAJOR}+"
            )
            .into())
        }
    }
    if which("dtc").is_none() {
        return Err("dtc is still missing after installing device-tree-compiler".into());
    }
    Ok(())
}

/// dtc alone (for `check`, which needs no QEMU).
pub fn ensure_dtc() -> Result<()> {
    if which("dtc").is_some() {
        return Ok(());
    }
    ensure()
}

/// Check that a tool answers at all (used for error messages).
pub fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// The `[toolchain]` table of `rust-toolchain.toml`: its channel, targets
/// and components (a small reader: the file is ours and flat).
fn pinned_toolchain() -> Result<(String, Vec<String>, Vec<String>)> {
    let path = crate::root().join("rust-toolchain.toml");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let value = |key: &str| {
        text.lines()
            .find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == key).then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    let list = |v: String| -> Vec<String> {
        v.trim_matches(|c| c == '[' || c == ']')
            .split(',')
            .map(|s| s.trim().trim_matches('"').to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let channel = value("channel").trim_matches('"').to_string();
    if channel.is_empty() {
        return Err(format!("{}: no channel", path.display()).into());
    }
    Ok((channel, list(value("targets")), list(value("components"))))
}

/// Make sure the pinned toolchain has the targets and components that
/// `rust-toolchain.toml` lists. rustup installs a missing toolchain with
/// them, but not the targets of a toolchain it already has, so an existing
/// one is completed here with `rustup target add` / `rustup component add`.
pub fn ensure_rust() -> Result<()> {
    let (channel, targets, components) = pinned_toolchain()?;
    let sysroot = Command::new("rustc")
        .current_dir(crate::root())
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("cannot run rustc: {e} (install Rust with rustup)"))?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    let missing: Vec<&str> = targets
        .iter()
        .filter(|t| !sysroot.join("lib/rustlib").join(t).join("lib").is_dir())
        .map(String::as_str)
        .collect();
    let component_missing = |c: &str| match c {
        "clippy" => !sysroot.join("bin/cargo-clippy").is_file(),
        "rustfmt" => !sysroot.join("bin/rustfmt").is_file(),
        "llvm-tools" | "llvm-tools-preview" => std::fs::read_dir(sysroot.join("lib/rustlib"))
            .map(|dirs| {
                !dirs
                    .flatten()
                    .any(|d| d.path().join("bin/llvm-objcopy").is_file())
            })
            .unwrap_or(true),
        _ => false,
    };
    let missing_components: Vec<&str> = components
        .iter()
        .filter(|c| component_missing(c))
        .map(String::as_str)
        .collect();
    if missing.is_empty() && missing_components.is_empty() {
        return Ok(());
    }
    if which("rustup").is_none() {
        return Err(format!(
            "the Rust toolchain lacks {:?} {:?}, and rustup is not installed to add them",
            missing, missing_components
        )
        .into());
    }
    if !missing.is_empty() {
        eprintln!("xtask: adding Rust targets {missing:?} to toolchain {channel}");
        run_quiet(
            Command::new("rustup")
                .current_dir(crate::root())
                .args(["target", "add", "--toolchain", &channel])
                .args(&missing),
            "rustup target add",
        )?;
    }
    if !missing_components.is_empty() {
        eprintln!("xtask: adding Rust components {missing_components:?} to toolchain {channel}");
        run_quiet(
            Command::new("rustup")
                .current_dir(crate::root())
                .args(["component", "add", "--toolchain", &channel])
                .args(&missing_components),
            "rustup component add",
        )?;
    }
    Ok(())
}

/// A file an external Debian package provides, for the commands that need
/// it ([`ensure_packaged`]).
#[derive(Clone, Copy, Debug)]
pub struct Packaged {
    /// A program looked up in `PATH` (and `/usr/sbin`, `/sbin`, where
    /// `mkfs.vfat` lives), or an absolute path.
    pub file: &'static str,
    /// The Debian package that has it.
    pub package: &'static str,
    /// What it is used for, for messages.
    pub purpose: &'static str,
}

/// `mkfs.vfat`: makes the FAT file system of SD card and disk images.
pub const MKFS_VFAT: Packaged = Packaged {
    file: "mkfs.vfat",
    package: "dosfstools",
    purpose: "making the FAT file system of a boot image",
};
/// `mcopy` (mtools): copies files into a FAT image without mounting it.
pub const MCOPY: Packaged = Packaged {
    file: "mcopy",
    package: "mtools",
    purpose: "copying files into a FAT image without root",
};
/// `mkimage` (u-boot-tools): makes U-Boot's `boot.scr`.
pub const MKIMAGE: Packaged = Packaged {
    file: "mkimage",
    package: "u-boot-tools",
    purpose: "making U-Boot's boot.scr",
};
/// U-Boot for QEMU `virt` (arm64), the firmware of the U-Boot boot test.
pub const UBOOT_QEMU_ARM64: Packaged = Packaged {
    file: "/usr/lib/u-boot/qemu_arm64/u-boot.bin",
    package: "u-boot-qemu",
    purpose: "U-Boot for QEMU virt (arm64)",
};
/// AMD's `bootgen`: packs a ZynqMP BOOT.BIN from the BIF `image --bif`
/// writes (only its tests run it).
pub const BOOTGEN: Packaged = Packaged {
    file: "bootgen",
    package: "xilinx-bootgen",
    purpose: "packing a ZynqMP BOOT.BIN",
};
/// Everything `cargo xtask image` and its tests need beyond QEMU and dtc.
pub const IMAGE_TOOLS: &[Packaged] = &[MKFS_VFAT, MCOPY, MKIMAGE, UBOOT_QEMU_ARM64, BOOTGEN];

/// Where a packaged file is, if it is installed.
pub fn find_packaged(p: &Packaged) -> Option<PathBuf> {
    if p.file.starts_with('/') {
        let path = PathBuf::from(p.file);
        return path.is_file().then_some(path);
    }
    which(p.file).or_else(|| {
        ["/usr/sbin", "/sbin"]
            .iter()
            .map(|d| std::path::Path::new(d).join(p.file))
            .find(|p| p.is_file())
    })
}

/// The paths of `needed`, installing their Debian packages first when
/// some are missing and this is a Debian machine where we are root;
/// otherwise an error naming every missing file and its package.
pub fn ensure_packaged(needed: &[Packaged]) -> Result<Vec<PathBuf>> {
    let missing: Vec<&Packaged> = needed
        .iter()
        .filter(|p| find_packaged(p).is_none())
        .collect();
    if !missing.is_empty() {
        let what = missing
            .iter()
            .map(|p| {
                format!(
                    "{} (Debian package {}, for {})",
                    p.file, p.package, p.purpose
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let mut packages: Vec<&str> = missing.iter().map(|p| p.package).collect();
        packages.dedup();
        if which("apt-get").is_none() || !is_root() {
            return Err(format!(
                "missing {what}. On Debian, as root: `apt-get install {}`",
                packages.join(" ")
            )
            .into());
        }
        eprintln!("xtask: installing {}", packages.join(" "));
        run_quiet(
            Command::new("apt-get").args(["update", "-q"]),
            "apt-get update",
        )?;
        apt_install(&packages)?;
    }
    needed
        .iter()
        .map(|p| {
            find_packaged(p).ok_or_else(|| {
                format!(
                    "{} is still missing after installing the Debian package {}",
                    p.file, p.package
                )
                .into()
            })
        })
        .collect()
}
