//! What the device tree says about the domain.

use core::sync::atomic::{AtomicUsize, Ordering};
use fdt::node::FdtNode;
use fdt::Fdt;

/// Most memory regions [`DomainInfo`] records.
pub const MAX_MEM_REGIONS: usize = 8;

/// A RAM region of the domain, in guest addresses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemRegion {
    pub base: u64,
    pub size: u64,
}

/// The domain as its device tree describes it, or the defaults when it was
/// started without one (`native`, one CPU, no known memory, no bootargs,
/// console at [`crate::DEFAULT_CONSOLE`]).
#[derive(Clone, Copy, Debug)]
pub struct DomainInfo {
    name: &'static str,
    cpus: usize,
    memory: [MemRegion; MAX_MEM_REGIONS],
    memory_count: usize,
    bootargs: &'static str,
    dtb: Option<usize>,
    console: usize,
}

impl DomainInfo {
    /// `/chosen/bulkhead,domain-name`.
    pub fn name(&self) -> &'static str {
        self.name
    }
    /// Number of `/cpus/cpu@N` nodes.
    pub fn cpus(&self) -> usize {
        self.cpus
    }
    /// The `reg` entries of the `memory@...` nodes, in tree order (at most
    /// [`MAX_MEM_REGIONS`]).
    pub fn memory(&self) -> &[MemRegion] {
        &self.memory[..self.memory_count]
    }
    /// `/chosen/bootargs` (empty if absent).
    pub fn bootargs(&self) -> &'static str {
        self.bootargs
    }
    /// Address of the device tree, if the domain was started with one.
    pub fn dtb(&self) -> Option<usize> {
        self.dtb
    }
    /// Base address of the console UART.
    pub fn console(&self) -> usize {
        self.console
    }
}

/// Reads the domain's description from its device tree.
pub fn info() -> DomainInfo {
    let mut info = DomainInfo {
        name: name(),
        cpus: 1,
        memory: [MemRegion::default(); MAX_MEM_REGIONS],
        memory_count: 0,
        bootargs: "",
        dtb: crate::dtb::range().map(|(start, _)| start),
        console: crate::console::base(),
    };
    let Some(fdt) = crate::dtb::fdt() else {
        return info;
    };
    if let Some(bootargs) = chosen_str(&fdt, "bootargs") {
        info.bootargs = bootargs;
    }
    if let Some(cpus) = fdt.find_node("/cpus") {
        info.cpus = cpus.children().filter(|c| base_name(c) == "cpu").count();
    }
    if let Some(root) = fdt.find_node("/") {
        let regions = root
            .children()
            .filter(|n| base_name(n) == "memory")
            .filter_map(|n| n.reg())
            .flatten()
            .filter_map(|r| {
                Some(MemRegion {
                    base: r.starting_address as u64,
                    size: r.size? as u64,
                })
            });
        for (slot, region) in info.memory.iter_mut().zip(regions) {
            *slot = region;
            info.memory_count += 1;
        }
    }
    info
}

/// Name of the node without its unit address.
fn base_name<'a>(node: &FdtNode<'_, 'a>) -> &'a str {
    node.name.split('@').next().unwrap_or("")
}

/// A string property of `/chosen`.
fn chosen_str(fdt: &Fdt<'static>, prop: &str) -> Option<&'static str> {
    fdt.find_node("/chosen")?.property(prop)?.as_str()
}

/// Base address of the UART `/chosen/stdout-path` names (options after a
/// `:` ignored), if it is plausible: non-zero and clear of the image and of
/// the device tree.
pub(crate) fn console_from_dtb() -> Option<usize> {
    let fdt = crate::dtb::fdt()?;
    let path = chosen_str(&fdt, "stdout-path")?;
    let path = path.split(':').next()?;
    let node = fdt.find_node(path)?;
    let base = node.reg()?.next()?.starting_address as usize;
    let end = base.checked_add(0x1000)?;
    let (dtb_start, dtb_end) = crate::dtb::range()?;
    let clear =
        base != 0 && !crate::image::overlaps(base, end) && (end <= dtb_start || base >= dtb_end);
    clear.then_some(base)
}

/// INTID of an `interrupts` specifier `<type number flags>` (GIC binding:
/// type 0 = SPI, INTID `number + 32`; type 1 = PPI, INTID `number + 16`).
fn spec_intid(spec: &[u8]) -> Option<u32> {
    let cell = |i: usize| -> Option<u32> {
        Some(u32::from_be_bytes(spec.get(i..i + 4)?.try_into().ok()?))
    };
    match (cell(0)?, cell(4)?) {
        (0, n) if n < 988 => Some(n + 32),
        (1, n) if n < 16 => Some(n + 16),
        _ => None,
    }
}

/// INTID of the console's (first) interrupt: the first `interrupts`
/// specifier of the node `/chosen/stdout-path` names. `None` if that node
/// has none (the partitioner's virtual console has none);
/// [`crate::DEFAULT_CONSOLE_INTID`] without a device tree.
pub fn console_intid() -> Option<u32> {
    let Some(fdt) = crate::dtb::fdt() else {
        return Some(crate::DEFAULT_CONSOLE_INTID);
    };
    let path = chosen_str(&fdt, "stdout-path")?.split(':').next()?;
    let node = fdt.find_node(path)?;
    spec_intid(node.property("interrupts")?.value.get(..12)?)
}

/// The SPIs (as INTIDs) the device nodes' `interrupts` name, in tree order,
/// written to `out`; returns how many there are (possibly more than fit).
/// The timer node's PPIs are not SPIs and are left out. Without a device
/// tree: [`crate::DEFAULT_CONSOLE_INTID`].
pub fn device_spis(out: &mut [u32]) -> usize {
    let mut n = 0;
    let mut push = |intid: u32| {
        if let Some(slot) = out.get_mut(n) {
            *slot = intid;
        }
        n += 1;
    };
    let Some(fdt) = crate::dtb::fdt() else {
        push(crate::DEFAULT_CONSOLE_INTID);
        return n;
    };
    for node in fdt.all_nodes() {
        let Some(prop) = node.property("interrupts") else {
            continue;
        };
        for spec in prop.value.chunks_exact(12) {
            if let Some(intid) = spec_intid(spec).filter(|&i| i >= 32) {
                push(intid);
            }
        }
    }
    n
}

/// Where the domain's name lies (inside the device tree); 0 for none.
static NAME_ADDR: AtomicUsize = AtomicUsize::new(0);
static NAME_LEN: AtomicUsize = AtomicUsize::new(0);

/// Records `/chosen/bulkhead,domain-name` for [`name`].
pub(crate) fn init_name() {
    let Some(fdt) = crate::dtb::fdt() else {
        return;
    };
    if let Some(name) = chosen_str(&fdt, "bulkhead,domain-name").filter(|n| !n.is_empty()) {
        NAME_LEN.store(name.len(), Ordering::Relaxed);
        NAME_ADDR.store(name.as_ptr() as usize, Ordering::Relaxed);
    }
}

/// The domain's name: `/chosen/bulkhead,domain-name`, or
/// [`crate::DEFAULT_NAME`]. Cheap and safe to call anywhere, including from
/// exception and panic handlers (it does not parse the device tree).
pub fn name() -> &'static str {
    let addr = NAME_ADDR.load(Ordering::Relaxed);
    if addr == 0 {
        return crate::DEFAULT_NAME;
    }
    let len = NAME_LEN.load(Ordering::Relaxed);
    // SAFETY: `init_name` recorded the address and length of a `&'static str`
    // borrowed from the checked device tree, which stays valid and unchanged
    // for the domain's whole life (see `dtb::init`).
    let bytes = unsafe { core::slice::from_raw_parts(addr as *const u8, len) };
    core::str::from_utf8(bytes).unwrap_or(crate::DEFAULT_NAME)
}

/// The first register range (base, size) of the first device-tree node
/// compatible with `compatible` (a PCI function given by the partitioner
/// is `pciVVVV,DDDD`; its range holds its memory BARs).
pub fn device_reg(compatible: &str) -> Option<(u64, u64)> {
    let fdt = crate::dtb::fdt()?;
    let node = fdt.find_compatible(&[compatible])?;
    let r = node.reg()?.next()?;
    Some((r.starting_address as u64, r.size? as u64))
}
