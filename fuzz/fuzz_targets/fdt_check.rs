//! The non-panicking FDT reader: `fdt_check::check` on arbitrary bytes, and
//! every accessor on every node and property of a tree it accepts.
#![no_main]

use bulkhead_core::fdt_check::{check, Node};
use libfuzzer_sys::fuzz_target;

fn walk(node: Node<'_>, depth: usize, budget: &mut usize) {
    assert!(depth < 1000, "the tree is deeper than the reader allows");
    let _ = node.name();
    for p in node.props() {
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        let _ = p.as_str();
        if let Some(list) = p.as_str_list() {
            for s in list {
                let _ = s.len();
            }
        }
        let _ = p.as_u32();
        let _ = p.as_u64();
        let count = p.cell_count();
        if let Some(cells) = p.as_cells() {
            assert!(cells.count() <= count);
        }
    }
    let _ = node.prop("reg");
    let _ = node.child("chosen");
    for child in node.children() {
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        walk(child, depth + 1, budget);
    }
}

fuzz_target!(|data: &[u8]| {
    match check(data) {
        Ok(fdt) => {
            let mut budget = 100_000;
            walk(fdt.root(), 0, &mut budget);
            let _ = fdt.find("/");
            let _ = fdt.find("/chosen");
            let _ = fdt.find("/domains/hello/memory");
        }
        Err(e) => assert!(!format!("{e}").is_empty()),
    }
});
