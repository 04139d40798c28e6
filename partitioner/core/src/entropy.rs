//! Boot-time randomness for domains.
//!
//! A guest kernel wants a seed from its boot loader: Linux credits
//! `/chosen/rng-seed` to its random number generator and randomizes its own
//! address (KASLR) with `/chosen/kaslr-seed`. Without them it has neither
//! until it has gathered entropy itself, and meanwhile each request for
//! random bytes (slab freelists, stack canaries, address space layout) runs
//! the ChaCha20 key erasure of an unready generator: a Linux domain spent
//! 16% more instructions on an md5sum than the same guest given a seed
//! (`cargo xtask bench workload`).
//!
//! The partitioner has one root seed, from its own boot loader's device
//! tree (`/chosen/rng-seed`, `/chosen/kaslr-seed`: QEMU and U-Boot write
//! them) and from the core's random number instruction (`RNDR`, FEAT_RNG)
//! where it has one. Each run of each domain gets its own seeds, derived
//! from the root seed with SHA-256 under the domain's name and run number:
//! knowing its own seeds tells a domain nothing about another's, or about
//! its own next run's. Without any source, domains get no seed at all
//! (never a made-up one that the guest would trust).

/// Bytes of `rng-seed` each domain gets.
pub const RNG_SEED_LEN: usize = 32;

/// Least seed material (bytes) the root seed must be made from.
pub const MIN_SOURCE_BYTES: usize = 16;

/// The partitioner's root seed. Never given to a domain as it is.
#[derive(Clone)]
pub struct RootSeed([u8; 32]);

/// What one run of one domain gets in its `/chosen`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainSeeds {
    /// `rng-seed`.
    pub rng: [u8; RNG_SEED_LEN],
    /// `kaslr-seed` (never 0: Linux reads 0 as "no seed").
    pub kaslr: u64,
}

/// Where the root seed came from, for the boot report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sources {
    /// Bytes of the loader's `rng-seed` used.
    pub loader_rng: usize,
    /// Whether the loader gave a (non-zero) `kaslr-seed`.
    pub loader_kaslr: bool,
    /// 64-bit words read from `RNDR`.
    pub rndr_words: usize,
}

impl Sources {
    fn bytes(&self) -> usize {
        self.loader_rng + if self.loader_kaslr { 8 } else { 0 } + 8 * self.rndr_words
    }
}

/// The seed material in a boot loader's device tree: `/chosen/rng-seed`
/// (any length; empty or absent is none) and `/chosen/kaslr-seed` (a
/// 64-bit value; 0 or absent is none). A blob that is not a sound device
/// tree has none.
pub fn loader_seeds(dtb: &[u8]) -> (Option<&[u8]>, Option<u64>) {
    let Ok(fdt) = crate::fdt_check::check(dtb) else {
        return (None, None);
    };
    let Some(chosen) = fdt.root().child("chosen") else {
        return (None, None);
    };
    let rng = chosen
        .prop("rng-seed")
        .map(|p| p.value)
        .filter(|v| !v.is_empty());
    let kaslr = chosen
        .prop("kaslr-seed")
        .and_then(|p| p.as_u64())
        .filter(|&k| k != 0);
    (rng, kaslr)
}

impl RootSeed {
    /// The root seed from what the boot loader gave and what `RNDR`
    /// returned; `None` when that is less than [`MIN_SOURCE_BYTES`].
    pub fn gather(
        loader_rng: Option<&[u8]>,
        loader_kaslr: Option<u64>,
        rndr: &[u64],
    ) -> Option<(RootSeed, Sources)> {
        let sources = Sources {
            loader_rng: loader_rng.map_or(0, <[u8]>::len),
            loader_kaslr: loader_kaslr.is_some(),
            rndr_words: rndr.len(),
        };
        if sources.bytes() < MIN_SOURCE_BYTES {
            return None;
        }
        let mut h = Sha256::new();
        h.update(b"bulkhead root seed v1\0");
        let rng = loader_rng.unwrap_or(&[]);
        h.update(&(rng.len() as u64).to_be_bytes());
        h.update(rng);
        h.update(&loader_kaslr.unwrap_or(0).to_be_bytes());
        for w in rndr {
            h.update(&w.to_be_bytes());
        }
        Some((RootSeed(h.finish()), sources))
    }

    /// The seeds of run `run` (0 for the first start, then one more per
    /// restart) of the domain called `name`.
    #[inline(never)]
    pub fn for_domain(&self, name: &str, run: u32) -> DomainSeeds {
        let derive = |purpose: &[u8]| {
            let mut h = Sha256::new();
            h.update(b"bulkhead domain seed v1\0");
            h.update(purpose);
            h.update(&self.0);
            h.update(&run.to_be_bytes());
            h.update(&(name.len() as u64).to_be_bytes());
            h.update(name.as_bytes());
            h.finish()
        };
        let rng = derive(b"rng-seed\0");
        let k = derive(b"kaslr-seed\0");
        let mut kaslr = u64::from_be_bytes([k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7]]);
        if kaslr == 0 {
            kaslr = 1;
        }
        DomainSeeds { rng, kaslr }
    }
}

impl Drop for RootSeed {
    fn drop(&mut self) {
        self.0 = [0; 32];
    }
}

/// SHA-256 (FIPS 180-4), enough for the derivations above: one message
/// fed in pieces, one digest.
pub struct Sha256 {
    state: [u32; 8],
    block: [u8; 64],
    filled: usize,
    length: u64,
}

const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

impl Default for Sha256 {
    fn default() -> Self {
        Self::new()
    }
}

impl Sha256 {
    pub const fn new() -> Self {
        Self {
            state: [
                0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
                0x5be0cd19,
            ],
            block: [0; 64],
            filled: 0,
            length: 0,
        }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.length = self.length.wrapping_add(data.len() as u64);
        while !data.is_empty() {
            let take = (64 - self.filled).min(data.len());
            self.block[self.filled..self.filled + take].copy_from_slice(&data[..take]);
            self.filled += take;
            data = &data[take..];
            if self.filled == 64 {
                self.compress();
                self.filled = 0;
            }
        }
    }

    pub fn finish(mut self) -> [u8; 32] {
        let bits = self.length.wrapping_mul(8);
        self.update(&[0x80]);
        while self.filled != 56 {
            self.update(&[0]);
        }
        self.update(&bits.to_be_bytes());
        let mut out = [0u8; 32];
        for (o, s) in out.chunks_exact_mut(4).zip(self.state) {
            o.copy_from_slice(&s.to_be_bytes());
        }
        self.block = [0; 64];
        out
    }

    fn compress(&mut self) {
        let mut w = [0u32; 64];
        for (i, c) in self.block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = self.state;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = h
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            h = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (s, v) in self.state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
            *s = s.wrapping_add(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fdt_check::builder::node;

    fn hex(d: [u8; 32]) -> std::string::String {
        d.iter().map(|b| std::format!("{b:02x}")).collect()
    }

    fn sha(data: &[u8]) -> std::string::String {
        let mut h = Sha256::new();
        h.update(data);
        hex(h.finish())
    }

    #[test]
    fn sha256_matches_the_fips_180_examples() {
        assert_eq!(
            sha(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            sha(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        // A million 'a's, fed in uneven pieces (crosses every block edge case).
        let mut h = Sha256::new();
        let chunk = [b'a'; 997];
        let mut left = 1_000_000usize;
        while left > 0 {
            let n = left.min(chunk.len());
            h.update(&chunk[..n]);
            left -= n;
        }
        assert_eq!(
            hex(h.finish()),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        );
    }

    fn root(seed: &[u8]) -> RootSeed {
        RootSeed::gather(Some(seed), None, &[]).unwrap().0
    }

    #[test]
    fn every_domain_and_every_run_gets_its_own_seeds() {
        let r = root(&[7; 32]);
        let mut seen = std::vec::Vec::new();
        for name in ["linux", "rtos", "linux2", "a"] {
            for run in 0..4 {
                let s = r.for_domain(name, run);
                assert_ne!(s.kaslr, 0);
                assert!(!seen.contains(&s.rng), "{name} run {run}");
                assert!(!seen
                    .iter()
                    .any(|x: &[u8; 32]| x[..8] == s.kaslr.to_be_bytes()));
                seen.push(s.rng);
            }
        }
        // The same root, name and run give the same seeds (nothing else
        // goes in); another root gives others.
        assert_eq!(r.for_domain("linux", 1), r.for_domain("linux", 1));
        assert_ne!(
            root(&[8; 32]).for_domain("linux", 1),
            r.for_domain("linux", 1)
        );
        // Name boundaries cannot be shifted between name and run.
        assert_ne!(r.for_domain("ab", 0).rng, r.for_domain("a", 0).rng);
    }

    #[test]
    fn a_domain_never_gets_the_root_seed_or_the_loaders_seed() {
        let loader = [0x5a; 32];
        let (r, _) = RootSeed::gather(Some(&loader), Some(42), &[1, 2]).unwrap();
        let s = r.for_domain("d", 0);
        assert_ne!(s.rng, r.0);
        assert_ne!(s.rng, loader);
    }

    #[test]
    fn too_little_material_gives_no_root_seed() {
        assert!(RootSeed::gather(None, None, &[]).is_none());
        assert!(RootSeed::gather(Some(&[1; 8]), None, &[]).is_none());
        // A kaslr-seed alone is 8 bytes: not enough either.
        assert!(RootSeed::gather(None, Some(99), &[]).is_none());
        let (_, s) = RootSeed::gather(Some(&[1; 8]), Some(99), &[]).unwrap();
        assert_eq!(
            s,
            Sources {
                loader_rng: 8,
                loader_kaslr: true,
                rndr_words: 0
            }
        );
        let (_, s) = RootSeed::gather(None, None, &[1, 2]).unwrap();
        assert_eq!(s.rndr_words, 2);
        // Every source counts: the loader's seeds and RNDR give different roots.
        let a = RootSeed::gather(Some(&[1; 16]), None, &[]).unwrap().0;
        let b = RootSeed::gather(Some(&[1; 16]), None, &[3]).unwrap().0;
        let c = RootSeed::gather(Some(&[1; 16]), Some(5), &[]).unwrap().0;
        assert_ne!(a.0, b.0);
        assert_ne!(a.0, c.0);
    }

    #[test]
    fn the_loaders_seeds_are_read_from_chosen() {
        let tree = node("")
            .child(
                node("chosen")
                    .raw("rng-seed", &[9; 32])
                    .u64("kaslr-seed", 0x1234),
            )
            .blob();
        let (rng, kaslr) = loader_seeds(&tree);
        assert_eq!(rng, Some(&[9u8; 32][..]));
        assert_eq!(kaslr, Some(0x1234));
        // Zero (what Linux leaves after taking it) and empty are no seed.
        let tree = node("")
            .child(node("chosen").raw("rng-seed", &[]).u64("kaslr-seed", 0))
            .blob();
        assert_eq!(loader_seeds(&tree), (None, None));
        assert_eq!(loader_seeds(&node("").blob()), (None, None));
        assert_eq!(loader_seeds(b"not a device tree"), (None, None));
    }
}
