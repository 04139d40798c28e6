//! The partitioner's root seed (`bulkhead_core::entropy`), gathered once at
//! boot from the boot loader's device tree and the core's `RNDR`, and each
//! domain run's seeds derived from it.

use bulkhead_core::board::Board;
use bulkhead_core::entropy::{loader_seeds, DomainSeeds, RootSeed, Sources};
use log::{info, warn};

static ROOT: spin::Once<Option<RootSeed>> = spin::Once::new();

/// Words of `RNDR` output mixed into the root seed when the core has it.
const RNDR_WORDS: usize = 4;

/// Gather the root seed (boot core, once, before any domain is loaded).
pub fn init(board: &Board, loader_dtb: u64) {
    let mut rndr = [0u64; RNDR_WORDS];
    let words = read_rndr(&mut rndr);
    let gathered = crate::with_loader_tree(board, loader_dtb, |tree| {
        let (rng, kaslr) = loader_seeds(tree);
        RootSeed::gather(rng, kaslr, &rndr[..words])
    })
    .unwrap_or_else(|| RootSeed::gather(None, None, &rndr[..words]));
    rndr = [0; RNDR_WORDS];
    core::hint::black_box(&rndr);
    match &gathered {
        Some((_, s)) => info!("entropy: {}: every domain run gets its own rng-seed and kaslr-seed", Described(*s)),
        None => warn!(
            "entropy: no seed from the boot loader's device tree and no RNDR: domains get no rng-seed or kaslr-seed"
        ),
    }
    ROOT.call_once(|| gathered.map(|(r, _)| r));
}

/// The seeds of run `run` of domain `name`, if there is a root seed.
pub fn for_domain(name: &str, run: u32) -> Option<DomainSeeds> {
    ROOT.get()?.as_ref().map(|r| r.for_domain(name, run))
}

struct Described(Sources);

impl core::fmt::Display for Described {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let s = self.0;
        let mut sep = "";
        if s.loader_rng > 0 {
            write!(f, "{} bytes of the boot loader's rng-seed", s.loader_rng)?;
            sep = ", ";
        }
        if s.loader_kaslr {
            write!(f, "{sep}its kaslr-seed")?;
            sep = ", ";
        }
        if s.rndr_words > 0 {
            write!(f, "{sep}{} words of RNDR", s.rndr_words)?;
        }
        Ok(())
    }
}

/// Fill `out` from `RNDR` (FEAT_RNG) if this core has it; how many words
/// it gave (a word it could not give in reasonable time ends the run).
fn read_rndr(out: &mut [u64]) -> usize {
    // ID_AA64ISAR0_EL1.RNDR, bits [63:60]: 1 = RNDR and RNDRRS implemented.
    let isar0: u64;
    // SAFETY: reading an ID register has no side effect.
    unsafe {
        core::arch::asm!("mrs {}, id_aa64isar0_el1", out(reg) isar0, options(nomem, nostack, preserves_flags))
    };
    if isar0 >> 60 == 0 {
        return 0;
    }
    let mut n = 0;
    for slot in out.iter_mut() {
        let (value, ok): (u64, u64);
        // SAFETY: RNDR (S3_3_C2_C4_0) exists on this core (checked above);
        // it only returns a value and sets NZCV (Z on failure).
        unsafe {
            core::arch::asm!(
                "mrs {v}, s3_3_c2_c4_0",
                "cset {ok}, ne",
                v = out(reg) value,
                ok = out(reg) ok,
                options(nomem, nostack)
            )
        };
        if ok == 0 {
            break;
        }
        *slot = value;
        n += 1;
    }
    n
}
