//! Links the firmware with its own linker script, as a position-independent
//! executable: `boot.rs` applies its own relocations at entry, so the image
//! runs wherever the boot loader put it.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=-T{dir}/link.ld");
    println!("cargo:rustc-link-arg-bins=-pie");
    println!("cargo:rustc-link-arg-bins=--no-dynamic-linker");
    println!("cargo:rustc-link-arg-bins=-znotext");
    println!("cargo:rerun-if-changed=link.ld");
}
