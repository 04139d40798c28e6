//! The Linux guest: an unmodified Debian arm64 kernel and a busybox initramfs
//! whose `/init` is `domains/linux/init`.
//!
//! [`ensure_guest`] fetches `linux-image-cloud-arm64:arm64` (whatever kernel
//! the metapackage currently depends on) and `busybox-static:arm64` with
//! `apt-get download`, unpacks them with `dpkg-deb -x`, turns the kernel's
//! `vmlinuz` into a raw arm64 `Image` and writes a `newc` cpio archive itself
//! (no `cpio` tool), with the kernel modules [`MODULES`] names (and those
//! they need) from the same kernel package. Everything lives under
//! `target/linux/`:
//!
//! ```text
//! target/linux/Image            the kernel, arm64 boot protocol Image
//! target/linux/initramfs.cpio   uncompressed newc archive
//! target/linux/guest.stamp      which packages these were made from
//! target/linux/cache/           the .deb files and the extracted busybox
//! target/linux/cache/modules/   the selected kernel modules, uncompressed
//! ```
//!
//! Later calls only ask apt (offline, from its package lists) which kernel
//! the metapackage depends on now, and reuse the cache when it is the same.
//! When apt cannot deliver (no network, not root, no apt at all) and a
//! complete cache exists, the cache is used with a warning.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::{root, target_dir, Result};

/// The metapackage that names Debian's current cloud kernel for arm64.
pub const KERNEL_METAPACKAGE: &str = "linux-image-cloud-arm64:arm64";
/// Statically linked busybox for arm64.
pub const BUSYBOX_PACKAGE: &str = "busybox-static:arm64";
/// Links to `/bin/busybox` in the initramfs: every applet `/init` uses and a
/// few more for poking around by hand (`/init` also runs `busybox --install -s`).
pub const APPLETS: &[&str] = &[
    "sh", "ash", "mount", "umount", "mkdir", "mknod", "cat", "echo", "ls", "grep", "sort", "tr",
    "head", "tail", "sed", "wc", "devmem", "reboot", "poweroff", "halt", "sleep", "nproc", "uname",
    "dmesg", "ps", "kill", "printf", "test", "[", "dd", "md5sum", "cut",
];

/// Kernel modules the initramfs carries, by name, each with every module it
/// needs (the `depends=` of its `.modinfo`, transitively), all from the
/// kernel's own package: drivers Debian's cloud kernel builds as modules
/// that a domain needs for a device it owns. They go under
/// `/lib/modules/<release>/` with a `modules.dep`, uncompressed, and `/init`
/// loads them on request (`bulkhead.modules=`, busybox `modprobe`). A name
/// the kernel builds in is left out.
pub const MODULES: &[&str] = &[
    // virtio over PCI, the transport of QEMU's `virtio-net-pci` (and the
    // other `virtio-*-pci` devices): needs virtio, virtio_ring,
    // virtio_pci_modern_dev and virtio_pci_legacy_dev.
    "virtio_pci",
    // Its network driver: needs net_failover and failover.
    "virtio_net",
];

/// The kernel and initramfs to boot, and the kernel's release (`uname -r`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinuxGuest {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    /// Kernel release, e.g. `6.1.0-28-cloud-arm64` (what `uname -r` prints).
    pub version: String,
}

/// Where the guest and its downloads live.
pub fn linux_dir() -> PathBuf {
    target_dir().join("linux")
}

/// The guest's `/init`, a busybox shell script.
pub fn init_script() -> PathBuf {
    root().join("domains/linux/init")
}

fn cache_dir() -> PathBuf {
    linux_dir().join("cache")
}

fn kernel_path() -> PathBuf {
    linux_dir().join("Image")
}

fn initramfs_path() -> PathBuf {
    linux_dir().join("initramfs.cpio")
}

fn busybox_path() -> PathBuf {
    cache_dir().join("busybox")
}

fn stamp_path() -> PathBuf {
    linux_dir().join("guest.stamp")
}

/// Make sure `target/linux/Image` and `target/linux/initramfs.cpio` are there
/// and current: see the module documentation.
pub fn ensure_guest() -> Result<LinuxGuest> {
    fs::create_dir_all(cache_dir())
        .map_err(|e| format!("cannot create {}: {e}", cache_dir().display()))?;
    // One process at a time (the integration tests build images in parallel).
    let lock = fs::File::create(linux_dir().join(".lock"))
        .map_err(|e| format!("cannot create {}: {e}", linux_dir().join(".lock").display()))?;
    lock.lock()
        .map_err(|e| format!("cannot lock {}: {e}", linux_dir().join(".lock").display()))?;

    let old = Stamp::read();
    let stamp = match fetch(old.as_ref()) {
        Ok(s) => s,
        Err(e) => match old.filter(Stamp::complete) {
            Some(s) => {
                eprintln!(
                    "xtask: warning: cannot update the Linux guest: {e}\n\
                     xtask: warning: using the cached kernel {} and busybox in {}",
                    s.version,
                    linux_dir().display()
                );
                s
            }
            None => return Err(e),
        },
    };
    let modules = cached_modules(&stamp, MODULES)?;
    // Always rebuilt (it is small): edits to domains/linux/init apply at once.
    let cpio = initramfs(
        &fs::read(busybox_path()).map_err(|e| format!("{}: {e}", busybox_path().display()))?,
        &modules,
    )?;
    write_if_changed(&initramfs_path(), &cpio)?;
    Ok(LinuxGuest {
        kernel: kernel_path(),
        initramfs: initramfs_path(),
        version: stamp.version,
    })
}

/// [`ensure_guest`], once per process: its result (or error) is remembered.
pub fn guest() -> std::result::Result<&'static LinuxGuest, &'static str> {
    static GUEST: OnceLock<std::result::Result<LinuxGuest, String>> = OnceLock::new();
    GUEST
        .get_or_init(|| ensure_guest().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(String::as_str)
}

/// The file behind `linux:<part>` in a config (`kernel` or `initramfs`). When
/// the guest cannot be made, the error is printed (once) and the path returned
/// does not exist, so the config check reports the image as missing.
pub fn image_path(part: &str) -> PathBuf {
    let unavailable = linux_dir().join("unavailable").join(part);
    if part != "kernel" && part != "initramfs" {
        return unavailable;
    }
    match guest() {
        Ok(g) if part == "kernel" => g.kernel.clone(),
        Ok(g) => g.initramfs.clone(),
        Err(e) => {
            static REPORTED: OnceLock<()> = OnceLock::new();
            REPORTED.get_or_init(|| eprintln!("xtask: error: no Linux guest: {e}"));
            unavailable
        }
    }
}

/// What the current guest was made from (`target/linux/guest.stamp`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp {
    /// Kernel package, e.g. `linux-image-6.1.0-28-cloud-arm64`.
    kernel_package: String,
    /// Its `.deb` file name (name, version, architecture).
    kernel_deb: String,
    busybox_deb: String,
    /// Kernel release.
    version: String,
}

impl Stamp {
    fn read() -> Option<Stamp> {
        let text = fs::read_to_string(stamp_path()).ok()?;
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
                .map(str::to_string)
        };
        Some(Stamp {
            kernel_package: field("kernel-package")?,
            kernel_deb: field("kernel-deb")?,
            busybox_deb: field("busybox-deb")?,
            version: field("version")?,
        })
    }

    fn write(&self) -> Result<()> {
        let text = format!(
            "kernel-package={}\nkernel-deb={}\nbusybox-deb={}\nversion={}\n",
            self.kernel_package, self.kernel_deb, self.busybox_deb, self.version
        );
        write_if_changed(&stamp_path(), text.as_bytes())
    }

    /// The products it describes are all there.
    fn complete(&self) -> bool {
        kernel_path().is_file() && busybox_path().is_file()
    }
}

/// Bring the kernel Image and the extracted busybox up to date with what apt
/// offers now; returns the new stamp (already written).
fn fetch(old: Option<&Stamp>) -> Result<Stamp> {
    let mut apt = Apt::new()?;
    apt.ensure_arm64()?;
    let kernel_package = apt.kernel_package()?;
    if let Some(s) = old.filter(|s| s.kernel_package == kernel_package && s.complete()) {
        return Ok(s.clone());
    }
    eprintln!("xtask: fetching {kernel_package}:arm64 and {BUSYBOX_PACKAGE} from Debian");
    let cache = cache_dir();
    let kernel_deb = apt.download(&format!("{kernel_package}:arm64"), &cache)?;
    let busybox_deb = apt.download(BUSYBOX_PACKAGE, &cache)?;

    // The kernel: boot/vmlinuz-<release>, made a raw Image.
    let tree = cache.join("extract");
    let _ = fs::remove_dir_all(&tree);
    extract(&kernel_deb, &tree)?;
    let boot = tree.join("boot");
    let vmlinuz = fs::read_dir(&boot)
        .map_err(|e| format!("{}: {e}", boot.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .ok_or_else(|| format!("{} holds no boot/vmlinuz-*", kernel_deb.display()))?;
    let version = vmlinuz
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("vmlinuz-"))
        .unwrap_or_default()
        .to_string();
    let raw = fs::read(&vmlinuz).map_err(|e| format!("{}: {e}", vmlinuz.display()))?;
    let image = kernel_image(&raw).map_err(|e| format!("{}: {e}", vmlinuz.display()))?;
    write_if_changed(&kernel_path(), &image)?;
    let _ = fs::remove_dir_all(&tree);

    // busybox: bin/busybox, an arm64 ELF.
    extract(&busybox_deb, &tree)?;
    let bb = tree.join("bin/busybox");
    let bytes = fs::read(&bb).map_err(|e| {
        format!(
            "{} holds no usable bin/busybox ({}: {e})",
            busybox_deb.display(),
            bb.display()
        )
    })?;
    if !is_arm64_elf(&bytes) {
        return Err(format!("{} is not an arm64 ELF executable", bb.display()).into());
    }
    write_if_changed(&busybox_path(), &bytes)?;
    let _ = fs::remove_dir_all(&tree);

    let file_name = |p: &Path| {
        p.file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    };
    let stamp = Stamp {
        kernel_package,
        kernel_deb: file_name(&kernel_deb),
        busybox_deb: file_name(&busybox_deb),
        version,
    };
    stamp.write()?;
    // Older downloads are of no further use.
    remove_other_debs(&cache, "linux-image-", &stamp.kernel_deb);
    remove_other_debs(&cache, "busybox-static_", &stamp.busybox_deb);
    Ok(stamp)
}

fn remove_other_debs(dir: &Path, prefix: &str, keep: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(prefix) && name.ends_with(".deb") && name != keep {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// `dpkg-deb -x deb dir`.
fn extract(deb: &Path, dir: &Path) -> Result<()> {
    let mut cmd = Command::new("dpkg-deb");
    cmd.arg("-x").arg(deb).arg(dir);
    output(
        &mut cmd,
        &format!("dpkg-deb -x {} {}", deb.display(), dir.display()),
    )?;
    Ok(())
}

/// Run `cmd` and return its stdout; the error names the command line
/// (`what`) and shows its stderr.
fn output(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| {
        let tool = cmd.get_program().to_string_lossy().into_owned();
        if e.kind() == std::io::ErrorKind::NotFound {
            format!("{what}: {tool} is not installed{}", package_hint(&tool))
        } else {
            format!("{what}: cannot start {tool}: {e}")
        }
    })?;
    if !out.status.success() {
        // apt's note that root downloads into a directory its `_apt` user
        // cannot write is noise here.
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stderr: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.contains("Download is performed unsandboxed"))
            .collect();
        return Err(format!("{what} failed ({}): {}", out.status, stderr.join("\n")).into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn package_hint(tool: &str) -> &'static str {
    match tool {
        "apt-get" | "apt-cache" => {
            " (Debian package apt; the Linux guest is fetched from Debian's archive)"
        }
        "dpkg" | "dpkg-deb" => {
            " (Debian package dpkg; the Linux guest comes from Debian's archive through apt and dpkg)"
        }
        "gzip" => " (Debian package gzip)",
        "zstd" => " (Debian package zstd)",
        "xz" => " (Debian package xz-utils)",
        "lz4" => " (Debian package lz4)",
        "lzop" => " (Debian package lzop)",
        "bzip2" => " (Debian package bzip2)",
        _ => "",
    }
}

/// apt, as used here: `apt-get update` at most once per [`ensure_guest`].
struct Apt {
    updated: bool,
    /// The host itself is arm64: no foreign architecture needed.
    native: bool,
}

impl Apt {
    fn new() -> Result<Apt> {
        let arch = output(
            Command::new("dpkg").arg("--print-architecture"),
            "dpkg --print-architecture",
        )?;
        Ok(Apt {
            updated: false,
            native: arch.trim() == "arm64",
        })
    }

    fn update(&mut self) -> Result<bool> {
        if self.updated {
            return Ok(false);
        }
        self.updated = true;
        eprintln!("xtask: apt-get update (for the arm64 package lists)");
        output(
            Command::new("apt-get")
                .args(["update", "-q"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
            "apt-get update",
        )
        .map_err(|e| format!("{e}\n(apt-get update needs root and the network)"))?;
        Ok(true)
    }

    /// `dpkg --add-architecture arm64` (and `apt-get update`) unless done.
    fn ensure_arm64(&mut self) -> Result<()> {
        if self.native {
            return Ok(());
        }
        let foreign = output(
            Command::new("dpkg").arg("--print-foreign-architectures"),
            "dpkg --print-foreign-architectures",
        )?;
        if foreign.split_whitespace().any(|a| a == "arm64") {
            return Ok(());
        }
        eprintln!("xtask: dpkg --add-architecture arm64 (to download Debian's arm64 kernel)");
        output(
            Command::new("dpkg").args(["--add-architecture", "arm64"]),
            "dpkg --add-architecture arm64",
        )
        .map_err(|e| {
            format!(
                "{e}\nthe Linux guest needs Debian's arm64 packages; as root run \
                 `dpkg --add-architecture arm64 && apt-get update`"
            )
        })?;
        self.update()?;
        Ok(())
    }

    /// The kernel package the metapackage depends on now, e.g.
    /// `linux-image-6.1.0-28-cloud-arm64` (without `:arm64`).
    fn kernel_package(&mut self) -> Result<String> {
        let what = format!("apt-cache depends {KERNEL_METAPACKAGE}");
        let query = || {
            output(
                Command::new("apt-cache").args(["depends", KERNEL_METAPACKAGE]),
                &what,
            )
            .and_then(|out| {
                kernel_dependency(&out).ok_or_else(|| {
                    format!(
                        "{what}: no `Depends: linux-image-<version>-cloud-arm64` line in:\n{}",
                        out.trim_end()
                    )
                    .into()
                })
            })
        };
        match query() {
            Ok(p) => Ok(p),
            // Perhaps apt's package lists predate the arm64 architecture.
            Err(_) if self.update()? => query().map_err(|e| {
                format!("{e}\nis the arm64 architecture enabled (`dpkg --add-architecture arm64`)?")
                    .into()
            }),
            Err(e) => Err(e),
        }
    }

    /// `apt-get download pkg` into `dir` (kept when already there); returns
    /// the `.deb` file.
    fn download(&mut self, pkg: &str, dir: &Path) -> Result<PathBuf> {
        let hint = "is the arm64 architecture enabled (`dpkg --add-architecture arm64 && \
                    apt-get update`) and the Debian archive reachable?";
        let uris = format!("apt-get download --print-uris {pkg}");
        let (file, size) = match output(
            Command::new("apt-get").args(["download", "--print-uris", pkg]),
            &uris,
        ) {
            Ok(out) => deb_file(&out).ok_or_else(|| format!("{uris}: no .deb in {out:?}"))?,
            Err(_) if self.update()? => {
                let out = output(
                    Command::new("apt-get").args(["download", "--print-uris", pkg]),
                    &uris,
                )
                .map_err(|e| format!("{e}; {hint}"))?;
                deb_file(&out).ok_or_else(|| format!("{uris}: no .deb in {out:?}"))?
            }
            Err(e) => return Err(format!("{e}; {hint}").into()),
        };
        let path = dir.join(&file);
        if fs::metadata(&path).is_ok_and(|m| size.is_none_or(|s| m.len() == s)) {
            return Ok(path);
        }
        let _ = fs::remove_file(&path);
        output(
            Command::new("apt-get")
                .args(["download", "-q", pkg])
                .current_dir(dir),
            &format!("apt-get download {pkg}"),
        )
        .map_err(|e| format!("{e}; {hint}"))?;
        if !path.is_file() {
            return Err(format!(
                "apt-get download {pkg} succeeded but {} is not there",
                path.display()
            )
            .into());
        }
        Ok(path)
    }
}

/// The kernel package in `apt-cache depends` output: the first
/// `Depends: linux-image-<release>` line (architecture suffix removed).
pub fn kernel_dependency(out: &str) -> Option<String> {
    out.lines().find_map(|l| {
        let dep = l
            .trim()
            .trim_start_matches('|')
            .strip_prefix("Depends:")?
            .trim();
        let dep = dep.trim_start_matches('<').trim_end_matches('>');
        let name = dep.split(':').next()?.trim();
        (name.starts_with("linux-image-") && name != "linux-image-cloud-arm64")
            .then(|| name.to_string())
    })
}

/// The `.deb` file name and size in `apt-get download --print-uris` output:
/// `'URI' file size hash`.
fn deb_file(out: &str) -> Option<(String, Option<u64>)> {
    out.lines().find_map(|l| {
        let mut f = l.split_whitespace().skip(1);
        let file = f.next()?;
        file.ends_with(".deb")
            .then(|| (file.to_string(), f.next().and_then(|s| s.parse().ok())))
    })
}

fn is_arm64_elf(b: &[u8]) -> bool {
    // ELFCLASS64, little-endian, e_machine EM_AARCH64 (183).
    b.len() > 20 && b.starts_with(b"\x7fELF\x02\x01") && b[18..20] == [183, 0]
}

/// Offset of the arm64 Image magic `ARM\x64` in its 64-byte header.
const IMAGE_MAGIC_OFFSET: usize = 0x38;

fn is_arm64_image(b: &[u8]) -> bool {
    b.len() >= 64 && &b[IMAGE_MAGIC_OFFSET..IMAGE_MAGIC_OFFSET + 4] == b"ARM\x64"
}

/// A raw arm64 `Image` from what Debian ships as `vmlinuz`: a raw Image
/// (with its EFI stub, as Debian's arm64 kernels are), a gzip-compressed
/// Image, or an EFI zboot image (`MZ` + `zimg`, compressed payload inside).
pub fn kernel_image(vmlinuz: &[u8]) -> Result<Vec<u8>> {
    if is_arm64_image(vmlinuz) {
        return Ok(vmlinuz.to_vec());
    }
    let image = if vmlinuz.starts_with(&[0x1f, 0x8b]) {
        decompress("gzip", vmlinuz)?
    } else if vmlinuz.len() >= 64 && vmlinuz.starts_with(b"MZ") && &vmlinuz[4..8] == b"zimg" {
        let word = |o: usize| u32::from_le_bytes(vmlinuz[o..o + 4].try_into().expect("4 bytes"));
        let (start, len) = (word(8) as usize, word(12) as usize);
        let method = vmlinuz[24..32]
            .split(|&b| b == 0)
            .next()
            .unwrap_or_default();
        let method = String::from_utf8_lossy(method).into_owned();
        let payload = vmlinuz
            .get(start..start.saturating_add(len))
            .ok_or("EFI zboot image: payload past the end of the file")?;
        let tool = match method.as_str() {
            "gzip" => "gzip",
            "zstd" | "zstd22" => "zstd",
            "xzkern" | "xz" => "xz",
            "lzma" => "lzma",
            "lz4" => "lz4",
            "lzo" => "lzop",
            "bzip2" => "bzip2",
            m => {
                return Err(format!(
                    "EFI zboot image compressed with {m:?}, which xtask cannot unpack"
                )
                .into())
            }
        };
        decompress(tool, payload).map_err(|e| format!("EFI zboot image ({method}): {e}"))?
    } else {
        return Err(format!(
            "not an arm64 kernel xtask knows: no `ARM\\x64` magic at offset {IMAGE_MAGIC_OFFSET:#x}, \
             not gzip, not EFI zboot (starts with {:02x?})",
            &vmlinuz[..vmlinuz.len().min(8)]
        )
        .into());
    };
    if !is_arm64_image(&image) {
        return Err("decompressed, but the result has no arm64 Image header \
                    (`ARM\\x64` at offset 0x38)"
            .into());
    }
    Ok(image)
}

/// `<tool> -dc` over `data`.
fn decompress(tool: &str, data: &[u8]) -> Result<Vec<u8>> {
    let (program, args): (&str, &[&str]) = match tool {
        "lzma" => ("xz", &["--format=lzma", "-dc"]),
        t => (t, &["-dc"]),
    };
    let what = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "{what}: {program} is not installed{}",
                    package_hint(program)
                )
            } else {
                format!("{what}: cannot start {program}: {e}")
            }
        })?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = data.to_vec();
    // Feed stdin from a thread so a full stdout pipe cannot deadlock us.
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{what}: {e}"))?;
    let fed = feeder.join().expect("feeder thread");
    // gzip exits 2 for a mere warning (trailing bytes after the stream).
    let warning_only = program == "gzip" && out.status.code() == Some(2);
    if !(out.status.success() || warning_only) || fed.is_err() {
        return Err(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        )
        .into());
    }
    Ok(out.stdout)
}

/// The initramfs: busybox, links to it, the mount points, `/dev/console`,
/// the kernel modules with their `modules.dep` and `modules.builtin`, and
/// `/init` from `domains/linux/init`.
pub fn initramfs(busybox: &[u8], modules: &Modules) -> Result<Vec<u8>> {
    let init = fs::read(init_script()).map_err(|e| format!("{}: {e}", init_script().display()))?;
    let mut c = Cpio::new();
    for d in [
        "bin", "sbin", "usr", "usr/bin", "usr/sbin", "proc", "sys", "dev", "etc", "root",
    ] {
        c.dir(d, 0o755)?;
    }
    c.dir("tmp", 0o1777)?;
    // Before devtmpfs is mounted (and if it never is), the console works.
    c.char_dev("dev/console", 0o600, 5, 1)?;
    c.char_dev("dev/null", 0o666, 1, 3)?;
    c.file("bin/busybox", 0o755, busybox)?;
    for a in APPLETS {
        c.symlink(&format!("bin/{a}"), "busybox")?;
    }
    if !modules.modules.is_empty() {
        let base = format!("lib/modules/{}", modules.release);
        let mut dirs: Vec<String> = Vec::new();
        let mut mkdirs = |c: &mut Cpio, path: &str| -> Result<()> {
            let mut at = 0;
            while let Some(i) = path[at..].find('/') {
                let d = &path[..at + i];
                if !dirs.iter().any(|x| x == d) {
                    c.dir(d, 0o755)?;
                    dirs.push(d.to_string());
                }
                at += i + 1;
            }
            Ok(())
        };
        for m in &modules.modules {
            let path = format!("{base}/{}", m.path);
            mkdirs(&mut c, &path)?;
            c.file(&path, 0o644, &m.data)?;
        }
        c.file(
            &format!("{base}/modules.dep"),
            0o644,
            modules.dep().as_bytes(),
        )?;
        c.file(&format!("{base}/modules.builtin"), 0o644, &modules.builtin)?;
    }
    c.file("init", 0o755, &init)?;
    Ok(c.finish())
}

// ---------------------------------------------------------------------------
// Kernel modules for the initramfs

/// One kernel module, uncompressed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    /// Its name (`virtio_net`: `-` in a file name reads as `_`).
    pub name: String,
    /// Where it lives under `lib/modules/<release>/`, ending in `.ko`.
    pub path: String,
    /// The modules it needs directly (`depends=` of its `.modinfo`).
    pub depends: Vec<String>,
    pub data: Vec<u8>,
}

/// The kernel modules packed into the initramfs: [`MODULES`] and every
/// module they need.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Modules {
    /// The kernel release (`uname -r`): they go under `lib/modules/<release>/`.
    pub release: String,
    /// In load order: each after every module it needs.
    pub modules: Vec<Module>,
    /// The kernel's `modules.builtin` (what `modprobe` need not load).
    pub builtin: Vec<u8>,
}

impl Modules {
    /// `modules.dep` as `depmod` writes it: `path: deps...`, every module
    /// it needs transitively, the one to load first last.
    pub fn dep(&self) -> String {
        let mut out = String::new();
        for (i, m) in self.modules.iter().enumerate() {
            // Its needs, transitively, among those loaded before it.
            let mut need: Vec<&str> = m.depends.iter().map(String::as_str).collect();
            let mut k = 0;
            while k < need.len() {
                if let Some(d) = self.modules[..i].iter().find(|x| x.name == need[k]) {
                    for n in &d.depends {
                        if !need.contains(&n.as_str()) {
                            need.push(n);
                        }
                    }
                }
                k += 1;
            }
            out.push_str(&m.path);
            out.push(':');
            // Reverse load order: modprobe loads from the end of the line.
            for d in self.modules[..i].iter().rev() {
                if need.contains(&d.name.as_str()) {
                    out.push(' ');
                    out.push_str(&d.path);
                }
            }
            out.push('\n');
        }
        out
    }
}

/// A module's name from its file name (`virtio_net.ko`, `virtio-rng.ko.xz`),
/// and the tool that decompresses it (`None`: not compressed); `None` for a
/// file that is no module.
pub fn module_file(file: &str) -> Option<(String, Option<&'static str>)> {
    let (stem, tool) = [
        (".ko", None),
        (".ko.xz", Some("xz")),
        (".ko.zst", Some("zstd")),
        (".ko.gz", Some("gzip")),
    ]
    .into_iter()
    .find_map(|(ext, tool)| Some((file.strip_suffix(ext)?, tool)))?;
    (!stem.is_empty()).then(|| (stem.replace('-', "_"), tool))
}

/// The `key=value` strings of an ELF64 little-endian kernel module's
/// `.modinfo` section.
pub fn modinfo(ko: &[u8]) -> std::result::Result<Vec<(String, String)>, String> {
    let u16_at = |o: usize| {
        ko.get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let u32_at = |o: usize| {
        ko.get(o..o + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
    };
    let u64_at = |o: usize| {
        ko.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
    };
    if !ko.starts_with(b"\x7fELF\x02\x01") {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let bad = || "ELF section headers past the end of the file".to_string();
    let (shoff, shentsize, shnum, shstrndx) = (
        u64_at(0x28).ok_or_else(bad)?,
        u16_at(0x3a).ok_or_else(bad)?,
        u16_at(0x3c).ok_or_else(bad)?,
        u16_at(0x3e).ok_or_else(bad)?,
    );
    // (name offset, file offset, size) of section i.
    let section = |i: usize| -> Option<(usize, usize, usize)> {
        let h = shoff.checked_add(i.checked_mul(shentsize)?)?;
        Some((u32_at(h)?, u64_at(h + 24)?, u64_at(h + 32)?))
    };
    let bytes = |off: usize, size: usize| ko.get(off..off.checked_add(size)?);
    let (_, stroff, strsize) = section(shstrndx).ok_or_else(bad)?;
    let names = bytes(stroff, strsize).ok_or_else(bad)?;
    for i in 0..shnum {
        let (name, off, size) = section(i).ok_or_else(bad)?;
        let name = names.get(name..).unwrap_or_default();
        if name.split(|&b| b == 0).next() != Some(b".modinfo") {
            continue;
        }
        let info = bytes(off, size).ok_or("the .modinfo section runs past the end")?;
        return Ok(info
            .split(|&b| b == 0)
            .filter_map(|kv| {
                let kv = String::from_utf8_lossy(kv);
                let (k, v) = kv.split_once('=')?;
                Some((k.to_string(), v.to_string()))
            })
            .collect());
    }
    Err("no .modinfo section".into())
}

/// The modules of the kernel tree `tree` (a `lib/modules/<release>/`) that
/// `wanted` names, with every module they need, uncompressed, in load
/// order. A wanted name the kernel builds in (`modules.builtin`) is left
/// out; a name that is neither is an error.
pub fn select_modules(tree: &Path, release: &str, wanted: &[&str]) -> Result<Modules> {
    let builtin = fs::read(tree.join("modules.builtin")).unwrap_or_default();
    let builtin_names: Vec<String> = String::from_utf8_lossy(&builtin)
        .lines()
        .filter_map(|l| module_file(l.rsplit('/').next()?).map(|(n, _)| n))
        .collect();
    // Every module file under the tree, by name.
    let mut files: Vec<(String, String, Option<&'static str>)> = Vec::new();
    let mut stack = vec![tree.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for e in entries.filter_map(|e| e.ok()) {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Some((name, tool)) =
                p.file_name().and_then(|n| n.to_str()).and_then(module_file)
            {
                let rel = p
                    .strip_prefix(tree)
                    .expect("under the tree")
                    .to_string_lossy()
                    .into_owned();
                files.push((name, rel, tool));
            }
        }
    }
    files.sort();
    let mut out = Modules {
        release: release.to_string(),
        modules: Vec::new(),
        builtin,
    };
    // Depth first, each module after what it needs; `visiting` catches a
    // dependency cycle.
    fn visit(
        name: &str,
        files: &[(String, String, Option<&'static str>)],
        tree: &Path,
        out: &mut Modules,
        visiting: &mut Vec<String>,
    ) -> Result<()> {
        if out.modules.iter().any(|m| m.name == name) {
            return Ok(());
        }
        if visiting.iter().any(|v| v == name) {
            return Err(format!(
                "kernel modules: dependency cycle {} -> {name}",
                visiting.join(" -> ")
            )
            .into());
        }
        let (_, rel, tool) = files
            .iter()
            .find(|(n, _, _)| n == name)
            .ok_or_else(|| format!("kernel module {name} is not in {}", tree.display()))?;
        let file = tree.join(rel);
        let raw = fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let data = match tool {
            Some(t) => decompress(t, &raw).map_err(|e| format!("{}: {e}", file.display()))?,
            None => raw,
        };
        let info = modinfo(&data).map_err(|e| format!("{}: {e}", file.display()))?;
        let depends: Vec<String> = info
            .iter()
            .filter(|(k, _)| k == "depends")
            .flat_map(|(_, v)| v.split(','))
            .filter(|d| !d.is_empty())
            .map(|d| d.replace('-', "_"))
            .collect();
        visiting.push(name.to_string());
        for d in &depends {
            visit(d, files, tree, out, visiting)?;
        }
        visiting.pop();
        let path = match tool {
            Some(_) => format!(
                "{}.ko",
                rel.rsplit_once(".ko").map_or(rel.as_str(), |(s, _)| s)
            ),
            None => rel.clone(),
        };
        out.modules.push(Module {
            name: name.to_string(),
            path,
            depends,
            data,
        });
        Ok(())
    }
    for w in wanted {
        let name = w.replace('-', "_");
        if builtin_names.contains(&name) {
            continue;
        }
        visit(&name, &files, tree, &mut out, &mut Vec::new())?;
    }
    Ok(out)
}

fn modules_cache() -> PathBuf {
    cache_dir().join("modules")
}

/// [`select_modules`] of the kernel package in `stamp`, kept in
/// `target/linux/cache/modules/` (the selected modules, uncompressed, and a
/// `selection` file naming the package and the list): the package is only
/// unpacked again when either changes.
fn cached_modules(stamp: &Stamp, wanted: &[&str]) -> Result<Modules> {
    let dir = modules_cache();
    let tree = dir.join("lib/modules").join(&stamp.version);
    let selection = format!(
        "kernel-deb={}\nmodules={}\n",
        stamp.kernel_deb,
        wanted.join(",")
    );
    let marker = dir.join("selection");
    if fs::read_to_string(&marker).is_ok_and(|s| s == selection) {
        if let Ok(m) = select_modules(&tree, &stamp.version, wanted) {
            return Ok(m);
        }
    }
    let deb = cache_dir().join(&stamp.kernel_deb);
    let unpacked = cache_dir().join("extract-modules");
    let _ = fs::remove_dir_all(&unpacked);
    extract(&deb, &unpacked)?;
    let full = unpacked.join("lib/modules").join(&stamp.version);
    let picked = select_modules(&full, &stamp.version, wanted)
        .map_err(|e| format!("{e} (from {})", deb.display()));
    let _ = fs::remove_dir_all(&unpacked);
    let picked = picked?;
    let _ = fs::remove_dir_all(&dir);
    for m in &picked.modules {
        let p = tree.join(&m.path);
        fs::create_dir_all(p.parent().expect("a parent"))
            .map_err(|e| format!("{}: {e}", tree.display()))?;
        fs::write(&p, &m.data).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    fs::create_dir_all(&tree).map_err(|e| format!("{}: {e}", tree.display()))?;
    fs::write(tree.join("modules.builtin"), &picked.builtin)
        .map_err(|e| format!("{}: {e}", tree.display()))?;
    write_if_changed(&marker, selection.as_bytes())?;
    Ok(picked)
}

fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<()> {
    if fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    // Write, then rename: a half-written file never has the final name.
    let tmp = path.with_extension("partial");
    fs::write(&tmp, bytes).map_err(|e| format!("{}: {e}", tmp.display()))?;
    fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(())
}

// ---------------------------------------------------------------------------
// newc cpio archives (what the kernel unpacks as an initramfs)

/// File type bits of `mode`.
pub const S_IFMT: u32 = 0o170000;
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFLNK: u32 = 0o120000;
pub const S_IFCHR: u32 = 0o020000;

const NEWC_MAGIC: &[u8; 6] = b"070701";
const NEWC_HEADER: usize = 110;
const TRAILER: &str = "TRAILER!!!";

/// Writes an uncompressed `newc` ("070701") cpio archive: every entry owned
/// by root, mtime 0 (so the same input gives the same bytes), names relative
/// (no leading `/`).
pub struct Cpio {
    buf: Vec<u8>,
    next_ino: u32,
}

/// Permission bits (with set-id and sticky bits), never a file type.
fn perm_bits(perm: u32) -> Result<u32> {
    if perm & !0o7777 != 0 {
        return Err(
            format!("cpio: permissions {perm:o} are more than rwx/set-id/sticky bits").into(),
        );
    }
    Ok(perm)
}

impl Default for Cpio {
    fn default() -> Self {
        Self::new()
    }
}

impl Cpio {
    pub fn new() -> Self {
        Cpio {
            buf: Vec::new(),
            next_ino: 1,
        }
    }

    pub fn dir(&mut self, path: &str, perm: u32) -> Result<()> {
        self.entry(path, S_IFDIR | perm_bits(perm)?, 2, (0, 0), b"")
    }

    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> Result<()> {
        self.entry(path, S_IFREG | perm_bits(perm)?, 1, (0, 0), data)
    }

    /// A symbolic link: its data is the target.
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        self.entry(path, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes())
    }

    pub fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> Result<()> {
        self.entry(path, S_IFCHR | perm_bits(perm)?, 1, (major, minor), b"")
    }

    fn entry(
        &mut self,
        path: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> Result<()> {
        let name = path.trim_start_matches('/');
        if name.is_empty()
            || name == TRAILER
            || name.contains('\0')
            || name
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(format!("cpio: bad path {path:?}").into());
        }
        let size = u32::try_from(data.len())
            .map_err(|_| format!("cpio: {path}: {} bytes is too large for newc", data.len()))?;
        let ino = self.next_ino;
        self.next_ino += 1;
        self.record(ino, mode, nlink, rdev, name, size);
        self.buf.extend_from_slice(data);
        self.pad();
        Ok(())
    }

    fn record(&mut self, ino: u32, mode: u32, nlink: u32, rdev: (u32, u32), name: &str, size: u32) {
        let namesize = name.len() as u32 + 1;
        // ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
        let fields = [
            ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, namesize, 0,
        ];
        self.buf.extend_from_slice(NEWC_MAGIC);
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    /// The archive, with its `TRAILER!!!` record.
    pub fn finish(mut self) -> Vec<u8> {
        self.record(0, 0, 1, (0, 0), TRAILER, 0);
        self.buf
    }
}

/// One entry of a parsed newc archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpioEntry {
    pub name: String,
    pub ino: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub mtime: u32,
    pub rdev: (u32, u32),
    pub data: Vec<u8>,
}

/// Parse a newc archive up to its trailer (checking magic, hex fields and
/// 4-byte alignment as the kernel does).
pub fn parse_cpio(mut b: &[u8]) -> std::result::Result<Vec<CpioEntry>, String> {
    let total = b.len();
    let mut out = Vec::new();
    loop {
        let at = total - b.len();
        if b.len() < NEWC_HEADER {
            return Err(format!("offset {at}: truncated header (no trailer)"));
        }
        if &b[..6] != NEWC_MAGIC {
            return Err(format!("offset {at}: bad magic {:?}", &b[..6]));
        }
        let mut f = [0u32; 13];
        for (i, v) in f.iter_mut().enumerate() {
            let s = std::str::from_utf8(&b[6 + 8 * i..14 + 8 * i])
                .map_err(|_| format!("offset {at}: field {i} is not ASCII"))?;
            *v = u32::from_str_radix(s, 16)
                .map_err(|_| format!("offset {at}: field {i} {s:?} is not hex"))?;
        }
        let [ino, mode, uid, gid, nlink, mtime, size, _, _, rmaj, rmin, namesize, check] = f;
        if check != 0 {
            return Err(format!("offset {at}: check field {check:#x} is not 0"));
        }
        let name_end = NEWC_HEADER + namesize as usize;
        let data_start = name_end.next_multiple_of(4);
        let data_end = data_start + size as usize;
        if namesize == 0 || b.len() < data_end {
            return Err(format!("offset {at}: entry runs past the end"));
        }
        if b[name_end - 1] != 0 {
            return Err(format!("offset {at}: name not NUL-terminated"));
        }
        let name = String::from_utf8(b[NEWC_HEADER..name_end - 1].to_vec())
            .map_err(|_| format!("offset {at}: name is not UTF-8"))?;
        if b[NEWC_HEADER + namesize as usize..data_start]
            .iter()
            .chain(
                b.get(data_end..data_end.next_multiple_of(4).min(b.len()))
                    .unwrap_or(&[]),
            )
            .any(|&x| x != 0)
        {
            return Err(format!("offset {at}: non-zero padding"));
        }
        if name == TRAILER {
            return Ok(out);
        }
        out.push(CpioEntry {
            name,
            ino,
            mode,
            uid,
            gid,
            nlink,
            mtime,
            rdev: (rmaj, rmin),
            data: b[data_start..data_end].to_vec(),
        });
        b = &b[data_end.next_multiple_of(4).min(b.len())..];
    }
}

// ---------------------------------------------------------------------------
// `cargo xtask linux`

/// `cargo xtask linux [run [--timeout SECS] [KERNEL ARGS...]]`: make the
/// guest and print what it is; with `run`, also boot it natively under QEMU
/// `virt` (no Bulkhead) on the terminal, the extra words appended to the
/// kernel command line (`bulkhead.devmem=0x...`, `bulkhead.poweroff-after=2`).
pub fn cmd_linux(args: &[String]) -> Result<()> {
    let run = match args.split_first() {
        None => None,
        Some((first, rest)) if first == "run" => {
            let mut timeout = 120u64;
            let mut append = vec!["console=ttyAMA0".to_string(), "rdinit=/init".to_string()];
            let mut it = rest.iter();
            while let Some(a) = it.next() {
                if a == "--timeout" {
                    timeout = it
                        .next()
                        .and_then(|s| s.parse().ok())
                        .ok_or("linux run: --timeout takes seconds")?;
                } else {
                    append.push(a.clone());
                }
            }
            Some((append.join(" "), timeout))
        }
        Some((first, _)) => {
            return Err(format!(
                "linux: unknown argument {first:?}; usage: linux [run [--timeout SECS] [KERNEL ARGS...]]"
            )
            .into())
        }
    };
    let g = ensure_guest()?;
    let size = |p: &Path| fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    println!(
        "kernel     {} ({}, {} bytes)",
        g.kernel.display(),
        g.version,
        size(&g.kernel)
    );
    println!(
        "initramfs  {} ({} bytes)",
        g.initramfs.display(),
        size(&g.initramfs)
    );
    let Some((append, timeout)) = run else {
        return Ok(());
    };
    crate::run_shown(
        &mut native_qemu(&g, &append, timeout),
        "native QEMU boot of the Linux guest",
    )
}

/// The guest booted directly by QEMU `virt` (no Bulkhead), serial on stdio,
/// under `timeout`: the reference the Bulkhead runs are compared with.
pub fn native_qemu(g: &LinuxGuest, append: &str, timeout_secs: u64) -> Command {
    let mut c = Command::new("timeout");
    c.args(["--foreground", "--kill-after=5", &timeout_secs.to_string()])
        .arg(crate::tools::QEMU)
        .args([
            "-M",
            "virt",
            "-cpu",
            "cortex-a72",
            "-smp",
            "2",
            "-m",
            "512M",
        ])
        .args(["-nographic", "-no-reboot", "-kernel"])
        .arg(&g.kernel)
        .arg("-initrd")
        .arg(&g.initramfs)
        .args(["-append", append]);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut c = Cpio::new();
        c.dir("bin", 0o755).unwrap();
        c.dir("/tmp", 0o1777).unwrap();
        c.file("bin/busybox", 0o755, b"\x7fELF...").unwrap();
        c.symlink("bin/sh", "busybox").unwrap();
        c.char_dev("dev/console", 0o600, 5, 1).unwrap();
        c.file("init", 0o755, b"#!/bin/sh\necho hi\n").unwrap();
        c.file("empty", 0o644, b"").unwrap();
        c.finish()
    }

    #[test]
    fn cpio_round_trip() {
        let a = sample();
        assert_eq!(a.len() % 4, 0);
        let e = parse_cpio(&a).unwrap();
        let names: Vec<&str> = e.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin",
                "tmp",
                "bin/busybox",
                "bin/sh",
                "dev/console",
                "init",
                "empty"
            ]
        );
        assert_eq!(e[0].mode, S_IFDIR | 0o755);
        assert_eq!(e[0].nlink, 2);
        assert_eq!(e[1].mode, S_IFDIR | 0o1777);
        assert_eq!(e[2].mode, S_IFREG | 0o755);
        assert_eq!(e[2].data, b"\x7fELF...");
        assert_eq!(e[3].mode, S_IFLNK | 0o777);
        assert_eq!(e[3].data, b"busybox");
        assert_eq!(e[4].mode, S_IFCHR | 0o600);
        assert_eq!(e[4].rdev, (5, 1));
        assert!(e[4].data.is_empty());
        assert_eq!(e[5].data, b"#!/bin/sh\necho hi\n");
        assert!(e[6].data.is_empty());
        // Distinct inode numbers, root-owned, mtime 0.
        let mut inos: Vec<u32> = e.iter().map(|e| e.ino).collect();
        inos.sort_unstable();
        inos.dedup();
        assert_eq!(inos.len(), e.len());
        assert!(e.iter().all(|e| e.uid == 0 && e.gid == 0 && e.mtime == 0));
        // Deterministic.
        assert_eq!(a, sample());
    }

    #[test]
    fn cpio_header_fields() {
        let mut c = Cpio::new();
        c.file("init", 0o755, b"abcde").unwrap();
        let a = c.finish();
        // magic, ino 1, mode 0100755, uid, gid, nlink 1, mtime, filesize 5,
        // dev, rdev, namesize 5 ("init\0"), check
        let header = "070701\
                      00000001000081ed000000000000000000000001000000000000000500000000\
                      00000000000000000000000000000005\
                      00000000";
        assert_eq!(&a[..110], header.as_bytes());
        // name + NUL padded from 110 + 5 to 116, then data padded to 124.
        assert_eq!(&a[110..116], b"init\0\0");
        assert_eq!(&a[116..124], b"abcde\0\0\0");
        // The trailer: ino 0, mode 0, nlink 1, namesize 11.
        let t = &a[124..];
        assert_eq!(&t[..6], b"070701");
        assert_eq!(&t[6..22], b"0000000000000000");
        assert_eq!(&t[38..46], b"00000001");
        assert_eq!(&t[94..102], b"0000000b");
        assert_eq!(&t[110..121], b"TRAILER!!!\0");
        assert_eq!(t.len(), 124);
    }

    #[test]
    fn cpio_refuses_bad_input() {
        let mut c = Cpio::new();
        assert!(c.file("", 0o644, b"").is_err());
        assert!(c.file("a/../b", 0o644, b"").is_err());
        assert!(c.file("a//b", 0o644, b"").is_err());
        assert!(c.file("TRAILER!!!", 0o644, b"").is_err());
        assert!(c.file("x", 0o10644, b"").is_err());
        assert!(c.dir("d", S_IFDIR | 0o755).is_err());
        let a = sample();
        assert!(parse_cpio(&a[..a.len() - 4]).is_err());
        let mut bad = a.clone();
        bad[0] = b'1';
        assert!(parse_cpio(&bad).is_err());
        let mut bad = a.clone();
        bad[10] = b'g';
        assert!(parse_cpio(&bad).is_err());
    }

    #[test]
    fn initramfs_has_what_the_kernel_and_init_need() {
        let a = initramfs(b"\x7fELF fake busybox", &Modules::default()).unwrap();
        let e = parse_cpio(&a).unwrap();
        let get = |n: &str| {
            e.iter()
                .find(|e| e.name == n)
                .unwrap_or_else(|| panic!("{n} missing"))
        };
        let init = get("init");
        assert_eq!(init.mode, S_IFREG | 0o755);
        assert!(init.data.starts_with(b"#!/bin/sh\n"));
        assert_eq!(get("dev/console").mode, S_IFCHR | 0o600);
        assert_eq!(get("dev/console").rdev, (5, 1));
        assert_eq!(get("bin/busybox").data, b"\x7fELF fake busybox");
        for a in APPLETS {
            let l = get(&format!("bin/{a}"));
            assert_eq!(
                (l.mode, l.data.as_slice()),
                (S_IFLNK | 0o777, &b"busybox"[..])
            );
        }
        for d in ["bin", "sbin", "proc", "sys", "dev", "tmp", "etc"] {
            assert_eq!(get(d).mode & S_IFMT, S_IFDIR, "{d}");
        }
        // Every entry's parent comes before it.
        for (i, x) in e.iter().enumerate() {
            if let Some((parent, _)) = x.name.rsplit_once('/') {
                assert!(e[..i].iter().any(|p| p.name == parent), "{}", x.name);
            }
        }
    }

    /// A minimal ELF64 little-endian relocatable file whose `.modinfo`
    /// holds `info` (as the kernel's modules do, NUL-separated).
    fn fake_ko(info: &[&str]) -> Vec<u8> {
        let mut modinfo = Vec::new();
        for kv in info {
            modinfo.extend_from_slice(kv.as_bytes());
            modinfo.push(0);
        }
        let shstrtab = b"\0.modinfo\0.shstrtab\0";
        let mut f = vec![0u8; 64];
        f[..6].copy_from_slice(b"\x7fELF\x02\x01");
        f[18] = 183;
        let info_at = f.len();
        f.extend_from_slice(&modinfo);
        let str_at = f.len();
        f.extend_from_slice(shstrtab);
        while !f.len().is_multiple_of(8) {
            f.push(0);
        }
        let shoff = f.len();
        // null, .modinfo (name 1), .shstrtab (name 10)
        for (name, off, size) in [
            (0u32, 0usize, 0usize),
            (1, info_at, modinfo.len()),
            (10, str_at, shstrtab.len()),
        ] {
            let mut h = [0u8; 64];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[24..32].copy_from_slice(&(off as u64).to_le_bytes());
            h[32..40].copy_from_slice(&(size as u64).to_le_bytes());
            f.extend_from_slice(&h);
        }
        f[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        f[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        f[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        f[0x3e..0x40].copy_from_slice(&2u16.to_le_bytes());
        f
    }

    #[test]
    fn modinfo_of_a_module() {
        let ko = fake_ko(&[
            "license=GPL",
            "depends=virtio_ring,net_failover",
            "name=virtio_net",
        ]);
        assert_eq!(
            modinfo(&ko).unwrap(),
            [
                ("license".to_string(), "GPL".to_string()),
                ("depends".into(), "virtio_ring,net_failover".into()),
                ("name".into(), "virtio_net".into())
            ]
        );
        assert!(modinfo(b"not an ELF").is_err());
        assert!(modinfo(&ko[..100]).is_err());
        assert_eq!(
            module_file("virtio-rng.ko.xz"),
            Some(("virtio_rng".into(), Some("xz")))
        );
        assert_eq!(module_file("failover.ko"), Some(("failover".into(), None)));
        assert_eq!(module_file("modules.dep"), None);
    }

    #[test]
    fn modules_come_with_what_they_need_in_load_order() {
        let tree = target_dir().join("xtask-test-tmp").join("modules");
        let _ = fs::remove_dir_all(&tree);
        let put = |rel: &str, data: &[u8]| {
            let p = tree.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, data).unwrap();
        };
        put(
            "kernel/drivers/net/virtio_net.ko",
            &fake_ko(&["depends=net_failover,virtio", "name=virtio_net"]),
        );
        let net_failover = fake_ko(&["depends=failover", "name=net_failover"]);
        if crate::tools::have("gzip") {
            // A compressed module is stored uncompressed, as `.ko`.
            put(
                "kernel/drivers/net/net_failover.ko.gz",
                &gzip(&net_failover),
            );
        } else {
            put("kernel/drivers/net/net_failover.ko", &net_failover);
        }
        put("kernel/net/core/failover.ko", &fake_ko(&["depends="]));
        put("kernel/drivers/virtio/virtio.ko", &fake_ko(&["depends="]));
        put("kernel/drivers/virtio/unused.ko", &fake_ko(&["depends="]));
        put("modules.builtin", b"kernel/drivers/virtio/virtio_pci.ko\n");
        let m = select_modules(&tree, "6.1.0-1-test", &["virtio_pci", "virtio-net"]).unwrap();
        let names: Vec<&str> = m.modules.iter().map(|m| m.name.as_str()).collect();
        // virtio_pci is built in; unused is not needed.
        assert_eq!(names, ["failover", "net_failover", "virtio", "virtio_net"]);
        assert_eq!(m.modules[1].path, "kernel/drivers/net/net_failover.ko");
        assert_eq!(m.modules[1].data, net_failover);
        assert_eq!(
            m.dep(),
            "kernel/net/core/failover.ko:\n\
             kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n\
             kernel/drivers/virtio/virtio.ko:\n\
             kernel/drivers/net/virtio_net.ko: kernel/drivers/virtio/virtio.ko \
             kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko\n"
        );
        let e = select_modules(&tree, "6.1.0-1-test", &["e1000e"]).unwrap_err();
        assert!(
            e.to_string().contains("kernel module e1000e is not in"),
            "{e}"
        );
        // In the initramfs, under lib/modules/<release>/, with their directories.
        let a = initramfs(b"\x7fELF fake busybox", &m).unwrap();
        let e = parse_cpio(&a).unwrap();
        let get = |n: &str| {
            e.iter()
                .find(|e| e.name == n)
                .unwrap_or_else(|| panic!("{n} missing"))
        };
        let base = "lib/modules/6.1.0-1-test";
        assert_eq!(
            get(&format!("{base}/kernel/drivers/net/virtio_net.ko")).mode,
            S_IFREG | 0o644
        );
        assert_eq!(
            get(&format!("{base}/kernel/drivers/net")).mode,
            S_IFDIR | 0o755
        );
        assert_eq!(get(&format!("{base}/modules.dep")).data, m.dep().as_bytes());
        assert_eq!(
            get(&format!("{base}/modules.builtin")).data,
            b"kernel/drivers/virtio/virtio_pci.ko\n"
        );
        for (i, x) in e.iter().enumerate() {
            if let Some((parent, _)) = x.name.rsplit_once('/') {
                assert!(e[..i].iter().any(|p| p.name == parent), "{}", x.name);
            }
        }
        let _ = fs::remove_dir_all(&tree);
    }

    #[test]
    fn apt_cache_depends_output() {
        let foreign =
            "linux-image-cloud-arm64:arm64\n  Depends: linux-image-6.1.0-28-cloud-arm64:arm64\n";
        assert_eq!(
            kernel_dependency(foreign).as_deref(),
            Some("linux-image-6.1.0-28-cloud-arm64")
        );
        let native = "linux-image-cloud-arm64\n  Depends: linux-image-6.12.95+deb12-cloud-arm64\n";
        assert_eq!(
            kernel_dependency(native).as_deref(),
            Some("linux-image-6.12.95+deb12-cloud-arm64")
        );
        assert_eq!(kernel_dependency("E: No packages found\n"), None);
        let uris = "'http://deb.debian.org/debian/pool/main/b/busybox/busybox-static_1%3a1.35.0-4+b3_arm64.deb' busybox-static_1%3a1.35.0-4+b3_arm64.deb 822236 SHA256:00\n";
        assert_eq!(
            deb_file(uris),
            Some((
                "busybox-static_1%3a1.35.0-4+b3_arm64.deb".into(),
                Some(822236)
            ))
        );
    }

    /// Downloads from Debian and writes target/linux: run by hand with
    /// `cargo test -p xtask --lib linux -- --ignored --nocapture`.
    #[test]
    #[ignore = "downloads the Debian kernel; needs apt (and root the first time)"]
    fn ensure_guest_fetches_and_builds() {
        let g = ensure_guest().unwrap_or_else(|e| panic!("{e}"));
        let kernel = fs::read(&g.kernel).unwrap();
        assert!(is_arm64_image(&kernel));
        let entries = parse_cpio(&fs::read(&g.initramfs).unwrap()).unwrap();
        let bb = entries.iter().find(|e| e.name == "bin/busybox").unwrap();
        assert!(is_arm64_elf(&bb.data));
        assert!(g.version.ends_with("-cloud-arm64"), "{}", g.version);
        println!(
            "{} {} ({} bytes), {} ({} bytes)",
            g.version,
            g.kernel.display(),
            kernel.len(),
            g.initramfs.display(),
            fs::metadata(&g.initramfs).unwrap().len()
        );
        // A second call reuses everything.
        assert_eq!(ensure_guest().unwrap(), g);
    }

    /// Boots the guest natively under QEMU (no Bulkhead): run by hand with
    /// `cargo test -p xtask --lib linux -- --ignored --nocapture`.
    #[test]
    #[ignore = "needs the guest (downloads it) and QEMU"]
    fn native_boot_prints_every_line() {
        let g = ensure_guest().unwrap_or_else(|e| panic!("{e}"));
        let started = std::time::Instant::now();
        let out = native_qemu(
            &g,
            "console=ttyAMA0 rdinit=/init bulkhead.devmem=0x0e000000 bulkhead.poweroff-after=2",
            120,
        )
        .stdin(Stdio::null())
        .output()
        .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
        let lines: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("linux-init: "))
            .collect();
        let has = |p: &str| lines.iter().any(|l| l.starts_with(p));
        assert!(out.status.success(), "{}\n{text}", out.status);
        assert!(has("start"), "{text}");
        assert!(
            lines.contains(&format!("kernel {}", g.version).as_str()),
            "{text}"
        );
        assert!(lines.contains(&"cpus 2"), "{text}");
        assert!(has("memtotal "), "{text}");
        assert!(
            has("device-tree ") && text.contains(" chosen cpus "),
            "{text}"
        );
        assert!(has("cmdline console=ttyAMA0"), "{text}");
        // 0x0e000000 is nothing on virt (secure RAM, absent without
        // secure=on): QEMU answers with an external abort, the kernel with SIGBUS.
        assert!(
            lines.contains(&"devmem 0x0e000000 -> Bus error (exit 135)"),
            "{text}"
        );
        assert!(lines.contains(&"still alive after devmem"), "{text}");
        assert!(lines.contains(&"heartbeat 1"), "{text}");
        assert!(lines.contains(&"poweroff -f"), "{text}");
        assert!(text.contains("reboot: Power down"), "{text}");
        println!("native boot and power off in {:?}", started.elapsed());
    }

    fn fake_image() -> Vec<u8> {
        let mut img = vec![0u8; 4096];
        img[..2].copy_from_slice(b"MZ");
        img[0x38..0x3c].copy_from_slice(b"ARM\x64");
        img[100..108].copy_from_slice(b"kernel!!");
        img
    }

    #[test]
    fn raw_image_is_kept() {
        assert_eq!(kernel_image(&fake_image()).unwrap(), fake_image());
    }

    #[test]
    fn unknown_kernel_format_is_a_clear_error() {
        let e = kernel_image(b"not a kernel at all, clearly not").unwrap_err();
        assert!(e.to_string().contains("ARM\\x64"), "{e}");
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut child = Command::new("gzip")
            .arg("-c")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("gzip");
        child.stdin.take().unwrap().write_all(data).unwrap();
        child.wait_with_output().unwrap().stdout
    }

    #[test]
    fn gzip_and_zboot_images_are_unpacked() {
        if !crate::tools::have("gzip") {
            return;
        }
        let gz = gzip(&fake_image());
        assert_eq!(kernel_image(&gz).unwrap(), fake_image());
        // EFI zboot: MZ, "zimg", payload offset and size, compression type.
        let mut z = vec![0u8; 512];
        z[..2].copy_from_slice(b"MZ");
        z[4..8].copy_from_slice(b"zimg");
        z[8..12].copy_from_slice(&512u32.to_le_bytes());
        z[12..16].copy_from_slice(&(gz.len() as u32).to_le_bytes());
        z[24..28].copy_from_slice(b"gzip");
        z.extend_from_slice(&gz);
        z.extend_from_slice(&[0xaa; 64]); // the rest of the PE image
        assert_eq!(kernel_image(&z).unwrap(), fake_image());
        // A gzip stream of something that is not a kernel.
        let e = kernel_image(&gzip(b"hello")).unwrap_err();
        assert!(e.to_string().contains("no arm64 Image header"), "{e}");
    }
}
