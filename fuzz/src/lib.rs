//! Shared pieces of Bulkhead's fuzz targets: an input reader, the layout and
//! image sizes the config checks use, and the plans supplied device trees
//! are checked against.

use bulkhead_core::plan::{DomainPlan, GicVersion, Plan};
use bulkhead_core::validate;

/// Reads fixed-size values off the front of the fuzz input; zeros once it
/// runs out, so every input decodes to something.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    pub fn rest(&self) -> &'a [u8] {
        self.data
    }
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        head
    }
    fn le<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        let src = self.bytes(N);
        b[..src.len()].copy_from_slice(src);
        b
    }
    pub fn u8(&mut self) -> u8 {
        self.le::<1>()[0]
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.le())
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.le())
    }
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.le())
    }
    pub fn bool(&mut self) -> bool {
        self.u8() & 1 != 0
    }
}

// `layout()` and `image_size()`, shared with xtask (see the file).
include!("inputs.rs");

/// `validate::check` with the qemu-virt board support, [`layout`] and
/// [`image_size`].
#[allow(clippy::result_large_err)]
pub fn check(blob: &[u8]) -> Result<Plan, bulkhead_core::error::Errors> {
    validate::check(blob, &board_support::by_name, &layout(), &image_size)
}

/// Compiled configs (see build.rs) whose domains the `dtb_supplied` target
/// checks trees against.
pub const PLAN_BLOBS: &[&[u8]] = include!(concat!(env!("OUT_DIR"), "/plans.rs"));

/// Every domain of every config of [`PLAN_BLOBS`], in order.
pub fn plan_domains() -> Vec<DomainPlan> {
    PLAN_BLOBS
        .iter()
        .flat_map(|blob| match check(blob) {
            Ok(plan) => plan.domains.into_iter().collect::<Vec<_>>(),
            Err(e) => panic!("a plan config does not validate: {:?}", e.iter().next()),
        })
        .collect()
}

/// The first byte of a `dtb_supplied` input: which domain of
/// [`plan_domains`] (bits 7:2, modulo their count) and which GIC (bits 1:0:
/// unknown, v2, v3, unknown).
pub fn dtb_selector(byte: u8) -> (usize, Option<GicVersion>) {
    let gic = match byte & 3 {
        1 => Some(GicVersion::V2),
        2 => Some(GicVersion::V3),
        _ => None,
    };
    ((byte >> 2) as usize, gic)
}
