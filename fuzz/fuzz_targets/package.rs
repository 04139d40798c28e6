//! The image package format. Mode 0 (first byte even): `Package::parse`,
//! `parse_deferring_images` and `verify` on arbitrary bytes, which must
//! agree. Mode 1: a package `build` makes from the input parses back to
//! exactly what went in.
#![no_main]

use bulkhead_core::package::{build, crc32_update, Package, HEADER_LEN};
use bulkhead_fuzz::Input;
use libfuzzer_sys::fuzz_target;

fn within(outer: &[u8], inner: &[u8]) -> bool {
    let o = outer.as_ptr_range();
    let i = inner.as_ptr_range();
    inner.is_empty() || (o.start <= i.start && i.end <= o.end)
}

fn arbitrary_bytes(bytes: &[u8]) {
    let full = Package::parse(bytes);
    let deferred = Package::parse_deferring_images(bytes, crc32_update);
    match (&full, &deferred) {
        (Ok(p), Ok(d)) => {
            assert_eq!(p.len, d.len);
            assert!(p.len as usize <= bytes.len());
            assert!(within(&bytes[..p.len as usize], p.config));
            for (name, image) in p.images() {
                assert!(within(&bytes[..p.len as usize], image));
                assert_eq!(p.image(name).map(<[u8]>::len).is_some(), true);
                assert!(d.verify(name, crc32_update).is_ok());
            }
        }
        (Err(_), Ok(d)) => {
            assert!(
                d.images()
                    .any(|(name, _)| d.verify(name, crc32_update).is_err()),
                "parse fails, but the deferred parse and every verify pass: {full:?}"
            );
        }
        (Ok(_), Err(e)) => panic!("parse passes, the deferred parse fails: {e:?}"),
        (Err(a), Err(b)) => {
            let _ = format!("{a}{b}");
        }
    }
    if let Ok(d) = deferred {
        assert!(d.verify("no such image", crc32_update).is_ok());
    }
}

fn round_trip(input: &mut Input<'_>) {
    let config_len = input.u16() as usize % 512;
    let config = input.bytes(config_len).to_vec();
    let count = input.u8() % 6;
    let mut owned = Vec::new();
    for _ in 0..count {
        let name_len = input.u8() as usize % 48;
        // A NUL ends a name in the entry table (`build` does not refuse one).
        let name = String::from_utf8_lossy(input.bytes(name_len)).replace('\0', "");
        let len = input.u16() as usize % 3000;
        owned.push((name, input.bytes(len).to_vec()));
    }
    let images: Vec<(&str, &[u8])> = owned
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let Ok(bytes) = build(&config, &images) else {
        return;
    };
    let p = match Package::parse(&bytes) {
        Ok(p) => p,
        Err(e) => panic!("a built package does not parse: {e}"),
    };
    assert_eq!(p.config, &config[..]);
    assert_eq!(p.len as usize, bytes.len());
    let back: Vec<(&str, &[u8])> = p.images().collect();
    assert_eq!(back, images);
    // Any change to the header or entry table is caught.
    if let Some(&at) = input.rest().first() {
        let mut bad = bytes.clone();
        let i = at as usize % HEADER_LEN;
        bad[i] ^= 1 << (input.rest().get(1).copied().unwrap_or(0) % 8);
        assert!(
            Package::parse(&bad).is_err(),
            "a flipped header bit at {i} went unnoticed"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    if input.u8() & 1 == 0 {
        arbitrary_bytes(input.rest());
    } else {
        round_trip(&mut input);
    }
});
