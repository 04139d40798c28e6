//! The package: the compiled config and every domain image, appended to the
//! firmware by `cargo xtask build` into one bootable image. The firmware
//! trusts none of it: every length, offset and checksum is checked here, and
//! a damaged package is an error, never a panic.
//!
//! Layout (little-endian, all offsets from the package start):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `BHPKG002` |
//! | 8 | 4 | number of images |
//! | 12 | 4 | CRC-32 of the header and entry table, this field taken as 0 |
//! | 16 | 8 | total package length |
//! | 24 | 8 | config offset |
//! | 32 | 8 | config length |
//! | 40 | 4 | config CRC-32 |
//! | 44 | 4 | reserved (0) |
//! | 48 | 64 × n | entries: name (40 bytes, NUL-padded), offset (8), length (8), CRC-32 (4), reserved (4) |

use core::fmt;

pub const MAGIC: &[u8; 8] = b"BHPKG002";
pub const HEADER_LEN: usize = 48;
pub const ENTRY_LEN: usize = 64;
pub const NAME_LEN: usize = 40;
/// Most images one package holds: an image, an initial RAM disk and a
/// device tree per domain.
pub const MAX_IMAGES: usize = 3 * crate::plan::MAX_DOMAINS;

/// Why a package cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackageError {
    BadMagic,
    Truncated {
        needed: u64,
        have: u64,
    },
    HeaderChecksum {
        stored: u32,
        computed: u32,
    },
    TooManyImages(u32),
    OutOfBounds {
        what: &'static str,
    },
    BadName,
    Checksum {
        what: Name,
        stored: u32,
        computed: u32,
    },
}

/// A fixed-size image name, printable.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Name(pub [u8; NAME_LEN]);

impl Name {
    pub fn as_str(&self) -> &str {
        let len = self.0.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
        core::str::from_utf8(&self.0[..len]).unwrap_or("?")
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl fmt::Display for PackageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic => write!(
                f,
                "no package after the firmware (bad magic): rebuild with `cargo xtask build`"
            ),
            Self::Truncated { needed, have } => {
                write!(
                    f,
                    "package truncated: needs {needed} bytes, image holds {have}"
                )
            }
            Self::HeaderChecksum { stored, computed } => write!(
                f,
                "package header corrupted: CRC-32 {computed:#010x}, expected {stored:#010x}"
            ),
            Self::TooManyImages(n) => write!(
                f,
                "package lists {n} images, at most {MAX_IMAGES} supported"
            ),
            Self::OutOfBounds { what } => write!(f, "package {what} lies outside the package"),
            Self::BadName => write!(f, "package entry name is not valid UTF-8"),
            Self::Checksum {
                what,
                stored,
                computed,
            } => write!(
                f,
                "{} corrupted: CRC-32 {computed:#010x}, expected {stored:#010x}",
                what.as_str()
            ),
        }
    }
}

const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// A CRC-32 state update, as [`crc32_update`] computes it: the firmware may
/// pass a faster one to [`Package::parse_with`] (the CPU's CRC32
/// instructions), which must give the same results.
pub type CrcUpdate = fn(u32, &[u8]) -> u32;

/// Feed `data` into a running CRC-32 state (start with `!0`, finish with `!`).
pub fn crc32_update(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc = CRC_TABLE[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// CRC-32 (IEEE 802.3, reflected, as zlib computes it).
pub fn crc32(data: &[u8]) -> u32 {
    !crc32_update(!0, data)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(v)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

fn slice<'a>(
    bytes: &'a [u8],
    off: u64,
    len: u64,
    what: &'static str,
) -> Result<&'a [u8], PackageError> {
    let end = off
        .checked_add(len)
        .ok_or(PackageError::OutOfBounds { what })?;
    if end > bytes.len() as u64 {
        return Err(PackageError::OutOfBounds { what });
    }
    Ok(&bytes[off as usize..end as usize])
}

/// A checked package.
#[derive(Clone, Copy, Debug)]
pub struct Package<'a> {
    pub config: &'a [u8],
    /// Name, bytes and stored CRC-32 of each image.
    images: [(Name, &'a [u8], u32); MAX_IMAGES],
    count: usize,
    /// Total length in bytes.
    pub len: u64,
}

impl<'a> Package<'a> {
    /// Check a package. `bytes` may extend past its end.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, PackageError> {
        Self::parse_with(bytes, crc32_update)
    }

    /// [`Package::parse`] with another implementation of [`crc32_update`].
    pub fn parse_with(bytes: &'a [u8], crc: CrcUpdate) -> Result<Self, PackageError> {
        let p = Self::parse_deferring_images(bytes, crc)?;
        for (name, data, stored) in p.images[..p.count].iter() {
            check_crc(crc, *name, data, *stored)?;
        }
        Ok(p)
    }

    /// Check the header, the entry table and the config, and leave each
    /// image's CRC-32 to [`Package::verify`]: the firmware checks a domain's
    /// images on the core that loads them, so a large image delays only its
    /// own domain, and a damaged one stops only its own domain.
    pub fn parse_deferring_images(bytes: &'a [u8], crc: CrcUpdate) -> Result<Self, PackageError> {
        if bytes.len() < HEADER_LEN {
            return Err(PackageError::Truncated {
                needed: HEADER_LEN as u64,
                have: bytes.len() as u64,
            });
        }
        if &bytes[..8] != MAGIC {
            return Err(PackageError::BadMagic);
        }
        let count = u32_at(bytes, 8);
        if count as usize > MAX_IMAGES {
            return Err(PackageError::TooManyImages(count));
        }
        let table_end = HEADER_LEN + ENTRY_LEN * count as usize;
        if bytes.len() < table_end {
            return Err(PackageError::Truncated {
                needed: table_end as u64,
                have: bytes.len() as u64,
            });
        }
        let stored = u32_at(bytes, 12);
        let computed = header_crc(crc, &bytes[..table_end]);
        if stored != computed {
            return Err(PackageError::HeaderChecksum { stored, computed });
        }
        let len = u64_at(bytes, 16);
        if len > bytes.len() as u64 {
            return Err(PackageError::Truncated {
                needed: len,
                have: bytes.len() as u64,
            });
        }
        // The length it claims must hold its own header and entry table
        // (found by the `package` fuzz target: a length of 0 cut them off).
        if len < table_end as u64 {
            return Err(PackageError::Truncated {
                needed: table_end as u64,
                have: len,
            });
        }
        let bytes = &bytes[..len as usize];
        let config = slice(bytes, u64_at(bytes, 24), u64_at(bytes, 32), "config")?;
        let mut cfg_name = [0u8; NAME_LEN];
        cfg_name[..6].copy_from_slice(b"config");
        check_crc(crc, Name(cfg_name), config, u32_at(bytes, 40))?;
        let mut images = [(Name([0; NAME_LEN]), &bytes[..0], 0); MAX_IMAGES];
        for (i, slot) in images.iter_mut().enumerate().take(count as usize) {
            let e = HEADER_LEN + ENTRY_LEN * i;
            let mut name = [0u8; NAME_LEN];
            name.copy_from_slice(&bytes[e..e + NAME_LEN]);
            let name = Name(name);
            let nlen = name.0.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
            if core::str::from_utf8(&name.0[..nlen]).is_err() {
                return Err(PackageError::BadName);
            }
            let data = slice(bytes, u64_at(bytes, e + 40), u64_at(bytes, e + 48), "image")?;
            *slot = (name, data, u32_at(bytes, e + 56));
        }
        Ok(Self {
            config,
            images,
            count: count as usize,
            len,
        })
    }

    /// The image of the domain with this name.
    pub fn image(&self, name: &str) -> Option<&'a [u8]> {
        self.images[..self.count]
            .iter()
            .find(|(n, _, _)| n.as_str() == name)
            .map(|(_, d, _)| *d)
    }

    /// `(name, image)` pairs.
    pub fn images(&self) -> impl Iterator<Item = (&str, &'a [u8])> + '_ {
        self.images[..self.count]
            .iter()
            .map(|(n, d, _)| (n.as_str(), *d))
    }

    /// Check the CRC-32 of entry `name` (nothing to check if there is none).
    pub fn verify(&self, name: &str, crc: CrcUpdate) -> Result<(), PackageError> {
        match self.images[..self.count]
            .iter()
            .find(|(n, _, _)| n.as_str() == name)
        {
            Some((n, data, stored)) => check_crc(crc, *n, data, *stored),
            None => Ok(()),
        }
    }
}

/// CRC-32 of the header and entry table, with the CRC field taken as zero.
fn header_crc(update: CrcUpdate, table: &[u8]) -> u32 {
    let crc = update(!0, &table[..12]);
    let crc = update(crc, &[0; 4]);
    !update(crc, &table[16..])
}

fn check_crc(update: CrcUpdate, what: Name, data: &[u8], stored: u32) -> Result<(), PackageError> {
    let computed = !update(!0, data);
    if computed != stored {
        return Err(PackageError::Checksum {
            what,
            stored,
            computed,
        });
    }
    Ok(())
}

/// Build a package (host side). Payloads are 4 KiB aligned.
#[cfg(any(test, feature = "std"))]
pub fn build(config: &[u8], images: &[(&str, &[u8])]) -> Result<std::vec::Vec<u8>, &'static str> {
    use std::vec::Vec;
    if images.len() > MAX_IMAGES {
        return Err("too many images");
    }
    let align = |v: &mut Vec<u8>| v.resize(v.len().next_multiple_of(4096), 0);
    let mut out = std::vec![0u8; HEADER_LEN + ENTRY_LEN * images.len()];
    align(&mut out);
    let cfg_off = out.len();
    out.extend_from_slice(config);
    out[0..8].copy_from_slice(MAGIC);
    out[8..12].copy_from_slice(&(images.len() as u32).to_le_bytes());
    out[24..32].copy_from_slice(&(cfg_off as u64).to_le_bytes());
    out[32..40].copy_from_slice(&(config.len() as u64).to_le_bytes());
    out[40..44].copy_from_slice(&crc32(config).to_le_bytes());
    for (i, (name, data)) in images.iter().enumerate() {
        if name.len() >= NAME_LEN {
            return Err("image name too long");
        }
        align(&mut out);
        let off = out.len();
        out.extend_from_slice(data);
        let e = HEADER_LEN + ENTRY_LEN * i;
        out[e..e + name.len()].copy_from_slice(name.as_bytes());
        out[e + 40..e + 48].copy_from_slice(&(off as u64).to_le_bytes());
        out[e + 48..e + 56].copy_from_slice(&(data.len() as u64).to_le_bytes());
        out[e + 56..e + 60].copy_from_slice(&crc32(data).to_le_bytes());
    }
    let total = out.len() as u64;
    out[16..24].copy_from_slice(&total.to_le_bytes());
    let table_end = HEADER_LEN + ENTRY_LEN * images.len();
    let crc = header_crc(crc32_update, &out[..table_end]);
    out[12..16].copy_from_slice(&crc.to_le_bytes());
    Ok(out)
}

#[cfg(test)]
mod fuzz_regressions {
    use super::*;

    /// `fuzz/artifacts/package/crash-02d01867…`: a valid header and table
    /// CRC with a total length (0) shorter than the header: it made the
    /// parser index past the end instead of refusing.
    #[test]
    fn a_length_shorter_than_the_header_is_refused() {
        let mut b = std::vec::Vec::from(&MAGIC[..]);
        b.resize(HEADER_LEN, 0);
        let crc = header_crc(crc32_update, &b[..HEADER_LEN]);
        b[12..16].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            Package::parse(&b),
            Err(PackageError::Truncated { have: 0, .. })
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> std::vec::Vec<u8> {
        build(
            b"\xd0\x0d\xfe\xedconfig",
            &[("hello", b"HELLO-IMAGE"), ("probe", &[7u8; 5000])],
        )
        .unwrap()
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn parse_with_uses_the_given_crc() {
        let bytes = sample();
        // Another correct implementation (bit by bit) gives the same package.
        fn bitwise(mut crc: u32, data: &[u8]) -> u32 {
            for &b in data {
                crc ^= u32::from(b);
                for _ in 0..8 {
                    crc = if crc & 1 != 0 {
                        0xedb8_8320 ^ (crc >> 1)
                    } else {
                        crc >> 1
                    };
                }
            }
            crc
        }
        assert_eq!(
            Package::parse_with(&bytes, bitwise).unwrap().config,
            Package::parse(&bytes).unwrap().config
        );
        // A wrong one is caught by the stored checksums.
        fn broken(crc: u32, _: &[u8]) -> u32 {
            crc
        }
        assert!(Package::parse_with(&bytes, broken).is_err());
    }

    #[test]
    fn deferred_image_checks_find_the_damaged_image_only() {
        let mut bytes = sample();
        let p = Package::parse(&bytes).unwrap();
        let at = p.image("probe").unwrap().as_ptr() as usize - bytes.as_ptr() as usize;
        bytes[at + 100] ^= 0x40;
        // The whole-package check refuses it; the deferred one accepts the
        // header and config, then blames exactly the damaged image.
        assert!(matches!(
            Package::parse(&bytes),
            Err(PackageError::Checksum { .. })
        ));
        let p = Package::parse_deferring_images(&bytes, crc32_update).unwrap();
        assert!(p.verify("hello", crc32_update).is_ok());
        assert!(p.verify("absent", crc32_update).is_ok());
        match p.verify("probe", crc32_update) {
            Err(PackageError::Checksum { what, .. }) => assert_eq!(what.as_str(), "probe"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn round_trips() {
        let bytes = sample();
        let p = Package::parse(&bytes).unwrap();
        assert_eq!(p.config, b"\xd0\x0d\xfe\xedconfig");
        assert_eq!(p.image("hello"), Some(&b"HELLO-IMAGE"[..]));
        assert_eq!(p.image("probe").unwrap().len(), 5000);
        assert_eq!(p.image("nope"), None);
        assert_eq!(p.len as usize, bytes.len());
        // Trailing bytes after the package are fine.
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0xff; 100]);
        assert!(Package::parse(&longer).is_ok());
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample();
        for len in 0..bytes.len() {
            assert!(Package::parse(&bytes[..len]).is_err(), "truncated to {len}");
        }
    }

    #[test]
    fn every_single_bit_flip_in_used_bytes_is_detected() {
        let bytes = sample();
        let p = Package::parse(&bytes).unwrap();
        let used: std::vec::Vec<usize> = (0..HEADER_LEN + 2 * ENTRY_LEN)
            .chain((0..p.config.len()).map(|i| 4096 + i))
            .chain((0..11).map(|i| 8192 + i))
            .collect();
        for i in used {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                assert!(
                    Package::parse(&b).is_err(),
                    "flip of byte {i} bit {bit} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn names_the_damage() {
        let mut b = sample();
        b[8192] ^= 1;
        let e = Package::parse(&b).unwrap_err();
        assert_eq!(
            std::format!("{e}").split(':').next().unwrap(),
            "hello corrupted"
        );
        assert_eq!(
            Package::parse(b"not a package at all, definitely not").unwrap_err(),
            PackageError::Truncated {
                needed: 48,
                have: 36
            }
        );
        let mut m = sample();
        m[0] = b'X';
        assert_eq!(Package::parse(&m).unwrap_err(), PackageError::BadMagic);
    }
}

/// Memory an image needs from its load address: its length, or for an arm64
/// Linux `Image` the larger `image_size` of its header (which counts the
/// kernel's .bss). The host check and the firmware both size images with this.
pub fn load_size(image: &[u8]) -> u64 {
    let len = image.len() as u64;
    if image.len() >= 64 && &image[56..60] == b"ARM\x64" {
        let mut v = [0u8; 8];
        v.copy_from_slice(&image[16..24]);
        let footprint = u64::from_le_bytes(v);
        // text_offset (bytes 8..16) is 0 for every kernel since Linux 3.17;
        // the image is loaded at the entry point itself.
        return len.max(footprint);
    }
    len
}

#[cfg(test)]
mod load_size_tests {
    use super::load_size;

    #[test]
    fn linux_images_count_their_bss() {
        let mut img = std::vec![0u8; 4096];
        assert_eq!(load_size(&img), 4096);
        img[56..60].copy_from_slice(b"ARM\x64");
        img[16..24].copy_from_slice(&0x20_0000u64.to_le_bytes());
        assert_eq!(load_size(&img), 0x20_0000);
        img[16..24].copy_from_slice(&16u64.to_le_bytes());
        assert_eq!(load_size(&img), 4096, "never less than the file");
        assert_eq!(load_size(b"ARM"), 3);
    }
}

/// The package entry holding what a domain's config names `image`: the
/// domain's own name for its `image`, `<name>.initrd` for its `initrd`,
/// `<name>.dtb` for its `device-tree`.
pub fn entry_name(config: &[u8], domain: &str, image: &str) -> heapless::String<40> {
    entry_name_in(crate::config::parse(config).ok().as_ref(), domain, image)
}

/// [`entry_name`] with the config already parsed (`None`: it does not
/// parse), so a caller asking for every domain parses it once, not once
/// per domain.
pub fn entry_name_in(
    parsed: Option<&crate::config::Config>,
    domain: &str,
    image: &str,
) -> heapless::String<40> {
    let d = parsed.and_then(|c| c.domains.iter().find(|d| d.name == domain));
    if d.and_then(|d| d.initrd).is_some_and(|rd| rd == image) {
        crate::plan::initrd_name(domain)
    } else if d.and_then(|d| d.device_tree).is_some_and(|dt| dt == image) {
        crate::plan::dtb_name(domain)
    } else {
        crate::plan::package_entry(domain, "")
    }
}
