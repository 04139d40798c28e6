//! The checker of hand-written guest device trees: `check_supplied` against
//! the plan of a domain of a valid config. Input: one selector byte (domain
//! and GIC, see `bulkhead_fuzz::dtb_selector`), then the tree.
#![no_main]

use std::sync::OnceLock;

use bulkhead_core::dtb_check::check_supplied;
use bulkhead_core::plan::DomainPlan;
use bulkhead_fuzz::{dtb_selector, plan_domains};
use libfuzzer_sys::fuzz_target;

static DOMAINS: OnceLock<Vec<DomainPlan>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let domains = DOMAINS.get_or_init(plan_domains);
    let Some((&selector, tree)) = data.split_first() else {
        return;
    };
    let (index, gic) = dtb_selector(selector);
    let plan = &domains[index % domains.len()];
    if let Err(problems) = check_supplied(plan, gic, tree) {
        assert!(problems.len() > 0, "rejected without a problem");
        for p in problems.iter() {
            assert!(!format!("{p}").is_empty());
            assert!(!p.code().is_empty());
            let _ = p.path();
        }
    }
});
