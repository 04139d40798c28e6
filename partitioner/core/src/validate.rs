//! Validation: a parsed [`Config`] checked against its board and turned into a
//! [`Plan`] with every physical address resolved.
//!
//! [`check`] is the single entry point for the firmware (on the packaged config)
//! and for `cargo xtask` (on the host, before packaging). It reports every
//! error it finds, not just the first; the checks are ordered so that one
//! mistake is reported once (items that failed an earlier check are left out
//! of the later ones).

use crate::board::{Board, DeviceUse, Range};
use crate::config::{self, Config, Console, DeviceConfig, DeviceSource, DomainConfig, Placement};
use crate::error::{bounded, path, Name};
use crate::plan::{
    vgic_window, DevicePlan, DomainPlan, GicVersion, Mapping, MemKind, Plan, MAX_CPUS, MAX_DEVICES,
    MAX_DOMAINS, MAX_IRQS, MAX_REGIONS, VIRTUAL_CONSOLE_IPA, VIRTUAL_CONSOLE_SPI,
};
use heapless::Vec;

pub use crate::error::{Error, Errors, Item, Limit, Site};

/// Stage-2 page size: the granule of every mapping.
pub const PAGE_SIZE: u64 = 0x1000;
/// Alignment of allocated regions whose size is a multiple of it.
pub const BLOCK_SIZE: u64 = 0x20_0000;
/// Size of the virtual console's register window.
pub const VIRTUAL_CONSOLE_SIZE: u64 = 0x1000;
/// `compatible` strings that make a device a UART (which turns the virtual
/// console off by default).
pub const UART_COMPATIBLES: &[&str] = &[
    "arm,pl011",
    "arm,sbsa-uart",
    "ns16550",
    "ns16550a",
    "snps,dw-apb-uart",
    // The Xilinx Zynq/ZynqMP UART (Linux's xuartps).
    "cdns,uart-r1p12",
];

/// Size of the guest (intermediate physical) address space stage 2 translates:
/// every guest range must end at or below it.
pub const IPA_LIMIT: u64 = 1 << crate::pagetable::INPUT_BITS;
/// Bytes at the end of the memory region holding the entry point that the
/// partitioner keeps for the domain's device tree; the image must end below them.
pub const DTB_RESERVED: u64 = crate::dtb::DTB_RESERVED;

fn ipa_in_range(range: &Range) -> bool {
    range.end().is_some_and(|end| end <= IPA_LIMIT)
}

/// The guest ranges the virtual GIC of a domain with `vcpus` vCPUs may
/// occupy, named: the union of its GICv2 and GICv3 windows
/// ([`vgic_window`]), since the board's GIC generation is only known at boot.
pub fn vgic_parts(vcpus: usize) -> [(Range, &'static str); 3] {
    let [distributor, cpu_interface] = vgic_window(GicVersion::V2, vcpus);
    let [_, redistributors] = vgic_window(GicVersion::V3, vcpus);
    [
        (distributor, "virtual GIC distributor"),
        (cpu_interface, "virtual GIC CPU interface (GICv2)"),
        (redistributors, "virtual GIC redistributors (GICv3)"),
    ]
}

/// Where the partitioner itself lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// PA range the partitioner, its package (config + images) and its runtime
    /// memory occupy. No domain memory may overlap it.
    pub partitioner: Range,
}

/// Parses and validates a compiled config blob.
///
/// * `board_lookup` finds the board the config names (`board_support::by_name`).
/// * `layout` says which physical memory the partitioner keeps.
/// * `image_size(domain, image)` gives the size of a domain's image, `None`
///   when it does not exist.
///
/// Returns the resolved [`Plan`], or every error found.
// The error list is large by design (every error, no allocator); callers keep
// the result on a stack sized for it.
#[allow(clippy::result_large_err)]
pub fn check<'b>(
    blob: &'b [u8],
    board_lookup: &dyn Fn(&str) -> Option<&'static Board>,
    layout: &Layout,
    image_size: &dyn Fn(&str, &str) -> Option<u64>,
) -> Result<Plan, Errors> {
    let mut errors = Errors::new();
    let Some(config) = config::parse_into(blob, &mut errors) else {
        return Err(errors);
    };
    let Some(board) = board_lookup(config.board) else {
        errors.push(Error::UnknownBoard {
            at: Site::global(path(&["board"])),
            board: bounded(config.board),
        });
        return Err(errors);
    };
    let plan = Resolver {
        config: &config,
        board,
        layout,
        errors: &mut errors,
    }
    .run(image_size);
    match plan {
        Some(plan) if errors.is_empty() => Ok(plan),
        _ => Err(errors),
    }
}

const fn align_down(x: u64, align: u64) -> u64 {
    x & !(align - 1)
}

fn align_up(x: u64, align: u64) -> Option<u64> {
    Some(align_down(x.checked_add(align - 1)?, align))
}

/// The page-granular range covering `[base, base + size)`.
fn pages(base: u64, size: u64) -> Option<Range> {
    let start = align_down(base, PAGE_SIZE);
    let end = align_up(base.checked_add(size)?, PAGE_SIZE)?;
    Some(Range::new(start, end - start))
}

/// A region or device, located: domain index and item index.
#[derive(Clone, Copy, Debug)]
struct Owner {
    domain: usize,
    item: usize,
}

/// Resolved state of one memory region.
#[derive(Clone, Copy, Debug)]
struct RegionState {
    ipa: Range,
    /// Physical base, once known.
    pa: Option<u64>,
}

/// BARs fixed so far: page number, function, BAR index, owner.
type FixedBars = Vec<
    (u64, crate::pci::Bdf, u32, Owner),
    { MAX_DOMAINS * MAX_DEVICES * crate::pci::MAX_FIXED_BARS },
>;

/// Resolved state of one device.
#[derive(Clone, Debug)]
struct DeviceState {
    /// Page-granular mapping.
    mapping: Mapping,
    board_device: Option<&'static str>,
    compatible: &'static str,
    explicit_compatible: bool,
    spis: Vec<u32, MAX_IRQS>,
    /// Masters DMA with no IOMMU in front of it, accepted by the config.
    dma_unprotected: bool,
    /// A PCI function (`pci-function`), placed at boot.
    pci: Option<crate::pci::Bdf>,
    /// The BAR addresses its config fixes (`bars`), checked.
    bars: Vec<crate::pci::FixedBar, { crate::pci::MAX_FIXED_BARS }>,
}

/// Per-domain working state; `None` items failed a check.
#[derive(Clone, Debug, Default)]
struct DomainState {
    regions: Vec<Option<RegionState>, MAX_REGIONS>,
    devices: Vec<Option<DeviceState>, MAX_DEVICES>,
    /// Some region or device failed a check (or was left out by the parser).
    regions_ok: bool,
    image_size: Option<u64>,
    initrd_size: Option<u64>,
}

/// Physical memory claimed so far (fixed, then allocated regions).
const MAX_CLAIMS: usize = MAX_DOMAINS * MAX_REGIONS;
/// Passthrough MMIO claimed so far.
const MAX_MMIO: usize = MAX_DOMAINS * MAX_DEVICES;
/// SPIs claimed so far.
const MAX_SPIS: usize = MAX_DOMAINS * MAX_DEVICES * MAX_IRQS;

struct Resolver<'c, 'b, 'e> {
    config: &'c Config<'b>,
    board: &'static Board,
    layout: &'c Layout,
    errors: &'e mut Errors,
}

impl Resolver<'_, '_, '_> {
    fn domain(&self, d: usize) -> Option<&DomainConfig<'_>> {
        self.config.domains.get(d)
    }

    fn name(&self, d: usize) -> Name {
        bounded(self.domain(d).map_or("", |c| c.name))
    }

    fn site(&self, d: usize, parts: &[&str]) -> Site {
        let name = self.domain(d).map_or("", |c| c.name);
        let mut all: Vec<&str, 8> = Vec::new();
        let _ = all.push("domains");
        let _ = all.push(name);
        for p in parts {
            let _ = all.push(p);
        }
        Site::new(Some(name), path(&all))
    }

    fn region_site(&self, d: usize, r: usize, prop: Option<&str>) -> Site {
        let rname = self.region_name(d, r);
        match prop {
            Some(p) => self.site(d, &["memory", rname, p]),
            None => self.site(d, &["memory", rname]),
        }
    }

    fn region_name(&self, d: usize, r: usize) -> &str {
        self.domain(d)
            .and_then(|c| c.regions.get(r))
            .map_or("", |r| r.name)
    }

    fn device_name(&self, d: usize, i: usize) -> &str {
        self.domain(d)
            .and_then(|c| c.devices.get(i))
            .map_or("", |x| x.name)
    }

    fn device_site(&self, d: usize, i: usize, prop: Option<&str>) -> Site {
        let name = self.device_name(d, i);
        match prop {
            Some(p) => self.site(d, &["devices", name, p]),
            None => self.site(d, &["devices", name]),
        }
    }

    fn run(mut self, image_size: &dyn Fn(&str, &str) -> Option<u64>) -> Option<Plan> {
        let mut states: Vec<DomainState, MAX_DOMAINS> = Vec::new();
        for _ in self.config.domains.iter() {
            let _ = states.push(DomainState::default());
        }
        self.check_cpus();
        self.check_regions(&mut states);
        self.allocate(&mut states);
        self.check_devices(&mut states);
        self.check_consoles(&states);
        self.check_vgic(&states);
        self.check_entries(&mut states, image_size);
        if !self.errors.is_empty() {
            return None;
        }
        self.build(&states)
    }

    /// Cores: present, on the board, listed once, owned by one domain.
    #[inline(never)]
    fn check_cpus(&mut self) {
        let mut owners: Vec<(u32, usize), { MAX_DOMAINS * MAX_CPUS }> = Vec::new();
        for (d, domain) in self.config.domains.iter().enumerate() {
            let Some(cpus) = &domain.cpus else { continue };
            if cpus.is_empty() {
                self.errors.push(Error::NoCpus {
                    at: self.site(d, &["cpus"]),
                });
            }
            for (i, &core) in cpus.iter().enumerate() {
                let at = || self.site(d, &["cpus"]);
                let count = self.board.cpus.len();
                if usize::try_from(core).map_or(true, |c| c >= count) {
                    self.errors.push(Error::CpuUnknown {
                        at: at(),
                        core,
                        count,
                    });
                } else if cpus.iter().take(i).any(|&c| c == core) {
                    self.errors.push(Error::CpuDuplicate { at: at(), core });
                } else if let Some(&(_, owner)) = owners.iter().find(|(c, _)| *c == core) {
                    self.errors.push(Error::CpuShared {
                        at: at(),
                        core,
                        owner: self.name(owner),
                    });
                } else {
                    let _ = owners.push((core, d));
                }
            }
        }
    }

    /// Memory regions: shape, guest-space overlaps, and the physical checks of
    /// regions with a fixed address.
    #[inline(never)]
    fn check_regions(&mut self, states: &mut [DomainState]) {
        let mut claims: Vec<(Range, Owner), MAX_CLAIMS> = Vec::new();
        for (d, domain) in self.config.domains.iter().enumerate() {
            let Some(state) = states.get_mut(d) else {
                continue;
            };
            state.regions_ok = domain.regions_complete;
            if domain.regions.is_empty() && domain.regions_complete {
                self.errors.push(Error::NoRam {
                    at: self.site(d, &[]),
                });
            }
            for (r, region) in domain.regions.iter().enumerate() {
                let resolved = self.check_region(d, r, region.guest, region.size, region.placement);
                if let Some(rs) = resolved {
                    // Guest-space overlaps with earlier regions of the domain.
                    for (o, other) in state.regions.iter().enumerate() {
                        let Some(other) = other else { continue };
                        if rs.ipa.overlaps(&other.ipa) {
                            self.errors.push(Error::IpaOverlap {
                                at: self.region_site(d, r, Some("guest-address")),
                                range: rs.ipa,
                                other: Item::Region(bounded(self.region_name(d, o))),
                                other_range: other.ipa,
                            });
                        }
                    }
                    if let Some(pa) = rs.pa {
                        if !self.check_fixed_pa(d, r, Range::new(pa, region.size), &mut claims) {
                            state.regions_ok = false;
                            let _ = state.regions.push(None);
                            continue;
                        }
                    }
                } else {
                    state.regions_ok = false;
                }
                let _ = state.regions.push(resolved);
            }
        }
    }

    /// Shape checks of one region; returns its guest range and fixed PA.
    #[inline(never)]
    fn check_region(
        &mut self,
        d: usize,
        r: usize,
        guest: u64,
        size: u64,
        placement: Placement,
    ) -> Option<RegionState> {
        if size == 0 {
            self.errors.push(Error::ZeroSize {
                at: self.region_site(d, r, Some("size")),
            });
            return None;
        }
        let mut ok = true;
        let mut misaligned =
            |this: &mut Self, prop: &'static str, what: &'static str, value: u64| {
                if !value.is_multiple_of(PAGE_SIZE) {
                    this.errors.push(Error::Misaligned {
                        at: this.region_site(d, r, Some(prop)),
                        what,
                        value,
                        align: PAGE_SIZE,
                    });
                    ok = false;
                }
            };
        misaligned(self, "guest-address", "guest address", guest);
        misaligned(self, "size", "size", size);
        let pa = match placement {
            Placement::Fixed(pa) => {
                misaligned(self, "physical-address", "physical address", pa);
                Some(pa)
            }
            Placement::Identity => Some(guest),
            Placement::Anywhere => None,
        };
        if guest.checked_add(size).is_none() {
            self.errors.push(Error::AddressOverflow {
                at: self.region_site(d, r, Some("guest-address")),
                what: "guest address",
                base: guest,
                size,
            });
            ok = false;
        }
        if let (Placement::Fixed(pa), None) = (placement, pa.and_then(|p| p.checked_add(size))) {
            self.errors.push(Error::AddressOverflow {
                at: self.region_site(d, r, Some("physical-address")),
                what: "physical address",
                base: pa,
                size,
            });
            ok = false;
        }
        let ipa = Range::new(guest, size);
        if ok && !ipa_in_range(&ipa) {
            self.errors.push(Error::IpaRange {
                at: self.region_site(d, r, Some("guest-address")),
                range: ipa,
                limit: IPA_LIMIT,
            });
            ok = false;
        }
        ok.then_some(RegionState { ipa, pa })
    }

    /// Physical checks of a fixed region; on success, claims it.
    #[inline(never)]
    fn check_fixed_pa(
        &mut self,
        d: usize,
        r: usize,
        range: Range,
        claims: &mut Vec<(Range, Owner), MAX_CLAIMS>,
    ) -> bool {
        let prop = match self
            .domain(d)
            .and_then(|c| c.regions.get(r))
            .map(|r| r.placement)
        {
            Some(Placement::Identity) => None,
            _ => Some("physical-address"),
        };
        if !self.board.ram.iter().any(|bank| bank.contains(&range)) {
            self.errors.push(Error::OutsideRam {
                at: self.region_site(d, r, prop),
                range,
            });
            return false;
        }
        let mut ok = true;
        if range.overlaps(&self.layout.partitioner) {
            self.errors.push(Error::PartitionerOverlap {
                at: self.region_site(d, r, prop),
                range,
                partitioner: self.layout.partitioner,
            });
            ok = false;
        }
        for (other_range, owner) in claims.iter() {
            if range.overlaps(other_range) {
                self.errors.push(Error::PaOverlap {
                    at: self.region_site(d, r, prop),
                    range,
                    owner: self.name(owner.domain),
                    other: Item::Region(bounded(self.region_name(owner.domain, owner.item))),
                    other_range: *other_range,
                });
                ok = false;
            }
        }
        if ok {
            let _ = claims.push((range, Owner { domain: d, item: r }));
        }
        ok
    }

    /// First-fit allocation of regions without a fixed address, in config order.
    #[inline(never)]
    fn allocate(&mut self, states: &mut [DomainState]) {
        let mut taken: Vec<Range, { MAX_CLAIMS + 1 }> = Vec::new();
        let _ = taken.push(self.layout.partitioner);
        for state in states.iter() {
            for rs in state.regions.iter().flatten() {
                if let Some(pa) = rs.pa {
                    let _ = taken.push(Range::new(pa, rs.ipa.size));
                }
            }
        }
        for (d, domain) in self.config.domains.iter().enumerate() {
            let Some(state) = states.get_mut(d) else {
                continue;
            };
            for (r, region) in domain.regions.iter().enumerate() {
                if region.placement != Placement::Anywhere {
                    continue;
                }
                let Some(Some(rs)) = state.regions.get_mut(r) else {
                    continue;
                };
                let size = rs.ipa.size;
                let align = if size.is_multiple_of(BLOCK_SIZE) {
                    BLOCK_SIZE
                } else {
                    PAGE_SIZE
                };
                match first_fit(self.board.ram, &taken, size, align) {
                    Some(pa) => {
                        rs.pa = Some(pa);
                        let _ = taken.push(Range::new(pa, size));
                    }
                    None => {
                        self.errors.push(Error::NoRoom {
                            at: self.region_site(d, r, None),
                            size,
                            align,
                        });
                        state.regions_ok = false;
                        if let Some(slot) = state.regions.get_mut(r) {
                            *slot = None;
                        }
                    }
                }
            }
        }
    }

    /// Passthrough devices: resolution against the board, MMIO and SPI ownership,
    /// guest-space overlaps.
    #[inline(never)]
    fn check_devices(&mut self, states: &mut [DomainState]) {
        let config = self.config;
        let mut mmio: Vec<(Range, Owner), MAX_MMIO> = Vec::new();
        let mut spis: Vec<(u32, Owner), MAX_SPIS> = Vec::new();
        let mut functions: Vec<(crate::pci::Bdf, Owner), { MAX_DOMAINS * MAX_DEVICES }> =
            Vec::new();
        let mut fixed: FixedBars = Vec::new();
        for (d, domain) in config.domains.iter().enumerate() {
            let Some(state) = states.get_mut(d) else {
                continue;
            };
            for (i, device) in domain.devices.iter().enumerate() {
                let resolved = self.resolve_device(d, i, device);
                let resolved =
                    resolved.filter(|dev| self.check_pci_owner(d, i, dev, &mut functions));
                let resolved = resolved.filter(|dev| self.check_bar_overlap(d, i, dev, &mut fixed));
                let resolved = resolved.filter(|dev| {
                    let ok_ipa = self.check_device_ipa(d, i, dev, state);
                    let ok_pa = self.check_device_pa(d, i, dev, &mmio);
                    ok_ipa && ok_pa
                });
                if let Some(dev) = &resolved {
                    let _ = mmio.push((dev.mapping.pa_range(), Owner { domain: d, item: i }));
                    self.check_spis(d, i, dev, &mut spis);
                }
                let _ = state.devices.push(resolved);
            }
        }
    }

    /// BARs fixed by `bars` do not share a page, in any domain. (Their
    /// sizes are only known at boot: the firmware refuses fixed BARs that
    /// overlap once sized.)
    #[inline(never)]
    fn check_bar_overlap(
        &mut self,
        d: usize,
        i: usize,
        dev: &DeviceState,
        fixed: &mut FixedBars,
    ) -> bool {
        let Some(bdf) = dev.pci else { return true };
        for bar in dev.bars.iter() {
            let page = bar.addr / crate::pci::BAR_ALIGN;
            if let Some(&(_, other_bdf, other_index, owner)) =
                fixed.iter().find(|(p, ..)| *p == page)
            {
                self.errors.push(Error::PciBarOverlap {
                    at: self.device_site(d, i, Some("bars")),
                    bdf,
                    index: bar.index,
                    addr: bar.addr,
                    owner: self.name(owner.domain),
                    other_bdf,
                    other_index,
                });
                return false;
            }
            let _ = fixed.push((page, bdf, bar.index, Owner { domain: d, item: i }));
        }
        true
    }

    /// A PCI function belongs to one domain, and so does every function of
    /// its device (they share its DMA path and reset).
    #[inline(never)]
    fn check_pci_owner(
        &mut self,
        d: usize,
        i: usize,
        dev: &DeviceState,
        functions: &mut Vec<(crate::pci::Bdf, Owner), { MAX_DOMAINS * MAX_DEVICES }>,
    ) -> bool {
        let Some(bdf) = dev.pci else { return true };
        let at = self.device_site(d, i, Some("pci-function"));
        if let Some((_, owner)) = functions.iter().find(|(b, _)| *b == bdf) {
            self.errors.push(Error::PciShared {
                at,
                bdf,
                owner: self.name(owner.domain),
                other: bounded(self.device_name(owner.domain, owner.item)),
            });
            return false;
        }
        if let Some((other, owner)) = functions
            .iter()
            .find(|(b, o)| b.bus == bdf.bus && b.device == bdf.device && o.domain != d)
        {
            self.errors.push(Error::PciSplit {
                at,
                bdf,
                other_bdf: *other,
                owner: self.name(owner.domain),
            });
            return false;
        }
        let _ = functions.push((bdf, Owner { domain: d, item: i }));
        true
    }

    /// Finds what a device is on the board and where it goes.
    #[inline(never)]
    fn resolve_device(
        &mut self,
        d: usize,
        i: usize,
        device: &DeviceConfig<'_>,
    ) -> Option<DeviceState> {
        let (guest, source) = (device.guest, &device.source);
        // Property blamed for problems with the device's physical side.
        let pa_prop = match source {
            DeviceSource::Board(_) => "board-device",
            DeviceSource::Explicit { .. } => "physical-address",
            DeviceSource::Pci(bdf, bars) => {
                return self.resolve_pci(d, i, *bdf, bars, device.dma_unprotected)
            }
        };
        let (reg, board_device, compatible, explicit_compatible, spis) = match source {
            DeviceSource::Board(name) => {
                let Some(dev) = self.board.device(name) else {
                    self.errors.push(Error::UnknownDevice {
                        at: self.device_site(d, i, Some(pa_prop)),
                        device: bounded(name),
                    });
                    return None;
                };
                if let DeviceUse::Reserved(reason) = dev.usage {
                    self.errors.push(Error::MmioReserved {
                        at: self.device_site(d, i, Some(pa_prop)),
                        range: dev.reg,
                        reserved: dev.reg,
                        reason,
                    });
                    return None;
                }
                let Ok(spis) = Vec::from_slice(dev.spis) else {
                    self.errors.push(Error::TooMany {
                        at: self.device_site(d, i, Some(pa_prop)),
                        what: Limit::Irqs,
                        count: dev.spis.len(),
                        limit: MAX_IRQS,
                    });
                    return None;
                };
                (dev.reg, Some(dev.name), dev.compatible, false, spis)
            }
            DeviceSource::Pci(..) => return None,
            DeviceSource::Explicit {
                pa,
                size,
                spis,
                compatible,
            } => {
                if *size == 0 {
                    self.errors.push(Error::ZeroSize {
                        at: self.device_site(d, i, Some("size")),
                    });
                    return None;
                }
                // The board's device holding the range; checked below, after
                // the partitioner's ranges (which need not be board devices).
                let holder = self
                    .board
                    .devices
                    .iter()
                    .find(|dev| dev.reg.contains(&Range::new(*pa, *size)));
                let compatible_default = holder.map_or("", |h| h.compatible);
                (
                    Range::new(*pa, *size),
                    None,
                    compatible_default,
                    compatible.is_some(),
                    spis.clone(),
                )
            }
        };
        let Some(pages_pa) = pages(reg.base, reg.size) else {
            self.errors.push(Error::AddressOverflow {
                at: self.device_site(d, i, Some(pa_prop)),
                what: "physical address",
                base: reg.base,
                size: reg.size,
            });
            return None;
        };
        if let Some((reserved, reason)) = self
            .board
            .reserved_mmio_find(&mut |r| r.overlaps(&pages_pa))
        {
            self.errors.push(Error::MmioReserved {
                at: self.device_site(d, i, Some(pa_prop)),
                range: pages_pa,
                reserved,
                reason,
            });
            return None;
        }
        if board_device.is_none() && !self.board.devices.iter().any(|dev| dev.reg.contains(&reg)) {
            self.errors.push(Error::MmioUnknown {
                at: self.device_site(d, i, Some(pa_prop)),
                range: reg,
            });
            return None;
        }
        // Stage 2 maps whole pages, and the guest finds the device at the
        // start of its mapping.
        if !reg.base.is_multiple_of(PAGE_SIZE) {
            self.errors.push(Error::Misaligned {
                at: self.device_site(d, i, Some(pa_prop)),
                what: "device physical address",
                value: reg.base,
                align: PAGE_SIZE,
            });
            return None;
        }
        let ipa = guest.unwrap_or(reg.base);
        let ipa_prop = if guest.is_some() {
            "guest-address"
        } else {
            pa_prop
        };
        if !ipa.is_multiple_of(PAGE_SIZE) {
            self.errors.push(Error::Misaligned {
                at: self.device_site(d, i, Some(ipa_prop)),
                what: "guest address",
                value: ipa,
                align: PAGE_SIZE,
            });
            return None;
        }
        let ipa_range = Range::new(ipa, pages_pa.size);
        let dma_unprotected = self.check_dma(d, i, pa_prop, reg, device.dma_unprotected);
        if ipa_range.end().is_none() {
            self.errors.push(Error::AddressOverflow {
                at: self.device_site(d, i, Some(ipa_prop)),
                what: "guest address",
                base: ipa,
                size: pages_pa.size,
            });
            return None;
        }
        if !ipa_in_range(&ipa_range) {
            self.errors.push(Error::IpaRange {
                at: self.device_site(d, i, Some(ipa_prop)),
                range: ipa_range,
                limit: IPA_LIMIT,
            });
            return None;
        }
        Some(DeviceState {
            mapping: Mapping {
                ipa,
                pa: pages_pa.base,
                size: pages_pa.size,
                kind: MemKind::Device,
            },
            board_device,
            compatible,
            explicit_compatible,
            spis,
            dma_unprotected,
            pci: None,
            bars: Vec::new(),
        })
    }

    /// A PCI function: on the board's host bridge, on its root bus; its
    /// legacy interrupt (INTA after the swizzle: the firmware checks the
    /// real pin at boot) is the domain's; its DMA goes through the host's
    /// IOMMU, or is an accepted risk. Its BARs are placed at boot.
    #[inline(never)]
    fn resolve_pci(
        &mut self,
        d: usize,
        i: usize,
        bdf: crate::pci::Bdf,
        bars: &[crate::pci::FixedBar],
        accepted: bool,
    ) -> Option<DeviceState> {
        let at = |s: &Self| s.device_site(d, i, Some("pci-function"));
        let Some(host) = self.board.pcie else {
            self.errors.push(Error::PciNoHost { at: at(self) });
            return None;
        };
        if bdf.bus != 0 {
            self.errors.push(Error::PciBus { at: at(self), bdf });
            return None;
        }
        let covered = host
            .iommu
            .is_some_and(|name| self.board.iommus.iter().any(|x| x.name == name));
        let dma_unprotected = !covered && {
            if !accepted {
                self.errors.push(Error::DmaUnprotected {
                    at: at(self),
                    device: host.name,
                });
            }
            accepted
        };
        let mut fixed = Vec::new();
        let mut bars_ok = true;
        for bar in bars {
            if self.check_fixed_bar(d, i, bdf, bar, bars, &host) {
                let _ = fixed.push(*bar);
            } else {
                bars_ok = false;
            }
        }
        if !bars_ok {
            return None;
        }
        let spi = host.intx_spis[crate::pci::intx_index(bdf.device, 1)];
        let mut spis = Vec::new();
        let _ = spis.push(spi);
        Some(DeviceState {
            mapping: Mapping {
                ipa: 0,
                pa: 0,
                size: 0,
                kind: MemKind::Device,
            },
            board_device: None,
            compatible: "pci",
            explicit_compatible: false,
            spis,
            dma_unprotected,
            pci: Some(bdf),
            bars: fixed,
        })
    }

    /// One BAR address of a function's `bars`: a BAR that can exist, page
    /// aligned (stage 2 maps pages), in one of the host's memory windows
    /// and in the guest address space (guest = physical). Its size, and so
    /// its alignment and whether the function has it at all, only the
    /// firmware knows, once it has sized the BAR at boot.
    #[inline(never)]
    fn check_fixed_bar(
        &mut self,
        d: usize,
        i: usize,
        bdf: crate::pci::Bdf,
        bar: &crate::pci::FixedBar,
        all: &[crate::pci::FixedBar],
        host: &crate::board::PcieHost,
    ) -> bool {
        let at = |s: &Self| s.device_site(d, i, Some("bars"));
        let high = |b: &crate::pci::FixedBar| b.addr >= 1 << 32;
        let why = if bar.index > 5 {
            Some("a function has BARs 0 to 5")
        } else if bar.index == 5 && high(bar) {
            Some("an address above 4 GiB needs a 64-bit BAR, which takes two registers, and BAR5 is the last")
        } else if all.iter().any(|b| b.index + 1 == bar.index && high(b)) {
            Some(
                "it is the upper half of the one before, a 64-bit BAR (its address is above 4 GiB)",
            )
        } else {
            None
        };
        if let Some(why) = why {
            self.errors.push(Error::PciBarIndex {
                at: at(self),
                bdf,
                index: bar.index,
                why,
            });
            return false;
        }
        if !bar.addr.is_multiple_of(crate::pci::BAR_ALIGN) {
            self.errors.push(Error::Misaligned {
                at: at(self),
                what: "BAR address",
                value: bar.addr,
                align: crate::pci::BAR_ALIGN,
            });
            return false;
        }
        let page = Range::new(bar.addr, crate::pci::BAR_ALIGN);
        let in_window =
            host.mmio32.contains(&page) || host.mmio64.is_some_and(|w| w.contains(&page));
        if !in_window {
            self.errors.push(Error::PciBarWindow {
                at: at(self),
                bdf,
                index: bar.index,
                addr: bar.addr,
                mmio32: host.mmio32,
                mmio64: host.mmio64,
            });
            return false;
        }
        if !ipa_in_range(&page) {
            self.errors.push(Error::IpaRange {
                at: at(self),
                range: page,
                limit: IPA_LIMIT,
            });
            return false;
        }
        true
    }

    /// DMA: a device that masters DMA reaches all of physical memory unless
    /// an IOMMU of the board stands in front of it, whatever stage 2 says.
    /// Refused unless the config accepts the risk (`dma = "unprotected"`);
    /// returns whether the device is such an accepted risk.
    #[inline(never)]
    fn check_dma(&mut self, d: usize, i: usize, prop: &str, reg: Range, accepted: bool) -> bool {
        // The board device holding the range (for `board-device`, itself).
        let Some(holder) = self.board.devices.iter().find(|x| x.reg.contains(&reg)) else {
            return false;
        };
        if !holder.dma || self.board.iommu_covering(holder.name).is_some() {
            return false;
        }
        if !accepted {
            self.errors.push(Error::DmaUnprotected {
                at: self.device_site(d, i, Some(prop)),
                device: holder.name,
            });
        }
        accepted
    }

    /// Guest-space checks of a device against the domain's RAM and earlier devices.
    #[inline(never)]
    fn check_device_ipa(
        &mut self,
        d: usize,
        i: usize,
        dev: &DeviceState,
        state: &DomainState,
    ) -> bool {
        let prop = self.device_guest_prop(d, i);
        let ipa = dev.mapping.ipa_range();
        let mut ok = true;
        for (r, rs) in state.regions.iter().enumerate() {
            let Some(rs) = rs else { continue };
            if ipa.overlaps(&rs.ipa) {
                self.errors.push(Error::IpaOverlap {
                    at: self.device_site(d, i, Some(prop)),
                    range: ipa,
                    other: Item::Region(bounded(self.region_name(d, r))),
                    other_range: rs.ipa,
                });
                ok = false;
            }
        }
        for (o, other) in state.devices.iter().enumerate() {
            let Some(other) = other else { continue };
            // Same physical pages are reported as mmio-shared instead.
            if ipa.overlaps(&other.mapping.ipa_range())
                && !dev.mapping.pa_range().overlaps(&other.mapping.pa_range())
            {
                self.errors.push(Error::IpaOverlap {
                    at: self.device_site(d, i, Some(prop)),
                    range: ipa,
                    other: Item::Device(bounded(self.device_name(d, o))),
                    other_range: other.mapping.ipa_range(),
                });
                ok = false;
            }
        }
        ok
    }

    /// The property that decides where device `i` of domain `d` sits in
    /// guest space.
    fn device_guest_prop(&self, d: usize, i: usize) -> &'static str {
        match self.domain(d).and_then(|c| c.devices.get(i)) {
            Some(c) if c.guest.is_some() => "guest-address",
            Some(DeviceConfig {
                source: DeviceSource::Board(_),
                ..
            }) => "board-device",
            _ => "physical-address",
        }
    }

    /// MMIO ownership: a physical page belongs to one device of one domain.
    #[inline(never)]
    fn check_device_pa(
        &mut self,
        d: usize,
        i: usize,
        dev: &DeviceState,
        mmio: &[(Range, Owner)],
    ) -> bool {
        let prop = if dev.board_device.is_some() {
            "board-device"
        } else {
            "physical-address"
        };
        let range = dev.mapping.pa_range();
        let Some((other_range, owner)) = mmio.iter().find(|(pages, _)| pages.overlaps(&range))
        else {
            return true;
        };
        self.errors.push(Error::MmioShared {
            at: self.device_site(d, i, Some(prop)),
            range,
            owner: self.name(owner.domain),
            other: bounded(self.device_name(owner.domain, owner.item)),
            other_range: *other_range,
        });
        false
    }

    /// SPIs: implemented, not the partitioner's, owned once.
    #[inline(never)]
    fn check_spis(
        &mut self,
        d: usize,
        i: usize,
        dev: &DeviceState,
        claimed: &mut Vec<(u32, Owner), MAX_SPIS>,
    ) {
        let prop = if dev.board_device.is_some() {
            "board-device"
        } else if dev.pci.is_some() {
            "pci-function"
        } else {
            "spis"
        };
        // An explicit device's registers lie in one board device (checked
        // when it was resolved).
        let holder = match dev.board_device.or(dev.pci.map(|_| "")) {
            Some(_) => None,
            None => self
                .board
                .devices
                .iter()
                .find(|x| x.reg.contains_addr(dev.mapping.pa)),
        };
        for &spi in dev.spis.iter() {
            let at = || self.device_site(d, i, Some(prop));
            if spi >= self.board.spi_count {
                self.errors.push(Error::IrqRange {
                    at: at(),
                    spi,
                    count: self.board.spi_count,
                });
            } else if let Some(keeper) = self
                .board
                .devices
                .iter()
                .find(|x| matches!(x.usage, DeviceUse::Reserved(_)) && x.spis.contains(&spi))
            {
                let reason = match keeper.usage {
                    DeviceUse::Reserved(why) => why,
                    DeviceUse::Assignable => "",
                };
                self.errors.push(Error::IrqReserved {
                    at: at(),
                    spi,
                    device: keeper.name,
                    reason,
                });
            } else if let Some((_, owner)) = claimed.iter().find(|(s, _)| *s == spi) {
                self.errors.push(Error::IrqShared {
                    at: at(),
                    spi,
                    owner: self.name(owner.domain),
                    other: bounded(self.device_name(owner.domain, owner.item)),
                });
            } else {
                // The registers of one device never come with the interrupt
                // of another: an explicit device's SPIs are those of the
                // board device that holds its registers.
                if let Some(holder) = holder.filter(|h| !h.spis.contains(&spi)) {
                    self.errors.push(Error::IrqNotOfDevice {
                        at: at(),
                        spi,
                        device: holder.name,
                        owner: self
                            .board
                            .devices
                            .iter()
                            .find(|x| x.spis.contains(&spi))
                            .map(|x| x.name),
                    });
                }
                let _ = claimed.push((spi, Owner { domain: d, item: i }));
            }
        }
    }

    /// The console each domain gets: `console`, or by default virtual unless the
    /// domain owns a UART.
    fn console(&self, d: usize, state: &DomainState) -> Console {
        let Some(domain) = self.domain(d) else {
            return Console::None;
        };
        domain.console.unwrap_or_else(|| {
            let owns_uart = state.devices.iter().enumerate().any(|(i, dev)| {
                dev.as_ref().is_some_and(|dev| {
                    UART_COMPATIBLES.contains(&self.device_compatible(d, i, dev))
                })
            });
            if owns_uart {
                Console::None
            } else {
                Console::Virtual
            }
        })
    }

    fn device_compatible<'s>(&'s self, d: usize, i: usize, dev: &DeviceState) -> &'s str {
        if dev.explicit_compatible {
            if let Some(DeviceSource::Explicit {
                compatible: Some(c),
                ..
            }) = self
                .domain(d)
                .and_then(|c| c.devices.get(i))
                .map(|x| &x.source)
            {
                return c;
            }
        }
        dev.compatible
    }

    #[inline(never)]
    fn check_consoles(&mut self, states: &[DomainState]) {
        let console = Range::new(VIRTUAL_CONSOLE_IPA, VIRTUAL_CONSOLE_SIZE);
        for (d, state) in states.iter().enumerate() {
            if self.console(d, state) != Console::Virtual {
                continue;
            }
            let explicit = self.domain(d).is_some_and(|c| c.console.is_some());
            let parts: &[&str] = if explicit { &["console"] } else { &[] };
            for (r, rs) in state.regions.iter().enumerate() {
                if let Some(rs) = rs.filter(|rs| rs.ipa.overlaps(&console)) {
                    self.errors.push(Error::ConsoleOverlap {
                        at: self.site(d, parts),
                        console,
                        other: Item::Region(bounded(self.region_name(d, r))),
                        other_range: rs.ipa,
                    });
                }
            }
            for (i, dev) in state.devices.iter().enumerate() {
                if let Some(dev) = dev
                    .as_ref()
                    .filter(|dev| dev.mapping.ipa_range().overlaps(&console))
                {
                    self.errors.push(Error::ConsoleOverlap {
                        at: self.site(d, parts),
                        console,
                        other: Item::Device(bounded(self.device_name(d, i))),
                        other_range: dev.mapping.ipa_range(),
                    });
                }
            }
            // Its interrupt is the domain's own virtual SPI: no device of
            // the domain may bring the physical SPI of that number (one the
            // board keeps is already refused as `irq-reserved`).
            let kept = self.board.devices.iter().any(|x| {
                matches!(x.usage, DeviceUse::Reserved(_)) && x.spis.contains(&VIRTUAL_CONSOLE_SPI)
            });
            for (i, dev) in state.devices.iter().enumerate() {
                if let Some(dev) = dev
                    .as_ref()
                    .filter(|dev| !kept && dev.spis.contains(&VIRTUAL_CONSOLE_SPI))
                {
                    let board_device = dev.board_device.is_some();
                    self.errors.push(Error::ConsoleIrq {
                        at: self.device_site(
                            d,
                            i,
                            Some(if board_device { "board-device" } else { "spis" }),
                        ),
                        spi: VIRTUAL_CONSOLE_SPI,
                        device: bounded(self.device_name(d, i)),
                    });
                }
            }
        }
    }

    /// The virtual GIC's guest window is free in every domain: no region or
    /// device of it overlaps [`vgic_parts`] (both GIC generations).
    #[inline(never)]
    fn check_vgic(&mut self, states: &[DomainState]) {
        for (d, state) in states.iter().enumerate() {
            let vcpus = self
                .domain(d)
                .and_then(|c| c.cpus.as_ref())
                .map_or(0, |c| c.len());
            let mut parts: heapless::Vec<(Range, &'static str), 6> =
                heapless::Vec::from_slice(&vgic_parts(vcpus)).unwrap_or_default();
            // A domain with PCI functions also has a virtual ECAM window,
            // and its functions' BARs at guest = physical addresses in the
            // host's memory windows, placed at boot once their sizes are
            // known: the whole 32-bit window, and the 64-bit one where the
            // config fixes a BAR in it, are the BARs' in its guest space.
            let pci = || state.devices.iter().flatten().filter(|x| x.pci.is_some());
            if let (Some(_), Some(host)) = (pci().next(), self.board.pcie) {
                let _ = parts.push((
                    Range::new(crate::pci::VECAM_IPA, crate::pci::VECAM_SIZE),
                    "virtual PCIe configuration window (ECAM)",
                ));
                let _ = parts.push((host.mmio32, "PCIe memory window of its functions' BARs"));
                if let Some(w) = host.mmio64 {
                    if pci().any(|x| x.bars.iter().any(|b| w.contains(&Range::new(b.addr, 1)))) {
                        let _ = parts.push((w, "PCIe 64-bit memory window of its fixed BARs"));
                    }
                }
            }
            let hit = |range: &Range| parts.iter().find(|(w, _)| w.overlaps(range)).copied();
            for (r, rs) in state.regions.iter().enumerate() {
                let Some(rs) = rs else { continue };
                if let Some((window, part)) = hit(&rs.ipa) {
                    self.errors.push(Error::VgicOverlap {
                        at: self.region_site(d, r, Some("guest-address")),
                        range: rs.ipa,
                        part,
                        window,
                    });
                }
            }
            for (i, dev) in state.devices.iter().enumerate() {
                let Some(dev) = dev else { continue };
                let range = dev.mapping.ipa_range();
                if let Some((window, part)) = hit(&range) {
                    self.errors.push(Error::VgicOverlap {
                        at: self.device_site(d, i, Some(self.device_guest_prop(d, i))),
                        range,
                        part,
                        window,
                    });
                }
            }
        }
    }

    /// Entry point and image: aligned, inside RAM, and the image fits.
    #[inline(never)]
    fn check_entries(
        &mut self,
        states: &mut [DomainState],
        image_size: &dyn Fn(&str, &str) -> Option<u64>,
    ) {
        for (d, domain) in self.config.domains.iter().enumerate() {
            let Some(state) = states.get_mut(d) else {
                continue;
            };
            let size = domain.image.map(|image| {
                let size = image_size(domain.name, image);
                if size.is_none() {
                    self.errors.push(Error::MissingImage {
                        at: self.site(d, &["image"]),
                        image: bounded(image),
                    });
                }
                size
            });
            state.image_size = size.flatten();
            state.initrd_size = match domain.initrd {
                None => Some(0),
                Some(rd) => {
                    let size = image_size(domain.name, rd);
                    if size.is_none() {
                        self.errors.push(Error::MissingImage {
                            at: self.site(d, &["initrd"]),
                            image: bounded(rd),
                        });
                    }
                    size
                }
            };
            if let Some(dt) = domain.device_tree {
                match image_size(domain.name, dt) {
                    None => self.errors.push(Error::MissingImage {
                        at: self.site(d, &["device-tree"]),
                        image: bounded(dt),
                    }),
                    Some(size) if size > crate::dtb::DTB_MAX as u64 => {
                        self.errors.push(Error::BadProperty {
                            at: self.site(d, &["device-tree"]),
                            problem: "the device tree is larger than the 16 KiB a domain's tree may take",
                        })
                    }
                    Some(_) => {}
                }
            }
            let Some(entry) = domain.entry else { continue };
            if !entry.is_multiple_of(4) {
                self.errors.push(Error::EntryMisaligned {
                    at: self.site(d, &["entry"]),
                    entry,
                });
            }
            let holder = state.regions.iter().enumerate().find_map(|(r, rs)| {
                rs.filter(|rs| rs.ipa.contains_addr(entry))
                    .map(|rs| (r, rs))
            });
            match holder {
                None if state.regions_ok && !state.regions.is_empty() => {
                    self.errors.push(Error::EntryOutsideRam {
                        at: self.site(d, &["entry"]),
                        entry,
                    });
                }
                None => {}
                Some((r, rs)) => {
                    // The region's end is known not to overflow (checked with the region).
                    // The initial RAM disk sits between the image and the
                    // device tree, so it takes from the image's room.
                    let room = rs
                        .ipa
                        .end()
                        .unwrap_or(u64::MAX)
                        .saturating_sub(entry)
                        .saturating_sub(DTB_RESERVED)
                        .saturating_sub(state.initrd_size.unwrap_or(0).next_multiple_of(PAGE_SIZE));
                    let tight =
                        rs.ipa.end().unwrap_or(u64::MAX).saturating_sub(entry) < DTB_RESERVED;
                    if let Some(size) = state.image_size.filter(|&s| s > room || tight) {
                        self.errors.push(Error::ImageTooLarge {
                            at: self.site(d, &["image"]),
                            size,
                            room,
                            entry,
                            region: bounded(self.region_name(d, r)),
                        });
                    }
                }
            }
        }
    }

    /// The plan, from a config that passed every check.
    #[inline(never)]
    fn build(&self, states: &[DomainState]) -> Option<Plan> {
        let mut domains = Vec::new();
        for (d, (domain, state)) in self.config.domains.iter().zip(states).enumerate() {
            let mut ram = Vec::new();
            for rs in state.regions.iter() {
                let rs = rs.as_ref()?;
                ram.push(Mapping {
                    ipa: rs.ipa.base,
                    pa: rs.pa?,
                    size: rs.ipa.size,
                    kind: MemKind::Ram,
                })
                .ok()?;
            }
            let mut devices = Vec::new();
            for (i, (dev, cfg)) in state.devices.iter().zip(domain.devices.iter()).enumerate() {
                let dev = dev.as_ref()?;
                devices
                    .push(DevicePlan {
                        name: heapless::String::try_from(cfg.name).ok()?,
                        board_device: dev.board_device,
                        compatible: heapless::String::try_from(self.device_compatible(d, i, dev))
                            .ok()?,
                        mapping: dev.mapping,
                        spis: dev.spis.clone(),
                        dma_unprotected: dev.dma_unprotected,
                        pci: dev.pci,
                        pci_bars: dev.bars.clone(),
                    })
                    .ok()?;
            }
            let mut cpus = Vec::new();
            for &c in domain.cpus.as_ref()? {
                cpus.push(usize::try_from(c).ok()?).ok()?;
            }
            let plan = DomainPlan {
                name: heapless::String::try_from(domain.name).ok()?,
                vmid: u16::try_from(d + 1).ok()?,
                cpus,
                ram,
                devices,
                entry: domain.entry?,
                image_size: state.image_size?,
                initrd_size: state.initrd_size?,
                bootargs: heapless::String::try_from(domain.bootargs).ok()?,
                fault_policy: domain.fault_policy,
                restart_limit: domain.restart_limit,
                virtual_console: (self.console(d, state) == Console::Virtual)
                    .then_some(VIRTUAL_CONSOLE_IPA),
            };
            domains.push(plan).ok()?;
        }
        Some(Plan {
            board: self.board.name,
            domains,
        })
    }
}

/// Lowest `align`-aligned address in `ram` where `size` bytes avoid every
/// range in `taken`.
fn first_fit(ram: &[Range], taken: &[Range], size: u64, align: u64) -> Option<u64> {
    // A wrapping range overlaps everything: no room at all.
    if taken.iter().any(|t| t.end().is_none()) {
        return None;
    }
    for bank in ram {
        let Some(bank_end) = bank.end() else { continue };
        let mut at = align_up(bank.base, align)?;
        while let Some(end) = at.checked_add(size).filter(|&e| e <= bank_end) {
            let candidate = Range::new(at, end - at);
            match taken
                .iter()
                .filter(|t| t.overlaps(&candidate))
                .filter_map(|t| t.end())
                .max()
            {
                None => return Some(at),
                Some(past) => match align_up(past, align) {
                    Some(next) if next > at => at = next,
                    _ => break,
                },
            }
        }
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::board::{Conduit, CpuStart, Device, Gic, Uart, UartKind};
    use crate::fdt_check::builder::{node, Node};
    use crate::plan::FaultPolicy;
    use std::string::{String, ToString};
    use std::vec::Vec;
    use std::{format, vec};

    pub(crate) const MIB: u64 = 1 << 20;

    const fn virtio(n: u64, name: &'static str, spi: &'static [u32]) -> Device {
        Device {
            name,
            compatible: "virtio,mmio",
            reg: Range::new(0x0a00_0000 + n * 0x200, 0x200),
            spis: spi,
            usage: DeviceUse::Assignable,
            dma: true,
        }
    }

    /// Mirrors `board-support/src/qemu_virt.rs` (the core cannot depend on
    /// it), except for the virtio-mmio transports, listed one by one here.
    const QEMU_VIRT_BOARD: Board = Board {
        name: "qemu-virt",
        ram: &[Range::new(0x4000_0000, 1024 * MIB)],
        cpus: &[0x0, 0x1, 0x2, 0x3],
        devices: &[
            Device {
                name: "uart0",
                compatible: "arm,pl011",
                reg: Range::new(0x0900_0000, 0x1000),
                spis: &[1],
                usage: DeviceUse::Reserved("partitioner console"),
                dma: false,
            },
            Device {
                name: "uart1",
                compatible: "arm,pl011",
                reg: Range::new(0x0904_0000, 0x1000),
                spis: &[8],
                usage: DeviceUse::Assignable,
                dma: false,
            },
            Device {
                name: "rtc",
                compatible: "arm,pl031",
                reg: Range::new(0x0901_0000, 0x1000),
                spis: &[2],
                usage: DeviceUse::Assignable,
                dma: false,
            },
            Device {
                name: "fw-cfg",
                compatible: "qemu,fw-cfg-mmio",
                reg: Range::new(0x0902_0000, 0x18),
                spis: &[],
                usage: DeviceUse::Reserved("QEMU firmware configuration"),
                dma: true,
            },
            Device {
                name: "gpio",
                compatible: "arm,pl061",
                reg: Range::new(0x0903_0000, 0x1000),
                spis: &[7],
                usage: DeviceUse::Assignable,
                dma: false,
            },
            virtio(0, "virtio0", &[16]),
            virtio(1, "virtio1", &[17]),
            virtio(2, "virtio2", &[18]),
            virtio(3, "virtio3", &[19]),
        ],
        gics: &[
            Gic::V3 {
                distributor: Range::new(0x0800_0000, 0x1_0000),
                redistributors: Range::new(0x080a_0000, 0xf6_0000),
                virtual_irq: crate::vgic::VirtualIrq::Wired,
            },
            Gic::V2 {
                distributor: Range::new(0x0800_0000, 0x1_0000),
                cpu_interface: Range::new(0x0801_0000, 0x1_0000),
                hyp_interface: Range::new(0x0803_0000, 0x1_0000),
                virtual_cpu: Range::new(0x0804_0000, 0x1_0000),
                deactivation: crate::vgic::Deactivation::Maintenance,
            },
        ],
        console: Uart {
            kind: UartKind::Pl011,
            reg: Range::new(0x0900_0000, 0x1000),
        },
        cpu_start: CpuStart::Psci(Conduit::Smc),
        image_base: 0x4020_0000,
        qemu: None,
        spi_count: 256,
        iommus: &[crate::board::Iommu {
            name: "smmu",
            reg: Range::new(0x0905_0000, 0x2_0000),
            streams: &[],
            spis: &[74, 75, 76, 77],
        }],
        pcie: Some(crate::board::PcieHost {
            name: "pcie",
            ecam: Range::new(0x40_1000_0000, 0x1000_0000),
            mmio32: Range::new(0x1000_0000, 0x2eff_0000),
            mmio64: Some(Range::new(0x80_0000_0000, 0x80_0000_0000)),
            intx_spis: [3, 4, 5, 6],
            iommu: Some("smmu"),
        }),
        stage2: crate::board::Stage2Leaves::Pages,
    };
    pub(crate) static QEMU_VIRT: Board = QEMU_VIRT_BOARD;
    /// The same with an SMMU in front of the first virtio transport.
    static QEMU_VIRT_SMMU: Board = Board {
        name: "qemu-virt-smmu",
        iommus: &[crate::board::Iommu {
            name: "smmu",
            reg: Range::new(0x0905_0000, 0x2_0000),
            streams: &[crate::board::IommuStream {
                device: "virtio0",
                ids: &[0x10],
            }],
            spis: &[74, 75, 76, 77],
        }],
        ..QEMU_VIRT_BOARD
    };

    /// A board whose console has another SPI than the virtual console's,
    /// which belongs to an assignable device instead.
    static CONSOLE_SPI_FREE: Board = Board {
        name: "console-spi-free",
        devices: &[
            Device {
                name: "uart0",
                compatible: "arm,pl011",
                reg: Range::new(0x0900_0000, 0x1000),
                spis: &[9],
                usage: DeviceUse::Reserved("partitioner console"),
                dma: false,
            },
            Device {
                name: "timer",
                compatible: "arm,sp804",
                reg: Range::new(0x0906_0000, 0x1000),
                spis: &[1],
                usage: DeviceUse::Assignable,
                dma: false,
            },
        ],
        // No SMMU (its window would hold the timer) and no PCIe host.
        iommus: &[],
        pcie: None,
        ..QEMU_VIRT_BOARD
    };

    pub(crate) fn lookup(name: &str) -> Option<&'static Board> {
        match name {
            "qemu-virt" => Some(&QEMU_VIRT),
            "console-spi-free" => Some(&CONSOLE_SPI_FREE),
            "qemu-virt-smmu" => Some(&QEMU_VIRT_SMMU),
            _ => None,
        }
    }

    /// The partitioner at QEMU's load address, 4 MiB.
    pub(crate) const LAYOUT: Layout = Layout {
        partitioner: Range::new(0x4020_0000, 4 * MIB),
    };

    pub(crate) fn images(_domain: &str, image: &str) -> Option<u64> {
        match image {
            "domain:hello" => Some(0x4000),
            "domain:probe" => Some(0x3000),
            "domain:irq" => Some(0x4_0000),
            "linux:kernel" => Some(0x200_0000),
            "linux:initramfs" => Some(0x20_0000),
            "trees/hello.dts" => Some(0x400),
            _ => None,
        }
    }

    #[allow(clippy::result_large_err)]
    fn run_blob(blob: &[u8]) -> Result<Plan, Errors> {
        check(blob, &lookup, &LAYOUT, &images)
    }

    #[allow(clippy::result_large_err)]
    pub(crate) fn run(root: &Node) -> Result<Plan, Errors> {
        run_blob(&root.blob())
    }

    pub(crate) fn region(name: &str, guest: u64, size: u64) -> Node {
        node(name).u64("guest-address", guest).u64("size", size)
    }

    pub(crate) fn board_device(name: &str, device: &str) -> Node {
        node(name).str("board-device", device)
    }

    pub(crate) fn explicit(name: &str, pa: u64, size: u64, spis: &[u32]) -> Node {
        node(name)
            .u64("physical-address", pa)
            .u64("size", size)
            .cells("spis", spis)
    }

    pub(crate) fn domain(name: &str, cpus: &[u32], image: &str, ram_size: u64) -> Node {
        node(name)
            .str("compatible", "bulkhead,domain")
            .cells("cpus", cpus)
            .str("image", image)
            .u64("entry", 0x4000_0000)
            .child(node("memory").child(region("ram", 0x4000_0000, ram_size)))
    }

    pub(crate) fn config(domains: Vec<Node>) -> Node {
        let mut d = node("domains");
        for x in domains {
            d = d.child(x);
        }
        node("")
            .str("compatible", "bulkhead,config-v1")
            .str("board", "qemu-virt")
            .child(d)
    }

    /// Two domains: `hello` owns uart1, `probe` has the virtual console.
    fn base() -> Node {
        config(vec![
            domain("hello", &[0], "domain:hello", 2 * MIB)
                .str("bootargs", "loglevel=8")
                .child(node("devices").child(board_device("serial", "uart1"))),
            domain("probe", &[1], "domain:probe", 4 * MIB).str("fault-policy", "stop"),
        ])
    }

    fn codes(e: &Errors) -> Vec<&'static str> {
        e.iter().map(|e| e.code()).collect()
    }

    /// Asserts that exactly one error, with `code`, is reported; returns its text.
    fn expect_only_blob(blob: &[u8], code: &str) -> String {
        match run_blob(blob) {
            Ok(plan) => panic!("expected {code}, got a plan: {plan:?}"),
            Err(e) => {
                let all: Vec<String> = e.iter().map(|e| format!("[{}] {e}", e.code())).collect();
                assert_eq!(codes(&e), [code], "errors: {all:#?}");
                assert!(!e.overflowed());
                e.iter().next().map(|e| e.to_string()).unwrap_or_default()
            }
        }
    }

    fn expect_only(root: &Node, code: &str) -> String {
        expect_only_blob(&root.blob(), code)
    }

    fn plan(root: &Node) -> Plan {
        match run(root) {
            Ok(p) => p,
            Err(e) => panic!("unexpected errors:\n{e}"),
        }
    }

    fn at_hello(f: impl FnOnce(Node) -> Node) -> Node {
        base().at("domains/hello", f)
    }

    fn at_probe(f: impl FnOnce(Node) -> Node) -> Node {
        base().at("domains/probe", f)
    }

    /// One config per error code, each triggering exactly that error.
    fn cases() -> Vec<(&'static str, Vec<u8>)> {
        let b = |n: Node| n.blob();
        let mut truncated = base().blob();
        truncated.truncate(truncated.len() - 10);
        let nine_domains = config(
            (0..9u32)
                .map(|i| domain(&format!("d{i}"), &[i % 4], "domain:hello", 2 * MIB))
                .collect(),
        );
        let mut nine_regions = node("memory");
        for i in 0..9u64 {
            nine_regions =
                nine_regions.child(region(&format!("r{i}"), 0x4000_0000 + i * 2 * MIB, 2 * MIB));
        }
        let mut nine_devices = node("devices");
        for i in 0..9u64 {
            nine_devices = nine_devices.child(board_device(&format!("d{i}"), "rtc"));
        }
        vec![
            ("fdt-malformed", truncated),
            (
                "bad-compatible",
                b(base().str("compatible", "vendor,other")),
            ),
            ("unknown-board", b(base().str("board", "rpi5"))),
            ("missing-property", b(at_hello(|d| d.without("image")))),
            (
                "bad-property",
                b(at_hello(|d| d.cells("entry", &[0x4000_0000]))),
            ),
            (
                "unknown-property",
                b(at_hello(|d| d.at("memory/ram", |r| r.u64("reg", 0)))),
            ),
            ("unknown-node", b(at_hello(|d| d.child(node("extra"))))),
            ("no-domains", b(config(vec![]))),
            (
                "duplicate-domain",
                b(config(vec![
                    domain("hello", &[0], "domain:hello", 2 * MIB),
                    domain("hello", &[1], "domain:hello", 2 * MIB),
                ])),
            ),
            (
                "bad-name",
                b(config(vec![domain("Hello", &[0], "domain:hello", 2 * MIB)])),
            ),
            ("too-many-domains", b(nine_domains)),
            (
                "too-many-cpus",
                b(at_hello(|d| d.cells("cpus", &[0, 1, 2, 3, 0, 1, 2, 3, 0]))),
            ),
            (
                "too-many-regions",
                b(at_hello(|d| d.remove("memory").child(nine_regions))),
            ),
            ("too-many-devices", b(at_probe(|d| d.child(nine_devices)))),
            (
                "too-many-irqs",
                b(at_probe(|d| {
                    d.child(node("devices").child(explicit(
                        "x",
                        0x0901_0000,
                        0x1000,
                        &[2, 3, 4, 5, 6, 7, 8, 9, 10],
                    )))
                })),
            ),
            ("no-cpus", b(at_hello(|d| d.cells("cpus", &[])))),
            ("cpu-unknown", b(at_hello(|d| d.cells("cpus", &[4])))),
            ("cpu-duplicate", b(at_hello(|d| d.cells("cpus", &[0, 0])))),
            ("cpu-shared", b(at_probe(|d| d.cells("cpus", &[0])))),
            (
                "zero-size",
                b(at_hello(|d| d.at("memory/ram", |r| r.u64("size", 0)))),
            ),
            (
                "misaligned",
                b(at_hello(|d| {
                    d.at("memory/ram", |r| r.u64("size", 2 * MIB + 0x800))
                })),
            ),
            (
                "address-overflow",
                b(at_hello(|d| {
                    d.at("memory/ram", |r| {
                        r.u64("guest-address", 0xffff_ffff_ffff_f000)
                    })
                })),
            ),
            (
                "ipa-range",
                b(at_hello(|d| {
                    d.at("memory/ram", |r| r.u64("guest-address", 1 << 39))
                })),
            ),
            (
                "ipa-overlap",
                b(at_hello(|d| {
                    d.at("memory", |m| m.child(region("more", 0x4010_0000, 2 * MIB)))
                })),
            ),
            (
                "pa-overlap",
                b(base()
                    .at("domains/hello/memory/ram", |r| {
                        r.u64("physical-address", 0x4800_0000)
                    })
                    .at("domains/probe/memory/ram", |r| {
                        r.u64("physical-address", 0x4810_0000)
                    })),
            ),
            (
                "partitioner-overlap",
                b(at_hello(|d| {
                    d.at("memory/ram", |r| r.u64("physical-address", 0x4030_0000))
                })),
            ),
            (
                "outside-ram",
                b(at_hello(|d| {
                    d.at("memory/ram", |r| r.u64("physical-address", 0x8000_0000))
                })),
            ),
            ("no-ram", b(at_hello(|d| d.remove("memory")))),
            (
                "no-room",
                b(at_probe(|d| {
                    d.at("memory/ram", |r| r.u64("size", 1024 * MIB))
                })),
            ),
            (
                "mmio-shared",
                b(at_probe(|d| {
                    d.child(node("devices").child(board_device("serial", "uart1")))
                })),
            ),
            (
                "mmio-unknown",
                b(at_probe(|d| {
                    d.child(node("devices").child(explicit("x", 0x0c00_0000, 0x1000, &[])))
                })),
            ),
            (
                "mmio-reserved",
                b(at_probe(|d| {
                    d.child(node("devices").child(board_device("serial", "uart0")))
                })),
            ),
            (
                "unknown-device",
                b(at_probe(|d| {
                    d.child(node("devices").child(board_device("serial", "uart7")))
                })),
            ),
            (
                "irq-shared",
                b(at_probe(|d| {
                    d.child(node("devices").child(explicit("clock", 0x0901_0000, 0x1000, &[8])))
                })),
            ),
            (
                "irq-range",
                b(at_probe(|d| {
                    d.child(node("devices").child(explicit("clock", 0x0901_0000, 0x1000, &[256])))
                })),
            ),
            (
                "irq-reserved",
                b(at_probe(|d| {
                    d.child(node("devices").child(explicit("clock", 0x0901_0000, 0x1000, &[1])))
                })),
            ),
            (
                "irq-not-of-device",
                b(at_probe(|d| {
                    // The RTC's registers with the GPIO block's interrupt.
                    d.child(node("devices").child(explicit("clock", 0x0901_0000, 0x1000, &[7])))
                })),
            ),
            (
                "dma-unprotected",
                b(at_probe(|d| {
                    // A virtio transport masters DMA, and no IOMMU covers it.
                    d.child(node("devices").child(explicit("blk", 0x0a00_0000, 0x200, &[16])))
                })),
            ),
            (
                "pci-no-host",
                b(
                    config(vec![domain("t", &[0], "domain:hello", 2 * MIB).child(
                        node("devices").child(node("edu").str("pci-function", "00:02.0")),
                    )])
                    .str("board", "console-spi-free"),
                ),
            ),
            (
                "pci-bus",
                b(at_probe(|d| {
                    d.child(node("devices").child(node("edu").str("pci-function", "01:00.0")))
                })),
            ),
            (
                "pci-shared",
                b(at_probe(|d| {
                    d.child(node("devices").child(node("edu").str("pci-function", "00:02.0")))
                })
                .at("domains/hello/devices", |d| {
                    d.child(node("nic").str("pci-function", "00:02.0"))
                })),
            ),
            (
                "pci-split",
                b(at_probe(|d| {
                    d.child(node("devices").child(node("edu").str("pci-function", "00:03.0")))
                })
                .at("domains/hello/devices", |d| {
                    d.child(node("nic").str("pci-function", "00:03.1"))
                })),
            ),
            (
                "pci-bar-index",
                b(at_probe(|d| {
                    d.child(
                        node("devices").child(
                            node("edu")
                                .str("pci-function", "00:02.0")
                                .cells("bars", &[6, 0, 0x1000_0000]),
                        ),
                    )
                })),
            ),
            (
                "pci-bar-window",
                b(at_probe(|d| {
                    d.child(
                        node("devices").child(
                            node("edu")
                                .str("pci-function", "00:02.0")
                                .cells("bars", &[0, 0, 0x4000_0000]),
                        ),
                    )
                })),
            ),
            (
                "pci-bar-overlap",
                b(at_probe(|d| {
                    d.child(
                        node("devices").child(
                            node("edu")
                                .str("pci-function", "00:02.0")
                                .cells("bars", &[0, 0, 0x1000_0000]),
                        ),
                    )
                })
                .at("domains/hello/devices", |d| {
                    d.child(
                        node("nvme")
                            .str("pci-function", "00:03.0")
                            .cells("bars", &[2, 0, 0x1000_0000]),
                    )
                })),
            ),
            (
                "missing-image",
                b(at_hello(|d| d.str("image", "does-not-exist.bin"))),
            ),
            (
                "image-too-large",
                b(at_hello(|d| {
                    d.at("memory/ram", |r| r.u64("size", 0x1_0000))
                })),
            ),
            (
                "entry-outside-ram",
                b(at_hello(|d| d.u64("entry", 0x5000_0000))),
            ),
            (
                "entry-misaligned",
                b(at_hello(|d| d.u64("entry", 0x4000_0002))),
            ),
            (
                "unknown-fault-policy",
                b(at_hello(|d| d.str("fault-policy", "reboot"))),
            ),
            (
                "unknown-console",
                b(at_hello(|d| d.str("console", "serial"))),
            ),
            (
                "console-overlap",
                b(at_probe(|d| {
                    d.at("memory", |m| m.child(region("low", 0x0900_0000, 0x1000)))
                })),
            ),
            (
                "console-irq",
                b(config(vec![domain("t", &[0], "domain:hello", 2 * MIB)
                    .child(node("devices").child(board_device("tick", "timer")))])
                .str("board", "console-spi-free")),
            ),
            (
                "vgic-overlap",
                b(at_probe(|d| {
                    d.at("memory", |m| m.child(region("low", 0x0800_0000, 0x1000)))
                })),
            ),
        ]
    }

    #[test]
    fn every_code_has_a_case_reporting_exactly_that_error() {
        let cases = cases();
        for (code, blob) in &cases {
            let text = expect_only_blob(blob, code);
            assert!(!text.contains('\n'), "{text}");
        }
        let covered: Vec<&str> = cases.iter().map(|(c, _)| *c).collect();
        for code in Error::CODES {
            assert!(covered.contains(code), "no test case for {code}");
        }
        assert_eq!(covered.len(), Error::CODES.len());
    }

    #[test]
    fn the_virtual_console_spi_is_only_refused_next_to_a_virtual_console() {
        let with = |console: &str| {
            config(vec![domain("t", &[0], "domain:hello", 2 * MIB)
                .str("console", console)
                .child(node("devices").child(board_device("tick", "timer")))])
            .str("board", "console-spi-free")
        };
        let text = expect_only(&with("virtual"), "console-irq");
        assert_eq!(
            text,
            "domain \"t\": /domains/t/devices/tick/board-device: SPI 1 of device \"tick\" is the virtual console's interrupt (the domain has a virtual console; give it `console = \"none\"` or another device)"
        );
        // Without a virtual console the SPI is the device's, as any other.
        let p = plan(&with("none"));
        assert_eq!(p.domains[0].devices[0].spis.as_slice(), &[1]);
        // On qemu-virt the SPI is the partitioner console's: never a
        // domain's (irq-reserved), so it cannot collide there.
        let reserved =
            at_probe(|d| d.child(node("devices").child(explicit("u", 0x0904_0000, 0x1000, &[1]))));
        let codes_of = |n: &Node| run(n).err().map(|e| codes(&e)).unwrap_or_default();
        assert!(!codes_of(&reserved).contains(&"console-irq"));
    }

    #[test]
    fn fixed_bar_addresses_are_checked_and_reach_the_plan() {
        let with = |bars: &[u32]| {
            at_probe(|d| {
                d.child(
                    node("devices").child(
                        node("edu")
                            .str("pci-function", "00:02.0")
                            .cells("bars", bars),
                    ),
                )
            })
        };
        // Accepted: BAR0 in the 32-bit window, BAR2 (a 64-bit BAR's low
        // half) with BAR3 left to it.
        let p = plan(&with(&[0, 0, 0x2000_0000, 2, 0, 0x2010_0000]));
        let edu = p
            .domains
            .iter()
            .flat_map(|d| d.devices.iter())
            .find(|x| x.pci.is_some());
        let bars = &edu.unwrap().pci_bars;
        assert_eq!(
            bars.as_slice(),
            &[
                crate::pci::FixedBar {
                    index: 0,
                    addr: 0x2000_0000
                },
                crate::pci::FixedBar {
                    index: 2,
                    addr: 0x2010_0000
                }
            ]
        );
        // An index that cannot exist: above 5, BAR5 above 4 GiB, and the
        // upper half of a 64-bit BAR given an address of its own.
        expect_only(&with(&[7, 0, 0x1000_0000]), "pci-bar-index");
        expect_only(&with(&[5, 0x80, 0]), "pci-bar-index");
        // (BAR0 itself is in the 64-bit window, beyond the guest address
        // space on qemu-virt: refused too.)
        let e = run(&with(&[0, 0x80, 0, 1, 0, 0x1000_0000])).unwrap_err();
        assert_eq!(codes(&e), ["ipa-range", "pci-bar-index"]);
        // Outside both windows (RAM; the ECAM window), and in the 64-bit
        // window but beyond the guest address space (guest = physical).
        expect_only(&with(&[0, 0, 0x4000_0000]), "pci-bar-window");
        expect_only(&with(&[0, 0x40, 0x1000_0000]), "pci-bar-window");
        expect_only(&with(&[0, 0x80, 0]), "ipa-range");
        // Not page aligned; an index twice; malformed; without pci-function.
        expect_only(&with(&[0, 0, 0x1000_0800]), "misaligned");
        expect_only(
            &with(&[0, 0, 0x1000_0000, 0, 0, 0x1010_0000]),
            "bad-property",
        );
        expect_only(&with(&[0, 0x1000_0000]), "bad-property");
        let text = expect_only(
            &at_probe(|d| {
                d.child(node("devices").child(
                    explicit("clock", 0x0901_0000, 0x1000, &[]).cells("bars", &[0, 0, 0x1000_0000]),
                ))
            }),
            "bad-property",
        );
        assert!(text.contains("only together with pci-function"), "{text}");
        // Two fixed BARs on one page, of one function or across domains.
        let text = expect_only(
            &with(&[0, 0, 0x1000_0000, 1, 0, 0x1000_0000]),
            "pci-bar-overlap",
        );
        assert!(
            text.contains("BAR1 at 0x10000000 shares its page with BAR0 of PCI function 00:02.0"),
            "{text}"
        );
    }

    #[test]
    fn codes_are_unique_kebab_case() {
        for (i, code) in Error::CODES.iter().enumerate() {
            assert!(
                code.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{code}"
            );
            assert!(!Error::CODES[..i].contains(code), "{code} twice");
        }
    }

    #[test]
    fn restart_limit_defaults_and_can_be_set() {
        let p = plan(&base());
        assert!(p
            .domains
            .iter()
            .all(|d| d.restart_limit == crate::plan::RESTART_LIMIT));
        let cfg = config(vec![
            domain("hello", &[0], "domain:hello", 2 * MIB).cells("restart-limit", &[3])
        ]);
        assert_eq!(plan(&cfg).domains[0].restart_limit, 3);
        let bad = config(vec![
            domain("hello", &[0], "domain:hello", 2 * MIB).cells("restart-limit", &[1, 2])
        ]);
        let e = run(&bad).unwrap_err();
        assert_eq!(codes(&e), ["bad-property"]);
    }

    #[test]
    fn base_config_resolves() {
        let p = plan(&base());
        assert_eq!(p.board, "qemu-virt");
        assert_eq!(p.domains.len(), 2);
        let hello = &p.domains[0];
        let probe = &p.domains[1];
        assert_eq!((hello.name.as_str(), hello.vmid), ("hello", 1));
        assert_eq!((probe.name.as_str(), probe.vmid), ("probe", 2));
        assert_eq!(hello.cpus.as_slice(), [0]);
        assert_eq!(probe.cpus.as_slice(), [1]);
        // First fit: hello fits below the partitioner, probe goes above it.
        assert_eq!(
            hello.ram.as_slice(),
            [Mapping {
                ipa: 0x4000_0000,
                pa: 0x4000_0000,
                size: 2 * MIB,
                kind: MemKind::Ram
            }]
        );
        assert_eq!(
            probe.ram.as_slice(),
            [Mapping {
                ipa: 0x4000_0000,
                pa: 0x4060_0000,
                size: 4 * MIB,
                kind: MemKind::Ram
            }]
        );
        assert_eq!(hello.devices.len(), 1);
        let serial = &hello.devices[0];
        assert_eq!(serial.name.as_str(), "serial");
        assert_eq!(serial.board_device, Some("uart1"));
        assert_eq!(serial.compatible.as_str(), "arm,pl011");
        assert_eq!(
            serial.mapping,
            Mapping {
                ipa: 0x0904_0000,
                pa: 0x0904_0000,
                size: 0x1000,
                kind: MemKind::Device
            }
        );
        assert_eq!(serial.spis.as_slice(), [8]);
        assert!(probe.devices.is_empty());
        // hello owns a UART: no virtual console by default; probe gets one.
        assert_eq!(hello.virtual_console, None);
        assert_eq!(probe.virtual_console, Some(VIRTUAL_CONSOLE_IPA));
        assert_eq!((hello.entry, hello.image_size), (0x4000_0000, 0x4000));
        assert_eq!((probe.entry, probe.image_size), (0x4000_0000, 0x3000));
        assert_eq!(hello.bootargs.as_str(), "loglevel=8");
        assert_eq!(probe.bootargs.as_str(), "");
        assert_eq!(hello.fault_policy, FaultPolicy::InjectAbort);
        assert_eq!(probe.fault_policy, FaultPolicy::Stop);
    }

    #[test]
    fn config_parse_exposes_images() {
        let blob = base().blob();
        let cfg = config::parse(&blob).unwrap();
        let images: Vec<_> = cfg.domains.iter().map(|d| (d.name, d.image)).collect();
        assert_eq!(
            images,
            [
                ("hello", Some("domain:hello")),
                ("probe", Some("domain:probe"))
            ]
        );
        assert!(config::parse(&blob[..20]).is_err());
    }

    #[test]
    fn placement_fixed_identity_and_allocation_around_them() {
        let root = config(vec![
            domain("a", &[0], "domain:hello", 2 * MIB).at("memory", |m| {
                m.child(region("fixed", 0x1000_0000, 2 * MIB).u64("physical-address", 0x4060_0000))
                    .child(region("small", 0x2000_0000, 0x3000))
                    .child(region("ident", 0x7000_0000, 0x1000).flag("identity"))
            }),
            domain("b", &[1, 2], "domain:probe", 6 * MIB),
        ]);
        let p = plan(&root);
        let a = &p.domains[0];
        let b = &p.domains[1];
        let pas: Vec<(u64, u64, u64)> = a.ram.iter().map(|m| (m.ipa, m.pa, m.size)).collect();
        assert_eq!(
            pas,
            [
                // Config order, whatever the allocation order.
                (0x4000_0000, 0x4000_0000, 2 * MIB),
                (0x1000_0000, 0x4060_0000, 2 * MIB),
                // 4 KiB-aligned first fit: right after the fixed region.
                (0x2000_0000, 0x4080_0000, 0x3000),
                (0x7000_0000, 0x7000_0000, 0x1000),
            ]
        );
        // 2 MiB-aligned: skips the partitioner, the fixed region and the small one.
        assert_eq!(b.ram[0].pa, 0x40a0_0000);
        assert_eq!(b.cpus.as_slice(), [1, 2]);
        assert_eq!(b.vmid, 2);
    }

    #[test]
    fn allocation_is_deterministic_and_fills_holes() {
        let root = config(vec![
            domain("a", &[0], "domain:hello", 0x1_5000),
            domain("b", &[1], "domain:hello", 2 * MIB),
            domain("c", &[2], "domain:hello", 0x1_5000),
        ]);
        let p1 = plan(&root);
        let p2 = plan(&root);
        assert_eq!(p1, p2);
        // a takes the first pages; b needs 2 MiB alignment and goes past the
        // partitioner; c fills the hole after a.
        let pas: Vec<u64> = p1.domains.iter().map(|d| d.ram[0].pa).collect();
        assert_eq!(pas, [0x4000_0000, 0x4060_0000, 0x4001_5000]);
    }

    #[test]
    fn dma_masters_need_an_iommu_or_the_accepted_risk() {
        let blk = || explicit("blk", 0x0a00_0000, 0x200, &[16]);
        let with = |dev: Node| at_probe(|d| d.child(node("devices").child(dev)));
        // Refused without the opt-in, naming why.
        let text = expect_only(&with(blk()), "dma-unprotected");
        assert_eq!(
            text,
            "domain \"probe\": /domains/probe/devices/blk/physical-address: board device \"virtio0\" masters DMA and no IOMMU covers it: it can write any physical address, including other domains' memory and the partitioner (dma = \"unprotected\" in the device node accepts the risk)"
        );
        // By name too.
        let by_name = with(board_device("blk", "virtio0"));
        let text = expect_only(&by_name, "dma-unprotected");
        assert!(text.contains("/devices/blk/board-device:"), "{text}");
        // Accepted: recorded in the plan, with the warning the host check
        // and the firmware print.
        let p = plan(&with(blk().str("dma", "unprotected")));
        let risks: Vec<_> = p.unprotected_dma().collect();
        assert_eq!(risks.len(), 1);
        let (d, x) = risks[0];
        assert_eq!((d.name.as_str(), x.name.as_str()), ("probe", "blk"));
        assert_eq!(
            crate::plan::DmaWarning(d, x).to_string(),
            "domain \"probe\": device \"blk\" masters DMA and no IOMMU covers it; accepted by dma = \"unprotected\": the domain can read and write any physical address through it, including other domains' memory and the partitioner"
        );
        let p = plan(&with(
            board_device("blk", "virtio0").str("dma", "unprotected"),
        ));
        assert!(p.domains[1].devices[0].dma_unprotected);
        // Any other value names the one allowed.
        let text = expect_only(&with(blk().str("dma", "protected")), "bad-property");
        assert!(
            text.contains("/devices/blk/dma:") && text.contains("\"unprotected\""),
            "{text}"
        );
        // Not a DMA master: nothing to accept, nothing recorded.
        let p = plan(&at_hello(|d| {
            d.at("devices/serial", |s| s.str("dma", "unprotected"))
        }));
        assert_eq!(p.unprotected_dma().count(), 0);
        assert!(!p.domains[0].devices[0].dma_unprotected);
        // A plain config has no risk.
        assert_eq!(plan(&base()).unprotected_dma().count(), 0);
        // An IOMMU in front of the device lifts the refusal, and there is no
        // risk to record.
        let smmu = |dev: Node| with(dev).str("board", "qemu-virt-smmu");
        let p = plan(&smmu(blk()));
        assert_eq!(p.unprotected_dma().count(), 0);
        let p = plan(&smmu(blk().str("dma", "unprotected")));
        assert_eq!(p.unprotected_dma().count(), 0);
        assert!(QEMU_VIRT_SMMU.iommu_covering("virtio0").is_some());
        assert!(QEMU_VIRT_SMMU.iommu_covering("virtio1").is_none());
        // The IOMMU's registers are the partitioner's.
        let text = expect_only(
            &smmu(explicit("x", 0x0905_0000, 0x1000, &[])),
            "mmio-reserved",
        );
        assert!(text.contains("IOMMU"), "{text}");
    }

    /// In a domain with PCI functions the host's memory window is where its
    /// functions' BARs are mapped at boot (guest = physical): its RAM and
    /// devices may not be there; without functions the window is free.
    #[test]
    fn a_pci_domain_keeps_the_pcie_memory_window_for_its_bars() {
        let edu = || node("edu").str("pci-function", "00:02.0");
        let root = at_probe(|d| {
            d.child(node("devices").child(edu()))
                .at("memory", |m| m.child(region("low", 0x1000_0000, MIB)))
        });
        let msg = expect_only(&root, "vgic-overlap");
        assert!(msg.contains("PCIe memory window"), "{msg}");
        let root = at_probe(|d| {
            d.child(node("devices").child(edu()).child(
                explicit("clock", 0x0901_0000, 0x1000, &[2]).u64("guest-address", 0x2000_0000),
            ))
        });
        let msg = expect_only(&root, "vgic-overlap");
        assert!(msg.contains("0x20000000..0x20001000"), "{msg}");
        plan(&at_probe(|d| {
            d.at("memory", |m| m.child(region("low", 0x1000_0000, MIB)))
        }));
    }

    #[test]
    fn explicit_devices_and_guest_addresses() {
        let root = at_probe(|d| {
            d.child(
                node("devices")
                    .child(
                        explicit("clock", 0x0901_0000, 0x1000, &[2])
                            .u64("guest-address", 0x1c00_0000),
                    )
                    .child(
                        explicit("blk", 0x0a00_0000, 0x200, &[16])
                            .str("compatible", "virtio,mmio")
                            .str("dma", "unprotected"),
                    )
                    .child(board_device("pins", "gpio").u64("guest-address", 0x1d00_0000)),
            )
        });
        let p = plan(&root);
        let probe = &p.domains[1];
        let devs: Vec<_> = probe
            .devices
            .iter()
            .map(|d| {
                (
                    d.name.as_str(),
                    d.board_device,
                    d.compatible.as_str(),
                    d.mapping,
                    d.spis.to_vec(),
                )
            })
            .collect();
        let dev = |ipa, pa, size| Mapping {
            ipa,
            pa,
            size,
            kind: MemKind::Device,
        };
        assert_eq!(
            devs,
            [
                (
                    "clock",
                    None,
                    "arm,pl031",
                    dev(0x1c00_0000, 0x0901_0000, 0x1000),
                    vec![2]
                ),
                // Sub-page device: the whole page is mapped.
                (
                    "blk",
                    None,
                    "virtio,mmio",
                    dev(0x0a00_0000, 0x0a00_0000, 0x1000),
                    vec![16]
                ),
                (
                    "pins",
                    Some("gpio"),
                    "arm,pl061",
                    dev(0x1d00_0000, 0x0903_0000, 0x1000),
                    vec![7]
                ),
            ]
        );
        // No UART: the virtual console stays.
        assert_eq!(probe.virtual_console, Some(VIRTUAL_CONSOLE_IPA));
        let all: Vec<_> = probe.mappings().map(|m| m.kind).collect();
        assert_eq!(
            all,
            [
                MemKind::Ram,
                MemKind::Device,
                MemKind::Device,
                MemKind::Device
            ]
        );
    }

    #[test]
    fn the_virtual_gic_window_is_free_in_every_domain() {
        let low = |guest: u64, size: u64| {
            at_probe(|d| d.at("memory", |m| m.child(region("low", guest, size))))
        };
        let msg = expect_only(&low(0x0800_f000, 0x1000), "vgic-overlap");
        assert_eq!(
            msg,
            "domain \"probe\": /domains/probe/memory/low/guest-address: guest range 0x800f000..0x8010000 overlaps the virtual GIC distributor at 0x8000000..0x8010000"
        );
        // Both generations' windows count: GICv2's CPU interface...
        let msg = expect_only(&low(0x0801_1000, 0x1000), "vgic-overlap");
        assert!(
            msg.ends_with("CPU interface (GICv2) at 0x8010000..0x8012000"),
            "{msg}"
        );
        // ...and GICv3's redistributors, one 128 KiB pair per vCPU.
        let msg = expect_only(&low(0x080b_f000, 0x1000), "vgic-overlap");
        assert!(
            msg.ends_with("redistributors (GICv3) at 0x80a0000..0x80c0000"),
            "{msg}"
        );
        assert!(
            run(&low(0x080c_0000, 0x1000)).is_ok(),
            "past probe's one vCPU"
        );
        let two = low(0x080c_0000, 0x1000).at("domains/probe", |d| d.cells("cpus", &[1, 2]));
        let msg = expect_only(&two, "vgic-overlap");
        assert!(
            msg.ends_with("redistributors (GICv3) at 0x80a0000..0x80e0000"),
            "{msg}"
        );
        // Around and between the parts is free.
        assert!(run(&low(0x07e0_0000, 2 * MIB)).is_ok());
        assert!(run(&low(0x0801_2000, 0x8_e000)).is_ok());
        expect_only(&low(0x07e0_0000, 2 * MIB + 0x1000), "vgic-overlap");
        // Devices too, reported at the property that placed them.
        let dev = at_probe(|d| {
            d.child(node("devices").child(
                explicit("clock", 0x0901_0000, 0x1000, &[]).u64("guest-address", 0x0801_0000),
            ))
        });
        let msg = expect_only(&dev, "vgic-overlap");
        assert!(
            msg.starts_with("domain \"probe\": /domains/probe/devices/clock/guest-address: guest range 0x8010000..0x8011000"),
            "{msg}"
        );
        // Every domain is checked.
        let hello = at_hello(|d| d.at("memory", |m| m.child(region("gic", 0x080a_0000, 0x1000))));
        let msg = expect_only(&hello, "vgic-overlap");
        assert!(msg.starts_with("domain \"hello\""), "{msg}");
    }

    #[test]
    fn console_choice() {
        let forced = at_hello(|d| d.str("console", "virtual"));
        assert_eq!(
            plan(&forced).domains[0].virtual_console,
            Some(VIRTUAL_CONSOLE_IPA)
        );
        let none = at_probe(|d| d.str("console", "none"));
        assert_eq!(plan(&none).domains[1].virtual_console, None);
        // An explicit UART (by compatible) also turns the default off.
        let uart =
            at_probe(|d| {
                d.child(node("devices").child(
                    explicit("tty", 0x0901_0000, 0x1000, &[]).str("compatible", "arm,pl011"),
                ))
            });
        assert_eq!(plan(&uart).domains[1].virtual_console, None);
        // A region over the console's address is fine without a virtual console.
        let low = at_probe(|d| {
            d.str("console", "none")
                .at("memory", |m| m.child(region("low", 0x0900_0000, 0x1000)))
        });
        assert!(run(&low).is_ok());
        // A device remapped onto it collides.
        let remapped = at_hello(|d| {
            d.str("console", "virtual").at("devices/serial", |s| {
                s.u64("guest-address", VIRTUAL_CONSOLE_IPA)
            })
        });
        let msg = expect_only(&remapped, "console-overlap");
        assert_eq!(
            msg,
            "domain \"hello\": /domains/hello/console: virtual console 0x9000000..0x9001000 overlaps device \"serial\" at 0x9000000..0x9001000"
        );
    }

    #[test]
    fn entry_in_a_later_region_and_image_room() {
        let root = at_hello(|d| {
            d.u64("entry", 0x8000_0000)
                .at("memory", |m| m.child(region("high", 0x8000_0000, 0x1_4000)))
        });
        let p = plan(&root);
        assert_eq!(p.domains[0].entry, 0x8000_0000);
        // 0x14000 - 64 KiB device-tree window = 0x4000: exactly the image.
        let tight = root
            .clone()
            .at("domains/hello/memory/high", |r| r.u64("size", 0x1_3000));
        let msg = expect_only(&tight, "image-too-large");
        assert!(
            msg.contains("image of 0x4000 bytes does not fit the 0x3000 bytes"),
            "{msg}"
        );
        assert!(msg.contains("memory region \"high\""), "{msg}");
        // Entry near the end of a region.
        let late = root.at("domains/hello", |d| d.u64("entry", 0x8001_0000));
        expect_only(&late, "image-too-large");
    }

    #[test]
    fn messages_name_domain_path_and_values() {
        let msg = expect_only(&at_probe(|d| d.cells("cpus", &[0])), "cpu-shared");
        assert_eq!(
            msg,
            "domain \"probe\": /domains/probe/cpus: core 0 is already owned by domain \"hello\""
        );
        let msg = expect_only(&base().str("board", "rpi5"), "unknown-board");
        assert_eq!(msg, "/board: unknown board \"rpi5\"");
        let msg = expect_only(
            &base()
                .at("domains/hello/memory/ram", |r| {
                    r.u64("physical-address", 0x4800_0000)
                })
                .at("domains/probe/memory/ram", |r| {
                    r.u64("physical-address", 0x4810_0000)
                }),
            "pa-overlap",
        );
        assert_eq!(
            msg,
            "domain \"probe\": /domains/probe/memory/ram/physical-address: physical range 0x48100000..0x48500000 overlaps memory region \"ram\" of domain \"hello\" at 0x48000000..0x48200000"
        );
        let msg = expect_only(
            &at_probe(|d| d.child(node("devices").child(board_device("serial", "uart1")))),
            "mmio-shared",
        );
        assert_eq!(
            msg,
            "domain \"probe\": /domains/probe/devices/serial/board-device: MMIO pages 0x9040000..0x9041000 overlap those of device \"serial\" (0x9040000..0x9041000) of domain \"hello\""
        );
        let msg = expect_only(&at_hello(|d| d.without("image")), "missing-property");
        assert_eq!(
            msg,
            "domain \"hello\": /domains/hello: required property \"image\" is missing"
        );
        let msg = expect_only_blob(&base().blob()[..100], "fdt-malformed");
        assert!(
            msg.starts_with("config: not a valid device tree blob: "),
            "{msg}"
        );
        let msg = expect_only(
            &at_hello(|d| d.u64("entry", 0x5000_0000)),
            "entry-outside-ram",
        );
        assert_eq!(
            msg,
            "domain \"hello\": /domains/hello/entry: entry point 0x50000000 is not inside any memory region of the domain"
        );
    }

    #[test]
    fn more_single_error_cases() {
        // Missing / malformed identity and board fields are fatal but single.
        expect_only(&base().without("compatible"), "missing-property");
        expect_only(&base().without("board"), "missing-property");
        expect_only(&base().cells("board", &[1]), "bad-property");
        expect_only(&base().raw("compatible", b"no-terminator"), "bad-property");
        // Root-level oddities.
        expect_only(&base().str("model", "x"), "unknown-property");
        expect_only(&base().child(node("chosen")), "unknown-node");
        expect_only(&base().remove("domains"), "no-domains");
        assert!(run(&base().child(node("__symbols__").str("x", "/domains"))).is_ok());
        // Domain compatible.
        expect_only(
            &at_hello(|d| d.str("compatible", "bulkhead,vm")),
            "bad-compatible",
        );
        expect_only(&at_hello(|d| d.without("compatible")), "missing-property");
        expect_only(&at_hello(|d| d.without("cpus")), "missing-property");
        expect_only(&at_hello(|d| d.without("entry")), "missing-property");
        // Shapes.
        expect_only(&at_hello(|d| d.raw("cpus", &[0, 0, 1])), "bad-property");
        expect_only(&at_hello(|d| d.cells("image", &[1])), "bad-property");
        expect_only(&at_hello(|d| d.str("image", "")), "bad-property");
        expect_only(
            &at_hello(|d| d.str("bootargs", &"x".repeat(128))),
            "bad-property",
        );
        assert!(run(&at_hello(|d| d.str("bootargs", &"x".repeat(127)))).is_ok());
        expect_only(&at_hello(|d| d.cells("fault-policy", &[1])), "bad-property");
        expect_only(
            &at_hello(|d| d.raw_dup("bootargs", b"again\0")),
            "bad-property",
        );
        expect_only(
            &at_hello(|d| {
                d.at("memory/ram", |r| {
                    r.flag("identity").u64("physical-address", 0x4800_0000)
                })
            }),
            "bad-property",
        );
        expect_only(
            &at_hello(|d| d.at("memory/ram", |r| r.cells("identity", &[1]))),
            "bad-property",
        );
        expect_only(
            &at_hello(|d| d.at("memory/ram", |r| r.without("size"))),
            "missing-property",
        );
        expect_only(
            &at_hello(|d| d.at("memory/ram", |r| r.child(node("sub")))),
            "unknown-node",
        );
        expect_only(
            &at_hello(|d| d.at("devices/serial", |s| s.u64("size", 0x1000))),
            "bad-property",
        );
        expect_only(
            &at_hello(|d| d.at("devices/serial", |s| s.cells("interrupts", &[8]))),
            "unknown-property",
        );
        expect_only(
            &at_hello(|d| d.at("devices/serial", |s| s.without("board-device"))),
            "missing-property",
        );
        expect_only(
            &at_probe(|d| {
                d.child(node("devices").child(node("x").u64("physical-address", 0x0901_0000)))
            }),
            "missing-property",
        );
        expect_only(
            &at_probe(|d| {
                d.child(node("devices").child(
                    explicit("x", 0x0901_0000, 0x1000, &[]).str("compatible", &"c".repeat(65)),
                ))
            }),
            "bad-property",
        );
        // Names.
        expect_only(
            &config(vec![domain(&"a".repeat(32), &[0], "domain:hello", 2 * MIB)]),
            "bad-name",
        );
        assert!(run(&config(vec![domain(
            &"a".repeat(31),
            &[0],
            "domain:hello",
            2 * MIB
        )]))
        .is_ok());
        expect_only(
            &config(vec![domain("he_llo", &[0], "domain:hello", 2 * MIB)]),
            "bad-name",
        );
        expect_only(
            &at_hello(|d| d.at("devices", |x| x.child(board_device("serial", "rtc")))),
            "bad-name",
        );
        expect_only(
            &at_hello(|d| d.at("devices", |x| x.child(board_device("bad name", "rtc")))),
            "bad-name",
        );
        // Cores.
        expect_only(&at_hello(|d| d.cells("cpus", &[u32::MAX])), "cpu-unknown");
        // Regions.
        expect_only(
            &at_hello(|d| d.at("memory/ram", |r| r.u64("guest-address", 0x4000_0800))),
            "misaligned",
        );
        expect_only(
            &at_hello(|d| d.at("memory/ram", |r| r.u64("physical-address", 0x4800_0800))),
            "misaligned",
        );
        expect_only(
            &at_hello(|d| {
                d.at("memory/ram", |r| {
                    r.u64("physical-address", 0xffff_ffff_fff0_0000)
                })
            }),
            "address-overflow",
        );
        expect_only(
            &at_hello(|d| {
                d.at("memory/ram", |r| {
                    r.flag("identity").u64("guest-address", 0x4030_0000)
                })
                .u64("entry", 0x4030_0000)
            }),
            "partitioner-overlap",
        );
        expect_only(
            &at_hello(|d| d.at("memory/ram", |r| r.u64("physical-address", 0x7ff0_0000))),
            "outside-ram",
        );
        expect_only(
            &at_hello(|d| d.at("memory/ram", |r| r.u64("physical-address", 0x3ff0_0000))),
            "outside-ram",
        );
        expect_only(
            &at_hello(|d| d.remove("memory").child(node("memory"))),
            "no-ram",
        );
        // Identity regions of two domains on the same addresses.
        let twins = base()
            .at("domains/hello/memory/ram", |r| {
                r.flag("identity").u64("guest-address", 0x5000_0000)
            })
            .at("domains/hello", |d| d.u64("entry", 0x5000_0000))
            .at("domains/probe/memory/ram", |r| {
                r.flag("identity").u64("guest-address", 0x5000_0000)
            })
            .at("domains/probe", |d| d.u64("entry", 0x5000_0000));
        expect_only(&twins, "pa-overlap");
        // Allocation runs out only for the region that does not fit.
        let full = at_hello(|d| d.at("memory/ram", |r| r.u64("size", 1020 * MIB)));
        expect_only(&full, "no-room");
        // Devices.
        expect_only(
            &at_probe(|d| {
                d.child(node("devices").child(explicit("gic", 0x0800_0000, 0x1000, &[])))
            }),
            "mmio-reserved",
        );
        expect_only(
            &at_probe(|d| d.child(node("devices").child(explicit("cfg", 0x0902_0000, 0x10, &[])))),
            "mmio-reserved",
        );
        expect_only(
            &at_probe(|d| d.child(node("devices").child(board_device("cfg", "fw-cfg")))),
            "mmio-reserved",
        );
        expect_only(
            &at_probe(|d| d.child(node("devices").child(explicit("x", 0x0901_0000, 0x2000, &[])))),
            "mmio-unknown",
        );
        expect_only(
            &at_probe(|d| d.child(node("devices").child(explicit("x", 0x0901_0000, 0, &[])))),
            "zero-size",
        );
        expect_only(
            &at_probe(|d| {
                d.child(node("devices").child(explicit("x", 0xffff_ffff_ffff_f000, 0x2000, &[])))
            }),
            "address-overflow",
        );
        // Sub-page device not at a page start (shares virtio0's page).
        expect_only(
            &at_probe(|d| d.child(node("devices").child(board_device("blk", "virtio1")))),
            "misaligned",
        );
        expect_only(
            &at_probe(|d| {
                d.child(
                    node("devices")
                        .child(board_device("pins", "gpio").u64("guest-address", 0x1d00_0100)),
                )
            }),
            "misaligned",
        );
        expect_only(
            &at_probe(|d| {
                d.child(
                    node("devices")
                        .child(board_device("pins", "gpio").u64("guest-address", 1 << 39)),
                )
            }),
            "ipa-range",
        );
        expect_only(
            &at_probe(|d| {
                d.child(node("devices").child(
                    board_device("pins", "gpio").u64("guest-address", 0xffff_ffff_ffff_f000),
                ))
            }),
            "address-overflow",
        );
        // Device over the domain's RAM, and two devices on one guest page.
        expect_only(
            &at_probe(|d| {
                d.child(
                    node("devices")
                        .child(board_device("pins", "gpio").u64("guest-address", 0x4000_0000)),
                )
            }),
            "ipa-overlap",
        );
        expect_only(
            &at_probe(|d| {
                d.child(
                    node("devices")
                        .child(board_device("pins", "gpio"))
                        .child(board_device("clock", "rtc").u64("guest-address", 0x0903_0000)),
                )
            }),
            "ipa-overlap",
        );
        // The same device twice in one domain.
        expect_only(
            &at_probe(|d| {
                d.child(
                    node("devices")
                        .child(board_device("a", "rtc"))
                        .child(board_device("b", "rtc")),
                )
            }),
            "mmio-shared",
        );
        // An SPI listed twice by one device.
        expect_only(
            &at_probe(|d| {
                d.child(node("devices").child(explicit("clock", 0x0901_0000, 0x1000, &[2, 2])))
            }),
            "irq-shared",
        );
    }

    #[test]
    fn independent_errors_are_all_reported() {
        let root = base()
            .at("domains/hello", |d| {
                d.cells("cpus", &[7]).str("fault-policy", "explode")
            })
            .at("domains/probe", |d| {
                d.str("image", "nope").u64("entry", 0x4000_0001)
            });
        let errors = run(&root).unwrap_err();
        // Shape errors (found while reading) come before board checks.
        assert_eq!(
            codes(&errors),
            [
                "unknown-fault-policy",
                "cpu-unknown",
                "missing-image",
                "entry-misaligned"
            ]
        );
        assert_eq!(errors.len(), 4);
    }

    #[test]
    fn error_list_overflows_gracefully() {
        // 8 domains, each with many bad properties.
        let mut domains = Vec::new();
        for i in 0..8u32 {
            domains.push(
                domain(&format!("d{i}"), &[9], "x", 2 * MIB)
                    .str("fault-policy", "?")
                    .str("console", "?")
                    .str("junk", "?")
                    .u64("entry", 1),
            );
        }
        let errors = run(&config(domains)).unwrap_err();
        assert_eq!(errors.len(), crate::error::MAX_ERRORS);
        assert!(errors.overflowed());
        assert!(errors.to_string().ends_with("the rest are not shown)"));
    }

    /// xorshift64*, so the test is deterministic.
    pub(crate) struct Rng(pub(crate) u64);
    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        pub(crate) fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn rich() -> Node {
        at_probe(|d| {
            d.str("console", "virtual").child(
                node("devices")
                    .child(
                        explicit("clock", 0x0901_0000, 0x1000, &[2])
                            .u64("guest-address", 0x1c00_0000),
                    )
                    .child(board_device("pins", "gpio")),
            )
        })
        .at("domains/hello/memory", |m| {
            m.child(region("fixed", 0x1000_0000, 0x3000).u64("physical-address", 0x5000_0000))
        })
    }

    #[test]
    fn corrupted_blobs_never_panic() {
        let good = rich().blob();
        assert!(run_blob(&good).is_ok());
        // Every truncation.
        for len in 0..good.len() {
            assert!(
                run_blob(&good[..len]).is_err(),
                "truncated to {len} accepted"
            );
        }
        // Every single-bit flip.
        for bit in 0..good.len() * 8 {
            let mut b = good.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            let _ = run_blob(&b);
        }
        // Random multi-byte damage, including header words set to extremes.
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let mut b = good.clone();
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(b.len());
                b[at] = match rng.below(4) {
                    0 => 0,
                    1 => 0xff,
                    _ => rng.next() as u8,
                };
            }
            if rng.below(4) == 0 {
                let cut = rng.below(b.len());
                b.truncate(cut);
            }
            let _ = run_blob(&b);
        }
        // Pure noise with a valid magic.
        for _ in 0..2_000 {
            let len = rng.below(512);
            let mut b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if b.len() >= 4 {
                b[..4].copy_from_slice(&crate::fdt_check::FDT_MAGIC.to_be_bytes());
            }
            let _ = run_blob(&b);
        }
    }

    fn dtc(source: &std::path::Path) -> Option<Vec<u8>> {
        let out = std::process::Command::new("dtc")
            .args(["-q", "-I", "dts", "-O", "dtb"])
            .arg(source)
            .output()
            .ok()?;
        assert!(
            out.status.success(),
            "dtc failed on {}: {}",
            source.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Some(out.stdout)
    }

    fn repo() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    /// The documented example compiles and resolves as documented (skipped
    /// without `dtc`).
    #[test]
    fn example_config_resolves() {
        let path = repo().join("configs/qemu-virt/example.dts");
        let Some(blob) = dtc(&path) else { return };
        let p = match run_blob(&blob) {
            Ok(p) => p,
            Err(e) => panic!("{}:\n{e}", path.display()),
        };
        let ram = |ipa, pa, size| Mapping {
            ipa,
            pa,
            size,
            kind: MemKind::Ram,
        };
        let dev = |ipa, pa, size| Mapping {
            ipa,
            pa,
            size,
            kind: MemKind::Device,
        };
        let [hello, worker] = &p.domains[..] else {
            panic!("{p:?}")
        };
        assert_eq!(
            hello.ram.as_slice(),
            [
                ram(0x4000_0000, 0x4800_0000, 2 * MIB),
                ram(0x5000_0000, 0x4000_0000, 0x1_0000)
            ]
        );
        assert_eq!(hello.bootargs.as_str(), "greeting=example");
        assert_eq!(hello.virtual_console, None);
        assert_eq!(
            hello.devices[0].mapping,
            dev(0x0904_0000, 0x0904_0000, 0x1000)
        );
        assert_eq!(worker.vmid, 2);
        assert_eq!(worker.cpus.as_slice(), [1, 2]);
        assert_eq!(
            worker.ram.as_slice(),
            [
                ram(0x4000_0000, 0x4060_0000, 4 * MIB),
                ram(0x7f00_0000, 0x7f00_0000, MIB)
            ]
        );
        let devs: Vec<_> = worker
            .devices
            .iter()
            .map(|d| (d.compatible.as_str(), d.mapping, d.spis.to_vec()))
            .collect();
        assert_eq!(
            devs,
            [
                ("arm,pl031", dev(0x1c00_0000, 0x0901_0000, 0x1000), vec![2]),
                ("arm,pl061", dev(0x0903_0000, 0x0903_0000, 0x1000), vec![7]),
            ]
        );
        assert_eq!(worker.fault_policy, FaultPolicy::Stop);
        assert_eq!(worker.virtual_console, Some(VIRTUAL_CONSOLE_IPA));
    }

    /// The example in docs/config.md compiles and validates (skipped without `dtc`).
    #[test]
    fn documented_example_validates() {
        let doc = std::fs::read_to_string(repo().join("docs/config.md")).unwrap();
        let start = doc.find("```dts\n").expect("a dts block in docs/config.md") + 7;
        let len = doc[start..].find("```").unwrap();
        let dir = std::env::temp_dir().join(format!("bulkhead-doc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("doc.dts");
        std::fs::write(&path, &doc[start..start + len]).unwrap();
        let blob = dtc(&path);
        let _ = std::fs::remove_dir_all(&dir);
        let Some(blob) = blob else { return };
        let p = match run_blob(&blob) {
            Ok(p) => p,
            Err(e) => panic!("docs/config.md example:\n{e}"),
        };
        assert_eq!(p.domains[1].ram[0].pa, 0x4060_0000);
        assert_eq!(p.domains[1].virtual_console, Some(VIRTUAL_CONSOLE_IPA));
    }

    /// Every other config in the repository validates (skipped without `dtc`).
    #[test]
    fn repository_configs_validate() {
        for dir in ["configs/qemu-virt", "tests/configs"] {
            let Ok(entries) = std::fs::read_dir(repo().join(dir)) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                if path.extension().is_none_or(|e| e != "dts") {
                    continue;
                }
                let Some(blob) = dtc(&path) else { return };
                // Only configs for the board mirrored here; every board's
                // are checked against the real board list by the
                // integration tests (`shipped_configs_pass`).
                if crate::config::parse(&blob).is_ok_and(|c| c.board != QEMU_VIRT.name) {
                    continue;
                }
                if let Err(e) = run_blob(&blob) {
                    panic!("{}:\n{e}", path.display());
                }
            }
        }
    }

    /// Each `tests/configs/invalid/<code>.dts` reports exactly `<code>` (skipped without `dtc`).
    #[test]
    fn invalid_config_files_report_their_code() {
        let dir = repo().join("tests/configs/invalid");
        let mut seen = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "dts") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let first = text.lines().next().unwrap_or("");
            let code = first
                .strip_prefix("// expect: ")
                .unwrap_or_else(|| panic!("{}: no expect line", path.display()))
                .trim();
            assert_eq!(path.file_stem().unwrap().to_str().unwrap(), code);
            let Some(blob) = dtc(&path) else { return };
            seen.push(code.to_string());
            // Configs for other boards than the one mirrored here are
            // checked against the real boards by the integration tests
            // (`each_invalid_config_reports_exactly_its_error`).
            if crate::config::parse(&blob).is_ok_and(|c| lookup(c.board).is_none()) {
                continue;
            }
            expect_only_blob(&blob, code);
        }
        for code in Error::CODES {
            // dtc cannot produce the first two; the only board, qemu-virt,
            // keeps the virtual console's SPI (irq-reserved comes first), so
            // console-irq is covered by the unit tests' own board only.
            if ["fdt-malformed", "duplicate-domain", "console-irq"].contains(code) {
                continue;
            }
            assert!(
                seen.iter().any(|s| s == code),
                "no tests/configs/invalid/{code}.dts"
            );
        }
    }
}
