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
use crate::error::{bounded, path, Item, Limit, Name, Site};
use crate::plan::{
    DevicePlan, DomainPlan, Mapping, MemKind, Plan, MAX_CPUS, MAX_DEVICES, MAX_DOMAINS, MAX_IRQS,
    MAX_REGIONS, VIRTUAL_CONSOLE_IPA,
};
use heapless::Vec;

pub use crate::error::{Error, Errors};

/// Stage-2 page size: the granule of every mapping.
pub const PAGE_SIZE: u64 = 0x1000;
/// Alignment of allocated regions whose size is a multiple of it.
pub const BLOCK_SIZE: u64 = 0x20_0000;
/// Size of the virtual console's register window.
pub const VIRTUAL_CONSOLE_SIZE: u64 = 0x1000;
/// `compatible` strings that make a device a UART (which turns the virtual
/// console off by default).
pub const UART_COMPATIBLES: &[&str] =
    &["arm,pl011", "arm,sbsa-uart", "ns16550", "ns16550a", "snps,dw-apb-uart"];

/// Size of the guest (intermediate physical) address space stage 2 translates:
/// every guest range must end at or below it.
pub const IPA_LIMIT: u64 = 1 << crate::pagetable::INPUT_BITS;
/// Bytes at the end of the memory region holding the entry point that the
/// partitioner keeps for the domain's device tree; the image must end below them.
pub const DTB_RESERVED: u64 = crate::dtb::DTB_RESERVED;

fn ipa_in_range(range: &Range) -> bool {
    range.end().is_some_and(|end| end <= IPA_LIMIT)
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
    let plan = Resolver { config: &config, board, layout, errors: &mut errors }.run(image_size);
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

/// Resolved state of one device.
#[derive(Clone, Debug)]
struct DeviceState {
    /// Page-granular mapping.
    mapping: Mapping,
    board_device: Option<&'static str>,
    compatible: &'static str,
    explicit_compatible: bool,
    spis: Vec<u32, MAX_IRQS>,
}

/// Per-domain working state; `None` items failed a check.
#[derive(Clone, Debug, Default)]
struct DomainState {
    regions: Vec<Option<RegionState>, MAX_REGIONS>,
    devices: Vec<Option<DeviceState>, MAX_DEVICES>,
    /// Some region or device failed a check (or was left out by the parser).
    regions_ok: bool,
    image_size: Option<u64>,
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
        self.domain(d).and_then(|c| c.regions.get(r)).map_or("", |r| r.name)
    }

    fn device_name(&self, d: usize, i: usize) -> &str {
        self.domain(d).and_then(|c| c.devices.get(i)).map_or("", |x| x.name)
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
        self.check_entries(&mut states, image_size);
        if !self.errors.is_empty() {
            return None;
        }
        self.build(&states)
    }

    /// Cores: present, on the board, listed once, owned by one domain.
    fn check_cpus(&mut self) {
        let mut owners: Vec<(u32, usize), { MAX_DOMAINS * MAX_CPUS }> = Vec::new();
        for (d, domain) in self.config.domains.iter().enumerate() {
            let Some(cpus) = &domain.cpus else { continue };
            if cpus.is_empty() {
                self.errors.push(Error::NoCpus { at: self.site(d, &["cpus"]) });
            }
            for (i, &core) in cpus.iter().enumerate() {
                let at = || self.site(d, &["cpus"]);
                let count = self.board.cpus.len();
                if usize::try_from(core).map_or(true, |c| c >= count) {
                    self.errors.push(Error::CpuUnknown { at: at(), core, count });
                } else if cpus.iter().take(i).any(|&c| c == core) {
                    self.errors.push(Error::CpuDuplicate { at: at(), core });
                } else if let Some(&(_, owner)) = owners.iter().find(|(c, _)| *c == core) {
                    self.errors.push(Error::CpuShared { at: at(), core, owner: self.name(owner) });
                } else {
                    let _ = owners.push((core, d));
                }
            }
        }
    }

    /// Memory regions: shape, guest-space overlaps, and the physical checks of
    /// regions with a fixed address.
    fn check_regions(&mut self, states: &mut [DomainState]) {
        let mut claims: Vec<(Range, Owner), MAX_CLAIMS> = Vec::new();
        for (d, domain) in self.config.domains.iter().enumerate() {
            let Some(state) = states.get_mut(d) else { continue };
            state.regions_ok = domain.regions_complete;
            if domain.regions.is_empty() && domain.regions_complete {
                self.errors.push(Error::NoRam { at: self.site(d, &[]) });
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
    fn check_region(&mut self, d: usize, r: usize, guest: u64, size: u64, placement: Placement) -> Option<RegionState> {
        if size == 0 {
            self.errors.push(Error::ZeroSize { at: self.region_site(d, r, Some("size")) });
            return None;
        }
        let mut ok = true;
        let mut misaligned = |this: &mut Self, prop: &'static str, what: &'static str, value: u64| {
            if value % PAGE_SIZE != 0 {
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
    fn check_fixed_pa(&mut self, d: usize, r: usize, range: Range, claims: &mut Vec<(Range, Owner), MAX_CLAIMS>) -> bool {
        let prop = match self.domain(d).and_then(|c| c.regions.get(r)).map(|r| r.placement) {
            Some(Placement::Identity) => None,
            _ => Some("physical-address"),
        };
        if !self.board.ram.iter().any(|bank| bank.contains(&range)) {
            self.errors.push(Error::OutsideRam { at: self.region_site(d, r, prop), range });
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
            let Some(state) = states.get_mut(d) else { continue };
            for (r, region) in domain.regions.iter().enumerate() {
                if region.placement != Placement::Anywhere {
                    continue;
                }
                let Some(Some(rs)) = state.regions.get_mut(r) else { continue };
                let size = rs.ipa.size;
                let align = if size % BLOCK_SIZE == 0 { BLOCK_SIZE } else { PAGE_SIZE };
                match first_fit(self.board.ram, &taken, size, align) {
                    Some(pa) => {
                        rs.pa = Some(pa);
                        let _ = taken.push(Range::new(pa, size));
                    }
                    None => {
                        self.errors.push(Error::NoRoom { at: self.region_site(d, r, None), size, align });
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
    fn check_devices(&mut self, states: &mut [DomainState]) {
        let config = self.config;
        let mut mmio: Vec<(Range, Owner), MAX_MMIO> = Vec::new();
        let mut spis: Vec<(u32, Owner), MAX_SPIS> = Vec::new();
        for (d, domain) in config.domains.iter().enumerate() {
            let Some(state) = states.get_mut(d) else { continue };
            for (i, device) in domain.devices.iter().enumerate() {
                let resolved = self.resolve_device(d, i, device.guest, &device.source);
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

    /// Finds what a device is on the board and where it goes.
    fn resolve_device(
        &mut self,
        d: usize,
        i: usize,
        guest: Option<u64>,
        source: &DeviceSource<'_>,
    ) -> Option<DeviceState> {
        // Property blamed for problems with the device's physical side.
        let pa_prop = match source {
            DeviceSource::Board(_) => "board-device",
            DeviceSource::Explicit { .. } => "physical-address",
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
            DeviceSource::Explicit { pa, size, spis, compatible } => {
                if *size == 0 {
                    self.errors.push(Error::ZeroSize { at: self.device_site(d, i, Some("size")) });
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
                (Range::new(*pa, *size), None, compatible_default, compatible.is_some(), spis.clone())
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
        if let Some((reserved, reason)) =
            self.board.reserved_mmio().find(|(r, _)| r.overlaps(&pages_pa))
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
            self.errors.push(Error::MmioUnknown { at: self.device_site(d, i, Some(pa_prop)), range: reg });
            return None;
        }
        // Stage 2 maps whole pages, and the guest finds the device at the
        // start of its mapping.
        if reg.base % PAGE_SIZE != 0 {
            self.errors.push(Error::Misaligned {
                at: self.device_site(d, i, Some(pa_prop)),
                what: "device physical address",
                value: reg.base,
                align: PAGE_SIZE,
            });
            return None;
        }
        let ipa = guest.unwrap_or(reg.base);
        let ipa_prop = if guest.is_some() { "guest-address" } else { pa_prop };
        if ipa % PAGE_SIZE != 0 {
            self.errors.push(Error::Misaligned {
                at: self.device_site(d, i, Some(ipa_prop)),
                what: "guest address",
                value: ipa,
                align: PAGE_SIZE,
            });
            return None;
        }
        let ipa_range = Range::new(ipa, pages_pa.size);
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
            mapping: Mapping { ipa, pa: pages_pa.base, size: pages_pa.size, kind: MemKind::Device },
            board_device,
            compatible,
            explicit_compatible,
            spis,
        })
    }

    /// Guest-space checks of a device against the domain's RAM and earlier devices.
    fn check_device_ipa(&mut self, d: usize, i: usize, dev: &DeviceState, state: &DomainState) -> bool {
        let configured = self.domain(d).and_then(|c| c.devices.get(i));
        let prop = match configured {
            Some(c) if c.guest.is_some() => "guest-address",
            Some(DeviceConfig { source: DeviceSource::Board(_), .. }) => "board-device",
            _ => "physical-address",
        };
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

    /// MMIO ownership: a physical page belongs to one device of one domain.
    fn check_device_pa(&mut self, d: usize, i: usize, dev: &DeviceState, mmio: &[(Range, Owner)]) -> bool {
        let prop = if dev.board_device.is_some() { "board-device" } else { "physical-address" };
        let range = dev.mapping.pa_range();
        let Some((other_range, owner)) = mmio.iter().find(|(pages, _)| pages.overlaps(&range)) else {
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
    fn check_spis(&mut self, d: usize, i: usize, dev: &DeviceState, claimed: &mut Vec<(u32, Owner), MAX_SPIS>) {
        let prop = if dev.board_device.is_some() { "board-device" } else { "spis" };
        for &spi in dev.spis.iter() {
            let at = || self.device_site(d, i, Some(prop));
            if spi >= self.board.spi_count {
                self.errors.push(Error::IrqRange { at: at(), spi, count: self.board.spi_count });
            } else if let Some(keeper) = self.board.devices.iter().find(|x| matches!(x.usage, DeviceUse::Reserved(_)) && x.spis.contains(&spi)) {
                let reason = match keeper.usage {
                    DeviceUse::Reserved(why) => why,
                    DeviceUse::Assignable => "",
                };
                self.errors.push(Error::IrqReserved { at: at(), spi, device: keeper.name, reason });
            } else if let Some((_, owner)) = claimed.iter().find(|(s, _)| *s == spi) {
                self.errors.push(Error::IrqShared {
                    at: at(),
                    spi,
                    owner: self.name(owner.domain),
                    other: bounded(self.device_name(owner.domain, owner.item)),
                });
            } else {
                let _ = claimed.push((spi, Owner { domain: d, item: i }));
            }
        }
    }

    /// The console each domain gets: `console`, or by default virtual unless the
    /// domain owns a UART.
    fn console(&self, d: usize, state: &DomainState) -> Console {
        let Some(domain) = self.domain(d) else { return Console::None };
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
            if let Some(DeviceSource::Explicit { compatible: Some(c), .. }) = self.domain(d).and_then(|c| c.devices.get(i)).map(|x| &x.source) {
                return c;
            }
        }
        dev.compatible
    }

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
                if let Some(dev) = dev.as_ref().filter(|dev| dev.mapping.ipa_range().overlaps(&console)) {
                    self.errors.push(Error::ConsoleOverlap {
                        at: self.site(d, parts),
                        console,
                        other: Item::Device(bounded(self.device_name(d, i))),
                        other_range: dev.mapping.ipa_range(),
                    });
                }
            }
        }
    }

    /// Entry point and image: aligned, inside RAM, and the image fits.
    fn check_entries(&mut self, states: &mut [DomainState], image_size: &dyn Fn(&str, &str) -> Option<u64>) {
        for (d, domain) in self.config.domains.iter().enumerate() {
            let Some(state) = states.get_mut(d) else { continue };
            let size = domain.image.map(|image| {
                let size = image_size(domain.name, image);
                if size.is_none() {
                    self.errors.push(Error::MissingImage { at: self.site(d, &["image"]), image: bounded(image) });
                }
                size
            });
            state.image_size = size.flatten();
            let Some(entry) = domain.entry else { continue };
            if entry % 4 != 0 {
                self.errors.push(Error::EntryMisaligned { at: self.site(d, &["entry"]), entry });
            }
            let holder = state.regions.iter().enumerate().find_map(|(r, rs)| {
                rs.filter(|rs| rs.ipa.contains_addr(entry)).map(|rs| (r, rs))
            });
            match holder {
                None if state.regions_ok && !state.regions.is_empty() => {
                    self.errors.push(Error::EntryOutsideRam { at: self.site(d, &["entry"]), entry });
                }
                None => {}
                Some((r, rs)) => {
                    // The region's end is known not to overflow (checked with the region).
                    let room = rs.ipa.end().unwrap_or(u64::MAX).saturating_sub(entry).saturating_sub(DTB_RESERVED);
                    let tight = rs.ipa.end().unwrap_or(u64::MAX).saturating_sub(entry) < DTB_RESERVED;
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
    fn build(&self, states: &[DomainState]) -> Option<Plan> {
        let mut domains = Vec::new();
        for (d, (domain, state)) in self.config.domains.iter().zip(states).enumerate() {
            let mut ram = Vec::new();
            for rs in state.regions.iter() {
                let rs = rs.as_ref()?;
                ram.push(Mapping { ipa: rs.ipa.base, pa: rs.pa?, size: rs.ipa.size, kind: MemKind::Ram }).ok()?;
            }
            let mut devices = Vec::new();
            for (i, (dev, cfg)) in state.devices.iter().zip(domain.devices.iter()).enumerate() {
                let dev = dev.as_ref()?;
                devices
                    .push(DevicePlan {
                        name: heapless::String::try_from(cfg.name).ok()?,
                        board_device: dev.board_device,
                        compatible: heapless::String::try_from(self.device_compatible(d, i, dev)).ok()?,
                        mapping: dev.mapping,
                        spis: dev.spis.clone(),
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
                bootargs: heapless::String::try_from(domain.bootargs).ok()?,
                fault_policy: domain.fault_policy,
                virtual_console: (self.console(d, state) == Console::Virtual).then_some(VIRTUAL_CONSOLE_IPA),
            };
            domains.push(plan).ok()?;
        }
        Some(Plan { board: self.board.name, domains })
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
        loop {
            let Some(end) = at.checked_add(size).filter(|&e| e <= bank_end) else { break };
            let candidate = Range::new(at, end - at);
            match taken.iter().filter(|t| t.overlaps(&candidate)).filter_map(|t| t.end()).max() {
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
