//! `cargo xtask <command>`: see `usage()` and the README.

mod boot_bench;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use xtask::image::{self, Tamper};
use xtask::qemu::{Machine, Run, UART0, UART1};
use xtask::{cargo, root, run_shown, target_dir, tools, Result};

fn usage() -> &'static str {
    "usage: cargo xtask <command>

  run [CONFIG] [--gic 2|3] [--cpu MODEL] [--timeout SECS]
                  build CONFIG (default configs/qemu-virt/default.dts) and boot it
                  under QEMU virt; each UART's whole lines behind uart0| / uart1| ,
                  typed lines go to the second UART; a line starting with Ctrl-a
                  goes to the partitioner console, Enter included: Ctrl-a s shows
                  exit counts, Ctrl-a Ctrl-a Ctrl-a moves the console input to the
                  next domain on the virtual console, Ctrl-a, a space and TEXT
                  type TEXT to that domain; Ctrl-c quits
  build [CONFIG] [-o OUT]
                  build the bootable image (target/bulkhead/<config>.img)
  image CONFIG [--sd OUT.img [--firmware-dir DIR] [--armstub PATH]] [--uboot OUT_DIR]
               [--bif OUT_DIR [--firmware-dir DIR]]
                  build CONFIG's image (as build does) and write boot media for it:
                  --sd: a flashable SD card image (MBR + FAT32: config.txt, the
                  board's firmware files from DIR, default $BULKHEAD_RPI4_FIRMWARE or
                  firmware/rpi4, and bulkhead.img; --armstub adds TF-A's bl31.bin);
                  boards: rpi4 (docs/boards/rpi4.md).
                  --uboot: bulkhead.img, boot.scr (loads it at the board's image_base
                  and booti's it) and disk.img (both in a FAT partition, for
                  U-Boot's distro boot)
                  --bif: bulkhead.img and boot.bif, the BIF bootgen packs into a
                  BOOT.BIN with the vendor's FSBL, PMU firmware and BL31 (from DIR,
                  default $BULKHEAD_ZCU102_FIRMWARE or firmware/zcu102);
                  boards: zcu102 (docs/boards/zcu102.md)
  check CONFIG...
                  validate configs as the firmware will, printing every error
  audit CONFIG... [--out DIR] [--attack [--keep-images] [--junit FILE] [--only DOMAIN]]
                  who holds every core, RAM range, device page and SPI: text here,
                  JSON and SVG in DIR (default target/bulkhead/audit/); docs/audit.md.
                  --attack: then prove it under the board's QEMU model, each domain
                  in turn replaced by an attacker of everything it does not hold,
                  the others by victims checking their memory and heartbeat; a
                  matrix here, JUnit XML in FILE, non-zero exit on any breach or
                  cell not judged (--keep-images: victims keep their real images)
  dtb CONFIG DOMAIN [--gic 2|3] [-o OUT]
                  write the device tree Bulkhead generates for DOMAIN
                  (default OUT: target/bulkhead/<config>-<domain>.dtb)
  test            run every test: host unit tests, config checks, QEMU integration,
                  and a short run of every fuzz target
  bench [size|boot|scaling|latency|exits|disk|workload|linux]
                  measure firmware size (and where its code goes), boot time, the start
                  cost of 1 to 8 domains, interrupt latency, Linux boot, a
                  Linux workload under icount, NVMe read throughput through
                  the SMMU and idle Linux exits (or only one part)
  lint            cargo fmt --check and clippy (warnings are errors) on every crate
  fuzz [TARGET...] [--runs N | --time SECS] [--seed-only]
                  build the fuzz targets (nightly + cargo-fuzz, installed if missing),
                  seed fuzz/corpus/ from the configs and run each target (all by
                  default, 20 s each); docs/fuzzing.md
  setup           install what is missing (QEMU 10, dtc, the Rust targets, and for
                  image and its tests: dosfstools, mtools, u-boot-tools, u-boot-qemu,
                  xilinx-bootgen)

test-only build flags: --unchecked, --truncate-config, --corrupt-config"
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        eprintln!("{}", usage());
        return ExitCode::FAILURE;
    };
    let rest = &args[1..];
    let r = match cmd.as_str() {
        "run" => run(rest),
        "build" => build(rest),
        "image" => image_cmd(rest),
        "check" => check(rest),
        "audit" => audit(rest),
        "dtb" => dtb(rest),
        "test" => test(rest),
        "bench" => bench(rest),
        "lint" => lint(),
        "fuzz" => fuzz(rest),
        "setup" => tools::ensure_rust()
            .and_then(|()| tools::ensure())
            .and_then(|()| tools::ensure_packaged(tools::IMAGE_TOOLS).map(|_| ())),
        "help" | "--help" | "-h" => {
            println!("{}", usage());
            Ok(())
        }
        other => Err(format!("unknown command {other:?}\n{}", usage()).into()),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Parsed common options.
struct Opts {
    config: PathBuf,
    out: Option<PathBuf>,
    tamper: Tamper,
    machine: Machine,
    timeout: Option<u64>,
}

fn parse(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        config: image::default_config(),
        out: None,
        tamper: Tamper::None,
        machine: Machine::default(),
        timeout: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match a.as_str() {
            "-o" => o.out = Some(PathBuf::from(value("-o")?)),
            "--gic" => {
                o.machine.gic = match value("--gic")?.as_str() {
                    "2" => 2,
                    "3" => 3,
                    g => {
                        return Err(
                            format!("--gic {g}: QEMU virt offers GIC versions 2 and 3").into()
                        )
                    }
                }
            }
            "--cpu" => o.machine.cpu = value("--cpu")?,
            "--timeout" => {
                o.timeout = Some(
                    value("--timeout")?
                        .parse()
                        .map_err(|_| "--timeout takes seconds")?,
                )
            }
            "-h" | "--help" => {
                println!("{}", usage());
                std::process::exit(0);
            }
            "--unchecked" => o.tamper = Tamper::Unchecked,
            "--truncate-config" => o.tamper = Tamper::TruncateConfig,
            "--corrupt-config" => o.tamper = Tamper::CorruptConfig,
            s if s.starts_with('-') => {
                return Err(format!("unknown option {s}\n{}", usage()).into())
            }
            path => o.config = PathBuf::from(path),
        }
    }
    if !o.config.exists() {
        return Err(format!("config {} does not exist", o.config.display()).into());
    }
    // The machine QEMU starts is the config's board's.
    if let Some(b) = image::compile_dts(&o.config)
        .ok()
        .and_then(|blob| image::board_of(&blob))
    {
        o.machine.board = b.name.into();
    }
    Ok(o)
}

fn build_config(o: &Opts) -> Result<PathBuf> {
    image::build_binaries()?;
    let out = o
        .out
        .clone()
        .unwrap_or_else(|| image::image_path(&o.config));
    let plan = image::build_image(&o.config, &out, o.tamper)?;
    let size = std::fs::metadata(&out)?.len();
    if let Some(p) = &plan {
        for w in xtask::report_warnings(&o.config, p) {
            eprintln!("{w}");
        }
    }
    match plan {
        Some(p) => eprintln!(
            "xtask: {} ({} bytes, {} domain(s): {})",
            out.display(),
            size,
            p.domains.len(),
            p.domains
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => eprintln!(
            "xtask: {} ({} bytes, NOT checked: {:?})",
            out.display(),
            size,
            o.tamper
        ),
    }
    Ok(out)
}

fn build(args: &[String]) -> Result<()> {
    let o = parse(args)?;
    build_config(&o).map(|_| ())
}

/// `cargo xtask image CONFIG [--sd OUT [--firmware-dir DIR] [--armstub PATH]] [--uboot DIR]`.
fn image_cmd(args: &[String]) -> Result<()> {
    use xtask::flash;
    let (mut config, mut sd, mut uboot, mut bif) = (None, None, None, None);
    let mut opts = flash::SdOptions::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| -> Result<PathBuf> {
            it.next()
                .map(PathBuf::from)
                .ok_or_else(|| format!("{name} needs a value\n{}", usage()).into())
        };
        match a.as_str() {
            "--sd" => sd = Some(value("--sd")?),
            "--uboot" => uboot = Some(value("--uboot")?),
            "--bif" => bif = Some(value("--bif")?),
            "--firmware-dir" => opts.firmware_dir = Some(value("--firmware-dir")?),
            "--armstub" => opts.armstub = Some(value("--armstub")?),
            "-h" | "--help" => {
                println!("{}", usage());
                return Ok(());
            }
            s if s.starts_with('-') => {
                return Err(format!("unknown option {s}\n{}", usage()).into())
            }
            c if config.is_none() => config = Some(PathBuf::from(c)),
            c => return Err(format!("one CONFIG only (also given: {c})").into()),
        }
    }
    let config = config.ok_or_else(|| format!("image: which CONFIG?\n{}", usage()))?;
    if !config.exists() {
        return Err(format!("config {} does not exist", config.display()).into());
    }
    if sd.is_none() && uboot.is_none() && bif.is_none() {
        return Err(format!(
            "image: say which boot media: --sd OUT.img, --uboot OUT_DIR and/or --bif OUT_DIR\n{}",
            usage()
        )
        .into());
    }
    if sd.is_none() && (opts.armstub.is_some() || (bif.is_none() && opts.firmware_dir.is_some())) {
        return Err("--firmware-dir is an option of --sd and --bif, --armstub of --sd".into());
    }
    if let Some(out) = &sd {
        let img = flash::sd_image(&config, out, &opts)?;
        eprintln!(
            "xtask: {} (SD card image: config.txt, firmware, {} from {}); flash it as docs/boards/rpi4.md says",
            out.display(),
            flash::IMAGE_NAME,
            img.display()
        );
    }
    if let Some(dir) = &bif {
        let f = flash::bif_image(&config, dir, opts.firmware_dir.as_deref())?;
        eprintln!(
            "xtask: {} and {}; make BOOT.BIN with `bootgen -arch {} -image {} -o BOOT.BIN -w on` (docs/boards/{}.md)",
            f.image.display(),
            f.bif.display(),
            f.layout.arch,
            f.bif.display(),
            f.layout.board
        );
        if !f.missing.is_empty() {
            eprintln!(
                "xtask: note: the BIF names {}, not there yet: they come from {} (or name \
                 another directory with --firmware-dir or {})",
                f.missing
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                f.layout.firmware_source,
                f.layout.firmware_env
            );
        }
    }
    if let Some(dir) = &uboot {
        let f = flash::uboot_image(&config, dir)?;
        eprintln!(
            "xtask: {}, {} and {} (U-Boot: distro boot runs boot.scr from the disk's first partition)",
            f.image.display(),
            f.script.display(),
            f.disk.display()
        );
    }
    Ok(())
}

fn run(args: &[String]) -> Result<()> {
    let o = parse(args)?;
    tools::ensure()?;
    let img = build_config(&o)?;
    // Interactive runs are unlimited unless asked; scripted runs get a limit.
    let timeout = o.timeout.or(if std::io::stdin().is_terminal() {
        None
    } else {
        Some(60)
    });
    eprintln!(
        "xtask: booting under QEMU: partitioner console lines start with \"uart0| \", the second UART's with \"uart1| \"; \
         typed lines go to the second UART, a line starting with Ctrl-a to the partitioner console (Ctrl-a s: exit counts; \
         Ctrl-a three times: console input to the next domain on the virtual console; Ctrl-a, a space, TEXT: TEXT to that domain); Ctrl-c quits"
    );
    let machine = Machine {
        uart1_input: true,
        uart0_input: true,
        // Interactive runs have no limit worth the name.
        timeout: Duration::from_secs(timeout.unwrap_or(7 * 24 * 3600)),
        ..o.machine.clone()
    };
    let dir = target_dir().join("bulkhead").join("run");
    let mut qemu = Run::start(&machine, &img, &dir)
        .map_err(|e| format!("cannot start {}: {e}", tools::QEMU))?;
    // What is typed goes to the second UART, a line at a time (Enter is a
    // carriage return, as a terminal sends it); a line starting with Ctrl-a
    // goes to the partitioner console instead (`partitioner_console_line`).
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(mut line) = line else { break };
            line.push('\r');
            if tx.send(line.into_bytes()).is_err() {
                break;
            }
        }
    });
    let mut shown = [LineRelay::new("uart0| "), LineRelay::new("uart1| ")];
    loop {
        let done = qemu.finished();
        for (relay, uart) in shown.iter_mut().zip([UART0, UART1]) {
            relay.show(&qemu.output(uart), done);
        }
        if done {
            break;
        }
        while let Ok(bytes) = rx.try_recv() {
            if let Some(raw) = partitioner_console_line(&bytes) {
                let _ = qemu.send_uart0(raw);
            } else {
                let _ = qemu.send_uart1(&bytes);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// What a typed line (ending in its Enter, `\r`) sends to the partitioner
/// console, if it starts with Ctrl-a: the line as typed, Enter included
/// (`Ctrl-a s`, `Ctrl-a Ctrl-a Ctrl-a`, whose Enter then goes to the domain
/// that has the input now), except that `Ctrl-a` and one space in front of
/// text send only the text: how to type a command line to the domain with
/// the input focus. `None` for a line for the second UART.
fn partitioner_console_line(line: &[u8]) -> Option<&[u8]> {
    match line {
        [bulkhead_core::exits::ESCAPE, b' ', text @ ..] => Some(text),
        [bulkhead_core::exits::ESCAPE, ..] => Some(line),
        _ => None,
    }
}

/// Shows a UART's output on the terminal whole line by whole line, each
/// behind the UART's tag, so two UARTs never mix within a line. A partial
/// line (a shell prompt) is shown once it has waited a moment.
struct LineRelay {
    tag: &'static str,
    /// Bytes of the output already shown.
    done: usize,
    /// The partial line already shown, and since when it was waiting.
    partial_since: Option<std::time::Instant>,
}

impl LineRelay {
    fn new(tag: &'static str) -> Self {
        Self {
            tag,
            done: 0,
            partial_since: None,
        }
    }

    fn show(&mut self, out: &str, flush: bool) {
        use std::io::Write;
        let Some(new) = out.get(self.done..) else {
            return;
        };
        let mut stdout = std::io::stdout().lock();
        let whole = new.rfind('\n').map_or(0, |i| i + 1);
        for line in new[..whole].lines() {
            let _ = writeln!(stdout, "{}{line}", self.tag);
        }
        self.done += whole;
        let rest = &new[whole..];
        if rest.is_empty() {
            self.partial_since = None;
        } else {
            let since = *self
                .partial_since
                .get_or_insert_with(std::time::Instant::now);
            if flush || since.elapsed() > Duration::from_millis(300) {
                let _ = writeln!(stdout, "{}{rest}", self.tag);
                self.done += rest.len();
                self.partial_since = None;
            }
        }
        let _ = stdout.flush();
    }
}

fn dtb(args: &[String]) -> Result<()> {
    let mut pos = Vec::new();
    let mut gic = bulkhead_core::plan::GicVersion::V3;
    let mut out = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--gic" => {
                gic = match it.next().map(String::as_str) {
                    Some("2") => bulkhead_core::plan::GicVersion::V2,
                    Some("3") => bulkhead_core::plan::GicVersion::V3,
                    other => return Err(format!("--gic {other:?}: expected 2 or 3").into()),
                }
            }
            "-o" => out = Some(PathBuf::from(it.next().ok_or("-o needs a path")?)),
            _ => pos.push(a.clone()),
        }
    }
    let [config, domain] = pos.as_slice() else {
        return Err("usage: cargo xtask dtb CONFIG DOMAIN [--gic 2|3] [-o OUT]".into());
    };
    let config = Path::new(config);
    image::build_binaries()?;
    let blob = image::compile_dts(config)?;
    let fw_len = image::firmware_len_for_config(&blob)?;
    let checked =
        image::check_blob(config, blob, fw_len).map_err(|r| xtask::report_rejected(config, &r))?;
    let d = checked
        .plan
        .domains
        .iter()
        .find(|d| d.name.as_str() == domain.as_str())
        .ok_or_else(|| format!("{}: no domain named {domain:?}", config.display()))?;
    let mut buf = vec![0u8; bulkhead_core::dtb::DTB_MAX];
    let len = bulkhead_core::dtb::domain_tree(d, gic, &mut buf).map_err(|e| format!("{e}"))?;
    let stem = config
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("config");
    let out = out.unwrap_or_else(|| {
        target_dir()
            .join("bulkhead")
            .join(format!("{stem}-{domain}.dtb"))
    });
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, &buf[..len])?;
    println!(
        "{} ({len} bytes); inspect it with: dtc -I dtb -O dts {}",
        out.display(),
        out.display()
    );
    Ok(())
}

fn check(args: &[String]) -> Result<()> {
    if args.is_empty() {
        return Err("usage: cargo xtask check CONFIG...".into());
    }
    image::build_binaries()?;
    let mut failed = 0;
    for a in args {
        let path = Path::new(a);
        let blob = match image::compile_dts(path) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{e}");
                failed += 1;
                continue;
            }
        };
        let fw_len = match image::firmware_len_for_config(&blob) {
            Ok(n) => n,
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                failed += 1;
                continue;
            }
        };
        match image::check_blob(path, blob, fw_len) {
            Ok(c) => {
                println!("{}: ok, {} domain(s)", path.display(), c.plan.domains.len());
                for w in xtask::report_warnings(path, &c.plan) {
                    println!("{w}");
                }
                for d in &c.plan.domains {
                    println!(
                        "  {} (VMID {}): cores {:?}, entry {:#x}",
                        d.name,
                        d.vmid,
                        d.cpus.as_slice(),
                        d.entry
                    );
                    for m in d.mappings() {
                        println!(
                            "    {:?} IPA {:#x}+{:#x} -> PA {:#x}",
                            m.kind, m.ipa, m.size, m.pa
                        );
                    }
                }
            }
            Err(r) => {
                eprintln!("{}", xtask::report_rejected(path, &r));
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(format!("{failed} config(s) rejected").into());
    }
    Ok(())
}

/// `cargo xtask audit CONFIG... [--out DIR]`: the static isolation report
/// of each config (text here; JSON and SVG files in DIR, by default
/// `target/bulkhead/audit/`).
fn audit(args: &[String]) -> Result<()> {
    let mut configs = Vec::new();
    let mut out = target_dir().join("bulkhead").join("audit");
    let (mut attack, mut junit) = (false, None);
    let mut opts = xtask::attack::Options::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--out" => out = PathBuf::from(it.next().ok_or("--out needs a directory")?),
            "--attack" => attack = true,
            "--keep-images" => opts.keep_images = true,
            "--junit" => junit = Some(PathBuf::from(it.next().ok_or("--junit needs a file")?)),
            "--only" => opts
                .only
                .push(it.next().ok_or("--only needs a domain")?.clone()),
            "-h" | "--help" => {
                println!("{}", usage());
                return Ok(());
            }
            s if s.starts_with('-') => {
                return Err(format!("unknown option {s}\n{}", usage()).into())
            }
            c => configs.push(PathBuf::from(c)),
        }
    }
    if configs.is_empty() {
        return Err("usage: cargo xtask audit CONFIG... [--out DIR]".into());
    }
    image::build_binaries()?;
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mut failed = 0;
    for path in &configs {
        let checked = image::compile_dts(path).and_then(|blob| {
            let fw_len = image::firmware_len_for_config(&blob)?;
            image::check_blob(path, blob, fw_len)
                .map(|c| (c, fw_len))
                .map_err(|r| xtask::report_rejected(path, &r).into())
        });
        let (checked, fw_len) = match checked {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}");
                failed += 1;
                continue;
            }
        };
        let board = board_support::by_name(checked.plan.board)
            .ok_or_else(|| format!("unknown board {}", checked.plan.board))?;
        let footprint = image::footprint(&checked, fw_len)?;
        let report =
            xtask::audit::report(&path.display().to_string(), board, &checked.plan, footprint);
        print!("{}", report.text());
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "config".into());
        let json = out.join(format!("{stem}.json"));
        let svg = out.join(format!("{stem}.svg"));
        std::fs::write(&json, report.json())
            .and_then(|()| std::fs::write(&svg, report.svg()))
            .map_err(|e| format!("cannot write the report under {}: {e}", out.display()))?;
        println!("written: {} and {}\n", json.display(), svg.display());
    }
    if failed > 0 {
        return Err(format!("{failed} config(s) rejected").into());
    }
    if attack {
        opts.out = out.join("attack");
        return xtask::attack::run_cli(&configs, &opts, junit.as_deref());
    }
    Ok(())
}

/// Images the QEMU tests boot, built once and shared by every test.
pub const TEST_IMAGES: &[(&str, &str, Tamper)] = &[
    ("isolation", "configs/qemu-virt/isolation.dts", Tamper::None),
    ("rpi4-isolation", "configs/rpi4/isolation.dts", Tamper::None),
    ("rpi4-irq", "tests/configs/rpi4-irq.dts", Tamper::None),
    ("dma-attack", "tests/configs/dma-attack.dts", Tamper::None),
    ("misaligned", "tests/configs/misaligned.dts", Tamper::None),
    (
        "dma-attack-gicv2",
        "tests/configs/dma-attack-gicv2.dts",
        Tamper::None,
    ),
    (
        "virtio-bypass",
        "tests/configs/virtio-bypass.dts",
        Tamper::None,
    ),
    (
        "dma-fixed-bar",
        "tests/configs/dma-fixed-bar.dts",
        Tamper::None,
    ),
    (
        "dma-fixed-bar-misaligned",
        "tests/configs/dma-fixed-bar-misaligned.dts",
        Tamper::None,
    ),
    ("linux-nvme", "tests/configs/linux-nvme.dts", Tamper::None),
    (
        "linux-nvme-pair",
        "tests/configs/linux-nvme-pair.dts",
        Tamper::None,
    ),
    (
        "linux-nvme-net",
        "tests/configs/linux-nvme-net.dts",
        Tamper::None,
    ),
    (
        "dma-attack-unprotected",
        "tests/configs/dma-attack-unprotected.dts",
        Tamper::None,
    ),
    (
        "imx8mp-isolation",
        "configs/imx8mp-evk/isolation.dts",
        Tamper::None,
    ),
    ("imx8mp-irq", "tests/configs/imx8mp-irq.dts", Tamper::None),
    (
        "imx8mp-linux",
        "configs/imx8mp-evk/default.dts",
        Tamper::None,
    ),
    (
        "imx8mp-linux-shell",
        "tests/configs/imx8mp-linux-shell.dts",
        Tamper::None,
    ),
    (
        "rpi4-linux-shell",
        "tests/configs/rpi4-linux-shell.dts",
        Tamper::None,
    ),
    (
        "rpi4-lifecycle",
        "tests/configs/rpi4-lifecycle.dts",
        Tamper::None,
    ),
    (
        "zcu102-isolation",
        "configs/zcu102/isolation.dts",
        Tamper::None,
    ),
    ("zcu102-irq", "tests/configs/zcu102-irq.dts", Tamper::None),
    (
        "zcu102-linux",
        "tests/configs/zcu102-linux.dts",
        Tamper::None,
    ),
    (
        "zcu102-console",
        "tests/configs/zcu102-console.dts",
        Tamper::None,
    ),
    (
        "corrupt-image",
        "configs/qemu-virt/isolation.dts",
        Tamper::CorruptImage("probe"),
    ),
    ("linux", "configs/qemu-virt/default.dts", Tamper::None),
    (
        "linux-attack",
        "tests/configs/linux-attack.dts",
        Tamper::None,
    ),
    ("linux-pair", "tests/configs/linux-pair.dts", Tamper::None),
    ("stop-policy", "tests/configs/stop-policy.dts", Tamper::None),
    (
        "dma-accepted",
        "tests/configs/dma-accepted.dts",
        Tamper::None,
    ),
    ("irq", "tests/configs/irq.dts", Tamper::None),
    (
        "console-input",
        "tests/configs/console-input.dts",
        Tamper::None,
    ),
    (
        "console-host-off",
        "tests/configs/console-host-off.dts",
        Tamper::None,
    ),
    ("linux-shell", "tests/configs/linux-shell.dts", Tamper::None),
    ("exits", "tests/configs/exits.dts", Tamper::None),
    (
        "exits-boot-core-stops",
        "tests/configs/exits-boot-core-stops.dts",
        Tamper::None,
    ),
    (
        "trigger-flip",
        "tests/configs/trigger-flip.dts",
        Tamper::None,
    ),
    ("sgi-suspend", "tests/configs/sgi-suspend.dts", Tamper::None),
    (
        "set-way-flood",
        "tests/configs/set-way-flood.dts",
        Tamper::None,
    ),
    (
        "supplied-tree",
        "tests/configs/supplied-tree.dts",
        Tamper::None,
    ),
    (
        "foreign-tree-unchecked",
        "tests/configs/rejected-trees/foreign-uart.dts",
        Tamper::Unchecked,
    ),
    ("irq-attack", "tests/configs/irq-attack.dts", Tamper::None),
    ("irq-hog", "tests/configs/irq-hog.dts", Tamper::None),
    ("hardening", "tests/configs/hardening.dts", Tamper::None),
    (
        "hardening-aarch32",
        "tests/configs/hardening-aarch32.dts",
        Tamper::None,
    ),
    ("lifecycle", "tests/configs/lifecycle.dts", Tamper::None),
    (
        "restart-storm",
        "tests/configs/restart-storm.dts",
        Tamper::None,
    ),
    (
        "console-flood",
        "tests/configs/console-flood.dts",
        Tamper::None,
    ),
    (
        "invalid-unchecked",
        "tests/configs/invalid/cpu-shared.dts",
        Tamper::Unchecked,
    ),
    (
        "truncated-config",
        "configs/qemu-virt/isolation.dts",
        Tamper::TruncateConfig,
    ),
    (
        "corrupt-config",
        "configs/qemu-virt/isolation.dts",
        Tamper::CorruptConfig,
    ),
];

/// Run a `cargo test` command, echoing its output, and add its `test result:`
/// counts to `tally` (passed, failed).
fn cargo_test(cmd: &mut Command, what: &str, tally: &mut (u64, u64)) -> Result<()> {
    use std::io::{BufRead, BufReader};
    let mut child = cmd.stdout(std::process::Stdio::piped()).spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            let num = |key: &str| -> u64 {
                rest.split("; ")
                    .find_map(|p| {
                        p.trim_start_matches("ok. ")
                            .trim_start_matches("FAILED. ")
                            .strip_suffix(key)
                    })
                    .and_then(|n| n.trim().parse().ok())
                    .unwrap_or(0)
            };
            tally.0 += num(" passed");
            tally.1 += num(" failed");
        }
    }
    let st = child.wait()?;
    if !st.success() {
        println!("bulkhead: {} passed, {} failed", tally.0, tally.1.max(1));
        return Err(format!("{what} failed ({st})").into());
    }
    Ok(())
}

fn test(args: &[String]) -> Result<()> {
    tools::ensure()?;
    // The boot media tests make FAT images and boot U-Boot.
    tools::ensure_packaged(tools::IMAGE_TOOLS)?;
    let mut tally = (0, 0);
    eprintln!("xtask: host unit tests");
    cargo_test(
        cargo().args([
            "test",
            "-p",
            "bulkhead-core",
            "-p",
            "board-support",
            "-p",
            "xtask",
        ]),
        "host unit tests",
        &mut tally,
    )?;
    eprintln!(
        "xtask: building firmware, domains and test images (once, shared by every QEMU test)"
    );
    image::build_binaries()?;
    let dir = target_dir().join("bulkhead").join("test-images");
    for (name, config, tamper) in TEST_IMAGES {
        image::build_image(
            &root().join(config),
            &dir.join(format!("{name}.img")),
            *tamper,
        )?;
    }
    eprintln!("xtask: config checks and QEMU integration tests");
    let mut c = cargo();
    c.args(["test", "-p", "bulkhead-tests", "--"])
        .args(args)
        .env("BULKHEAD_TEST_IMAGES", &dir);
    cargo_test(&mut c, "integration tests", &mut tally)?;
    // A short budget of every fuzz target (the whole run only: a filter
    // asks for particular tests). A crash, or a fuzzing tool that cannot be
    // had, is a failure.
    let mut fuzz_failed = None;
    if args.is_empty() {
        eprintln!("xtask: fuzz smoke: every fuzz target for {FUZZ_SMOKE_SECS} s (docs/fuzzing.md)");
        match xtask::fuzz::run(&[], xtask::fuzz::Budget::Seconds(FUZZ_SMOKE_SECS)) {
            Ok(()) => tally.0 += xtask::fuzz::TARGETS.len() as u64,
            Err(e) => {
                eprintln!("xtask: error: fuzz smoke: {e}");
                tally.1 += 1;
                fuzz_failed = Some(e);
            }
        }
    }
    // The closing line: every test of the run, host, QEMU and fuzz together.
    println!("bulkhead: {} passed, {} failed", tally.0, tally.1);
    match fuzz_failed {
        Some(e) => Err(format!("fuzz smoke: {e}").into()),
        None => Ok(()),
    }
}

/// Seconds of fuzzing per target in `cargo xtask test`.
const FUZZ_SMOKE_SECS: u64 = 5;

fn fuzz(args: &[String]) -> Result<()> {
    use xtask::fuzz::{Budget, DEFAULT_SECONDS};
    let mut targets = Vec::new();
    let mut budget = Budget::Seconds(DEFAULT_SECONDS);
    let mut seed_only = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut number = |name: &str| -> Result<u64> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{name} takes a number").into())
        };
        match a.as_str() {
            "--runs" => budget = Budget::Runs(number("--runs")?),
            "--time" => budget = Budget::Seconds(number("--time")?),
            "--seed-only" => seed_only = true,
            s if s.starts_with('-') => {
                return Err(format!("unknown option {s}\n{}", usage()).into())
            }
            t => targets.push(t.to_string()),
        }
    }
    if seed_only {
        let n = xtask::fuzz::seed()?;
        eprintln!("xtask: {n} seeds in fuzz/corpus/");
        return Ok(());
    }
    xtask::fuzz::run(&targets, budget)
}

fn lint() -> Result<()> {
    tools::ensure_rust()?;
    run_shown(
        cargo().args(["fmt", "--all", "--", "--check"]),
        "cargo fmt --check",
    )?;
    // The fuzz crate is not a workspace member (nightly only): check its
    // formatting with rustfmt directly, which needs neither nightly nor its
    // dependencies.
    let mut fuzz_sources = vec![root().join("fuzz/build.rs"), root().join("fuzz/src/lib.rs")];
    if let Ok(dir) = std::fs::read_dir(root().join("fuzz/fuzz_targets")) {
        let mut targets: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
        targets.sort();
        fuzz_sources.extend(targets);
    }
    run_shown(
        Command::new("rustfmt")
            .current_dir(root())
            .args(["--check", "--edition", "2021"])
            .args(&fuzz_sources),
        "rustfmt --check (fuzz/)",
    )?;
    run_shown(
        cargo().args([
            "clippy",
            "--all-targets",
            "-p",
            "bulkhead-core",
            "-p",
            "board-support",
            "-p",
            "xtask",
            "-p",
            "bulkhead-tests",
            "--",
            "-D",
            "warnings",
        ]),
        "clippy (host crates)",
    )?;
    run_shown(
        cargo().args([
            "clippy",
            "--release",
            "-p",
            "bulkhead",
            "--target",
            image::FIRMWARE_TARGET,
            "--",
            "-D",
            "warnings",
        ]),
        "clippy (firmware)",
    )?;
    let mut c = cargo();
    c.args([
        "clippy",
        "--release",
        "--target",
        image::DOMAIN_TARGET,
        "-p",
        "bulkhead-rt",
    ]);
    for d in image::DOMAIN_CRATES {
        c.args(["-p", d]);
    }
    run_shown(c.args(["--", "-D", "warnings"]), "clippy (domains)")
}

/// The parts `bench` can run alone.
const BENCH_PARTS: [&str; 8] = [
    "size", "boot", "scaling", "latency", "linux", "workload", "disk", "exits",
];

fn bench(args: &[String]) -> Result<()> {
    if let Some(other) = args.first().filter(|a| !BENCH_PARTS.contains(&a.as_str())) {
        return Err(format!(
            "bench: no part {other:?}: give one of {}, or none for all of them",
            BENCH_PARTS.join(", ")
        )
        .into());
    }
    tools::ensure()?;
    image::build_binaries()?;
    // `bench exits` / `bench latency`: only that part.
    match args.first().map(String::as_str) {
        Some("exits") => return bench_exits(),
        Some("disk") => return bench_disk(),
        Some("latency") => return bench_latency(),
        Some("workload") => return bench_workload(),
        Some("linux") => return bench_linux(),
        Some("boot") => return boot_bench::bench_boot(),
        Some("scaling") => return boot_bench::bench_scaling(),
        _ => {}
    }
    // Boot figures of the bare-metal isolation demo (Linux has its own below).
    let config = root().join("configs/qemu-virt/isolation.dts");
    let img = image::image_path(&config);
    image::build_image(&config, &img, Tamper::None)?;
    if !args.is_empty() {
        return bench_size(&img);
    }
    bench_report(&img)?;
    boot_bench::bench_boot()?;
    boot_bench::bench_scaling()?;
    bench_latency()?;
    bench_linux()?;
    bench_workload()?;
    bench_disk()?;
    bench_exits()
}

/// The `Ctrl-a s` answers on the partitioner console: (ms after reset,
/// each domain's counts).
fn exit_reports(text: &str) -> Vec<(f64, Vec<(String, bulkhead_core::exits::Counts)>)> {
    let mut v: Vec<(f64, Vec<_>)> = Vec::new();
    for l in text.lines() {
        if let Some(rest) = l.split_once("bulkhead: exit counts of ") {
            let ms = rest
                .1
                .split_once(", ")
                .and_then(|(_, t)| t.split(' ').next()?.parse().ok())
                .unwrap_or(f64::NAN);
            v.push((ms, Vec::new()));
        } else if let (Some(last), Some((_, rest))) =
            (v.last_mut(), l.split_once("bulkhead: exits domain \""))
        {
            if let Some((name, counts)) = rest.split_once("\": ") {
                if let Some(c) = bulkhead_core::exits::Counts::parse(counts) {
                    last.1.push((name.to_string(), c));
                }
            }
        }
    }
    v
}

/// Exits per second, by cause, of the default configuration's Linux once
/// it idles in its init (a heartbeat line a second on its own UART): the
/// difference between two `Ctrl-a s` answers some seconds apart, over the
/// partitioner's clock between them. Median of three runs by total.
fn bench_exits() -> Result<()> {
    use bulkhead_core::exits::{Cause, Counts};
    xtask::linux::ensure_guest()?;
    let config = root().join("configs/qemu-virt/default.dts");
    let img = image::image_path(&config);
    image::build_image(&config, &img, Tamper::None)?;
    let dir = target_dir().join("bulkhead").join("bench-exits");
    let mut rates: Vec<(f64, [f64; bulkhead_core::exits::CAUSES])> = Vec::new();
    for i in 0..3 {
        let m = Machine {
            uart0_input: true,
            timeout: Duration::from_secs(300),
            ..Machine::default()
        };
        let mut run = Run::start(&m, &img, &dir.join(format!("run-{i}")))?;
        run.wait_line(UART1, "linux-init: heartbeat 3", Duration::from_secs(240))?;
        let sample = |run: &mut Run, n: usize| -> Result<(f64, Counts)> {
            run.send_uart0(b"\x01s")?;
            let start = std::time::Instant::now();
            loop {
                let r = exit_reports(&run.output(UART0));
                if let Some((ms, lines)) = r.get(n).filter(|r| r.1.len() == 3) {
                    let (_, c) = lines
                        .iter()
                        .find(|(d, _)| d == "linux")
                        .ok_or("no exits line of linux")?;
                    return Ok((*ms, *c));
                }
                if start.elapsed() > Duration::from_secs(30) {
                    return Err(format!("no answer to Ctrl-a s\n{}", run.transcript()).into());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        };
        let (t0, c0) = sample(&mut run, 0)?;
        std::thread::sleep(Duration::from_secs(5));
        let (t1, c1) = sample(&mut run, 1)?;
        let secs = (t1 - t0) / 1000.0;
        let mut r = [0.0; bulkhead_core::exits::CAUSES];
        for c in Cause::ALL {
            r[c.index()] = c1.get(c).wrapping_sub(c0.get(c)) as f64 / secs;
        }
        rates.push(((c1.total() - c0.total()) as f64 / secs, r));
    }
    rates.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (total, r) = rates[rates.len() / 2];
    let by_cause: Vec<String> = Cause::ALL
        .iter()
        .map(|c| format!("{}={:.1}", c.name(), r[c.index()]))
        .collect();
    println!(
        "idle Linux (default config's linux, 2 vCPUs, after its init), exits per second (partitioner clock, median of 3 runs of 5 s): {} total={total:.1}",
        by_cause.join(" ")
    );
    Ok(())
}

/// `<t0> to <t1> s` of the init's md5 line, as seconds.
fn md5_seconds(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.contains("linux-init: md5 "))?;
    let rest = line.split(" from ").nth(1)?;
    let (t0, rest) = rest.split_once(" to ")?;
    let t1 = rest.strip_suffix(" s")?;
    Some(t1.trim().parse::<f64>().ok()? - t0.trim().parse::<f64>().ok()?)
}

/// The Linux guest alone on QEMU, as the benches run it natively: the same
/// kernel and initramfs as the domain's, 2 vCPUs, 256 MiB, `append` as its
/// command line.
fn native_linux(guest: &xtask::linux::LinuxGuest, append: &str) -> Machine {
    Machine {
        virtualization: false,
        smp: 2,
        mem_mib: 256,
        extra: vec![
            "-initrd".into(),
            guest.initramfs.display().to_string(),
            "-append".into(),
            append.into(),
        ],
        ..Machine::default()
    }
}

/// The machine the Linux benchmarks run Bulkhead on: QEMU `virt` with the
/// two cores the domain owns (as the native run has) and room for the
/// partitioner beside the domain's 256 MiB. Not the 4-core default: QEMU
/// wakes every vCPU thread for each broadcast TLB invalidation, powered
/// off or not, and Linux's boot does some 50 000 of them (patching its
/// ftrace call sites): two idle vCPUs more cost the same kernel 0.3-0.6 s
/// of wall clock, natively too (`-smp 4 maxcpus=2`). Real cores pay
/// nothing for a broadcast to an idle core.
fn bulkhead_linux_machine() -> Machine {
    Machine {
        smp: 2,
        mem_mib: 512,
        ..Machine::default()
    }
}

/// Linux boot time to its init and an md5sum workload inside it, natively
/// and under Bulkhead (same kernel, initramfs, 2 vCPUs and 256 MiB, on a
/// 2-core machine: [`bulkhead_linux_machine`]), median of five runs each.
/// Wall clock, so the figures move with host load.
fn bench_linux() -> Result<()> {
    let guest = xtask::linux::ensure_guest()?;
    let config = root().join("configs/qemu-virt/linux-bench.dts");
    let img = image::image_path(&config);
    image::build_image(&config, &img, Tamper::None)?;
    let dir = target_dir().join("bulkhead").join("bench-linux");
    let append = "console=ttyAMA0 rdinit=/init quiet bulkhead.md5=64";
    // (who, boot times, md5 by the guest's clock, md5 by the host's), runs
    // alternated between native and Bulkhead so that both see the same
    // host load (wall clock under TCG moves with it by tens of percent).
    type Timings = (&'static str, Vec<f64>, Vec<f64>, Vec<f64>);
    const RUNS: usize = 5;
    let mut results: Vec<Timings> = ["native", "Bulkhead"]
        .into_iter()
        .map(|who| (who, Vec::new(), Vec::new(), Vec::new()))
        .collect();
    for i in 0..RUNS {
        for (native, (_, boots, md5s, md5_walls)) in [true, false].into_iter().zip(&mut results) {
            let (m, kernel, uart) = if native {
                let m = native_linux(&guest, append);
                (m, guest.kernel.clone(), xtask::qemu::UART0)
            } else {
                (bulkhead_linux_machine(), img.clone(), xtask::qemu::UART1)
            };
            let name = format!("{}-{i}", if native { "native" } else { "bulkhead" });
            let mut run = xtask::qemu::Run::start(&m, &kernel, &dir.join(name))?;
            run.wait_line(uart, "linux-init: start", Duration::from_secs(300))?;
            boots.push(run.elapsed().as_secs_f64());
            // The workload by the guest's own clock, and by the host's as a
            // cross-check (to the harness's polling, some 10 ms).
            run.wait_line(uart, "linux-init: md5-start ", Duration::from_secs(300))?;
            let wall0 = run.elapsed().as_secs_f64();
            run.wait_line(uart, "linux-init: md5 ", Duration::from_secs(300))?;
            md5_walls.push(run.elapsed().as_secs_f64() - wall0);
            md5s.push(md5_seconds(&run.output(uart)).ok_or("no md5 timing")?);
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (n_boot, n_md5) = (median(results[0].1.clone()), median(results[0].2.clone()));
    let (b_boot, b_md5) = (median(results[1].1.clone()), median(results[1].2.clone()));
    println!(
        "Linux {} (2 vCPUs, 256 MiB, QEMU virt with 2 cores both ways), wall clock, median of {RUNS} (runs alternated):",
        guest.version
    );
    let all = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "  QEMU start -> init, each run: native {}; Bulkhead {}",
        all(&results[0].1),
        all(&results[1].1)
    );
    println!(
        "  QEMU start -> init: native {n_boot:.2} s, Bulkhead {b_boot:.2} s (ratio {:.2})",
        b_boot / n_boot
    );
    println!(
        "  md5sum over 64 MiB in the guest, guest clock: native {n_md5:.2} s, Bulkhead {b_md5:.2} s (ratio {:.2})",
        b_md5 / n_md5.max(0.01)
    );
    let (n_wall, b_wall) = (median(results[0].3.clone()), median(results[1].3.clone()));
    println!(
        "  md5sum over 64 MiB in the guest, host clock: native {n_wall:.2} s, Bulkhead {b_wall:.2} s (ratio {:.2})",
        b_wall / n_wall.max(0.01)
    );
    Ok(())
}

/// The Linux guest's md5sum workload (`bulkhead.md5=`, 64 MiB of zeros
/// through `dd` into `md5sum`: CPU, memory, a pipe, the scheduler and the
/// timer tick) timed by the guest's own clock under
/// `-icount shift=0,sleep=off`, natively and under Bulkhead. There the
/// guest's clock counts instructions (1 ns each), so the ratio is the
/// instructions Bulkhead adds, on the guest's behalf or at EL2 (exits), to
/// the same work; one run each, as it is deterministic up to where the
/// two guests' timer ticks fall. What it cannot show: what stage 2 costs
/// in TLB misses and page walks, which TCG does not model (a two-stage walk
/// is at most 24 memory accesses instead of 4 on hardware; large blocks
/// and the TLB hide most of it there).
fn bench_workload() -> Result<()> {
    let guest = xtask::linux::ensure_guest()?;
    let config = root().join("configs/qemu-virt/linux-bench.dts");
    let img = image::image_path(&config);
    image::build_image(&config, &img, Tamper::None)?;
    let dir = target_dir().join("bulkhead").join("bench-workload");
    let append = "console=ttyAMA0 rdinit=/init quiet bulkhead.md5=64";
    let mut secs = Vec::new();
    let mut boots: Vec<(f64, f64)> = Vec::new();
    for native in [true, false] {
        let (m, kernel, uart) = if native {
            let m = Machine {
                icount: true,
                timeout: Duration::from_secs(600),
                ..native_linux(&guest, append)
            };
            (m, guest.kernel.clone(), xtask::qemu::UART0)
        } else {
            let m = Machine {
                icount: true,
                timeout: Duration::from_secs(600),
                ..bulkhead_linux_machine()
            };
            (m, img.clone(), xtask::qemu::UART1)
        };
        let name = if native { "native" } else { "bulkhead" };
        let mut run = xtask::qemu::Run::start(&m, &kernel, &dir.join(name))?;
        run.wait_line(uart, "linux-init: md5 ", Duration::from_secs(590))?;
        let out = run.output(uart);
        secs.push(md5_seconds(&out).ok_or("no md5 timing")?);
        // Boot to init: the kernel's own clock at its init, plus, under
        // Bulkhead, the partitioner's time from reset to the kernel's
        // first instruction.
        let up = out
            .lines()
            .find_map(|l| {
                l.split_once("linux-init: up ")?
                    .1
                    .strip_suffix(" s")?
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .ok_or("no `linux-init: up` line")?;
        let before = if native {
            0.0
        } else {
            first_vcpu_ms(&run.output(xtask::qemu::UART0), "linux").ok_or("no vCPU start line")?
                / 1000.0
        };
        boots.push((before, up));
    }
    println!(
        "Linux {} under -icount (guest clock: instructions), same kernel and initramfs:",
        guest.version
    );
    let (n, b) = (boots[0].0 + boots[0].1, boots[1].0 + boots[1].1);
    println!(
        "  reset -> init: native {n:.3} s, Bulkhead {b:.3} s (ratio {:.3}; the partitioner's part {:.3} s, the kernel's {:.3} s)",
        b / n.max(0.001),
        boots[1].0,
        boots[1].1
    );
    println!(
        "  md5sum over 64 MiB: native {:.3} s, Bulkhead {:.3} s (ratio {:.3})",
        secs[0],
        secs[1],
        secs[1] / secs[0].max(0.01)
    );
    Ok(())
}

/// Milliseconds after reset at which the partitioner started vCPU 0 of
/// `domain` (its "vCPU 0 starts on core .. at .., X ms after reset" line).
fn first_vcpu_ms(log: &str, domain: &str) -> Option<f64> {
    let key = format!("domain \"{domain}\": vCPU 0 starts on core ");
    log.lines().find_map(|l| {
        l.split_once(&key)?
            .1
            .split_once(", ")?
            .1
            .strip_suffix(" ms after reset")?
            .parse()
            .ok()
    })
}

/// Disk read throughput of a Linux guest's own NVMe controller: natively
/// (the guest alone on QEMU, its DMA untranslated) and under Bulkhead (the
/// function given to the domain, its DMA through the SMMUv3 with the
/// domain's stage-2 tables), the same 64 MiB read by the guest's own clock,
/// median of 3, and the ratio.
fn bench_disk() -> Result<()> {
    let guest = xtask::linux::ensure_guest()?;
    let config = root().join("configs/qemu-virt/disk-bench.dts");
    let img = image::image_path(&config);
    image::build_image(&config, &img, Tamper::None)?;
    let dir = target_dir().join("bulkhead").join("bench-disk");
    std::fs::create_dir_all(&dir)?;
    // A raw 80 MiB disk of non-zero bytes.
    let disk = dir.join("disk.img");
    let block: Vec<u8> = (0..1 << 20)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let mut bytes = Vec::with_capacity(80 << 20);
    for _ in 0..80 {
        bytes.extend_from_slice(&block);
    }
    std::fs::write(&disk, bytes)?;
    let nvme = vec![
        "-drive".to_string(),
        format!("if=none,id=d0,format=raw,file={}", disk.display()),
        "-device".into(),
        "nvme,drive=d0,serial=bench,addr=03.0".into(),
    ];
    let mut medians = Vec::new();
    for native in [true, false] {
        let mut secs = Vec::new();
        for i in 0..3 {
            let (m, kernel, uart) = if native {
                let mut extra = vec![
                    "-initrd".into(),
                    guest.initramfs.display().to_string(),
                    "-append".into(),
                    "console=ttyAMA0 rdinit=/init quiet bulkhead.disk-read=64".into(),
                ];
                extra.extend(nvme.iter().cloned());
                let m = Machine {
                    virtualization: false,
                    smp: 2,
                    mem_mib: 256,
                    extra,
                    ..Machine::default()
                };
                (m, guest.kernel.clone(), xtask::qemu::UART0)
            } else {
                let m = Machine {
                    extra: nvme.clone(),
                    ..Machine::default()
                };
                (m, img.clone(), xtask::qemu::UART1)
            };
            let name = format!("{}-{i}", if native { "native" } else { "bulkhead" });
            let mut run = xtask::qemu::Run::start(&m, &kernel, &dir.join(name))?;
            let line = run.wait_line(uart, "linux-init: disk-read ", Duration::from_secs(300))?;
            let t: Vec<f64> = line
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            match t.as_slice() {
                [_, t0, t1] => secs.push(t1 - t0),
                _ => return Err(format!("no disk-read timing in {line:?}").into()),
            }
        }
        secs.sort_by(|a, b| a.total_cmp(b));
        medians.push(secs[1]);
    }
    let (n, b) = (medians[0].max(0.01), medians[1].max(0.01));
    println!(
        "NVMe read of 64 MiB by Linux {} (guest clock, median of 3):",
        guest.version
    );
    println!(
        "  native {:.2} s ({:.0} MiB/s), Bulkhead through the SMMU {:.2} s ({:.0} MiB/s): throughput ratio {:.2}",
        n,
        64.0 / n,
        b,
        64.0 / b,
        n / b
    );
    Ok(())
}

/// Every sample of `<name>: <what>: latencies a,b,c` lines (counter ticks;
/// long lists span several lines).
fn samples(text: &str, what: &str) -> Option<Vec<u64>> {
    let marker = format!("{what}: latencies ");
    let mut v = Vec::new();
    for line in text.lines().filter(|l| l.contains(&marker)) {
        let list = line.split(&marker).nth(1)?;
        for n in list.split(',') {
            v.push(n.trim().parse().ok()?);
        }
    }
    (!v.is_empty()).then_some(v)
}

fn stats(mut v: Vec<u64>) -> (u64, u64, u64) {
    v.sort_unstable();
    let pct = |p: usize| v[(v.len() * p / 100).min(v.len() - 1)];
    (pct(50), pct(99), v[v.len() - 1])
}

/// Timer interrupt latency (expiry to guest handler) of the `irq` domain,
/// natively and under Bulkhead, on the same QEMU with `-icount
/// shift=0,sleep=off` (deterministic: one tick = 16 ns = ~16 instructions).
fn bench_latency() -> Result<()> {
    let dir = target_dir().join("bulkhead").join("bench-latency");
    let config = root().join("configs/qemu-virt/latency.dts");
    let img = image::image_path(&config);
    image::build_image(&config, &img, Tamper::None)?;
    let native_elf = target_dir()
        .join(image::DOMAIN_TARGET)
        .join("release")
        .join("irq");
    println!(
        "latency, ticks of the guest's counter under -icount shift=0,sleep=off (deterministic)"
    );
    // cortex-a72's counter runs at 62.5 MHz (1 tick = 16 ns, about 16
    // instructions); max's at 1 GHz, which resolves the native figures.
    for (cpu, gic) in [("cortex-a72", 3), ("cortex-a72", 2), ("max", 3)] {
        let m = |virtualization| Machine {
            icount: true,
            gic,
            cpu: cpu.into(),
            virtualization,
            timeout: Duration::from_secs(120),
            ..Machine::default()
        };
        // Natively the program runs at EL1 on QEMU's own GIC without a device
        // tree, so it uses its built-in defaults (the same timer and SGI tests).
        let mut native = xtask::qemu::Run::start(
            &m(false),
            &native_elf,
            &dir.join(format!("native-{cpu}-v{gic}")),
        )?;
        native
            .wait_line(
                xtask::qemu::UART0,
                "timer: heartbeat",
                Duration::from_secs(0),
            )
            .ok();
        native.wait_line(xtask::qemu::UART0, "heartbeat 1", Duration::from_secs(100))?;
        let n_out = native.output(xtask::qemu::UART0);
        drop(native);
        let mut under =
            xtask::qemu::Run::start(&m(true), &img, &dir.join(format!("bulkhead-{cpu}-v{gic}")))?;
        under.wait_line(xtask::qemu::UART1, "heartbeat 1", Duration::from_secs(100))?;
        let b_out = under.output(xtask::qemu::UART1);
        drop(under);
        for what in ["timer", "sgi"] {
            let n =
                samples(&n_out, what).ok_or(format!("native run printed no {what} latencies"))?;
            let b =
                samples(&b_out, what).ok_or(format!("Bulkhead run printed no {what} latencies"))?;
            let (nm, n99, _) = stats(n.clone());
            let (bm, b99, bmax) = stats(b.clone());
            let label = if what == "timer" {
                "timer interrupt (expiry to handler)"
            } else {
                "SGI round trip (vCPU 0 -> 1 -> 0)"
            };
            println!(
                "  {cpu:<10} GICv{gic} {label:<36} native median {nm:>5} p99 {n99:>5} ({} samples) | Bulkhead median {bm:>5} p99 {b99:>5} max {bmax:>5} ({} samples) | +{} ticks",
                n.len(),
                b.len(),
                bm.saturating_sub(nm)
            );
        }
    }
    // Every other board with a QEMU model and a `configs/<board>/latency.dts`
    // (a board is an addition: nothing to list here), on its first GIC. No
    // native row: the program finds no device tree there and assumes virt's
    // addresses (and the Pi's second core needs PSCI, which it does not have
    // without TF-A). Compare with the virt rows of the same GIC. Counters
    // differ: 62.5 MHz on raspi4b and xlnx-zcu102, 8 MHz on imx8mp-evk (one
    // tick is 125 ns there, about 125 instructions under icount).
    for b in board_support::BOARDS {
        let board = b.name;
        let config = format!("configs/{board}/latency.dts");
        let gic = b.gics.first().map_or(3, |g| u32::from(g.version()));
        if board == image::DEFAULT_BOARD || b.qemu.is_none() || !root().join(&config).exists() {
            continue;
        }
        let config = root().join(config);
        let img = image::image_path(&config);
        image::build_image(&config, &img, Tamper::None)?;
        let m = Machine {
            board: board.into(),
            icount: true,
            gic,
            timeout: Duration::from_secs(120),
            ..Machine::default()
        };
        let mut under = xtask::qemu::Run::start(&m, &img, &dir.join(format!("bulkhead-{board}")))?;
        under.wait_line(
            xtask::qemu::UART0,
            "irq: heartbeat 1",
            Duration::from_secs(100),
        )?;
        let b_out = under.output(xtask::qemu::UART0);
        drop(under);
        for what in ["timer", "sgi"] {
            let b = samples(&b_out, what).ok_or(format!(
                "Bulkhead run on {board} printed no {what} latencies"
            ))?;
            let (bm, b99, bmax) = stats(b.clone());
            let label = if what == "timer" {
                "timer interrupt (expiry to handler)"
            } else {
                "SGI round trip (vCPU 0 -> 1 -> 0)"
            };
            println!(
                "  {board:<10} GICv{gic} {label:<36} native   n/a                          | Bulkhead median {bm:>5} p99 {b99:>5} max {bmax:>5} ({} samples)",
                b.len()
            );
        }
    }
    Ok(())
}

/// `bench size`: the firmware's sections, where its code goes by module,
/// and the bootable image `img`.
fn bench_size(img: &Path) -> Result<()> {
    let elf = std::fs::read(image::firmware_elf())?;
    let (_, mem) = xtask::elf::flatten(&elf)?;
    let fw = image::firmware_image()?;
    println!(
        "firmware memory image: {} bytes ({} KiB, .bss and stacks included)",
        mem.len(),
        mem.len() / 1024
    );
    for (name, size) in xtask::elf::section_sizes(&elf)? {
        println!("  {name:<8} {size:>8} bytes");
    }
    // Where `.text` goes, by module (the symbol table's function sizes).
    if let Some(modules) = xtask::elf::code_by_module(&elf) {
        let total: u64 = modules.iter().map(|m| m.1).sum();
        println!("  functions by module ({total} bytes; the 16 largest):");
        for (module, size) in modules.iter().take(16) {
            println!(
                "    {size:>7} bytes {:>4.1}%  {module}",
                *size as f64 * 100.0 / total.max(1) as f64
            );
        }
    }
    println!(
        "bootable image with the default package: {} bytes",
        std::fs::metadata(img)?.len()
    );
    println!("firmware file part before the package: {} bytes", fw.len());
    Ok(())
}

fn bench_report(img: &Path) -> Result<()> {
    bench_size(img)?;
    let loc = count_lines(&root().join("partitioner/firmware/src"));
    let core = count_lines(&root().join("partitioner/core/src"));
    println!("lines of code: EL2 firmware layer {loc}, core (host-tested, tests included) {core}");
    // Boot: reset to each domain's first instruction, from the partitioner's
    // own CNTPCT stamps (the counter starts at reset), median of 5 runs.
    let mut per_domain: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    let mut wall = Vec::new();
    for i in 0..5 {
        let m = Machine {
            timeout: Duration::from_secs(60),
            ..Machine::default()
        };
        let mut r = xtask::qemu::Run::start(
            &m,
            img,
            &target_dir().join("bulkhead").join(format!("bench-{i}")),
        )?;
        r.wait_line(xtask::qemu::UART1, "heartbeat 1", Duration::from_secs(30))?;
        wall.push(r.elapsed().as_secs_f64() * 1000.0);
        for l in r.output(xtask::qemu::UART0).lines() {
            // bulkhead: domain "hello": vCPU 0 starts on core 0 at 0x40000000, 12.345 ms after reset
            if let (Some(n), Some(t)) = (
                l.split('"').nth(1),
                l.split(", ")
                    .last()
                    .and_then(|s| s.strip_suffix(" ms after reset")),
            ) {
                if l.contains("starts on core") {
                    per_domain
                        .entry(n.to_string())
                        .or_default()
                        .push(t.parse().unwrap_or(f64::NAN));
                }
            }
        }
    }
    for (d, mut v) in per_domain {
        v.sort_by(|a, b| a.total_cmp(b));
        println!(
            "reset -> domain \"{d}\" first instruction: median {:.3} ms (guest clock, {} runs)",
            v[v.len() / 2],
            v.len()
        );
    }
    wall.sort_by(|a, b| a.total_cmp(b));
    println!(
        "wall time QEMU start -> hello's first heartbeat: median {:.0} ms",
        wall[wall.len() / 2]
    );
    Ok(())
}

/// Non-blank, non-comment lines of Rust under `dir`.
fn count_lines(dir: &Path) -> usize {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                n += count_lines(&p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                n += std::fs::read_to_string(&p)
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| {
                        let t = l.trim();
                        !t.is_empty() && !t.starts_with("//")
                    })
                    .count();
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::partitioner_console_line;

    #[test]
    fn typed_lines_for_the_partitioner_console() {
        // The second UART's.
        assert_eq!(partitioner_console_line(b"ls\r"), None);
        assert_eq!(partitioner_console_line(b"\r"), None);
        // Key sequences go as typed, Enter included.
        assert_eq!(partitioner_console_line(b"\x01s\r"), Some(&b"\x01s\r"[..]));
        assert_eq!(
            partitioner_console_line(b"\x01\x01\x01\r"),
            Some(&b"\x01\x01\x01\r"[..])
        );
        // Ctrl-a and a space in front of text: the text, for the domain
        // with the input focus.
        assert_eq!(
            partitioner_console_line(b"\x01 echo hi\r"),
            Some(&b"echo hi\r"[..])
        );
    }
}
