//! Makes the domain linker script available to the binaries that use this
//! runtime: they link with `-Tbulkhead-domain.ld` (see their build scripts),
//! and the search path added here lets the linker find it.

use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    fs::copy("bulkhead-domain.ld", out.join("bulkhead-domain.ld"))
        .expect("copy the domain linker script");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=bulkhead-domain.ld");
    println!("cargo:rerun-if-changed=build.rs");
}
