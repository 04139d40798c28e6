//! `cargo xtask fuzz`: the cargo-fuzz targets of `fuzz/` (nightly only, not
//! a workspace member; docs/fuzzing.md), their seed corpora compiled from the
//! shipped and test configs, and the tools they need (the nightly toolchain
//! and cargo-fuzz, installed when missing).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use bulkhead_core::dtb::{domain_tree, DTB_MAX};
use bulkhead_core::package;
use bulkhead_core::plan::GicVersion;
use bulkhead_core::validate;

use crate::{root, Result};

/// Every target, with what it fuzzes.
pub const TARGETS: &[(&str, &str)] = &[
    (
        "config_validate",
        "config parser and validate::check (qemu-virt)",
    ),
    ("fdt_check", "the non-panicking FDT reader"),
    (
        "dtb_supplied",
        "dtb_check::check_supplied against real domain plans",
    ),
    (
        "package",
        "Package::parse / parse_deferring_images / verify, build round trip",
    ),
    (
        "trap",
        "trap::decode, Syndrome, instruction_len, external_abort",
    ),
    (
        "vgic",
        "VDistributor accesses from random vCPUs, ownership invariants",
    ),
    (
        "vconsole",
        "VirtualConsole of several domains against a reference model",
    ),
];

include!("../../fuzz/src/plan_configs.rs");

/// Seconds per target when neither `--runs` nor `--time` is given.
pub const DEFAULT_SECONDS: u64 = 20;

/// How long each target runs.
#[derive(Clone, Copy, Debug)]
pub enum Budget {
    Runs(u64),
    Seconds(u64),
}

fn fuzz_dir() -> PathBuf {
    root().join("fuzz")
}

fn has_nightly() -> bool {
    Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn has_cargo_fuzz() -> bool {
    Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The nightly toolchain and cargo-fuzz, installed with rustup and
/// `cargo install` when missing; an error naming what is missing otherwise.
pub fn ensure_tools() -> Result<()> {
    crate::tools::ensure_dtc()?;
    if !has_nightly() {
        if !crate::tools::have("rustup") {
            return Err("fuzzing needs the nightly Rust toolchain, and rustup is not installed to add it \
                        (install rustup, then `rustup toolchain install nightly --profile minimal`)"
                .into());
        }
        eprintln!("xtask: installing the nightly Rust toolchain (for the fuzz targets only)");
        crate::run_shown(
            Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]),
            "rustup toolchain install nightly",
        )
        .map_err(|e| format!("{e}\nfuzzing needs the nightly toolchain: `rustup toolchain install nightly --profile minimal`"))?;
    }
    if !has_cargo_fuzz() {
        eprintln!("xtask: installing cargo-fuzz (`cargo install cargo-fuzz --locked`)");
        crate::run_shown(
            Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]),
            "cargo install cargo-fuzz",
        )
        .map_err(|e| {
            format!("{e}\nfuzzing needs cargo-fuzz: `cargo install cargo-fuzz --locked`")
        })?;
        if !has_cargo_fuzz() {
            return Err(
                "cargo-fuzz is installed but `cargo +nightly fuzz` does not run \
                        (is ~/.cargo/bin on PATH?)"
                    .into(),
            );
        }
    }
    Ok(())
}

/// The fuzz targets' layout and image sizes (one definition, shared with
/// `fuzz/src/lib.rs`).
mod inputs {
    include!("../../fuzz/src/inputs.rs");
}

fn dts_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            dts_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "dts") {
            out.push(p);
        }
    }
}

/// A seed file name from a path: `configs/qemu-virt/default.dts` ->
/// `seed-configs-qemu-virt-default`.
fn seed_name(path: &Path) -> String {
    let rel = path.strip_prefix(root()).unwrap_or(path);
    let stem = rel.with_extension("");
    format!("seed-{}", stem.to_string_lossy().replace(['/', '\\'], "-"))
}

fn put(target: &str, name: &str, bytes: &[u8]) -> Result<()> {
    let dir = fuzz_dir().join("corpus").join(target);
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(name);
    if fs::read(&path).ok().as_deref() != Some(bytes) {
        fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// Writes the seed corpora into `fuzz/corpus/<target>/` (not committed):
/// every config and device tree of `configs/` and `tests/configs/`
/// compiled, packages built from them, the trees generated for the plan
/// configs' domains, and a few hand-made inputs for the other targets.
pub fn seed() -> Result<usize> {
    let mut n = 0;
    let mut sources = Vec::new();
    dts_files(&root().join("configs"), &mut sources);
    dts_files(&root().join("tests/configs"), &mut sources);
    for dts in &sources {
        // Some test configs are meant not to compile: skip those.
        let Ok(blob) = crate::image::compile_dts(dts) else {
            continue;
        };
        let name = seed_name(dts);
        let is_tree = dts
            .components()
            .any(|c| c.as_os_str().to_str().is_some_and(|s| s.ends_with("trees")));
        put("fdt_check", &name, &blob)?;
        n += 1;
        if is_tree {
            // The hand-written tree's domain: `handmade`, the second domain
            // of the first plan config; GIC unknown (selector 1 << 2).
            let mut input = vec![1 << 2];
            input.extend_from_slice(&blob);
            put("dtb_supplied", &name, &input)?;
            n += 1;
            continue;
        }
        put("config_validate", &name, &blob)?;
        let pkg = package::build(
            &blob,
            &[
                ("hello", b"HELLO-IMAGE"),
                ("hello.dtb", &[0xd0, 0x0d, 0xfe, 0xed]),
            ],
        )
        .map_err(|e| format!("package::build: {e}"))?;
        let mut input = vec![0];
        input.extend_from_slice(&pkg);
        put("package", &name, &input)?;
        n += 2;
    }
    // Generated trees of every domain of the plan configs, both GICs.
    let mut index = 0u8;
    for config in PLAN_CONFIGS {
        let blob = crate::image::compile_dts(&root().join(config))?;
        let plan = validate::check(
            &blob,
            &board_support::by_name,
            &inputs::layout(),
            &inputs::image_size,
        )
        .map_err(|e| {
            let first = e.iter().next().map(|e| e.to_string()).unwrap_or_default();
            format!("{config}: does not validate with the fuzz layout: {first}")
        })?;
        for d in &plan.domains {
            for (code, gic) in [(1u8, GicVersion::V2), (2, GicVersion::V3)] {
                let mut buf = vec![0u8; DTB_MAX];
                if let Ok(len) = domain_tree(d, gic, &mut buf) {
                    let mut input = vec![(index << 2) | code];
                    input.extend_from_slice(&buf[..len]);
                    put(
                        "dtb_supplied",
                        &format!("seed-generated-{}-{}-v{code}", index, d.name),
                        &input,
                    )?;
                    n += 1;
                }
            }
            index += 1;
        }
    }
    // Trap: one syndrome of each class the partitioner handles, from EL1.
    for (i, ec) in [0x01u64, 0x16, 0x17, 0x18, 0x20, 0x24]
        .into_iter()
        .enumerate()
    {
        let esr = (ec << 26) | (1 << 25) | (1 << 24) | (2 << 22) | (3 << 16) | (1 << 6) | 0x05;
        let mut input = esr.to_le_bytes().to_vec();
        for v in [
            0x3c5u64,
            0xffff_0000_0800_1000,
            0x0900_0000,
            0xffff_0000_0801_0000,
        ] {
            input.extend_from_slice(&v.to_le_bytes());
        }
        put("trap", &format!("seed-{i}"), &input)?;
        n += 1;
    }
    // vGIC: a GICv2 (2 vCPUs) and a GICv3 (4 vCPUs) domain owning SPIs 1 and
    // 33, whose vCPU 0 turns its distributor on, enables and routes them,
    // enables SGIs and sends one.
    for (head, name) in [(0b0000_0010u8, "seed-v2"), (0b0000_0111, "seed-v3")] {
        let mut s = vec![head, 2, 1, 0, 33, 0];
        let mut write = |offset: u16, value: u64| {
            s.extend_from_slice(&[0x21, 0]);
            s.extend_from_slice(&offset.to_le_bytes());
            s.extend_from_slice(&value.to_le_bytes());
        };
        write(0x000, 3); // GICD_CTLR
        write(0x104, 0xffff_ffff); // GICD_ISENABLER1
        write(0x100, 0xffff_ffff); // GICD_ISENABLER0
        write(0x820, 0x0202_0202); // GICD_ITARGETSR8
        write(0xf00, 0x0201_0003); // GICD_SGIR
        s.extend_from_slice(&[0x04, 0]);
        s.extend_from_slice(&((1u64 << 40) | (5 << 24)).to_le_bytes());
        s.extend_from_slice(&[0x00, 0, 0x04, 0x01]); // read GICD_ISENABLER1
        put("vgic", name, &s)?;
        n += 1;
    }
    // Virtual console: two domains, lines, a control character, a long line.
    let mut s = vec![1];
    for (i, &b) in b"hello\n\x1b[2Jworld\tx\n".iter().enumerate() {
        s.extend_from_slice(&[1 | ((i as u8 & 1) << 1), b]);
    }
    s.extend(std::iter::repeat_n([0x01, b'a'], 130).flatten());
    put("vconsole", "seed-lines", &s)?;
    n += 1;
    Ok(n)
}

/// Executions and executions per second, from libFuzzer's final stats.
fn stats(stderr: &str) -> (Option<u64>, Option<u64>) {
    let stat = |key: &str| {
        stderr
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_start_matches(':').trim().parse().ok())
    };
    (
        stat("stat::number_of_executed_units"),
        stat("stat::average_exec_per_sec"),
    )
}

/// Runs `targets` (all when empty) for `budget` each, after building them
/// and seeding their corpora.
pub fn run(targets: &[String], budget: Budget) -> Result<()> {
    for t in targets {
        if !TARGETS.iter().any(|(name, _)| name == t) {
            let names: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
            return Err(
                format!("no fuzz target {t:?}; the targets are {}", names.join(", ")).into(),
            );
        }
    }
    let chosen: Vec<&str> = if targets.is_empty() {
        TARGETS.iter().map(|(n, _)| *n).collect()
    } else {
        targets.iter().map(String::as_str).collect()
    };
    ensure_tools()?;
    let seeds = seed()?;
    eprintln!("xtask: {seeds} seeds in fuzz/corpus/");
    let started = Instant::now();
    // `cargo fuzz build` takes one target, or none for all of them.
    let mut build = Command::new("cargo");
    build
        .current_dir(root())
        .args(["+nightly", "fuzz", "build"]);
    if let [one] = chosen.as_slice() {
        build.arg(one);
    }
    crate::run_shown(&mut build, "cargo +nightly fuzz build")?;
    eprintln!("xtask: fuzz targets built in {:.0?}", started.elapsed());
    let limit = match budget {
        Budget::Runs(n) => format!("-runs={n}"),
        Budget::Seconds(s) => format!("-max_total_time={s}"),
    };
    let logs = crate::target_dir().join("fuzz-logs");
    fs::create_dir_all(&logs)?;
    let mut failed = Vec::new();
    for target in chosen {
        let started = Instant::now();
        let out = Command::new("cargo")
            .current_dir(root())
            .args(["+nightly", "fuzz", "run", target, "--"])
            .args([limit.as_str(), "-print_final_stats=1", "-timeout=10"])
            .output()
            .map_err(|e| format!("cannot run cargo +nightly fuzz: {e}"))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let log = logs.join(format!("{target}.log"));
        fs::write(&log, stderr.as_bytes())?;
        let (execs, rate) = stats(&stderr);
        let show = |v: Option<u64>| v.map_or("?".to_string(), |v| v.to_string());
        if out.status.success() {
            eprintln!(
                "xtask: fuzz {target}: {} executions, {} exec/s, {:.0?} (log {})",
                show(execs),
                show(rate),
                started.elapsed(),
                log.display()
            );
        } else {
            let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
            eprintln!("xtask: fuzz {target} FAILED ({}):", out.status);
            for l in tail.iter().rev() {
                eprintln!("  {l}");
            }
            eprintln!(
                "  (whole log: {}; the crashing input is in fuzz/artifacts/{target}/)",
                log.display()
            );
            failed.push(target);
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("fuzz targets failed: {}", failed.join(", ")).into())
    }
}
