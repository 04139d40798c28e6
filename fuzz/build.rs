//! Compiles the configs whose plans the `dtb_supplied` target checks trees
//! against (`src/plan_configs.rs`) with dtc.

use std::path::Path;
use std::process::Command;

include!("src/plan_configs.rs");

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::env::var("OUT_DIR").expect("OUT_DIR");
    let mut list = String::from("&[\n");
    for (i, config) in PLAN_CONFIGS.iter().enumerate() {
        let dts = root.join(config);
        println!("cargo:rerun-if-changed={}", dts.display());
        let result = Command::new("dtc")
            .args(["-I", "dts", "-O", "dtb", "-q"])
            .arg(&dts)
            .output()
            .unwrap_or_else(|e| panic!("cannot run dtc (Debian: device-tree-compiler): {e}"));
        assert!(
            result.status.success(),
            "dtc failed on {}: {}",
            dts.display(),
            String::from_utf8_lossy(&result.stderr)
        );
        let blob = Path::new(&out).join(format!("plan{i}.dtb"));
        std::fs::write(&blob, &result.stdout).expect("write compiled config");
        list.push_str(&format!(
            "    include_bytes!({:?}),\n",
            blob.display().to_string()
        ));
    }
    list.push(']');
    std::fs::write(Path::new(&out).join("plans.rs"), list).expect("write plans.rs");
}
