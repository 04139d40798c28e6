//! Bulkhead's developer commands, as a library shared by the `xtask` binary
//! and the QEMU integration tests (`tests/`), so both build and run images the
//! same way.

pub mod attack;
pub mod audit;
pub mod elf;
pub mod flash;
pub mod fuzz;
pub mod image;
pub mod linux;
pub mod qemu;
pub mod tools;

use std::path::{Path, PathBuf};
use std::process::Command;

use bulkhead_core::validate::Errors;

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Cargo's target directory.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// A `cargo` command run from the workspace root.
pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// Run a command; on failure, the error names `what` and shows its output.
pub fn run_quiet(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot start {:?}: {e}", cmd.get_program()))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(())
}

/// Run a command with its output shown; fail if it fails.
pub fn run_shown(cmd: &mut Command, what: &str) -> Result<()> {
    let st = cmd
        .status()
        .map_err(|e| format!("{what}: cannot start {:?}: {e}", cmd.get_program()))?;
    if !st.success() {
        return Err(format!("{what} failed ({st})").into());
    }
    Ok(())
}

/// The warnings of an accepted config, one line each: the risks it
/// accepted (a device that masters DMA without an IOMMU in front of it).
pub fn report_warnings(config: &Path, plan: &bulkhead_core::plan::Plan) -> Vec<String> {
    plan.unprotected_dma()
        .map(|(d, x)| {
            format!(
                "{}: warning[dma-unprotected]: {}",
                config.display(),
                bulkhead_core::plan::DmaWarning(d, x)
            )
        })
        .collect()
}

/// Every error of a rejected config, one per line, then a summary.
pub fn report_errors(config: &Path, errors: &Errors) -> String {
    report(config, errors, &[])
}

/// Every error of a rejected config, including its device-tree problems.
pub fn report_rejected(config: &Path, r: &image::Rejected) -> String {
    report(config, &r.errors, &r.trees)
}

fn report(config: &Path, errors: &Errors, trees: &[String]) -> String {
    let mut s = String::new();
    for t in trees {
        s.push_str(&format!(
            "{}: error[device-tree-rejected]: {t}\n",
            config.display()
        ));
    }
    for e in errors.iter() {
        s.push_str(&format!(
            "{}: error[{}]: {}\n",
            config.display(),
            e.code(),
            e
        ));
    }
    if errors.overflowed() {
        s.push_str(&format!(
            "{}: more errors were found than can be listed\n",
            config.display()
        ));
    }
    s.push_str(&format!(
        "{}: {} error(s); the configuration is rejected",
        config.display(),
        errors.len() + trees.len()
    ));
    s
}
