//! Links the domain with the runtime's layout (`bulkhead-domain.ld`, found
//! through the search path `bulkhead-rt`'s build script adds): loaded and
//! entered at guest address 0x4000_0000.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bins=-Tbulkhead-domain.ld");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
