//! Boot-time benches: `cargo xtask bench boot` (reset to a bare-metal
//! domain's first instruction under `-icount` and in wall clock, and QEMU
//! start to its first line with and without Bulkhead) and `cargo xtask bench
//! scaling` (what starting a domain costs with 1 to 8 domains, and with one
//! domain that loads far more bytes).

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use xtask::image::{self, Tamper};
use xtask::qemu::{Machine, Run, UART0, UART1};
use xtask::{target_dir, Result};

const MIB: u64 = 1 << 20;
/// Where QEMU's `-kernel` puts the partitioner on `virt` (RAM base + 2 MiB).
const LOAD_ADDRESS: u64 = 0x4020_0000;

/// A config of single-core `hello` domains `d0`, `d1`, ... on cores 0, 1,
/// ..., domain `i` with `ram[i]` bytes placed by Bulkhead at guest
/// 0x40000000; with `uart1`, the first domain (named `hello`) owns the
/// second PL011, the others use the virtual console.
fn config(board: &str, ram: &[u64], uart1: bool) -> String {
    let mut s = format!(
        "/dts-v1/;\n/ {{\n    compatible = \"bulkhead,config-v1\";\n    board = \"{board}\";\n    domains {{\n"
    );
    for (i, &size) in ram.iter().enumerate() {
        let name = if uart1 && i == 0 {
            "hello".to_string()
        } else {
            format!("d{i}")
        };
        let console = if uart1 && i == 0 {
            "            devices { serial { board-device = \"uart1\"; }; };\n".to_string()
        } else {
            "            console = \"virtual\";\n".to_string()
        };
        s += &format!(
            "        {name} {{\n            compatible = \"bulkhead,domain\";\n            cpus = <{i}>;\n            image = \"domain:hello\";\n            entry = <0x0 0x40000000>;\n{console}            memory {{ ram@40000000 {{ guest-address = <0x0 0x40000000>; size = <0x{:x} 0x{:x}>; }}; }};\n        }};\n",
            size >> 32,
            size & 0xffff_ffff
        );
    }
    s + "    };\n};\n"
}

/// Write a generated config under `target/bulkhead/bench-boot/` and build
/// its image.
fn build(name: &str, text: &str) -> Result<PathBuf> {
    let dir = target_dir().join("bulkhead").join("bench-boot");
    std::fs::create_dir_all(&dir)?;
    let dts = dir.join(format!("{name}.dts"));
    std::fs::write(&dts, text)?;
    let img = image::image_path(&dts);
    image::build_image(&dts, &img, Tamper::None)?;
    Ok(img)
}

/// `(domain, ms after reset)` of every `domain "X": vCPU 0 starts on core N
/// at ..., A.BBB ms after reset` line of a boot.
fn starts(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| l.contains("\": vCPU 0 starts on core "))
        .filter_map(|l| {
            let name = l.split('"').nth(1)?;
            let ms = l.rsplit(", ").next()?.strip_suffix(" ms after reset")?;
            Some((name.to_string(), ms.parse().ok()?))
        })
        .collect()
}

/// Time from QEMU's start until `needle` shows on `uart`, polled every
/// millisecond (`Run::wait_line` polls every 50).
fn first_seen(run: &mut Run, uart: &str, needle: &str, timeout: Duration) -> Result<Duration> {
    let limit = Instant::now() + timeout;
    loop {
        if run.output(uart).contains(needle) {
            return Ok(run.elapsed());
        }
        if Instant::now() > limit || run.finished() {
            return Err(format!("no {needle:?} on {uart}\n{}", run.transcript()).into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

/// `bench boot`: one `hello` domain with 2 MiB on core 0 of QEMU `virt`
/// (4 cores, GICv3), owning the second UART as the native program owns
/// the first.
pub fn bench_boot() -> Result<()> {
    let img = build("boot-1", &config("qemu-virt", &[2 * MIB], true))?;
    let dir = target_dir().join("bulkhead").join("bench-boot");
    // Under -icount shift=0,sleep=off one instruction is one nanosecond of
    // the guest's clock, and only core 0 runs before the domain starts: the
    // figure is the partitioner's instruction count, exactly.
    let m = Machine {
        icount: true,
        timeout: Duration::from_secs(60),
        ..Machine::default()
    };
    let mut r = Run::start(&m, &img, &dir.join("icount"))?;
    r.wait_line(UART0, "starts on core", Duration::from_secs(50))?;
    let ms = starts(&r.output(UART0))
        .first()
        .map(|s| s.1)
        .ok_or("no start line")?;
    drop(r);
    println!(
        "boot, one bare-metal domain (hello, 2 MiB, its own UART), QEMU virt, cortex-a72, GICv3:"
    );
    println!(
        "  reset -> its first instruction, -icount shift=0 (1 instruction = 1 ns): {ms:.3} ms = {:.0} K instructions",
        ms * 1000.0
    );
    // What the wall clock follows under TCG: QEMU translates each block
    // (straight-line code up to a branch) the first time it runs, at a cost
    // per block far above the cost per instruction (README: about 8 us
    // against 0.4 us on the bench host). Deterministic, unlike the clock.
    let (blocks, insns) = translated_blocks(&img, &dir.join("in_asm"))?;
    println!(
        "  reset -> its first instruction, code QEMU translates (-d in_asm, the partitioner's range): {blocks} blocks, {insns} instructions"
    );
    // Wall clock: the same line's time (the guest clock runs on the host's
    // without -icount), and QEMU start to the program's first line, natively
    // (the same program at EL1 without Bulkhead) and under Bulkhead,
    // alternately, so both see the same host load.
    let native_elf = target_dir()
        .join(image::DOMAIN_TARGET)
        .join("release")
        .join("hello");
    const RUNS: usize = 9;
    let (mut guest, mut native, mut under) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..RUNS {
        let m = Machine {
            virtualization: false,
            timeout: Duration::from_secs(60),
            ..Machine::default()
        };
        let mut r = Run::start(&m, &native_elf, &dir.join(format!("native-{i}")))?;
        native.push(
            first_seen(&mut r, UART0, "native: domain ", Duration::from_secs(50))?.as_secs_f64()
                * 1000.0,
        );
        drop(r);
        let m = Machine {
            timeout: Duration::from_secs(60),
            ..Machine::default()
        };
        let mut r = Run::start(&m, &img, &dir.join(format!("bulkhead-{i}")))?;
        under.push(
            first_seen(&mut r, UART1, "hello: domain ", Duration::from_secs(50))?.as_secs_f64()
                * 1000.0,
        );
        r.wait_line(UART0, "starts on core", Duration::from_secs(10))?;
        guest.extend(starts(&r.output(UART0)).first().map(|s| s.1));
    }
    println!(
        "  reset -> its first instruction, wall clock (guest clock under TCG), median of {RUNS}: {:.1} ms (min {:.1})",
        median(guest.clone()),
        min(&guest)
    );
    let (n, b) = (median(native.clone()), median(under.clone()));
    println!(
        "  QEMU start -> the program's first line, wall clock, median of {RUNS} (min): native {n:.0} ms ({:.0}), Bulkhead {b:.0} ms ({:.0}): ratio {:.2} (of the minima {:.2})",
        min(&native),
        min(&under),
        b / n,
        min(&under) / min(&native)
    );
    // What translating that many blocks costs on this host by itself: a
    // raw program that runs `blocks` blocks once each before its first
    // character, against the same program without them, alternately.
    let (plain, with) = (
        dir.join("calibration-0.bin"),
        dir.join("calibration-blocks.bin"),
    );
    std::fs::write(&plain, calibration_program(0))?;
    std::fs::write(&with, calibration_program(blocks as usize))?;
    let (mut p, mut w) = (Vec::new(), Vec::new());
    for i in 0..RUNS {
        for (img, out) in [(&plain, &mut p), (&with, &mut w)] {
            let m = Machine {
                virtualization: false,
                timeout: Duration::from_secs(60),
                ..Machine::default()
            };
            let mut r = Run::start(&m, img, &dir.join(format!("calibration-{i}")))?;
            let t = first_seen(&mut r, UART0, "X", Duration::from_secs(50))?;
            out.push(t.as_secs_f64() * 1000.0);
        }
    }
    let (p, w) = (median(p), median(w));
    println!(
        "  QEMU translating {blocks} blocks and nothing else (a raw program of {blocks} blocks of {CALIBRATION_BLOCK} instructions, each run once, against the same without them; median of {RUNS}): {:.0} ms, {:.0} us a block; that alone makes the ratio {:.2}, where 1.2 leaves {:.0} ms",
        w - p,
        (w - p) * 1000.0 / blocks.max(1) as f64,
        w / p,
        0.2 * n
    );
    Ok(())
}

/// Instructions in each block of [`calibration_program`], its branch included.
const CALIBRATION_BLOCK: usize = 4;

/// A raw AArch64 program for QEMU `virt` (position independent, MMU off,
/// at EL1): `blocks` straight-line blocks of [`CALIBRATION_BLOCK`]
/// instructions, each ended by a branch to the next (so QEMU translates
/// each one separately, once), then an `X` to the PL011 at 0x0900_0000 and
/// a branch to itself.
fn calibration_program(blocks: usize) -> Vec<u8> {
    const MOVZ_X2_UART: u32 = 0xd2a1_2002; // movz x2, #0x0900, lsl #16
    const ADD_X0_1: u32 = 0x9100_0400; // add x0, x0, #1
    const B_NEXT: u32 = 0x1400_0001; // b .+4
    const MOVZ_W1_X: u32 = 0x5280_0b01; // movz w1, #'X'
    const STR_W1_X2: u32 = 0xb900_0041; // str w1, [x2]
    const B_SELF: u32 = 0x1400_0000; // b .
    let mut words = vec![MOVZ_X2_UART];
    for _ in 0..blocks {
        words.extend([ADD_X0_1; CALIBRATION_BLOCK - 1]);
        words.push(B_NEXT);
    }
    words.extend([MOVZ_W1_X, STR_W1_X2, B_SELF]);
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Blocks and instructions of the partitioner's code that QEMU translated
/// from reset to the `eret` into the first domain, from a `-d in_asm` log of
/// one boot of `img` (translation order is first-execution order; the
/// partitioner's first `eret` is the one into a domain).
fn translated_blocks(img: &Path, dir: &Path) -> Result<(u64, u64)> {
    let elf = std::fs::read(image::firmware_elf_for("qemu-virt"))?;
    let text_end = xtask::elf::symbol_containing(&elf, "__text_end").ok_or("no __text_end")?;
    std::fs::create_dir_all(dir)?;
    let log = dir.join("in_asm.log");
    let _ = std::fs::remove_file(&log);
    let m = Machine {
        timeout: Duration::from_secs(60),
        extra: vec![
            "-d".into(),
            "in_asm".into(),
            "-D".into(),
            log.display().to_string(),
            "-dfilter".into(),
            format!("{LOAD_ADDRESS:#x}..{:#x}", LOAD_ADDRESS + text_end - 1),
        ],
        ..Machine::default()
    };
    let mut r = Run::start(&m, img, dir)?;
    r.wait_line(UART1, "hello: domain ", Duration::from_secs(50))?;
    drop(r);
    let text = std::fs::read_to_string(&log)?;
    let _ = std::fs::remove_file(&log);
    count_blocks(&text).ok_or_else(|| format!("no eret in {}", log.display()).into())
}

/// `(blocks, instructions)` of an `in_asm` log up to and including the
/// block with the first `eret`; `None` without one.
fn count_blocks(log: &str) -> Option<(u64, u64)> {
    let (mut blocks, mut insns) = (0, 0);
    for line in log.lines() {
        if line.starts_with("IN:") {
            blocks += 1;
        } else if line.starts_with("0x") {
            insns += 1;
            if line.split_whitespace().nth(2) == Some("eret") {
                return Some((blocks, insns));
            }
        }
    }
    None
}

/// What a `-d in_asm,exec,nochain` log says about each core: instructions
/// the partitioner ran from the core's first one to its first `eret` (into
/// its domain), and on core 0 the share before `start` (`domain::start_all`:
/// the work common to every domain).
#[derive(Debug, Default, Clone)]
struct CoreCount {
    total: u64,
    before_start: Option<u64>,
    entered: bool,
}

fn count_trace(log: &Path, start: u64) -> Result<HashMap<u32, CoreCount>> {
    let f = std::io::BufReader::new(std::fs::File::open(log)?);
    // Instructions and whether it ends in `eret`, per translated block.
    let mut blocks: HashMap<u64, (u64, bool)> = HashMap::new();
    let mut current: Option<u64> = None;
    let mut cores: HashMap<u32, CoreCount> = HashMap::new();
    for line in f.lines() {
        let line = line?;
        if line.starts_with("IN:") {
            current = None;
            continue;
        }
        if let Some(rest) = line.strip_prefix("Trace ") {
            // Trace <cpu>: <host ptr> [<cs base>/<pc>/<flags>/<cflags>] ...
            current = None;
            let Some((cpu, rest)) = rest.split_once(':') else {
                continue;
            };
            let pc = rest
                .split('[')
                .nth(1)
                .and_then(|f| f.split('/').nth(1))
                .and_then(|p| u64::from_str_radix(p, 16).ok());
            let (Ok(cpu), Some(pc)) = (cpu.trim().parse::<u32>(), pc) else {
                continue;
            };
            let c = cores.entry(cpu).or_default();
            if c.entered {
                continue;
            }
            if pc == start && c.before_start.is_none() {
                c.before_start = Some(c.total);
            }
            let (n, eret) = blocks.get(&pc).copied().unwrap_or((0, false));
            c.total += n;
            c.entered = eret;
            continue;
        }
        // 0x40200040:  aa0003f3  mov      x19, x0
        if let Some((addr, insn)) = line.strip_prefix("0x").and_then(|l| l.split_once(':')) {
            let Ok(pc) = u64::from_str_radix(addr, 16) else {
                continue;
            };
            let first = *current.get_or_insert(pc);
            let e = blocks.entry(first).or_insert((0, false));
            if first == pc {
                *e = (0, false);
            }
            e.0 += 1;
            e.1 |= insn.split_whitespace().nth(1) == Some("eret");
        }
    }
    Ok(cores)
}

/// `bench scaling`: 1, 2, 4 and 8 domains (each `hello` with 2 MiB on a
/// core of its own, QEMU `virt` with 8 cores), then 4 domains of which one
/// has 64 MiB. Each core's instructions from its power-on to its domain's
/// first instruction are counted exactly from QEMU's execution log (only the
/// partitioner's code is logged); under -icount the guest clock counts the
/// instructions of all cores together (QEMU runs them in turn), so the
/// partitioner's per-domain timestamps are shown too but overlap.
pub fn bench_scaling() -> Result<()> {
    let mut cases: Vec<(String, Vec<u64>)> = [1, 2, 4, 8]
        .iter()
        .map(|&n| (format!("{n} x 2 MiB"), vec![2 * MIB; n]))
        .collect();
    cases.push((
        "4, d1 64 MiB".to_string(),
        vec![2 * MIB, 64 * MIB, 2 * MIB, 2 * MIB],
    ));
    println!("boot scaling, QEMU virt with 8 cores, cortex-a72, GICv3, -icount shift=0; every domain is hello (image 215 KB: CRC-checked and copied) on a core of its own, its RAM zeroed and cleaned to the point of coherency");
    println!(
        "  {:<14} {:>16} {:>28} {:>36}",
        "domains", "core 0 common", "per domain, K instructions", "guest clock at each start, ms"
    );
    for (label, ram) in cases {
        let name = format!("scaling-{}", label.replace([' ', ','], ""));
        let img = build(&name, &config("qemu-virt-8", &ram, false))?;
        // The firmware is built with the image.
        let elf = std::fs::read(image::firmware_elf_for("qemu-virt-8"))?;
        let text_end = xtask::elf::symbol_containing(&elf, "__text_end").ok_or("no __text_end")?;
        let start_all = xtask::elf::symbol_containing(&elf, "6domain9start_all")
            .ok_or("no domain::start_all in the firmware")?;
        let dir = target_dir()
            .join("bulkhead")
            .join("bench-scaling")
            .join(&name);
        std::fs::create_dir_all(&dir)?;
        let log = dir.join("exec.log");
        let m = Machine {
            board: "qemu-virt-8".into(),
            icount: true,
            timeout: Duration::from_secs(300),
            extra: vec![
                "-d".into(),
                "in_asm,exec,nochain".into(),
                "-D".into(),
                log.display().to_string(),
                "-dfilter".into(),
                format!("{LOAD_ADDRESS:#x}..{:#x}", LOAD_ADDRESS + text_end - 1),
            ],
            ..Machine::default()
        };
        let mut r = Run::start(&m, &img, &dir.join("run"))?;
        for i in 0..ram.len() {
            r.wait_line(
                UART0,
                &format!("[d{i}] d{i}: domain "),
                Duration::from_secs(280),
            )?;
        }
        let clock = starts(&r.output(UART0));
        drop(r);
        let cores = count_trace(&log, LOAD_ADDRESS + start_all)?;
        let _ = std::fs::remove_file(&log);
        let common = cores
            .get(&0)
            .and_then(|c| c.before_start)
            .ok_or("core 0 never reached domain::start_all in the log")?;
        let mut per = Vec::new();
        for i in 0..ram.len() as u32 {
            let c = cores
                .get(&i)
                .filter(|c| c.entered)
                .ok_or(format!("core {i} never entered its domain in the log"))?;
            per.push(c.total - if i == 0 { common } else { 0 });
        }
        let per_s: Vec<String> = per
            .iter()
            .map(|n| format!("{:.0}", *n as f64 / 1000.0))
            .collect();
        let mut clock_ms: Vec<(usize, f64)> = clock
            .iter()
            .filter_map(|(d, ms)| Some((d.strip_prefix('d')?.parse().ok()?, *ms)))
            .collect();
        clock_ms.sort_by_key(|c| c.0);
        let clock_s: Vec<String> = clock_ms.iter().map(|c| format!("{:.2}", c.1)).collect();
        println!(
            "  {label:<14} {:>14}K {:>28} {:>36}",
            format!("{:.0}", common as f64 / 1000.0),
            per_s.join(" "),
            clock_s.join(" ")
        );
    }
    println!("  (core 0 common: reset -> domain::start_all on the boot core: config check, every domain's stage 2 and its check, the boot lines; per domain: from its core's first instruction, or start_all on core 0, to the eret into its domain: CRC of its image, zeroing and cleaning its RAM, copying its image, its device tree, register resets)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{calibration_program, count_blocks, CALIBRATION_BLOCK};

    #[test]
    fn the_calibration_program_has_its_blocks_then_prints() {
        let words = |b: &[u8]| -> Vec<u32> {
            b.chunks(4)
                .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
                .collect()
        };
        let none = words(&calibration_program(0));
        assert_eq!(none, [0xd2a1_2002, 0x5280_0b01, 0xb900_0041, 0x1400_0000]);
        let three = words(&calibration_program(3));
        assert_eq!(three.len(), 4 + 3 * CALIBRATION_BLOCK);
        // Each block's last word is a branch to the next; nothing else is.
        let branches: Vec<usize> = (0..three.len())
            .filter(|&i| three[i] == 0x1400_0001)
            .collect();
        assert_eq!(branches, [4, 8, 12]);
        assert_eq!(three[..1], none[..1]);
        assert_eq!(three[13..], none[1..]);
    }

    #[test]
    fn blocks_are_counted_up_to_the_first_eret() {
        let log = "IN: \n0x40200000:  d2a12002  movz     x2, #0x900, lsl #16\n0x40200004:  14000001  b        #0x40200008\n\n\
                   IN: \n0x40200008:  d69f03e0  eret     \n\n\
                   IN: \n0x40200400:  d503201f  nop      \n";
        assert_eq!(count_blocks(log), Some((2, 3)));
        assert_eq!(
            count_blocks("IN: \n0x40200000:  d503201f  nop      \n"),
            None
        );
    }
}
