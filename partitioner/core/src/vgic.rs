//! The virtual GIC: the interrupt controller a domain sees.
//!
//! The physical GIC belongs to the partitioner. A domain's accesses to the
//! distributor (`GICD`, at [`VGICD_IPA`](crate::plan::VGICD_IPA)) and, on
//! GICv3, to its redistributors (`GICR`, at
//! [`VGICR_IPA`](crate::plan::VGICR_IPA)) trap to EL2, and so do its GICv3
//! SGI-generation system register writes. This module decides, as pure
//! logic, what every such access does; the firmware carries the decisions
//! out on the real GIC through the [`PhysGic`] trait and injects interrupts
//! through list registers encoded by [`lr`]. The CPU interface itself is not
//! emulated: on GICv3 the domain uses the `ICV_*` system registers, on
//! GICv2 the hardware GICV page mapped where its GICC would be.
//!
//! # What a domain sees
//!
//! | INTIDs | what they are | where their state lives |
//! |---|---|---|
//! | 0-15 (SGIs) | purely virtual, per vCPU | this model (enable, priority, pending per source) |
//! | 27 (PPI, virtual timer) | the physical PPI of the core running the vCPU | enable, pending, active in hardware (enable also mirrored here); priority virtual |
//! | other PPIs | do not exist: read as zero, writes ignored, never reported | - |
//! | 32-1019 (SPIs) | the physical SPI of the same number, only those of the domain's devices | hardware (pending, active, trigger, route); enable and route mirrored here; priority virtual |
//! | 33 (SPI 1), with a virtual console | the virtual console's interrupt, purely virtual | a [`VirtualLine`] the firmware keeps, reached through [`WithLine`] as if it were hardware |
//!
//! * **Ownership.** A domain sees and configures only the SPIs of its
//!   passthrough devices ([`Domain::owns`]). Every bit, byte or register of
//!   any other SPI reads as zero and ignores writes, and the [`PhysGic`] is
//!   never called for it. A *write* that tries to change one (sets a bit of
//!   it, writes a non-zero priority/target byte or addresses its byte on its
//!   own, writes its `IROUTER`) is reported in [`Outcome::foreign`]; reads
//!   are never reported, because a normal driver reads whole registers.
//!   Writing zeros back into the non-owned part of a register (a
//!   read-modify-write) is therefore silent.
//! * **Groups.** GICv3: the domain sees a single security state
//!   (`GICD_CTLR.DS` reads 1), affinity routing always on (`ARE` reads 1),
//!   everything it owns in group 1 (`IGROUPR` reads one for owned
//!   interrupts, writes are ignored), and list registers carry group 1.
//!   GICv2: everything is group 0 (`IGROUPR` reads zero), exactly as the
//!   physical GICv2 is set up; a GICv2 guest enables group 0 only
//!   (`GICC_CTLR.EnableGrp0`), and a group-0 virtual interrupt is an IRQ
//!   unless the guest sets `GICV_CTLR.FIQEn`.
//! * **Distributor enable.** `GICD_CTLR.EnableGrp1` (GICv3) /
//!   `GICD_CTLR.Enable` (GICv2) gates SGIs and SPIs: an owned SPI is enabled
//!   in hardware only while the guest has it enabled *and* its distributor
//!   on (and, on GICv2, a non-empty `ITARGETSR` byte), so an interrupt the
//!   domain does not want stays pending in hardware instead of being taken
//!   and dropped at EL2. PPIs are banked per core, and the GICv2 firmware can
//!   only reach the banked registers of the core it runs on, so the virtual
//!   timer PPI is gated by its own enable bit only.
//! * **Routing.** GICv3 `IROUTER<n>`: `Aff0 = n` with the other affinity
//!   fields zero routes to vCPU `n` ([`PhysGic::route`]); `IRM = 1` (any
//!   vCPU) is accepted, reads back as such, and routes to vCPU 0, which is a
//!   valid choice of "one of them"; any other value names a vCPU the domain
//!   does not have: reported, ignored. GICv2 `ITARGETSR` byte: bit `i` is
//!   vCPU `i`; the interrupt goes to the lowest selected vCPU; bits of
//!   vCPUs the domain does not have are reported and dropped; an empty byte
//!   keeps the interrupt from being forwarded at all. Reset route: vCPU 0.
//! * **Priorities.** Every priority a domain sees is virtual, with five
//!   implemented bits ([`PRIORITY_MASK`], the number a GICv2 list register
//!   holds): SGIs and PPIs per vCPU, owned SPIs per SPI. It is what the
//!   interrupt's list register carries, so it orders the domain's
//!   interrupts among themselves. It never reaches the physical GIC: there
//!   every interrupt of a domain keeps [`RESET_PRIORITY`] (set by
//!   [`VDistributor::reset`]), below the partitioner's own interrupts
//!   ([`PARTITIONER_PRIORITY`]: its kick SGI, the maintenance interrupt,
//!   its console's input, the IOMMU's events), so at every exit to EL2 on
//!   a domain's core those are acknowledged first, whatever the domain
//!   writes. (An SPI the domain took stays active until it ends it, so it
//!   cannot be pending at the next exit: a domain that could outrank the
//!   partitioner delayed its interrupts by an exit per such SPI, no more.)
//! * **SGIs.** [`VDistributor::sgi1r`] (GICv3 `ICC_SGI1R_EL1`, and
//!   `ICC_ASGI1R_EL1` / `ICC_SGI0R_EL1` alike, see [`SgiRegister`]) and a GICv2
//!   `GICD_SGIR` write (returned in [`Outcome::sgi`]) give an
//!   [`SgiRequest`] whose targets are only ever the domain's own vCPUs.
//!   Targets that have the SGI enabled (and their distributor on) are in
//!   [`SgiRequest::targets`]: the firmware queues a [`Virq`] for each now.
//!   The others are *latched* pending here, as a GIC keeps a disabled
//!   interrupt pending; so is an SGI pended through `GICR_ISPENDR0` /
//!   `GICD_SPENDSGIR`. Whenever latched SGIs become deliverable (enabled,
//!   distributor on, pended), the write's [`Outcome::sgi_ready`] names the
//!   vCPUs concerned and the firmware drains them with
//!   [`VDistributor::take_sgi`]. Pending bits of SGIs read back the latched
//!   state only (an SGI already in a list register is the CPU interface's
//!   business), and SGI active bits read as zero.
//! * **Redistributors (GICv3).** One RD_base + SGI_base pair per vCPU, at
//!   `VGICR_IPA + n * VGICR_STRIDE`; `GICR_TYPER` gives the vCPU's virtual
//!   affinity (`Aff0 = n`), processor number `n` and `Last` on the final
//!   vCPU; a frame past the last vCPU is foreign. `GICR_WAKER.ProcessorSleep`
//!   is writable and `ChildrenAsleep` follows it at once. No LPIs.
//! * **Identification.** `GICD_PIDR2`/`GICR_PIDR2` (at 0xffe8, and on
//!   GICv2 also at 0xfe8, where a GICv2's 4 KiB distributor has it) report
//!   architecture revision 2 or 3 in bits 7:4. `GICD_IIDR`/`GICR_IIDR` are [`IIDR`]:
//!   product 0x42 ('B'), variant and revision 0, no JEP106 implementer, so it
//!   matches no erratum workaround of any guest. `GICD_TYPER.ITLinesNumber`
//!   covers at least 256 SPIs and always the highest one the domain owns.
//! * **Access sizes.** Registers are 32-bit; `IPRIORITYR`, `ITARGETSR`,
//!   `CPENDSGIR` and `SPENDSGIR` are also byte-accessible; `IROUTER` and
//!   `GICR_TYPER` are 64-bit or two 32-bit halves. Any other size,
//!   misalignment or unmodelled offset reads as zero and ignores writes
//!   (never reported).
//!
//! Nothing here panics on any guest value: offsets, sizes and values are all
//! decoded with bounds-checked arithmetic.
//!
//! # Banked registers on GICv2
//!
//! The GICv2 distributor banks INTIDs 0-31 per CPU; the firmware can touch
//! only the banks of the core it runs on. The model therefore only ever
//! passes `Some(vcpu)` for a PPI on GICv2 when `vcpu` is the calling vCPU, and
//! [`VDistributor::reset`] leaves the PPIs of a GICv2 domain to
//! [`VDistributor::reset_vcpu`], which the firmware calls on each vCPU's
//! own core when the vCPU starts. On GICv3 any redistributor can be reached
//! from any core and `Some(vcpu)` means "the redistributor of the core that
//! runs `vcpu`".
//!
//! # API
//!
//! ```text
//! Domain::new(version, &DomainPlan) -> Domain      what the domain owns
//! Domain::with_spis(version, vcpus, &[spi]) -> Domain
//! Domain::owns(intid) -> bool
//! trait PhysGic { set_enabled/enabled, set_pending/pending, set_active/active,
//!                 set_priority/priority, set_edge/edge, route }
//! VDistributor::new(&Domain)
//!   .read(dom, phys, vcpu, offset, size) -> Outcome          GICD access
//!   .write(dom, phys, vcpu, offset, size, value) -> Outcome
//!   .read_redist(..)/.write_redist(..) -> Outcome            GICR access (offset from VGICR_IPA)
//!   .sgi1r(dom, sender, value) -> SgiRequest                 ICC_SGI1R_EL1 write
//!   .take_sgi(dom, vcpu) -> Option<Virq>                     drain latched SGIs
//!   .pend_sgi(dom, vcpu, intid, source); .sgi_ready(dom) -> u8
//!   .sgi_fast_state(dom, vcpu) -> (u16, [u8; 16])            for the SGI fast path (`vsgi`)
//!   .deliverable(dom, phys, vcpu, intid) -> bool; .priority(..) -> u8
//!   .reset(dom, phys); .reset_vcpu(dom, phys, vcpu)
//! PendingIrqs::new().push(Virq)/.pop()/.peek()/.remove(intid)/.clear()
//! lr(version, &Virq, Deactivation) -> u64; lr_v3; lr_v2; lr_is_free(_v3/_v2);
//! lr_physical(version, lr) -> Option<u32>; lr_holds_physical(version, lr, intid) -> bool
//! lr_match(version, lr, &Virq, via_hcr) -> LrMatch
//! lr_pending(version, lr) -> bool
//! SgiRegister::decode((op0, op1, CRn, CRm, op2)) -> Option<SgiRegister>
//! ```

use crate::plan::{
    DomainPlan, GicVersion, MAX_CPUS, MAX_DEVICES, MAX_IRQS, VGICR_STRIDE, VTIMER_INTID,
};
use core::fmt;

/// First SPI INTID.
pub const FIRST_SPI: u32 = 32;
/// First INTID that is not an interrupt (1020-1023 are special).
pub const INTID_LIMIT: u32 = 1020;

/// The GICv3 CPU interface registers that generate SGIs. All three have the
/// layout of `ICC_SGI1R_EL1` and are handled alike by
/// [`VDistributor::sgi1r`]: a domain has one group of interrupts (group 1,
/// see the module docs), so an SGI of either group reaches its own target
/// vCPUs as that group's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SgiRegister {
    /// `ICC_SGI1R_EL1`, `S3_0_C12_C11_5`.
    Sgi1r,
    /// `ICC_ASGI1R_EL1`, `S3_0_C12_C11_6` (the other Security state's
    /// group 1; with one Security state, group 1 as well).
    Asgi1r,
    /// `ICC_SGI0R_EL1`, `S3_0_C12_C11_7`.
    Sgi0r,
}

impl SgiRegister {
    /// The register a trapped `MSR`/`MRS` names, from its encoding (op0,
    /// op1, CRn, CRm, op2); `None` for any other register.
    pub fn decode(enc: (u8, u8, u8, u8, u8)) -> Option<Self> {
        match enc {
            (3, 0, 12, 11, 5) => Some(Self::Sgi1r),
            (3, 0, 12, 11, 6) => Some(Self::Asgi1r),
            (3, 0, 12, 11, 7) => Some(Self::Sgi0r),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Sgi1r => "ICC_SGI1R_EL1",
            Self::Asgi1r => "ICC_ASGI1R_EL1",
            Self::Sgi0r => "ICC_SGI0R_EL1",
        }
    }
}
/// Number of SGIs.
const SGIS: usize = 16;
/// SGI bits of a banked (INTID 0-31) bit register.
const SGI_BITS: u32 = 0xffff;
/// The PPIs a domain has, as bits of a banked register: the virtual timer.
pub const DOMAIN_PPIS: u32 = 1 << VTIMER_INTID;
/// Priority of every interrupt of a domain after reset (virtual), and the
/// physical priority every interrupt of a domain keeps (the partitioner's
/// default for physical interrupts): a domain's priority writes are
/// virtual only.
pub const RESET_PRIORITY: u8 = 0xa0;
/// Physical priority of the partitioner's own interrupts (its kick SGI,
/// the maintenance interrupt, its console's input, the IOMMU's events):
/// higher than [`RESET_PRIORITY`], so that at every exit to EL2 they are
/// taken before any interrupt of the domain running there. Distinct from
/// it in the top four bits, the fewest a GIC implements.
pub const PARTITIONER_PRIORITY: u8 = 0x80;
const _: () = assert!(PARTITIONER_PRIORITY >> 4 < RESET_PRIORITY >> 4);
/// Implemented bits of virtual priorities (SGIs, PPIs and SPIs alike).
pub const PRIORITY_MASK: u8 = 0xf8;
/// `GICD_IIDR` / `GICR_IIDR`: ProductID 0x42 ('B' for Bulkhead), variant 0,
/// revision 0, implementer 0 (no JEP106 vendor).
pub const IIDR: u32 = 0x4200_0000;
/// `GICD_TYPER.IDbits` of the GICv3 view: 10 INTID bits (no LPIs).
const TYPER_IDBITS: u32 = 9;
/// Minimum `GICD_TYPER.ITLinesNumber` reported: 256 SPIs.
const MIN_IT_LINES: u32 = 8;

/// Register offsets of the distributor and redistributor frames.
pub mod regs {
    pub const GICD_CTLR: u64 = 0x000;
    pub const GICD_TYPER: u64 = 0x004;
    pub const GICD_IIDR: u64 = 0x008;
    pub const GICD_IGROUPR: u64 = 0x080;
    pub const GICD_ISENABLER: u64 = 0x100;
    pub const GICD_ICENABLER: u64 = 0x180;
    pub const GICD_ISPENDR: u64 = 0x200;
    pub const GICD_ICPENDR: u64 = 0x280;
    pub const GICD_ISACTIVER: u64 = 0x300;
    pub const GICD_ICACTIVER: u64 = 0x380;
    pub const GICD_IPRIORITYR: u64 = 0x400;
    pub const GICD_ITARGETSR: u64 = 0x800;
    pub const GICD_ICFGR: u64 = 0xc00;
    pub const GICD_SGIR: u64 = 0xf00;
    pub const GICD_CPENDSGIR: u64 = 0xf10;
    pub const GICD_SPENDSGIR: u64 = 0xf20;
    pub const GICD_IROUTER: u64 = 0x6000;
    pub const GICD_PIDR2: u64 = 0xffe8;
    /// Where a GICv2's 4 KiB distributor has its `GICD_PIDR2`.
    pub const GICD_PIDR2_V2: u64 = 0xfe8;
    /// RD_base frame.
    pub const GICR_CTLR: u64 = 0x0;
    pub const GICR_IIDR: u64 = 0x4;
    pub const GICR_TYPER: u64 = 0x8;
    pub const GICR_WAKER: u64 = 0x14;
    pub const GICR_PIDR2: u64 = 0xffe8;
    /// SGI_base frame, from the RD_base frame; its registers for INTIDs
    /// 0-31 sit at the distributor's offsets (`GICR_ISENABLER0` at
    /// `GICR_SGI_BASE + GICD_ISENABLER`, ...).
    pub const GICR_SGI_BASE: u64 = 0x1_0000;
}
use regs::*;

/// `GICD_CTLR` bits of the GICv3 view (single security state).
const CTLR_ENABLE_GRP0: u32 = 1 << 0;
const CTLR_ENABLE_GRP1: u32 = 1 << 1;
const CTLR_ARE: u32 = 1 << 4;
const CTLR_DS: u32 = 1 << 6;
/// `GICR_WAKER` bits.
const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
/// `GICD_IROUTER`: IRM, and every defined bit (Aff3, IRM, Aff2, Aff1, Aff0).
const IROUTER_IRM: u64 = 1 << 31;
const IROUTER_BITS: u64 = 0xff_80ff_ffff;
/// Stored route of a GICv3 SPI with `IRM = 1`.
const ROUTE_ANY: u8 = 0xff;

/// Bit `v` of a vCPU bitmask (0 if `v` cannot be a vCPU).
fn vbit(v: usize) -> u8 {
    u32::try_from(v)
        .ok()
        .and_then(|v| 1u8.checked_shl(v))
        .unwrap_or(0)
}

/// The set bits of a word, lowest first.
struct Bits(u32);

impl Iterator for Bits {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        if self.0 == 0 {
            return None;
        }
        let b = self.0.trailing_zeros();
        self.0 &= self.0 - 1;
        Some(b)
    }
}

/// A set of INTIDs 0-1023, as a bitmap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IntidSet {
    words: [u32; 32],
}

impl IntidSet {
    pub const fn new() -> Self {
        Self { words: [0; 32] }
    }
    pub fn contains(&self, intid: u32) -> bool {
        self.word(intid as usize / 32) & (1 << (intid % 32)) != 0
    }
    /// Adds `intid` (ignored past 1023).
    pub fn insert(&mut self, intid: u32) {
        if let Some(w) = self.words.get_mut(intid as usize / 32) {
            *w |= 1 << (intid % 32);
        }
    }
    pub fn remove(&mut self, intid: u32) {
        if let Some(w) = self.words.get_mut(intid as usize / 32) {
            *w &= !(1 << (intid % 32));
        }
    }
    /// INTIDs `32 * index .. 32 * index + 32` as bits (0 past the end).
    pub fn word(&self, index: usize) -> u32 {
        self.words.get(index).copied().unwrap_or(0)
    }
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }
    /// Every INTID in the set, in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.words
            .iter()
            .zip(0u32..)
            .flat_map(|(&w, i)| Bits(w).map(move |b| i * 32 + b))
    }
}

/// What the virtual GIC of one domain is made of: its GIC generation, its
/// vCPUs and the SPIs it owns. Built once from the domain's plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Domain {
    pub version: GicVersion,
    /// Number of vCPUs (at most [`MAX_CPUS`]); vCPU `n` has virtual MPIDR
    /// `Aff0 = n`.
    pub vcpus: usize,
    /// INTIDs of the SPIs of the domain's passthrough devices (32-1019 only).
    pub owned_spis: IntidSet,
}

impl Domain {
    /// The domain `plan` describes, on a GIC of generation `version`: its
    /// devices' SPIs, and its virtual console's
    /// ([`crate::plan::VIRTUAL_CONSOLE_SPI`], a [`VirtualLine`]) if it has one.
    pub fn new(version: GicVersion, plan: &DomainPlan) -> Self {
        let mut dom = Self::with_spis(version, plan.cpus.len(), &[]);
        for spi in plan.devices.iter().flat_map(|d| d.spis.iter()) {
            dom.add_spi(*spi);
        }
        if plan.virtual_console.is_some() {
            dom.add_spi(crate::plan::VIRTUAL_CONSOLE_SPI);
        }
        dom
    }

    /// A domain with `vcpus` vCPUs owning SPI numbers `spis` (INTID - 32).
    pub fn with_spis(version: GicVersion, vcpus: usize, spis: &[u32]) -> Self {
        let mut dom = Self {
            version,
            vcpus: vcpus.min(MAX_CPUS),
            owned_spis: IntidSet::new(),
        };
        for &spi in spis {
            dom.add_spi(spi);
        }
        dom
    }

    fn add_spi(&mut self, spi: u32) {
        if let Some(intid) = spi.checked_add(FIRST_SPI).filter(|&i| i < INTID_LIMIT) {
            self.owned_spis.insert(intid);
        }
    }

    /// Whether `intid` is one of the domain's SPIs.
    pub fn owns(&self, intid: u32) -> bool {
        (FIRST_SPI..INTID_LIMIT).contains(&intid) && self.owned_spis.contains(intid)
    }

    /// Whether the domain has vCPU `vcpu`.
    pub fn has_vcpu(&self, vcpu: usize) -> bool {
        vcpu < self.vcpus.min(MAX_CPUS)
    }

    /// Bitmask of the domain's vCPUs.
    pub fn vcpu_mask(&self) -> u8 {
        (0..self.vcpus.min(MAX_CPUS)).fold(0, |m, v| m | vbit(v))
    }

    /// Owned SPIs among INTIDs `32 * index ..`, as bits.
    fn owned_word(&self, index: usize) -> u32 {
        let real = match index {
            0 => 0,
            31 => 0x0fff_ffff,
            _ => !0,
        };
        self.owned_spis.word(index) & real
    }

    /// `GICD_TYPER.ITLinesNumber`: at least 256 SPIs, and the highest owned one.
    pub fn it_lines_number(&self) -> u32 {
        let highest = self.owned_spis.iter().filter(|&i| self.owns(i)).max();
        highest.map_or(MIN_IT_LINES, |h| (h / 32).max(MIN_IT_LINES))
    }

    fn v3(&self) -> bool {
        self.version == GicVersion::V3
    }
}

/// The physical distributor and redistributors, as the model uses them.
/// The firmware implements it over MMIO, translating vCPUs to the physical
/// cores behind them; tests use a mock.
///
/// `vcpu` is `None` for SPIs and `Some(n)` for SGIs/PPIs, meaning the banked
/// registers of the core running vCPU `n` (its redistributor on GICv3). On
/// GICv2 the model only passes the calling vCPU (see the module docs).
pub trait PhysGic {
    fn set_enabled(&mut self, intid: u32, vcpu: Option<usize>, on: bool);
    fn enabled(&self, intid: u32, vcpu: Option<usize>) -> bool;
    fn set_pending(&mut self, intid: u32, vcpu: Option<usize>, on: bool);
    fn pending(&self, intid: u32, vcpu: Option<usize>) -> bool;
    fn set_active(&mut self, intid: u32, vcpu: Option<usize>, on: bool);
    fn active(&self, intid: u32, vcpu: Option<usize>) -> bool;
    fn set_priority(&mut self, intid: u32, vcpu: Option<usize>, prio: u8);
    fn priority(&self, intid: u32, vcpu: Option<usize>) -> u8;
    /// Edge-triggered (true) or level-sensitive (false). The physical
    /// register is shared with other domains' interrupts: the implementation
    /// must change only `intid`'s field, excluding other cores'
    /// read-modify-writes of the same register.
    fn set_edge(&mut self, intid: u32, vcpu: Option<usize>, edge: bool);
    fn edge(&self, intid: u32, vcpu: Option<usize>) -> bool;
    /// Route SPI `intid` to the physical core running `vcpu` (`IROUTER` /
    /// `ITARGETSR`).
    fn route(&mut self, intid: u32, vcpu: usize);
}

/// A purely virtual, level-sensitive SPI (the virtual console's): the state
/// the physical GIC holds for a passthrough SPI (enable, pending latch,
/// active, priority, trigger, route) is kept here instead, so the virtual
/// distributor model treats it exactly like an owned SPI through
/// [`WithLine`], and no physical interrupt is ever touched for it. The
/// device drives its input [`VirtualLine::set_level`]; the firmware injects
/// it as a software interrupt ([`Virq::hw`] false) on the vCPU it is routed
/// to whenever [`VirtualLine::delivery`] says so, and withdraws what is still
/// waiting when the line drops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtualLine {
    /// Its INTID.
    pub intid: u32,
    /// The "hardware" enable the model keeps equal to its forwarding
    /// decision (guest enable, distributor on, GICv2 targets).
    enabled: bool,
    /// Pended by the guest (`ISPENDR`), until delivered or cleared.
    latched: bool,
    active: bool,
    edge: bool,
    /// vCPU it is routed to.
    vcpu: usize,
    /// The device's output.
    level: bool,
}

impl VirtualLine {
    pub const fn new(intid: u32) -> Self {
        Self {
            intid,
            enabled: false,
            latched: false,
            active: false,
            edge: false,
            vcpu: 0,
            level: false,
        }
    }

    /// The device raised (true) or lowered its interrupt output.
    pub fn set_level(&mut self, level: bool) {
        self.level = level;
    }

    pub fn level(&self) -> bool {
        self.level
    }

    /// Whether it should be pending for its vCPU now: enabled, and the line
    /// high or pended by the guest. `Some(vcpu)` to inject (taking the
    /// guest's pend, which one delivery consumes), at the priority
    /// [`VDistributor::priority`] gives (virtual, like every SPI's).
    pub fn delivery(&mut self) -> Option<usize> {
        if !self.enabled || !(self.level || self.latched) {
            return None;
        }
        self.latched = false;
        Some(self.vcpu)
    }

    /// The vCPU it is routed to.
    pub fn vcpu(&self) -> usize {
        self.vcpu
    }
}

/// A [`PhysGic`] whose calls for one [`VirtualLine`]'s INTID go to that
/// line's state, and all others to `phys`.
pub struct WithLine<'a> {
    pub phys: &'a mut dyn PhysGic,
    pub line: &'a mut VirtualLine,
}

impl PhysGic for WithLine<'_> {
    fn set_enabled(&mut self, intid: u32, vcpu: Option<usize>, on: bool) {
        if intid == self.line.intid {
            self.line.enabled = on;
        } else {
            self.phys.set_enabled(intid, vcpu, on)
        }
    }
    fn enabled(&self, intid: u32, vcpu: Option<usize>) -> bool {
        if intid == self.line.intid {
            self.line.enabled
        } else {
            self.phys.enabled(intid, vcpu)
        }
    }
    fn set_pending(&mut self, intid: u32, vcpu: Option<usize>, on: bool) {
        if intid == self.line.intid {
            self.line.latched = on;
        } else {
            self.phys.set_pending(intid, vcpu, on)
        }
    }
    fn pending(&self, intid: u32, vcpu: Option<usize>) -> bool {
        if intid == self.line.intid {
            self.line.latched || self.line.level
        } else {
            self.phys.pending(intid, vcpu)
        }
    }
    fn set_active(&mut self, intid: u32, vcpu: Option<usize>, on: bool) {
        if intid == self.line.intid {
            self.line.active = on;
        } else {
            self.phys.set_active(intid, vcpu, on)
        }
    }
    fn active(&self, intid: u32, vcpu: Option<usize>) -> bool {
        if intid == self.line.intid {
            self.line.active
        } else {
            self.phys.active(intid, vcpu)
        }
    }
    /// The line has no physical priority (its virtual one is the model's).
    fn set_priority(&mut self, intid: u32, vcpu: Option<usize>, prio: u8) {
        if intid != self.line.intid {
            self.phys.set_priority(intid, vcpu, prio)
        }
    }
    fn priority(&self, intid: u32, vcpu: Option<usize>) -> u8 {
        if intid == self.line.intid {
            RESET_PRIORITY
        } else {
            self.phys.priority(intid, vcpu)
        }
    }
    fn set_edge(&mut self, intid: u32, vcpu: Option<usize>, edge: bool) {
        if intid == self.line.intid {
            self.line.edge = edge;
        } else {
            self.phys.set_edge(intid, vcpu, edge)
        }
    }
    fn edge(&self, intid: u32, vcpu: Option<usize>) -> bool {
        if intid == self.line.intid {
            self.line.edge
        } else {
            self.phys.edge(intid, vcpu)
        }
    }
    fn route(&mut self, intid: u32, vcpu: usize) {
        if intid == self.line.intid {
            self.line.vcpu = vcpu;
        } else {
            self.phys.route(intid, vcpu)
        }
    }
}

/// Which trapped window an access was in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    Distributor,
    /// GICv3 redistributor frames (offsets from `VGICR_IPA`).
    Redistributors,
}

/// What a foreign access tried to touch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Touched {
    /// An interrupt the domain does not own (the first one in the access).
    Interrupt(u32),
    /// A route (`IROUTER` value, `ITARGETSR` byte) naming vCPUs the domain
    /// does not have.
    Route(u64),
    /// An SGI (the register value) naming targets the domain does not have.
    SgiTargets(u64),
    /// The redistributor frame of a vCPU the domain does not have.
    Vcpu(u64),
}

/// An access to something the domain does not own. It was ignored; the
/// firmware reports the first one of each domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Foreign {
    pub region: Region,
    /// Offset of the access in its window.
    pub offset: u64,
    pub write: bool,
    pub what: Touched,
}

impl fmt::Display for Foreign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let region = match self.region {
            Region::Distributor => "distributor",
            Region::Redistributors => "redistributor",
        };
        let access = if self.write { "write" } else { "read" };
        write!(f, "{region} {access} at offset {:#x}: ", self.offset)?;
        match self.what {
            Touched::Interrupt(i) => write!(f, "INTID {}", u64::from(i)),
            Touched::Route(v) => write!(f, "route {v:#x} names vCPUs the domain does not have"),
            Touched::SgiTargets(v) => {
                write!(f, "SGI {v:#x} names vCPUs the domain does not have")
            }
            Touched::Vcpu(n) => write!(
                f,
                "redistributor of vCPU {n}, which the domain does not have"
            ),
        }
    }
}

/// Virtual SGIs a domain raised.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SgiRequest {
    /// SGI INTID, 0-15.
    pub intid: u32,
    /// vCPUs (bit `n` = vCPU `n`, only the domain's) to inject it into now:
    /// the firmware queues a [`Virq`] for each.
    pub targets: u8,
    /// vCPUs for which it was latched pending in the model (SGI disabled or
    /// distributor off); they come out of [`VDistributor::take_sgi`] once
    /// deliverable.
    pub latched: u8,
    /// The request named vCPUs the domain does not have (dropped).
    pub foreign: bool,
    /// The SGI's priority on each vCPU in `targets` (bit `n`: index `n`),
    /// read with the rest, so delivery needs no second look at the model.
    pub priorities: [u8; 8],
}

/// The result of an emulated distributor or redistributor access.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Value of a read (zero-extended to the access size; 0 for writes).
    pub value: u64,
    /// The access tried to touch something the domain does not own.
    pub foreign: Option<Foreign>,
    /// GICv2 `GICD_SGIR` write: the SGIs to deliver.
    pub sgi: Option<SgiRequest>,
    /// vCPUs that have latched SGIs ready to deliver: the firmware drains
    /// each with [`VDistributor::take_sgi`] (on any core) and queues them.
    pub sgi_ready: u8,
}

/// The access kinds a register accepts.
fn word(offset: u64, size: u8) -> bool {
    size == 4 && offset.is_multiple_of(4)
}

fn bytes_ok(offset: u64, size: u8) -> bool {
    size == 1 || word(offset, size)
}

fn dword_ok(offset: u64, size: u8) -> bool {
    (size == 8 && offset.is_multiple_of(8)) || word(offset, size)
}

fn size_mask(size: u8) -> u64 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => !0,
    }
}

/// The bit-per-interrupt register banks, 0x080-0x3ff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bank {
    Group,
    SetEnable,
    ClearEnable,
    SetPending,
    ClearPending,
    SetActive,
    ClearActive,
}

/// The bank and register index of a bit register offset.
fn bit_bank(offset: u64) -> Option<(Bank, usize)> {
    let rel = offset.checked_sub(GICD_IGROUPR)?;
    let bank = match rel / 0x80 {
        0 => Bank::Group,
        1 => Bank::SetEnable,
        2 => Bank::ClearEnable,
        3 => Bank::SetPending,
        4 => Bank::ClearPending,
        5 => Bank::SetActive,
        6 => Bank::ClearActive,
        _ => return None,
    };
    Some((bank, ((rel % 0x80) / 4) as usize))
}

/// Collects the first foreign part of one access.
struct Note {
    region: Region,
    offset: u64,
    write: bool,
    first: Option<Foreign>,
}

impl Note {
    fn new(region: Region, offset: u64, write: bool) -> Self {
        Self {
            region,
            offset,
            write,
            first: None,
        }
    }
    fn foreign(&mut self, what: Touched) {
        if self.first.is_none() {
            self.first = Some(Foreign {
                region: self.region,
                offset: self.offset,
                write: self.write,
                what,
            });
        }
    }
}

/// Banked (INTID 0-31) state of one vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct VCpu {
    sgi_enabled: u16,
    /// Enabled PPIs (bits of [`DOMAIN_PPIS`]), mirrored in hardware.
    ppi_enabled: u32,
    /// Virtual priorities of SGIs and PPIs.
    priority: [u8; 32],
    /// Latched pending SGIs: per SGI, the source vCPUs (GICv2) or bit 0
    /// (GICv3, which does not track sources).
    sgi_pending: [u8; SGIS],
    /// `GICR_WAKER.ProcessorSleep`.
    asleep: bool,
}

impl VCpu {
    const RESET: Self = Self {
        sgi_enabled: 0,
        ppi_enabled: 0,
        priority: [RESET_PRIORITY; 32],
        sgi_pending: [0; SGIS],
        asleep: true,
    };

    fn pending_sgis(&self) -> u16 {
        self.sgi_pending
            .iter()
            .zip(0u32..)
            .fold(0, |m, (&p, i)| if p != 0 { m | (1 << i) } else { m })
    }
}

/// One domain's virtual distributor (and GICv3 redistributors): the state
/// the hardware cannot hold for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VDistributor {
    /// `GICD_CTLR` enable bits (bits 1:0).
    ctlr: u32,
    /// Owned SPIs the guest has enabled (the hardware enable is this and
    /// the distributor enable, see [`VDistributor::forwarding`]).
    enabled: IntidSet,
    /// Per SPI: GICv3 the vCPU it is routed to or [`ROUTE_ANY`]; GICv2 its
    /// `ITARGETSR` byte.
    route: [u8; 1024],
    /// Per SPI: its virtual priority (see the module docs: the physical
    /// one stays [`RESET_PRIORITY`]).
    spi_priority: [u8; 1024],
    cpu: [VCpu; MAX_CPUS],
}

impl VDistributor {
    /// Reset state, without touching hardware: call [`Self::reset`] before
    /// the domain runs.
    pub fn new(dom: &Domain) -> Self {
        Self {
            ctlr: 0,
            enabled: IntidSet::new(),
            route: [Self::reset_route(dom); 1024],
            spi_priority: [RESET_PRIORITY; 1024],
            cpu: [VCpu::RESET; MAX_CPUS],
        }
    }

    fn reset_route(dom: &Domain) -> u8 {
        if dom.v3() {
            0
        } else {
            vbit(0)
        }
    }

    /// Whether the guest has its distributor on (the group its interrupts
    /// are in: 1 on GICv3, 0 on GICv2).
    fn dist_enabled(&self, dom: &Domain) -> bool {
        let bit = if dom.v3() {
            CTLR_ENABLE_GRP1
        } else {
            CTLR_ENABLE_GRP0
        };
        self.ctlr & bit != 0
    }

    /// Whether owned SPI `intid` may reach the domain: enabled by the guest,
    /// distributor on, and (GICv2) targeting some vCPU. The hardware enable
    /// of the SPI always equals this.
    fn forwarding(&self, dom: &Domain, intid: u32) -> bool {
        dom.owns(intid)
            && self.enabled.contains(intid)
            && self.dist_enabled(dom)
            && (dom.v3() || self.route_of(intid) != 0)
    }

    fn route_of(&self, intid: u32) -> u8 {
        self.route.get(intid as usize).copied().unwrap_or(0)
    }

    fn set_route(&mut self, intid: u32, r: u8) {
        if let Some(x) = self.route.get_mut(intid as usize) {
            *x = r;
        }
    }

    /// Virtual priority of SPI `intid` (0 past the end).
    fn spi_priority_of(&self, intid: u32) -> u8 {
        self.spi_priority.get(intid as usize).copied().unwrap_or(0)
    }

    fn sync_spi(&self, dom: &Domain, phys: &mut dyn PhysGic, intid: u32) {
        if dom.owns(intid) {
            phys.set_enabled(intid, None, self.forwarding(dom, intid));
        }
    }

    // ----- distributor -----------------------------------------------------

    /// A read of `size` bytes at `offset` in the distributor by `vcpu`.
    pub fn read(
        &mut self,
        dom: &Domain,
        phys: &mut dyn PhysGic,
        vcpu: usize,
        offset: u64,
        size: u8,
    ) -> Outcome {
        let mut out = Outcome::default();
        if dom.has_vcpu(vcpu) {
            out.value = self.dist_read(dom, phys, vcpu, offset, size) & size_mask(size);
        }
        out
    }

    fn dist_read(
        &self,
        dom: &Domain,
        phys: &dyn PhysGic,
        vcpu: usize,
        offset: u64,
        size: u8,
    ) -> u64 {
        let v3 = dom.v3();
        match offset {
            GICD_IPRIORITYR..GICD_ITARGETSR if bytes_ok(offset, size) => {
                self.bytes(offset, size, |o| self.dist_priority(dom, vcpu, o))
            }
            GICD_ITARGETSR..GICD_ICFGR if !v3 && bytes_ok(offset, size) => {
                self.bytes(offset, size, |o| self.targets_byte(dom, vcpu, o))
            }
            GICD_CPENDSGIR..0xf30 if !v3 && bytes_ok(offset, size) => {
                self.bytes(offset, size, |o| {
                    let sgi = ((o - GICD_CPENDSGIR) % 0x10) as usize;
                    self.sgi_sources(dom, vcpu, sgi)
                })
            }
            0x6000..0x8000 if v3 && dword_ok(offset, size) => self.irouter_read(dom, offset, size),
            _ if !word(offset, size) => 0,
            GICD_CTLR => {
                let fixed = if v3 { CTLR_ARE | CTLR_DS } else { 0 };
                u64::from(self.ctlr | fixed)
            }
            GICD_TYPER => u64::from(self.typer(dom)),
            GICD_IIDR => u64::from(IIDR),
            GICD_IGROUPR..GICD_IPRIORITYR => match bit_bank(offset) {
                Some((bank, 0)) if !v3 => u64::from(self.banked_bits(dom, phys, vcpu, bank)),
                Some((bank, r)) if r > 0 => u64::from(self.spi_bits(dom, phys, r, bank)),
                _ => 0,
            },
            GICD_ICFGR..0xd00 => u64::from(self.icfgr_read(dom, phys, offset)),
            GICD_PIDR2 => {
                if v3 {
                    0x30
                } else {
                    0x20
                }
            }
            GICD_PIDR2_V2 if !v3 => 0x20,
            _ => 0,
        }
    }

    /// Assemble a byte-accessible register from per-byte values.
    fn bytes(&self, offset: u64, size: u8, byte: impl Fn(u64) -> u8) -> u64 {
        (0..u64::from(size)).fold(0, |v, k| v | u64::from(byte(offset + k)) << (8 * k))
    }

    fn typer(&self, dom: &Domain) -> u32 {
        let lines = dom.it_lines_number() & 0x1f;
        if dom.v3() {
            lines | (TYPER_IDBITS << 19)
        } else {
            let cpus = (dom.vcpus.clamp(1, MAX_CPUS) - 1) as u32;
            lines | (cpus << 5)
        }
    }

    /// Bits of SPI register `index` (1-31) of `bank`.
    fn spi_bits(&self, dom: &Domain, phys: &dyn PhysGic, index: usize, bank: Bank) -> u32 {
        let owned = dom.owned_word(index);
        let base = index as u32 * 32;
        Bits(owned)
            .filter(|&b| {
                let intid = base + b;
                match bank {
                    Bank::Group => dom.v3(),
                    Bank::SetEnable | Bank::ClearEnable => self.enabled.contains(intid),
                    Bank::SetPending | Bank::ClearPending => phys.pending(intid, None),
                    Bank::SetActive | Bank::ClearActive => phys.active(intid, None),
                }
            })
            .fold(0, |v, b| v | (1 << b))
    }

    /// Bits of the banked register of `bank` for vCPU `t` (INTIDs 0-31).
    fn banked_bits(&self, dom: &Domain, phys: &dyn PhysGic, t: usize, bank: Bank) -> u32 {
        let Some(c) = self.cpu.get(t).filter(|_| dom.has_vcpu(t)) else {
            return 0;
        };
        match bank {
            Bank::Group => {
                if dom.v3() {
                    SGI_BITS | DOMAIN_PPIS
                } else {
                    0
                }
            }
            Bank::SetEnable | Bank::ClearEnable => u32::from(c.sgi_enabled) | c.ppi_enabled,
            Bank::SetPending | Bank::ClearPending => Bits(DOMAIN_PPIS)
                .filter(|&p| phys.pending(p, Some(t)))
                .fold(u32::from(c.pending_sgis()), |v, p| v | (1 << p)),
            Bank::SetActive | Bank::ClearActive => Bits(DOMAIN_PPIS)
                .filter(|&p| phys.active(p, Some(t)))
                .fold(0, |v, p| v | (1 << p)),
        }
    }

    /// Priority byte at distributor offset `o` (in the IPRIORITYR range).
    fn dist_priority(&self, dom: &Domain, vcpu: usize, o: u64) -> u8 {
        let intid = (o - GICD_IPRIORITYR) as u32;
        if intid < FIRST_SPI {
            if dom.v3() {
                0
            } else {
                self.banked_priority(vcpu, intid)
            }
        } else if dom.owns(intid) {
            self.spi_priority_of(intid)
        } else {
            0
        }
    }

    // Inlined as before: the SGI path (`raise_sgi`) calls it.
    #[inline(always)]
    fn banked_priority(&self, t: usize, intid: u32) -> u8 {
        let exists = intid < SGIS as u32 || DOMAIN_PPIS & (1 << (intid % 32)) != 0;
        match self.cpu.get(t) {
            Some(c) if exists => c.priority.get(intid as usize).copied().unwrap_or(0),
            _ => 0,
        }
    }

    /// GICv2 `ITARGETSR` byte at offset `o`.
    fn targets_byte(&self, dom: &Domain, vcpu: usize, o: u64) -> u8 {
        let intid = (o - GICD_ITARGETSR) as u32;
        if intid < FIRST_SPI {
            // Banked, read-only: the reading CPU, for interrupts that exist.
            let exists = intid < SGIS as u32 || DOMAIN_PPIS & (1 << intid) != 0;
            if exists {
                vbit(vcpu)
            } else {
                0
            }
        } else if dom.owns(intid) {
            self.route_of(intid)
        } else {
            0
        }
    }

    /// GICv2 `SPENDSGIR`/`CPENDSGIR` byte: sources of latched SGI `sgi` of `vcpu`.
    fn sgi_sources(&self, dom: &Domain, vcpu: usize, sgi: usize) -> u8 {
        self.cpu
            .get(vcpu)
            .and_then(|c| c.sgi_pending.get(sgi))
            .map_or(0, |&s| s & dom.vcpu_mask())
    }

    fn icfgr_read(&self, dom: &Domain, phys: &dyn PhysGic, offset: u64) -> u32 {
        let index = ((offset - GICD_ICFGR) / 4) as u32;
        match index {
            // SGIs: edge, read-only (GICv2 banked; GICv3 lives in the redistributor).
            0 => {
                if dom.v3() {
                    0
                } else {
                    0xaaaa_aaaa
                }
            }
            // PPIs: the virtual timer is level-sensitive; read-only.
            1 => 0,
            _ => (0..16u32)
                .filter(|&i| {
                    let intid = index * 16 + i;
                    dom.owns(intid) && phys.edge(intid, None)
                })
                .fold(0, |v, i| v | (2 << (2 * i))),
        }
    }

    fn irouter_value(&self, dom: &Domain, intid: u32) -> u64 {
        if !dom.owns(intid) {
            return 0;
        }
        match self.route_of(intid) {
            ROUTE_ANY => IROUTER_IRM,
            v => u64::from(v),
        }
    }

    fn irouter_read(&self, dom: &Domain, offset: u64, size: u8) -> u64 {
        let intid = ((offset - GICD_IROUTER) / 8) as u32;
        let v = self.irouter_value(dom, intid);
        if size == 4 && offset % 8 == 4 {
            v >> 32
        } else {
            v
        }
    }

    /// A write of `size` bytes of `value` at `offset` in the distributor by
    /// `vcpu`.
    pub fn write(
        &mut self,
        dom: &Domain,
        phys: &mut dyn PhysGic,
        vcpu: usize,
        offset: u64,
        size: u8,
        value: u64,
    ) -> Outcome {
        let mut out = Outcome::default();
        if !dom.has_vcpu(vcpu) {
            return out;
        }
        let value = value & size_mask(size);
        let mut note = Note::new(Region::Distributor, offset, true);
        let v3 = dom.v3();
        match offset {
            GICD_IPRIORITYR..GICD_ITARGETSR if bytes_ok(offset, size) => {
                for k in 0..u64::from(size) {
                    let intid = (offset + k - GICD_IPRIORITYR) as u32;
                    let byte = (value >> (8 * k)) as u8;
                    self.priority_write(dom, vcpu, intid, byte, size == 1, &mut note);
                }
            }
            GICD_ITARGETSR..GICD_ICFGR if !v3 && bytes_ok(offset, size) => {
                for k in 0..u64::from(size) {
                    let intid = (offset + k - GICD_ITARGETSR) as u32;
                    let byte = (value >> (8 * k)) as u8;
                    self.targets_write(dom, phys, intid, byte, size == 1, &mut note);
                }
            }
            GICD_CPENDSGIR..0xf30 if !v3 && bytes_ok(offset, size) => {
                let set = offset >= GICD_SPENDSGIR;
                for k in 0..u64::from(size) {
                    let sgi = ((offset + k - GICD_CPENDSGIR) % 0x10) as usize;
                    let byte = (value >> (8 * k)) as u8;
                    self.sgi_sources_write(dom, vcpu, sgi, byte, set);
                }
            }
            0x6000..0x8000 if v3 && dword_ok(offset, size) => {
                self.irouter_write(dom, phys, offset, size, value, &mut note);
            }
            _ if !word(offset, size) => {}
            GICD_CTLR => {
                let before = self.dist_enabled(dom);
                self.ctlr = value as u32 & (CTLR_ENABLE_GRP0 | CTLR_ENABLE_GRP1);
                if before != self.dist_enabled(dom) {
                    for intid in dom.owned_spis.iter() {
                        self.sync_spi(dom, phys, intid);
                    }
                }
            }
            GICD_IGROUPR..GICD_IPRIORITYR => match bit_bank(offset) {
                Some((bank, 0)) if !v3 => {
                    self.banked_bits_write(dom, phys, vcpu, bank, value as u32);
                }
                Some((bank, r)) if r > 0 => {
                    self.spi_bits_write(dom, phys, r, bank, value as u32, &mut note);
                }
                _ => {}
            },
            GICD_ICFGR..0xd00 => self.icfgr_write(dom, phys, offset, value as u32, &mut note),
            GICD_SGIR if !v3 => {
                let req = self.sgir(dom, vcpu, value as u32);
                if req.foreign {
                    note.foreign(Touched::SgiTargets(value));
                }
                out.sgi = Some(req);
            }
            _ => {}
        }
        out.foreign = note.first;
        out.sgi_ready = self.sgi_ready(dom);
        out
    }

    fn priority_write(
        &mut self,
        dom: &Domain,
        vcpu: usize,
        intid: u32,
        byte: u8,
        explicit: bool,
        note: &mut Note,
    ) {
        if intid < FIRST_SPI {
            if !dom.v3() {
                self.banked_priority_write(vcpu, intid, byte);
            }
        } else if dom.owns(intid) {
            // Virtual only: the physical priority stays RESET_PRIORITY,
            // below the partitioner's interrupts (see the module docs).
            if let Some(p) = self.spi_priority.get_mut(intid as usize) {
                *p = byte & PRIORITY_MASK;
            }
        } else if intid < INTID_LIMIT && (explicit || byte != 0) {
            note.foreign(Touched::Interrupt(intid));
        }
    }

    fn banked_priority_write(&mut self, t: usize, intid: u32, byte: u8) {
        let exists = intid < SGIS as u32 || DOMAIN_PPIS & (1 << (intid % 32)) != 0;
        if let Some(p) = self
            .cpu
            .get_mut(t)
            .and_then(|c| c.priority.get_mut(intid as usize))
            .filter(|_| exists)
        {
            *p = byte & PRIORITY_MASK;
        }
    }

    fn targets_write(
        &mut self,
        dom: &Domain,
        phys: &mut dyn PhysGic,
        intid: u32,
        byte: u8,
        explicit: bool,
        note: &mut Note,
    ) {
        if intid < FIRST_SPI {
            // Banked ITARGETSR0-7 are read-only.
        } else if dom.owns(intid) {
            let own = byte & dom.vcpu_mask();
            if own != byte {
                note.foreign(Touched::Route(u64::from(byte)));
            }
            self.set_route(intid, own);
            if own != 0 {
                phys.route(intid, own.trailing_zeros() as usize);
            }
            self.sync_spi(dom, phys, intid);
        } else if intid < INTID_LIMIT && (explicit || byte != 0) {
            note.foreign(Touched::Interrupt(intid));
        }
    }

    fn sgi_sources_write(&mut self, dom: &Domain, vcpu: usize, sgi: usize, byte: u8, set: bool) {
        let mask = dom.vcpu_mask();
        if let Some(p) = self
            .cpu
            .get_mut(vcpu)
            .and_then(|c| c.sgi_pending.get_mut(sgi))
        {
            if set {
                *p |= byte & mask;
            } else {
                *p &= !byte;
            }
        }
    }

    fn irouter_write(
        &mut self,
        dom: &Domain,
        phys: &mut dyn PhysGic,
        offset: u64,
        size: u8,
        value: u64,
        note: &mut Note,
    ) {
        let intid = ((offset - GICD_IROUTER) / 8) as u32;
        if !(FIRST_SPI..INTID_LIMIT).contains(&intid) {
            return; // IROUTER0-31 are reserved
        }
        if !dom.owns(intid) {
            note.foreign(Touched::Interrupt(intid));
            return;
        }
        let current = self.irouter_value(dom, intid);
        let new = match (size, offset % 8) {
            (4, 0) => (current & !0xffff_ffff) | value,
            (4, _) => (current & 0xffff_ffff) | (value << 32),
            _ => value,
        } & IROUTER_BITS;
        if new & IROUTER_IRM != 0 {
            self.set_route(intid, ROUTE_ANY);
            phys.route(intid, 0);
            return;
        }
        let aff0 = (new & 0xff) as usize;
        if new & !0xff == 0 && dom.has_vcpu(aff0) {
            self.set_route(intid, aff0 as u8);
            phys.route(intid, aff0);
        } else {
            note.foreign(Touched::Route(new));
        }
    }

    fn spi_bits_write(
        &mut self,
        dom: &Domain,
        phys: &mut dyn PhysGic,
        index: usize,
        bank: Bank,
        value: u32,
        note: &mut Note,
    ) {
        let owned = dom.owned_word(index);
        let real = if index == 31 { 0x0fff_ffff } else { !0 };
        let base = index as u32 * 32;
        let foreign = value & real & !owned;
        if foreign != 0 {
            note.foreign(Touched::Interrupt(base + foreign.trailing_zeros()));
        }
        for b in Bits(value & owned) {
            let intid = base + b;
            match bank {
                Bank::Group => {}
                Bank::SetEnable => {
                    self.enabled.insert(intid);
                    self.sync_spi(dom, phys, intid);
                }
                Bank::ClearEnable => {
                    self.enabled.remove(intid);
                    self.sync_spi(dom, phys, intid);
                }
                Bank::SetPending => phys.set_pending(intid, None, true),
                Bank::ClearPending => phys.set_pending(intid, None, false),
                Bank::SetActive => phys.set_active(intid, None, true),
                Bank::ClearActive => phys.set_active(intid, None, false),
            }
        }
    }

    /// A write to banked register `bank` of vCPU `t` (INTIDs 0-31).
    fn banked_bits_write(
        &mut self,
        dom: &Domain,
        phys: &mut dyn PhysGic,
        t: usize,
        bank: Bank,
        value: u32,
    ) {
        let v3 = dom.v3();
        let Some(c) = self.cpu.get_mut(t).filter(|_| dom.has_vcpu(t)) else {
            return;
        };
        let sgis = (value & SGI_BITS) as u16;
        let ppis = value & DOMAIN_PPIS;
        match bank {
            Bank::Group => {}
            Bank::SetEnable | Bank::ClearEnable => {
                let on = bank == Bank::SetEnable;
                if on {
                    c.sgi_enabled |= sgis;
                    c.ppi_enabled |= ppis;
                } else {
                    c.sgi_enabled &= !sgis;
                    c.ppi_enabled &= !ppis;
                }
                for p in Bits(ppis) {
                    phys.set_enabled(p, Some(t), on);
                }
            }
            Bank::SetPending | Bank::ClearPending => {
                let on = bank == Bank::SetPending;
                // GICv2 SGI pending bits are read-only here (SPENDSGIR/CPENDSGIR).
                if v3 {
                    for s in Bits(u32::from(sgis)) {
                        if let Some(p) = c.sgi_pending.get_mut(s as usize) {
                            *p = if on { *p | 1 } else { 0 };
                        }
                    }
                }
                for p in Bits(ppis) {
                    phys.set_pending(p, Some(t), on);
                }
            }
            Bank::SetActive | Bank::ClearActive => {
                for p in Bits(ppis) {
                    phys.set_active(p, Some(t), bank == Bank::SetActive);
                }
            }
        }
    }

    fn icfgr_write(
        &mut self,
        dom: &Domain,
        phys: &mut dyn PhysGic,
        offset: u64,
        value: u32,
        note: &mut Note,
    ) {
        let index = ((offset - GICD_ICFGR) / 4) as u32;
        if index < 2 {
            return; // SGIs and PPIs: read-only
        }
        for i in 0..16u32 {
            let intid = index * 16 + i;
            let field = (value >> (2 * i)) & 0b11;
            if dom.owns(intid) {
                let edge = field & 0b10 != 0;
                if phys.edge(intid, None) != edge {
                    phys.set_edge(intid, None, edge);
                }
            } else if field != 0 && intid < INTID_LIMIT {
                note.foreign(Touched::Interrupt(intid));
            }
        }
    }

    // ----- redistributors (GICv3) ------------------------------------------

    /// The vCPU whose frame holds redistributor offset `offset`, and the
    /// offset within its frame pair.
    fn frame(dom: &Domain, offset: u64) -> Result<(usize, u64), u64> {
        let n = offset / VGICR_STRIDE;
        match usize::try_from(n) {
            Ok(t) if dom.has_vcpu(t) => Ok((t, offset % VGICR_STRIDE)),
            _ => Err(n),
        }
    }

    /// A read of `size` bytes at `offset` from `VGICR_IPA` (any vCPU's
    /// frames) by `vcpu`. GICv3 only.
    pub fn read_redist(
        &mut self,
        dom: &Domain,
        phys: &mut dyn PhysGic,
        vcpu: usize,
        offset: u64,
        size: u8,
    ) -> Outcome {
        let mut out = Outcome::default();
        if !dom.v3() || !dom.has_vcpu(vcpu) {
            return out;
        }
        let (t, within) = match Self::frame(dom, offset) {
            Ok(x) => x,
            Err(n) => {
                let mut note = Note::new(Region::Redistributors, offset, false);
                note.foreign(Touched::Vcpu(n));
                out.foreign = note.first;
                return out;
            }
        };
        let v = if within >= GICR_SGI_BASE {
            self.sgi_frame_read(dom, phys, t, within - GICR_SGI_BASE, size)
        } else {
            match within {
                GICR_TYPER | 0xc if dword_ok(within, size) => {
                    let typer = self.redist_typer(dom, t);
                    if within == 0xc {
                        typer >> 32
                    } else {
                        typer
                    }
                }
                _ if !word(within, size) => 0,
                GICR_IIDR => u64::from(IIDR),
                GICR_WAKER => {
                    let asleep = self.cpu.get(t).is_some_and(|c| c.asleep);
                    if asleep {
                        u64::from(WAKER_PROCESSOR_SLEEP | WAKER_CHILDREN_ASLEEP)
                    } else {
                        0
                    }
                }
                GICR_PIDR2 => 0x30,
                _ => 0,
            }
        };
        out.value = v & size_mask(size);
        out
    }

    /// `GICR_TYPER` of vCPU `t`: affinity `Aff0 = t`, processor number `t`,
    /// `Last` on the final vCPU; no LPIs.
    fn redist_typer(&self, dom: &Domain, t: usize) -> u64 {
        let last = if t + 1 == dom.vcpus { 1 << 4 } else { 0 };
        ((t as u64) << 32) | ((t as u64 & 0xffff) << 8) | last
    }

    fn sgi_frame_read(
        &self,
        dom: &Domain,
        phys: &dyn PhysGic,
        t: usize,
        off: u64,
        size: u8,
    ) -> u64 {
        match off {
            GICD_IPRIORITYR..0x420 if bytes_ok(off, size) => self.bytes(off, size, |o| {
                self.banked_priority(t, (o - GICD_IPRIORITYR) as u32)
            }),
            _ if !word(off, size) => 0,
            GICD_IGROUPR..GICD_IPRIORITYR => match bit_bank(off) {
                Some((bank, 0)) => u64::from(self.banked_bits(dom, phys, t, bank)),
                _ => 0,
            },
            GICD_ICFGR => 0xaaaa_aaaa,
            _ => 0,
        }
    }

    /// A write of `size` bytes of `value` at `offset` from `VGICR_IPA` by
    /// `vcpu`. GICv3 only.
    pub fn write_redist(
        &mut self,
        dom: &Domain,
        phys: &mut dyn PhysGic,
        vcpu: usize,
        offset: u64,
        size: u8,
        value: u64,
    ) -> Outcome {
        let mut out = Outcome::default();
        if !dom.v3() || !dom.has_vcpu(vcpu) {
            return out;
        }
        let value = value & size_mask(size);
        let (t, within) = match Self::frame(dom, offset) {
            Ok(x) => x,
            Err(n) => {
                let mut note = Note::new(Region::Redistributors, offset, true);
                note.foreign(Touched::Vcpu(n));
                out.foreign = note.first;
                return out;
            }
        };
        if within >= GICR_SGI_BASE {
            let off = within - GICR_SGI_BASE;
            match off {
                GICD_IPRIORITYR..0x420 if bytes_ok(off, size) => {
                    for k in 0..u64::from(size) {
                        let intid = (off + k - GICD_IPRIORITYR) as u32;
                        self.banked_priority_write(t, intid, (value >> (8 * k)) as u8);
                    }
                }
                _ if !word(off, size) => {}
                GICD_IGROUPR..GICD_IPRIORITYR => {
                    if let Some((bank, 0)) = bit_bank(off) {
                        self.banked_bits_write(dom, phys, t, bank, value as u32);
                    }
                }
                _ => {}
            }
        } else if within == GICR_WAKER && word(within, size) {
            if let Some(c) = self.cpu.get_mut(t) {
                c.asleep = value as u32 & WAKER_PROCESSOR_SLEEP != 0;
            }
        }
        out.sgi_ready = self.sgi_ready(dom);
        out
    }

    // ----- SGIs --------------------------------------------------------------

    /// A GICv3 `ICC_SGI1R_EL1` write by vCPU `sender`. Target list entries
    /// are virtual MPIDRs: `Aff3.Aff2.Aff1` must be 0 and the range selector
    /// 0, so only `Aff0` bits below the vCPU count name own vCPUs; anything
    /// else is foreign and dropped. `IRM = 1` means every other vCPU of the
    /// domain.
    pub fn sgi1r(&mut self, dom: &Domain, sender: usize, value: u64) -> SgiRequest {
        let intid = ((value >> 24) & 0xf) as u32;
        let mask = dom.vcpu_mask();
        let mut foreign = false;
        let targets = if value & (1 << 40) != 0 {
            mask & !vbit(sender)
        } else {
            let list = value & 0xffff;
            let aff1 = (value >> 16) & 0xff;
            let aff2 = (value >> 32) & 0xff;
            let rs = (value >> 44) & 0xf;
            let aff3 = (value >> 48) & 0xff;
            if list == 0 {
                0
            } else if aff1 | aff2 | aff3 | rs != 0 {
                foreign = true;
                0
            } else {
                let own = list & u64::from(mask);
                foreign = own != list;
                own as u8
            }
        };
        self.raise_sgi(dom, sender, intid, targets, foreign)
    }

    /// A GICv2 `GICD_SGIR` write by vCPU `sender`: `TargetListFilter` 0 (the
    /// listed CPUs; bits of CPUs the domain does not have are foreign), 1
    /// (all others), 2 (self); 3 is reserved and sends nothing.
    fn sgir(&mut self, dom: &Domain, sender: usize, value: u32) -> SgiRequest {
        let intid = value & 0xf;
        let list = ((value >> 16) & 0xff) as u8;
        let mask = dom.vcpu_mask();
        let (targets, foreign) = match (value >> 24) & 0b11 {
            0 => (list & mask, list & !mask != 0),
            1 => (mask & !vbit(sender), false),
            2 => (vbit(sender) & mask, false),
            _ => (0, false),
        };
        self.raise_sgi(dom, sender, intid, targets, foreign)
    }

    fn raise_sgi(
        &mut self,
        dom: &Domain,
        sender: usize,
        intid: u32,
        targets: u8,
        foreign: bool,
    ) -> SgiRequest {
        let mut req = SgiRequest {
            intid,
            foreign,
            ..SgiRequest::default()
        };
        if !dom.has_vcpu(sender) {
            return req;
        }
        for t in Bits(u32::from(targets & dom.vcpu_mask())) {
            let t = t as usize;
            if self.sgi_deliverable(dom, t, intid) {
                req.targets |= vbit(t);
                if let Some(p) = req.priorities.get_mut(t) {
                    *p = self.banked_priority(t, intid);
                }
            } else {
                self.pend_sgi(dom, t, intid, sender);
                req.latched |= vbit(t);
            }
        }
        req
    }

    fn sgi_deliverable(&self, dom: &Domain, t: usize, intid: u32) -> bool {
        self.dist_enabled(dom)
            && dom.has_vcpu(t)
            && intid < SGIS as u32
            && self
                .cpu
                .get(t)
                .is_some_and(|c| c.sgi_enabled & (1 << intid) != 0)
    }

    /// What the SGI fast path ([`crate::vsgi`]) may deliver to `vcpu`
    /// without this model: the SGIs deliverable now (enabled, distributor
    /// on; bit `n` = SGI `n`, 0 for a vCPU the domain does not have), and
    /// the priority each carries. The firmware keeps a copy, refreshed
    /// after every change to the model.
    pub fn sgi_fast_state(&self, dom: &Domain, vcpu: usize) -> (u16, [u8; SGIS]) {
        let mut prio = [RESET_PRIORITY; SGIS];
        let Some(c) = self.cpu.get(vcpu).filter(|_| dom.has_vcpu(vcpu)) else {
            return (0, prio);
        };
        prio.copy_from_slice(&c.priority[..SGIS]);
        let on = if self.dist_enabled(dom) {
            c.sgi_enabled
        } else {
            0
        };
        (on, prio)
    }

    /// Latch SGI `intid` from `source` as pending for `vcpu` (for instance an
    /// SGI the firmware could not queue). It comes out of [`Self::take_sgi`]
    /// once deliverable; [`Self::sgi_ready`] says when.
    pub fn pend_sgi(&mut self, dom: &Domain, vcpu: usize, intid: u32, source: usize) {
        let bit = if dom.v3() {
            1
        } else {
            vbit(source) & dom.vcpu_mask()
        };
        if let Some(p) = self
            .cpu
            .get_mut(vcpu)
            .filter(|_| dom.has_vcpu(vcpu))
            .and_then(|c| c.sgi_pending.get_mut(intid as usize))
        {
            *p |= bit;
        }
    }

    /// vCPUs with latched SGIs that are deliverable now.
    pub fn sgi_ready(&self, dom: &Domain) -> u8 {
        if !self.dist_enabled(dom) {
            return 0;
        }
        (0..dom.vcpus.min(MAX_CPUS))
            .filter(|&t| {
                self.cpu
                    .get(t)
                    .is_some_and(|c| c.pending_sgis() & c.sgi_enabled != 0)
            })
            .fold(0, |m, t| m | vbit(t))
    }

    /// Take one deliverable latched SGI of `vcpu` (lowest INTID first; on
    /// GICv2 one source at a time), clearing it. `None` when there is none.
    pub fn take_sgi(&mut self, dom: &Domain, vcpu: usize) -> Option<Virq> {
        if !self.dist_enabled(dom) || !dom.has_vcpu(vcpu) {
            return None;
        }
        let v3 = dom.v3();
        let c = self.cpu.get_mut(vcpu)?;
        let ready = c.pending_sgis() & c.sgi_enabled;
        let sgi = Bits(u32::from(ready)).next()? as usize;
        let priority = c.priority.get(sgi).copied().unwrap_or(RESET_PRIORITY);
        let p = c.sgi_pending.get_mut(sgi)?;
        let source = if v3 {
            *p = 0;
            0
        } else {
            let s = p.trailing_zeros();
            *p &= !(1 << s);
            s as u8
        };
        Some(Virq {
            intid: sgi as u32,
            hw: false,
            priority,
            source,
        })
    }

    // ----- injection ---------------------------------------------------------

    /// Whether `intid` may be injected into `vcpu` now: an SGI enabled for it
    /// with the distributor on, the virtual timer PPI enabled for it, or an
    /// owned SPI the domain is forwarding. The firmware checks this before
    /// queueing a physical interrupt it took at EL2.
    pub fn deliverable(&self, dom: &Domain, _phys: &dyn PhysGic, vcpu: usize, intid: u32) -> bool {
        if !dom.has_vcpu(vcpu) {
            return false;
        }
        match intid {
            0..16 => self.sgi_deliverable(dom, vcpu, intid),
            16..32 => {
                DOMAIN_PPIS & (1 << intid) != 0
                    && self
                        .cpu
                        .get(vcpu)
                        .is_some_and(|c| c.ppi_enabled & (1 << intid) != 0)
            }
            _ => self.forwarding(dom, intid),
        }
    }

    /// The priority a list register carries for `intid` on `vcpu`: the
    /// virtual one of an SGI, a PPI or an owned SPI, lowest (0xff) for
    /// anything else.
    pub fn priority(&self, dom: &Domain, _phys: &dyn PhysGic, vcpu: usize, intid: u32) -> u8 {
        if intid < FIRST_SPI {
            let exists = intid < SGIS as u32 || DOMAIN_PPIS & (1 << intid) != 0;
            if exists && dom.has_vcpu(vcpu) {
                return self.banked_priority(vcpu, intid);
            }
            0xff
        } else if dom.owns(intid) {
            self.spi_priority_of(intid)
        } else {
            0xff
        }
    }

    // ----- reset -------------------------------------------------------------

    /// Back to reset state (boot, domain restart): every owned SPI disabled,
    /// not pending, not active, priority [`RESET_PRIORITY`] (virtual and
    /// physical), level, routed
    /// to vCPU 0; distributor off; every vCPU's SGI/PPI state cleared. On
    /// GICv3 the virtual timer PPI of every vCPU is also disabled, unpended
    /// and deactivated in hardware; on GICv2 that is left to
    /// [`Self::reset_vcpu`] on each vCPU's own core.
    pub fn reset(&mut self, dom: &Domain, phys: &mut dyn PhysGic) {
        *self = Self::new(dom);
        for intid in dom.owned_spis.iter().filter(|&i| dom.owns(i)) {
            phys.set_enabled(intid, None, false);
            phys.set_pending(intid, None, false);
            phys.set_active(intid, None, false);
            phys.set_priority(intid, None, RESET_PRIORITY);
            phys.set_edge(intid, None, false);
            phys.route(intid, 0);
        }
        if dom.v3() {
            for t in 0..dom.vcpus.min(MAX_CPUS) {
                Self::reset_ppis(phys, t);
            }
        }
    }

    /// Reset the banked state of `vcpu` (it starts, or starts again): SGIs
    /// disabled and not pending, default priorities, its redistributor
    /// asleep, and its virtual timer PPI disabled, unpended and deactivated
    /// in hardware. Call it on the vCPU's own core (required on GICv2).
    pub fn reset_vcpu(&mut self, dom: &Domain, phys: &mut dyn PhysGic, vcpu: usize) {
        if !dom.has_vcpu(vcpu) {
            return;
        }
        if let Some(c) = self.cpu.get_mut(vcpu) {
            *c = VCpu::RESET;
        }
        Self::reset_ppis(phys, vcpu);
    }

    fn reset_ppis(phys: &mut dyn PhysGic, t: usize) {
        for p in Bits(DOMAIN_PPIS) {
            phys.set_enabled(p, Some(t), false);
            phys.set_pending(p, Some(t), false);
            phys.set_active(p, Some(t), false);
        }
    }
}

// ----- pending queue and list registers ---------------------------------------

/// A virtual interrupt waiting for a list register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Virq {
    pub intid: u32,
    /// Backed by the physical interrupt of the same INTID, which the guest's
    /// EOI deactivates.
    pub hw: bool,
    pub priority: u8,
    /// GICv2 SGIs: the sending vCPU (the list register's CPUID). 0 otherwise;
    /// GICv3 callers should pass 0 so SGIs from several senders merge, as on
    /// a GICv3.
    pub source: u8,
}

/// Capacity of a [`PendingIrqs`]: every distinct (INTID, source) a domain
/// core can have waiting (16 SGIs from each of [`MAX_CPUS`] sources, the 16
/// PPIs, and the most SPIs a domain can own), so a queue fed correctly never
/// overflows.
pub const PENDING_CAPACITY: usize = 16 * MAX_CPUS + 16 + MAX_DEVICES * MAX_IRQS;

/// The virtual interrupts of one vCPU waiting for a free list register:
/// highest priority (lowest value) first, in arrival order among equals;
/// an interrupt already waiting (same INTID and source) is not queued twice.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PendingIrqs {
    q: heapless::Vec<Virq, PENDING_CAPACITY>,
}

impl PendingIrqs {
    pub const fn new() -> Self {
        Self {
            q: heapless::Vec::new(),
        }
    }

    /// Queue `v`; `Ok` also when it was already waiting. `Err(v)` when full.
    /// The queue is kept with the next one to take at its end (lowest
    /// priority value, and the oldest of equals), so taking one moves
    /// nothing.
    pub fn push(&mut self, v: Virq) -> Result<(), Virq> {
        if self
            .q
            .iter()
            .any(|x| x.intid == v.intid && x.source == v.source)
        {
            return Ok(());
        }
        let at = self
            .q
            .iter()
            .position(|x| x.priority <= v.priority)
            .unwrap_or(self.q.len());
        self.q.insert(at, v)
    }

    /// The next interrupt to put in a list register.
    pub fn pop(&mut self) -> Option<Virq> {
        self.q.pop()
    }

    pub fn peek(&self) -> Option<&Virq> {
        self.q.last()
    }

    /// Drop every waiting entry of `intid`; whether there was one.
    pub fn remove(&mut self, intid: u32) -> bool {
        let before = self.q.len();
        self.q.retain(|x| x.intid != intid);
        self.q.len() != before
    }

    pub fn len(&self) -> usize {
        self.q.len()
    }

    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    pub fn clear(&mut self) {
        self.q.clear();
    }
}

/// How the end of a virtual interrupt backed by a physical one (`Virq::hw`)
/// reaches the physical interrupt, which stays active until then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deactivation {
    /// The list register's hardware bit: the guest's EOI deactivates the
    /// physical interrupt itself, with no exit to EL2.
    Hardware,
    /// The list register's EOI bit: the guest's EOI raises the maintenance
    /// interrupt, and the partitioner deactivates the physical interrupt
    /// ([`lr_physical`] names it). One exit more per interrupt; for GICs on
    /// which hardware deactivation does not work (see `board::Gic::V2`).
    Maintenance,
}

/// `ICH_LR<n>_EL2` (GICv3) for `v`, pending: State (63:62) = 0b01, HW (61),
/// Group 1 (60), Priority (55:48), vINTID (31:0); pINTID (41:32) when HW,
/// else EOI (41) for [`Deactivation::Maintenance`].
#[inline]
pub fn lr_v3(v: &Virq, how: Deactivation) -> u64 {
    let mut lr = (0b01 << 62) | (1 << 60) | (u64::from(v.priority) << 48) | u64::from(v.intid);
    match (v.hw, how) {
        (false, _) => {}
        (true, Deactivation::Hardware) => lr |= (1 << 61) | (u64::from(v.intid & 0x3ff) << 32),
        (true, Deactivation::Maintenance) => lr |= 1 << 41,
    }
    lr
}

/// `GICH_LR<n>` (GICv2) for `v`, pending: HW (31), Grp1 (30) = 0 (group 0,
/// see the module docs), State (29:28) = 0b01, Priority (27:23) = the top
/// five priority bits, VirtualID (9:0); PhysicalID (19:10) when HW, else
/// EOI (19) for [`Deactivation::Maintenance`] and CPUID (12:10) = the
/// source of an SGI.
#[inline]
pub fn lr_v2(v: &Virq, how: Deactivation) -> u32 {
    let mut lr = (0b01 << 28) | (u32::from(v.priority >> 3) << 23) | (v.intid & 0x3ff);
    match (v.hw, how) {
        (true, Deactivation::Hardware) => lr |= (1 << 31) | ((v.intid & 0x3ff) << 10),
        (true, Deactivation::Maintenance) => lr |= 1 << 19,
        (false, _) if v.intid < SGIS as u32 => lr |= u32::from(v.source & 0b111) << 10,
        (false, _) => {}
    }
    lr
}

/// The list register value for `v` on a GIC of generation `version`.
#[inline]
pub fn lr(version: GicVersion, v: &Virq, how: Deactivation) -> u64 {
    match version {
        GicVersion::V3 => lr_v3(v, how),
        GicVersion::V2 => u64::from(lr_v2(v, how)),
    }
}

/// A GICv3 list register is free when its state is invalid (0b00).
pub fn lr_is_free_v3(lr: u64) -> bool {
    (lr >> 62) & 0b11 == 0
}

/// A GICv2 list register is free when its state is invalid (0b00).
pub fn lr_is_free_v2(lr: u32) -> bool {
    (lr >> 28) & 0b11 == 0
}

/// Whether list register value `lr` is free on `version`.
pub fn lr_is_free(version: GicVersion, lr: u64) -> bool {
    match version {
        GicVersion::V3 => lr_is_free_v3(lr),
        GicVersion::V2 => lr_is_free_v2(lr as u32),
    }
}

/// The fields of a list register value that matter here: state (0b01
/// pending, 0b10 active, 0b11 both), HW bit, EOI bit, the INTID behind a
/// hardware entry, vINTID, and the GICv2 SGI source (CPUID).
struct LrFields {
    state: u64,
    hw: bool,
    eoi: bool,
    pintid: u32,
    vintid: u32,
    source: u8,
}

fn lr_fields(version: GicVersion, lr: u64) -> LrFields {
    match version {
        GicVersion::V3 => {
            let hw = lr & (1 << 61) != 0;
            LrFields {
                state: (lr >> 62) & 0b11,
                hw,
                eoi: !hw && lr & (1 << 41) != 0,
                pintid: ((lr >> 32) & 0x1fff) as u32,
                vintid: lr as u32,
                source: 0,
            }
        }
        GicVersion::V2 => {
            let hw = lr & (1 << 31) != 0;
            let vintid = (lr & 0x3ff) as u32;
            LrFields {
                state: (lr >> 28) & 0b11,
                hw,
                eoi: !hw && lr & (1 << 19) != 0,
                pintid: ((lr >> 10) & 0x3ff) as u32,
                vintid,
                source: if !hw && vintid < SGIS as u32 {
                    ((lr >> 10) & 0b111) as u8
                } else {
                    0
                },
            }
        }
    }
}

/// Whether list register value `lr` holds a pending interrupt (state
/// pending, or pending and active): one the vCPU has yet to take, which
/// ends a wait for an interrupt.
pub fn lr_pending(version: GicVersion, lr: u64) -> bool {
    lr_fields(version, lr).state & 0b01 != 0
}

/// The physical INTID still active behind list register value `lr`: a
/// hardware entry that is pending or active, or a
/// [`Deactivation::Maintenance`] entry in any state (the physical
/// interrupt stays active until the partitioner deactivates it and clears
/// the entry). The firmware deactivates it when the guest's EOI raised the
/// maintenance interrupt, or when the vCPU stops and no EOI will come.
pub fn lr_physical(version: GicVersion, lr: u64) -> Option<u32> {
    let f = lr_fields(version, lr);
    let intid = if f.hw && f.state != 0 {
        f.pintid
    } else if f.eoi && f.vintid >= SGIS as u32 {
        f.vintid
    } else {
        return None;
    };
    (intid < INTID_LIMIT).then_some(intid)
}

/// Whether list register value `lr` is in use (pending, active or both)
/// for physical interrupt `intid`: a hardware entry, or a
/// [`Deactivation::Maintenance`] one ([`lr_physical`]). Such an entry ends
/// the physical interrupt's active state when the guest ends it, so while
/// it is there the interrupt cannot be taken again at EL2, unless the
/// domain cleared that active state itself (`ICACTIVER`); taken again
/// then, it must not go into a second list register (the architecture
/// forbids the same virtual interrupt in two, and a hardware entry cannot
/// be made pending and active): it is merged into this one, whose end
/// deactivates it.
pub fn lr_holds_physical(version: GicVersion, lr: u64, intid: u32) -> bool {
    lr_fields(version, lr).state != 0 && lr_physical(version, lr) == Some(intid)
}

/// How a pending list register reaches the core it belongs to: a board
/// quirk of the GIC's wiring, like [`Deactivation`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VirtualIrq {
    /// The GIC CPU interface's virtual IRQ output is wired to the core, as
    /// the architecture requires: every real GICv3 system.
    Wired,
    /// It is not connected (QEMU's `imx8mp-evk` model wires only IRQ and
    /// FIQ, so a pending list register never interrupts the vCPU). The
    /// partitioner asserts HCR_EL2.VI itself whenever the virtual CPU
    /// interface would signal an interrupt ([`virtual_irq_signal`]), on
    /// every entry to the vCPU, and asks for the maintenance interrupts that
    /// tell it when that changes while the vCPU runs. Never for real silicon.
    ViaHcrVi,
}

/// ICH_HCR_EL2.NPIE: maintenance interrupt while no list register is pending.
pub const ICH_HCR_NPIE: u64 = 1 << 3;
/// ICH_HCR_EL2.VGrp0EIE: maintenance interrupt while virtual group 0 is enabled.
pub const ICH_HCR_VGRP0EIE: u64 = 1 << 4;
/// ICH_HCR_EL2.VGrp1EIE: maintenance interrupt while virtual group 1 is enabled.
pub const ICH_HCR_VGRP1EIE: u64 = 1 << 6;
/// The ICH_HCR_EL2 bits [`virtual_irq_signal`] may ask for.
pub const ICH_HCR_VI_TRIGGERS: u64 = ICH_HCR_NPIE | ICH_HCR_VGRP0EIE | ICH_HCR_VGRP1EIE;

/// What a GICv3 virtual CPU interface would signal to its vCPU
/// ([`VirtualIrq::ViaHcrVi`]), and which maintenance interrupts end the
/// vCPU's run when that may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtualSignal {
    /// Assert the virtual IRQ (HCR_EL2.VI).
    pub irq: bool,
    /// ICH_HCR_EL2 maintenance enables (within [`ICH_HCR_VI_TRIGGERS`]):
    /// NPIE while the IRQ is asserted (the guest acknowledging the last
    /// pending entry drops it); VGrp<n>EIE while a pending entry waits only
    /// for its group to be enabled.
    pub maintenance: u64,
    /// A pending entry waits only for the running priority to drop, which
    /// the guest's EOI of an active entry does without an exit: the
    /// partitioner asks for a maintenance interrupt at that EOI
    /// ([`lr_with_eoi_maintenance`]) so the entry is not left waiting.
    pub held_by_running: bool,
}

/// GICv3 list register `lr` asking for a maintenance interrupt when the
/// guest deactivates it (the EOI bit), if it is an active software SGI (the
/// bit exists only without HW; and only for SGIs, because a software entry
/// with the bit and a higher INTID means "deactivate that physical
/// interrupt at the EOI" to [`lr_physical`]); `None` otherwise.
pub fn lr_with_eoi_maintenance(lr: u64) -> Option<u64> {
    const ACTIVE: u64 = 1 << 63;
    const HW: u64 = 1 << 61;
    const EOI: u64 = 1 << 41;
    let sgi = (lr & 0xffff_ffff) < SGIS as u64;
    (lr & ACTIVE != 0 && lr & HW == 0 && lr & EOI == 0 && sgi).then_some(lr | EOI)
}

/// [`VirtualSignal`] for the list register values `lrs` (all of them; free
/// ones are ignored), ICH_VMCR_EL2 `vmcr` (VENG0 bit 0, VENG1 bit 1, VPMR
/// bits 31:24), the active priorities `active` (ICH_AP0R0_EL2 |
/// ICH_AP1R0_EL2: bit n = priority group n active) and the number of
/// priority bits the interface implements (ICH_VTR_EL2.PRIbits + 1).
///
/// An entry is signalled, as the GIC architecture says, when it is pending
/// (or pending and active), its group is enabled, its priority is below the
/// priority mask and its group priority is higher than the running
/// priority (the lowest active group). The binary point is taken as its
/// minimum (every priority bit is group priority), and only the first 32
/// priority groups are looked at (all of them with 5 priority bits, as on
/// the Cortex-A53 and QEMU). An entry held back by the priority mask or
/// the running priority raises nothing; it is looked at again on the next
/// exit to EL2 (the running priority drops at the guest's EOI, which does
/// not exit: the interrupt is taken at the next exit at the latest).
pub fn virtual_irq_signal(
    lrs: impl IntoIterator<Item = u64>,
    vmcr: u64,
    active: u32,
    pri_bits: u32,
) -> VirtualSignal {
    let shift = 8 - pri_bits.clamp(1, 8);
    let running = if active == 0 {
        0x100
    } else {
        active.trailing_zeros() << shift
    };
    let pmr = ((vmcr >> 24) & 0xff) as u32;
    let mut irq = false;
    let mut held_by_running = false;
    let mut waiting_group = [false; 2];
    for lr in lrs {
        let state = (lr >> 62) & 0b11;
        if state & 0b01 == 0 {
            continue;
        }
        let group = ((lr >> 60) & 1) as usize;
        let priority = ((lr >> 48) & 0xff) as u32;
        if vmcr & (1 << group) == 0 {
            waiting_group[group] = true;
            continue;
        }
        if priority < pmr {
            if (priority >> shift) << shift < running {
                irq = true;
            } else {
                held_by_running = true;
            }
        }
    }
    let maintenance = if irq {
        ICH_HCR_NPIE
    } else {
        (if waiting_group[0] {
            ICH_HCR_VGRP0EIE
        } else {
            0
        }) | (if waiting_group[1] {
            ICH_HCR_VGRP1EIE
        } else {
            0
        })
    };
    VirtualSignal {
        irq,
        maintenance,
        held_by_running: held_by_running && !irq,
    }
}

/// What to do with a waiting virtual interrupt given one list register
/// already in use (see [`lr_match`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LrMatch {
    /// The register holds something else.
    Other,
    /// The same interrupt is already pending there: nothing more to do
    /// (pending is a state, not a count).
    AlreadyPending,
    /// The same interrupt is active there (the guest is handling it): make
    /// it pending again in place by writing this value. The architecture
    /// forbids the same virtual interrupt in two list registers.
    Repend(u64),
    /// The same SGI is active there, on a board whose virtual IRQ is
    /// raised only at exits (`via_hcr` of [`lr_match`]): it must keep
    /// waiting in the queue. Write this value (the entry with its EOI
    /// maintenance bit): the guest's EOI then frees the register and exits,
    /// and the waiting SGI goes in.
    WaitForEoi(u64),
}

/// Whether waiting `v` is already held by list register value `lr`, and
/// what to do then.
///
/// `via_hcr`: the board's virtual IRQ is HCR_EL2.VI, raised by the
/// partitioner only at exits ([`virtual_irq_signal`]). There an SGI made
/// pending again in its active entry would turn plain pending at the
/// guest's EOI, which does not exit, and wait unsignalled, for ever if
/// nothing else brings an exit (an idle tickless vCPU; its sender waiting
/// for the IPI to be handled). So it waits for the EOI instead
/// ([`LrMatch::WaitForEoi`]). On an SGI entry the EOI bit only asks for
/// that maintenance ([`lr_with_eoi_maintenance`]); on any other software
/// entry it stands for a physical interrupt to deactivate.
pub fn lr_match(version: GicVersion, lr: u64, v: &Virq, via_hcr: bool) -> LrMatch {
    let f = lr_fields(version, lr);
    let same_source = version == GicVersion::V3 || v.hw || f.source == v.source;
    if f.state == 0 || f.vintid != v.intid || !same_source {
        return LrMatch::Other;
    }
    let sgi = f.vintid < SGIS as u32;
    if f.state & 0b01 != 0 || f.hw || (f.eoi && !sgi) {
        // Pending already; or a physically backed entry, which cannot be
        // re-raised while its physical interrupt is active, and so cannot
        // be waiting at the same time.
        return LrMatch::AlreadyPending;
    }
    if via_hcr && sgi && version == GicVersion::V3 {
        return LrMatch::WaitForEoi(lr | (1 << 41));
    }
    LrMatch::Repend(match version {
        GicVersion::V3 => lr | (0b01 << 62),
        GicVersion::V2 => lr | (0b01 << 28),
    })
}

/// A software interrupt `intid` (not physically backed) that list register
/// value `lr` holds pending, withdrawn because its source (a
/// [`VirtualLine`]) dropped: the value to write instead (active only if it
/// was also active, otherwise free). `None` if `lr` does not hold it
/// pending, or holds it as a hardware or EOI-maintained entry.
pub fn lr_withdraw(version: GicVersion, lr: u64, intid: u32) -> Option<u64> {
    let f = lr_fields(version, lr);
    if f.hw || f.eoi || f.vintid != intid || f.state & 0b01 == 0 {
        return None;
    }
    Some(if f.state & 0b10 == 0 {
        0
    } else {
        match version {
            GicVersion::V3 => lr & !(0b01 << 62),
            GicVersion::V2 => lr & !(0b01 << 28),
        }
    })
}

#[cfg(test)]
mod tests {
    mod virtual_irq {
        use super::super::*;

        const ON: u64 = 0b11 | (0xf0 << 24); // both groups, PMR 0xf0

        fn lr(state: u64, group: u64, prio: u64) -> u64 {
            (state << 62) | (group << 60) | (prio << 48) | 27
        }

        #[test]
        fn nothing_pending_signals_nothing_and_asks_for_nothing() {
            let s = virtual_irq_signal([0, 0, 0, 0], ON, 0, 5);
            assert_eq!(
                s,
                VirtualSignal {
                    irq: false,
                    maintenance: 0,
                    held_by_running: false
                }
            );
            // Active only (the guest took it): no phantom interrupt.
            let s = virtual_irq_signal([lr(0b10, 1, 0xa0)], ON, 1 << 20, 5);
            assert!(!s.irq);
            assert_eq!(s.maintenance, 0);
        }

        #[test]
        fn a_pending_entry_signals_until_the_guest_takes_it() {
            let s = virtual_irq_signal([0, lr(0b01, 1, 0xa0), 0], ON, 0, 5);
            assert_eq!(
                s,
                VirtualSignal {
                    irq: true,
                    maintenance: ICH_HCR_NPIE,
                    held_by_running: false
                }
            );
            // Pending and active counts as pending.
            assert!(virtual_irq_signal([lr(0b11, 1, 0xa0)], ON, 0, 5).irq);
        }

        #[test]
        fn a_disabled_group_waits_for_its_enable() {
            let g1_off = ON & !0b10;
            let s = virtual_irq_signal([lr(0b01, 1, 0xa0)], g1_off, 0, 5);
            assert_eq!(
                s,
                VirtualSignal {
                    irq: false,
                    maintenance: ICH_HCR_VGRP1EIE,
                    held_by_running: false
                }
            );
            let g0_off = ON & !0b01;
            let s = virtual_irq_signal([lr(0b01, 0, 0xa0)], g0_off, 0, 5);
            assert_eq!(
                s,
                VirtualSignal {
                    irq: false,
                    maintenance: ICH_HCR_VGRP0EIE,
                    held_by_running: false
                }
            );
        }

        #[test]
        fn the_priority_mask_and_the_running_priority_hold_an_entry_back() {
            // Priority 0xf0 is not below the mask 0xf0.
            assert!(!virtual_irq_signal([lr(0b01, 1, 0xf0)], ON, 0, 5).irq);
            assert!(virtual_irq_signal([lr(0b01, 1, 0xe8)], ON, 0, 5).irq);
            // 0xa0 active (group 0xa0 >> 3 = 20): an equal or lower priority
            // waits, a higher one preempts.
            assert!(!virtual_irq_signal([lr(0b01, 1, 0xa0)], ON, 1 << 20, 5).irq);
            assert!(!virtual_irq_signal([lr(0b01, 1, 0xa7)], ON, 1 << 20, 5).irq);
            assert!(virtual_irq_signal([lr(0b01, 1, 0x98)], ON, 1 << 20, 5).irq);
            // One signalled entry among held-back ones is enough.
            let lrs = [lr(0b01, 1, 0xf8), lr(0b10, 1, 0xa0), lr(0b01, 1, 0x80)];
            assert!(virtual_irq_signal(lrs, ON, 1 << 20, 5).irq);
        }

        #[test]
        fn an_entry_held_back_by_the_running_priority_asks_for_the_eoi() {
            // The timer (0xa0, pending) waits behind an active SGI 1 (0x80).
            let lrs = [lr(0b10, 1, 0x80) & !0xffff_ffff | 1, lr(0b01, 1, 0xa0)];
            let s = virtual_irq_signal(lrs, ON, 1 << 16, 5);
            assert!(!s.irq && s.held_by_running);
            // The active software entry gets its EOI bit; a hardware one,
            // a pending one or one that has it already does not.
            assert_eq!(lr_with_eoi_maintenance(lrs[0]), Some(lrs[0] | 1 << 41));
            assert_eq!(lr_with_eoi_maintenance(lrs[0] | 1 << 61), None);
            assert_eq!(lr_with_eoi_maintenance(lrs[1]), None);
            assert_eq!(lr_with_eoi_maintenance(lrs[0] | 1 << 41), None);
            // Never for a software SPI: its EOI bit would mean "deactivate
            // that physical interrupt" (`lr_physical`).
            assert_eq!(
                lr_with_eoi_maintenance(lr(0b10, 1, 0x80) & !0xffff_ffff | 33),
                None
            );
            assert_eq!(lr_physical(GicVersion::V3, lrs[0] | 1 << 41), None);
            // Held back by the mask only: nothing to wait for.
            let s = virtual_irq_signal([lr(0b01, 1, 0xf8)], ON, 0, 5);
            assert!(!s.held_by_running);
        }
    }

    use super::*;
    use crate::plan::{DevicePlan, FaultPolicy, Mapping, MemKind};
    use std::cell::RefCell;
    use std::collections::{HashMap, HashSet};
    use std::string::ToString;
    use std::vec::Vec;

    const V2: GicVersion = GicVersion::V2;
    const V3: GicVersion = GicVersion::V3;
    /// uart1's SPI on QEMU virt in these tests: SPI 1 = INTID 33.
    const OWN: u32 = 33;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Call {
        SetEnabled(u32, Option<usize>, bool),
        Enabled(u32, Option<usize>),
        SetPending(u32, Option<usize>, bool),
        Pending(u32, Option<usize>),
        SetActive(u32, Option<usize>, bool),
        Active(u32, Option<usize>),
        SetPriority(u32, Option<usize>, u8),
        Priority(u32, Option<usize>),
        SetEdge(u32, Option<usize>, bool),
        Edge(u32, Option<usize>),
        Route(u32, usize),
    }

    impl Call {
        fn intid(&self) -> u32 {
            match *self {
                Call::SetEnabled(i, ..)
                | Call::Enabled(i, ..)
                | Call::SetPending(i, ..)
                | Call::Pending(i, ..)
                | Call::SetActive(i, ..)
                | Call::Active(i, ..)
                | Call::SetPriority(i, ..)
                | Call::Priority(i, ..)
                | Call::SetEdge(i, ..)
                | Call::Edge(i, ..)
                | Call::Route(i, _) => i,
            }
        }
        fn vcpu(&self) -> Option<usize> {
            match *self {
                Call::SetEnabled(_, v, _)
                | Call::Enabled(_, v)
                | Call::SetPending(_, v, _)
                | Call::Pending(_, v)
                | Call::SetActive(_, v, _)
                | Call::Active(_, v)
                | Call::SetPriority(_, v, _)
                | Call::Priority(_, v)
                | Call::SetEdge(_, v, _)
                | Call::Edge(_, v) => v,
                Call::Route(_, v) => Some(v),
            }
        }
    }

    type Key = (u32, Option<usize>);

    /// A physical GIC that records every call, reads included.
    #[derive(Default)]
    struct Mock {
        log: RefCell<Vec<Call>>,
        enabled: HashSet<Key>,
        pending: HashSet<Key>,
        active: HashSet<Key>,
        prio: HashMap<Key, u8>,
        edge: HashSet<Key>,
        routes: HashMap<u32, usize>,
    }

    impl Mock {
        fn take(&self) -> Vec<Call> {
            self.log.borrow_mut().drain(..).collect()
        }
        fn rec(&self, c: Call) {
            self.log.borrow_mut().push(c);
        }
        fn set(set: &mut HashSet<Key>, k: Key, on: bool) {
            if on {
                set.insert(k);
            } else {
                set.remove(&k);
            }
        }
    }

    impl PhysGic for Mock {
        fn set_enabled(&mut self, intid: u32, vcpu: Option<usize>, on: bool) {
            self.rec(Call::SetEnabled(intid, vcpu, on));
            Self::set(&mut self.enabled, (intid, vcpu), on);
        }
        fn enabled(&self, intid: u32, vcpu: Option<usize>) -> bool {
            self.rec(Call::Enabled(intid, vcpu));
            self.enabled.contains(&(intid, vcpu))
        }
        fn set_pending(&mut self, intid: u32, vcpu: Option<usize>, on: bool) {
            self.rec(Call::SetPending(intid, vcpu, on));
            Self::set(&mut self.pending, (intid, vcpu), on);
        }
        fn pending(&self, intid: u32, vcpu: Option<usize>) -> bool {
            self.rec(Call::Pending(intid, vcpu));
            self.pending.contains(&(intid, vcpu))
        }
        fn set_active(&mut self, intid: u32, vcpu: Option<usize>, on: bool) {
            self.rec(Call::SetActive(intid, vcpu, on));
            Self::set(&mut self.active, (intid, vcpu), on);
        }
        fn active(&self, intid: u32, vcpu: Option<usize>) -> bool {
            self.rec(Call::Active(intid, vcpu));
            self.active.contains(&(intid, vcpu))
        }
        fn set_priority(&mut self, intid: u32, vcpu: Option<usize>, prio: u8) {
            self.rec(Call::SetPriority(intid, vcpu, prio));
            self.prio.insert((intid, vcpu), prio);
        }
        fn priority(&self, intid: u32, vcpu: Option<usize>) -> u8 {
            self.rec(Call::Priority(intid, vcpu));
            self.prio.get(&(intid, vcpu)).copied().unwrap_or(0)
        }
        fn set_edge(&mut self, intid: u32, vcpu: Option<usize>, edge: bool) {
            self.rec(Call::SetEdge(intid, vcpu, edge));
            Self::set(&mut self.edge, (intid, vcpu), edge);
        }
        fn edge(&self, intid: u32, vcpu: Option<usize>) -> bool {
            self.rec(Call::Edge(intid, vcpu));
            self.edge.contains(&(intid, vcpu))
        }
        fn route(&mut self, intid: u32, vcpu: usize) {
            self.rec(Call::Route(intid, vcpu));
            self.routes.insert(intid, vcpu);
        }
    }

    /// A domain, its virtual distributor and a mock GIC.
    struct T {
        d: Domain,
        vd: VDistributor,
        m: Mock,
    }

    impl T {
        fn new(version: GicVersion, vcpus: usize, spis: &[u32]) -> Self {
            let d = Domain::with_spis(version, vcpus, spis);
            let vd = VDistributor::new(&d);
            Self {
                d,
                vd,
                m: Mock::default(),
            }
        }
        fn r(&mut self, vcpu: usize, offset: u64, size: u8) -> Outcome {
            self.vd.read(&self.d, &mut self.m, vcpu, offset, size)
        }
        fn w(&mut self, vcpu: usize, offset: u64, size: u8, value: u64) -> Outcome {
            self.vd
                .write(&self.d, &mut self.m, vcpu, offset, size, value)
        }
        fn rr(&mut self, vcpu: usize, offset: u64, size: u8) -> Outcome {
            self.vd
                .read_redist(&self.d, &mut self.m, vcpu, offset, size)
        }
        fn wr(&mut self, vcpu: usize, offset: u64, size: u8, value: u64) -> Outcome {
            self.vd
                .write_redist(&self.d, &mut self.m, vcpu, offset, size, value)
        }
        fn read32(&mut self, vcpu: usize, offset: u64) -> u64 {
            let o = self.r(vcpu, offset, 4);
            assert_eq!(o.foreign, None, "reads are never foreign");
            o.value
        }
        /// Distributor on, then forget the calls that made.
        fn dist_on(&mut self) {
            let on = if self.d.version == V3 { 0b10 } else { 0b01 };
            assert_eq!(self.w(0, GICD_CTLR, 4, on).foreign, None);
            self.m.take();
        }
        fn deliverable(&self, vcpu: usize, intid: u32) -> bool {
            self.vd.deliverable(&self.d, &self.m, vcpu, intid)
        }
        fn sgi1r(&mut self, sender: usize, value: u64) -> SgiRequest {
            self.vd.sgi1r(&self.d, sender, value)
        }
    }

    fn dist_foreign(offset: u64, what: Touched) -> Option<Foreign> {
        Some(Foreign {
            region: Region::Distributor,
            offset,
            write: true,
            what,
        })
    }

    /// Offset of `bank`'s register holding `intid`, and its bit.
    fn bit_reg(bank: u64, intid: u32) -> (u64, u64) {
        (bank + u64::from(intid / 32) * 4, 1 << (intid % 32))
    }

    const SPI_BANKS: [u64; 6] = [
        GICD_ISENABLER,
        GICD_ICENABLER,
        GICD_ISPENDR,
        GICD_ICPENDR,
        GICD_ISACTIVER,
        GICD_ICACTIVER,
    ];

    /// The virtual console's SPI through [`WithLine`]: the guest configures
    /// it like any owned SPI, its state never reaches the physical GIC, and
    /// it is delivered while enabled and the line is high.
    #[test]
    fn a_virtual_line_is_configured_like_an_owned_spi_but_never_touches_hardware() {
        const LINE_INTID: u32 = 32 + crate::plan::VIRTUAL_CONSOLE_SPI;
        for v in [V2, V3] {
            let mut t = T::new(v, 2, &[crate::plan::VIRTUAL_CONSOLE_SPI, 7]);
            let mut line = VirtualLine::new(LINE_INTID);
            macro_rules! w {
                ($off:expr, $size:expr, $val:expr) => {{
                    let mut g = WithLine {
                        phys: &mut t.m,
                        line: &mut line,
                    };
                    t.vd.write(&t.d, &mut g, 0, $off, $size, $val)
                }};
            }
            macro_rules! r {
                ($off:expr, $size:expr) => {{
                    let mut g = WithLine {
                        phys: &mut t.m,
                        line: &mut line,
                    };
                    t.vd.read(&t.d, &mut g, 0, $off, $size).value
                }};
            }
            {
                let mut g = WithLine {
                    phys: &mut t.m,
                    line: &mut line,
                };
                t.vd.reset(&t.d, &mut g);
            }
            line.set_level(true);
            assert_eq!(line.delivery(), None, "{v:?}: disabled at reset");
            let (en, bit) = bit_reg(GICD_ISENABLER, LINE_INTID);
            assert_eq!(w!(en, 4, bit).foreign, None);
            assert_eq!(line.delivery(), None, "{v:?}: distributor still off");
            let on = if v == V3 { 0b10 } else { 0b01 };
            w!(GICD_CTLR, 4, on);
            // Priority and route to vCPU 1.
            w!(GICD_IPRIORITYR + u64::from(LINE_INTID), 1, 0x80);
            if v == V3 {
                w!(GICD_IROUTER + 8 * u64::from(LINE_INTID), 8, 1);
            } else {
                w!(GICD_ITARGETSR + u64::from(LINE_INTID), 1, 0b10);
            }
            assert_eq!(line.delivery(), Some(1), "{v:?}");
            assert_eq!(t.vd.priority(&t.d, &t.m, 1, LINE_INTID), 0x80, "{v:?}");
            assert_eq!(r!(GICD_IPRIORITYR + u64::from(LINE_INTID), 1), 0x80);
            assert_eq!(r!(en, 4) & bit, bit, "{v:?}: reads back enabled");
            let (pend, _) = bit_reg(GICD_ISPENDR, LINE_INTID);
            assert_eq!(r!(pend, 4) & bit, bit, "{v:?}: pending while high");
            // Level: nothing once the line drops.
            line.set_level(false);
            assert_eq!(line.delivery(), None);
            assert_eq!(r!(pend, 4) & bit, 0);
            // A guest's pend is delivered once.
            w!(pend, 4, bit);
            assert_eq!(line.delivery(), Some(1));
            assert_eq!(line.delivery(), None);
            // Disabled again: nothing.
            let (dis, _) = bit_reg(GICD_ICENABLER, LINE_INTID);
            w!(dis, 4, bit);
            line.set_level(true);
            assert_eq!(line.delivery(), None, "{v:?}");
            // The physical GIC never heard of it; the other SPI is real.
            let calls = t.m.take();
            assert!(
                calls.iter().all(|c| c.intid() != LINE_INTID),
                "{v:?}: {calls:?}"
            );
            assert!(calls.iter().any(|c| c.intid() == 39), "{v:?}: {calls:?}");
        }
    }

    #[test]
    fn a_dropped_line_is_withdrawn_from_its_list_register() {
        for v in [V2, V3] {
            let virq = Virq {
                intid: 33,
                hw: false,
                priority: 0x80,
                source: 0,
            };
            let pending = lr(v, &virq, Deactivation::Hardware);
            assert_eq!(lr_withdraw(v, pending, 33), Some(0), "{v:?}");
            assert_eq!(lr_withdraw(v, pending, 34), None);
            // Active and pending again: stays active, no longer pending.
            let LrMatch::Repend(both) =
                lr_match(v, pending ^ active_bit(v) ^ pend_bit(v), &virq, false)
            else {
                panic!("{v:?}: an active entry is re-pended")
            };
            let left = lr_withdraw(v, both, 33).unwrap();
            assert!(!lr_pending(v, left) && !lr_is_free(v, left), "{v:?}");
            assert_eq!(lr_withdraw(v, left, 33), None, "active only: kept");
            // A physically backed entry is never touched.
            let hw = Virq { hw: true, ..virq };
            assert_eq!(lr_withdraw(v, lr(v, &hw, Deactivation::Hardware), 33), None);
            assert_eq!(
                lr_withdraw(v, lr(v, &hw, Deactivation::Maintenance), 33),
                None
            );
        }
    }

    fn active_bit(v: GicVersion) -> u64 {
        match v {
            V3 => 1 << 63,
            V2 => 1 << 29,
        }
    }

    fn pend_bit(v: GicVersion) -> u64 {
        match v {
            V3 => 1 << 62,
            V2 => 1 << 28,
        }
    }

    #[test]
    fn domain_from_plan_owns_its_device_spis() {
        let mut plan = DomainPlan {
            name: "hello".try_into().unwrap(),
            vmid: 1,
            cpus: heapless::Vec::from_slice(&[2, 3]).unwrap(),
            ram: heapless::Vec::new(),
            devices: heapless::Vec::new(),
            entry: 0x4000_0000,
            image_size: 0,
            initrd_size: 0,
            bootargs: heapless::String::new(),
            fault_policy: FaultPolicy::InjectAbort,
            restart_limit: crate::plan::RESTART_LIMIT,
            virtual_console: None,
        };
        for (name, spis) in [("serial", &[1u32][..]), ("net", &[5, 6][..])] {
            plan.devices
                .push(DevicePlan {
                    name: name.try_into().unwrap(),
                    board_device: None,
                    compatible: "x".try_into().unwrap(),
                    mapping: Mapping {
                        ipa: 0x0904_0000,
                        pa: 0x0904_0000,
                        size: 0x1000,
                        kind: MemKind::Device,
                    },
                    spis: heapless::Vec::from_slice(spis).unwrap(),
                    dma_unprotected: false,
                    pci: None,
                    pci_bars: heapless::Vec::new(),
                })
                .unwrap();
        }
        let d = Domain::new(V3, &plan);
        assert_eq!(d.vcpus, 2);
        assert_eq!(d.vcpu_mask(), 0b11);
        assert_eq!(d.owned_spis.iter().collect::<Vec<_>>(), [33, 37, 38]);
        assert!(d.owns(33) && d.owns(37) && d.owns(38));
        assert!(!d.owns(34) && !d.owns(1) && !d.owns(27) && !d.owns(1020));
        // A virtual console adds its SPI.
        let mut vc = plan.clone();
        vc.devices.clear();
        vc.virtual_console = Some(crate::plan::VIRTUAL_CONSOLE_IPA);
        let d = Domain::new(V2, &vc);
        assert_eq!(
            d.owned_spis.iter().collect::<Vec<_>>(),
            [32 + crate::plan::VIRTUAL_CONSOLE_SPI]
        );
        // Hostile numbers never panic and are never owned.
        let d = Domain::with_spis(V2, 99, &[u32::MAX, 988, 2000]);
        assert_eq!(d.vcpus, MAX_CPUS);
        assert!(d.owned_spis.is_empty());
    }

    #[test]
    fn a_domain_cannot_touch_an_spi_it_does_not_own() {
        for version in [V3, V2] {
            let mut t = T::new(version, 2, &[1]);
            t.dist_on();
            // Every set/clear bank: SPI 34 refused and reported, 33 works.
            for bank in SPI_BANKS {
                let (reg, bit) = bit_reg(bank, 34);
                let o = t.w(0, reg, 4, bit);
                assert_eq!(o.foreign, dist_foreign(reg, Touched::Interrupt(34)));
                assert_eq!(t.m.take(), [], "{bank:#x}");
                let (reg, bit) = bit_reg(bank, OWN);
                assert_eq!(t.w(0, reg, 4, bit).foreign, None);
                let calls = t.m.take();
                assert!(!calls.is_empty(), "{bank:#x}");
                assert!(calls.iter().all(|c| c.intid() == OWN && c.vcpu().is_none()));
            }
            // Every other SPI, one bit at a time, in every bank.
            for intid in (32..1020).filter(|&i| i != OWN) {
                for bank in SPI_BANKS {
                    let (reg, bit) = bit_reg(bank, intid);
                    let o = t.w(1, reg, 4, bit);
                    assert_eq!(o.foreign, dist_foreign(reg, Touched::Interrupt(intid)));
                }
                let o = t.w(1, GICD_IPRIORITYR + u64::from(intid), 1, 0);
                assert!(o.foreign.is_some(), "priority of {intid}");
                if version == V3 {
                    let o = t.w(1, GICD_IROUTER + 8 * u64::from(intid), 8, 0);
                    assert!(o.foreign.is_some(), "route of {intid}");
                } else {
                    let o = t.w(1, GICD_ITARGETSR + u64::from(intid), 1, 1);
                    assert!(o.foreign.is_some(), "targets of {intid}");
                }
            }
            assert_eq!(t.m.take(), []);

            // Priority: byte of 34 refused, byte of 33 taken (virtual: the
            // hardware never hears of a priority).
            let o = t.w(0, GICD_IPRIORITYR + 34, 1, 0x80);
            assert_eq!(o.foreign, dist_foreign(0x422, Touched::Interrupt(34)));
            assert_eq!(t.m.take(), []);
            assert_eq!(t.w(0, GICD_IPRIORITYR + 33, 1, 0x80).foreign, None);
            assert_eq!(t.m.take(), []);
            assert_eq!(t.r(0, GICD_IPRIORITYR + 33, 1).value, 0x80);
            // A whole-register write: zero bytes of others are a quiet
            // read-modify-write, a non-zero one is reported (33 still set).
            assert_eq!(t.w(0, 0x420, 4, 0x0000_4000).foreign, None);
            assert_eq!(t.m.take(), []);
            assert_eq!(t.r(0, GICD_IPRIORITYR + 33, 1).value, 0x40);
            let o = t.w(0, 0x420, 4, 0x0010_4000);
            assert_eq!(o.foreign, dist_foreign(0x420, Touched::Interrupt(34)));
            assert_eq!(t.m.take(), []);
            assert_eq!(t.r(0, 0x420, 4).value, 0x0000_4000);

            // Trigger: edge bit of 34 refused, 33's applied.
            let o = t.w(0, GICD_ICFGR + 8, 4, 0b10 << 4);
            assert_eq!(o.foreign, dist_foreign(0xc08, Touched::Interrupt(34)));
            assert!(t.m.take().iter().all(|c| c.intid() == OWN));
            assert_eq!(t.w(0, GICD_ICFGR + 8, 4, 0b10 << 2).foreign, None);
            assert_eq!(
                t.m.take(),
                [Call::Edge(33, None), Call::SetEdge(33, None, true)]
            );
            assert_eq!(t.read32(0, GICD_ICFGR + 8), 0b10 << 2);
            assert_eq!(t.m.take(), [Call::Edge(33, None)]);

            // Routing.
            if version == V3 {
                let o = t.w(0, GICD_IROUTER + 8 * 34, 8, 1);
                assert_eq!(o.foreign, dist_foreign(0x6110, Touched::Interrupt(34)));
                assert_eq!(t.m.take(), []);
                assert_eq!(t.w(0, GICD_IROUTER + 8 * 33, 8, 1).foreign, None);
                assert_eq!(t.m.take(), [Call::Route(33, 1)]);
            } else {
                let o = t.w(0, GICD_ITARGETSR + 34, 1, 2);
                assert_eq!(o.foreign, dist_foreign(0x822, Touched::Interrupt(34)));
                assert_eq!(t.m.take(), []);
                assert_eq!(t.w(0, GICD_ITARGETSR + 33, 1, 2).foreign, None);
                // (33 was left disabled by the ICENABLER test above.)
                assert_eq!(
                    t.m.take(),
                    [Call::Route(33, 1), Call::SetEnabled(33, None, false)]
                );
            }
        }
    }

    #[test]
    fn reads_show_only_owned_interrupts() {
        for version in [V3, V2] {
            let mut t = T::new(version, 2, &[1]);
            // Hardware state of 33 and of 34, which belongs to someone else.
            for i in [33, 34] {
                t.m.pending.insert((i, None));
                t.m.active.insert((i, None));
                t.m.edge.insert((i, None));
            }
            t.m.prio.insert((34, None), 0x40);
            t.w(0, GICD_IPRIORITYR + 33, 1, 0x80);
            t.w(0, GICD_ISENABLER + 4, 4, 1 << 1);
            t.m.take();
            assert_eq!(t.read32(0, GICD_ISENABLER + 4), 0b10);
            assert_eq!(t.read32(0, GICD_ICENABLER + 4), 0b10);
            assert_eq!(t.read32(0, GICD_ISPENDR + 4), 0b10);
            assert_eq!(t.read32(0, GICD_ICACTIVER + 4), 0b10);
            assert_eq!(t.read32(0, GICD_ISPENDR + 8), 0);
            assert_eq!(t.read32(0, 0x420), 0x0000_8000);
            assert_eq!(t.r(0, 0x421, 1).value, 0x80);
            assert_eq!(t.r(0, 0x422, 1).value, 0);
            assert_eq!(t.read32(0, GICD_ICFGR + 8), 0b10 << 2);
            let group = if version == V3 { 0b10 } else { 0 };
            assert_eq!(t.read32(0, GICD_IGROUPR + 4), group);
            if version == V3 {
                assert_eq!(t.r(0, GICD_IROUTER + 8 * 34, 8).value, 0);
            } else {
                assert_eq!(t.read32(0, GICD_ITARGETSR + 32), 0x0000_0100);
            }
            // Reading never even asks the hardware about 34.
            assert!(t.m.take().iter().all(|c| c.intid() == OWN));
            // Writing to IGROUPR: owned bits are fixed, others reported.
            assert_eq!(t.w(0, GICD_IGROUPR + 4, 4, 0b10).foreign, None);
            assert!(t.w(0, GICD_IGROUPR + 4, 4, 0b100).foreign.is_some());
            assert_eq!(t.read32(0, GICD_IGROUPR + 4), group);
        }
    }

    #[test]
    fn v3_irouter_translates_own_affinities_only() {
        let mut t = T::new(V3, 2, &[1]);
        let reg = GICD_IROUTER + 8 * 33;
        assert_eq!(t.r(0, reg, 8).value, 0, "reset route: vCPU 0");
        assert_eq!(t.w(0, reg, 8, 1).foreign, None);
        assert_eq!(t.m.take(), [Call::Route(33, 1)]);
        assert_eq!(t.r(1, reg, 8).value, 1);
        // IRM: any vCPU; reads back as such, routed to vCPU 0.
        assert_eq!(t.w(0, reg, 8, 1 << 31).foreign, None);
        assert_eq!(t.m.take(), [Call::Route(33, 0)]);
        assert_eq!(t.r(0, reg, 8).value, 1 << 31);
        // No vCPU 2; no cluster 1; no Aff2/Aff3.
        for bad in [2u64, 0xff, 0x100, 0x1_0000, 0x1_0000_0000, 0x101] {
            let o = t.w(0, reg, 8, bad);
            assert_eq!(
                o.foreign,
                dist_foreign(reg, Touched::Route(bad)),
                "{bad:#x}"
            );
            assert_eq!(t.m.take(), []);
            assert_eq!(t.r(0, reg, 8).value, 1 << 31, "unchanged");
        }
        // 32-bit halves.
        assert_eq!(t.w(0, reg, 4, 1).foreign, None);
        assert_eq!(t.m.take(), [Call::Route(33, 1)]);
        assert_eq!(t.r(0, reg, 4).value, 1);
        assert_eq!(t.r(0, reg + 4, 4).value, 0);
        let o = t.w(0, reg + 4, 4, 1);
        assert_eq!(
            o.foreign,
            dist_foreign(reg + 4, Touched::Route(0x1_0000_0001))
        );
        assert_eq!(t.w(0, reg + 4, 4, 0).foreign, None);
        assert_eq!(t.m.take(), [Call::Route(33, 1)]);
        // RES0 bits are ignored.
        assert_eq!(t.w(0, reg, 8, 0xff00_0000_7f00_0000).foreign, None);
        assert_eq!(t.m.take(), [Call::Route(33, 0)]);
        // Wrong sizes, reserved IROUTER0-31: nothing.
        assert_eq!(t.w(0, reg, 2, 1), Outcome::default());
        assert_eq!(t.w(0, reg + 4, 8, 1), Outcome::default());
        assert_eq!(t.w(0, GICD_IROUTER + 8 * 27, 8, 1), Outcome::default());
        assert_eq!(t.m.take(), []);
        // GICv2 has no IROUTER.
        let mut t = T::new(V2, 2, &[1]);
        assert_eq!(t.w(0, reg, 8, 1), Outcome::default());
        assert_eq!(t.r(0, reg, 8).value, 0);
        assert_eq!(t.m.take(), []);
    }

    #[test]
    fn v2_itargetsr_translates_own_vcpus_only() {
        let mut t = T::new(V2, 2, &[1]);
        t.dist_on();
        let reg = GICD_ITARGETSR + 33;
        assert_eq!(t.r(0, reg, 1).value, 0b01, "reset: vCPU 0");
        t.w(0, GICD_ISENABLER + 4, 4, 0b10);
        assert_eq!(t.m.take(), [Call::SetEnabled(33, None, true)]);
        // Lowest selected vCPU.
        assert_eq!(t.w(0, reg, 1, 0b10).foreign, None);
        assert_eq!(
            t.m.take(),
            [Call::Route(33, 1), Call::SetEnabled(33, None, true)]
        );
        assert_eq!(t.w(0, reg, 1, 0b11).foreign, None);
        assert_eq!(
            t.m.take(),
            [Call::Route(33, 0), Call::SetEnabled(33, None, true)]
        );
        assert_eq!(t.r(1, reg, 1).value, 0b11);
        // Bits of vCPUs the domain does not have: reported and dropped.
        let o = t.w(0, reg, 1, 0b1000_0110);
        assert_eq!(o.foreign, dist_foreign(reg, Touched::Route(0b1000_0110)));
        assert_eq!(
            t.m.take(),
            [Call::Route(33, 1), Call::SetEnabled(33, None, true)]
        );
        assert_eq!(t.r(0, reg, 1).value, 0b10);
        let o = t.w(0, reg, 1, 0b100);
        assert!(o.foreign.is_some());
        // No target at all: not forwarded.
        assert_eq!(t.m.take(), [Call::SetEnabled(33, None, false)]);
        assert_eq!(t.r(0, reg, 1).value, 0);
        assert!(!t.deliverable(0, 33));
        // Whole-register access.
        assert_eq!(t.w(1, 0x820, 4, 0x0000_0100).foreign, None);
        assert_eq!(
            t.m.take(),
            [Call::Route(33, 0), Call::SetEnabled(33, None, true)]
        );
        assert_eq!(t.read32(1, 0x820), 0x0000_0100);
        assert!(t.deliverable(1, 33));
        // Banked ITARGETSR0-7: the reader, for SGIs and the timer; read-only.
        assert_eq!(t.read32(1, GICD_ITARGETSR), 0x0202_0202);
        assert_eq!(t.read32(0, GICD_ITARGETSR + 24), 0x0100_0000);
        assert_eq!(t.read32(0, GICD_ITARGETSR + 16), 0);
        assert_eq!(t.w(0, GICD_ITARGETSR, 4, 0xffff_ffff), Outcome::default());
        assert_eq!(t.m.take(), []);
    }

    #[test]
    fn sgi_registers_are_decoded_by_their_architectural_encodings() {
        assert_eq!(
            SgiRegister::decode((3, 0, 12, 11, 5)),
            Some(SgiRegister::Sgi1r)
        );
        assert_eq!(
            SgiRegister::decode((3, 0, 12, 11, 6)),
            Some(SgiRegister::Asgi1r)
        );
        assert_eq!(
            SgiRegister::decode((3, 0, 12, 11, 7)),
            Some(SgiRegister::Sgi0r)
        );
        // Not SGI registers: other op1 values (no such registers), and the
        // neighbours in CRm 11 (ICC_DIR_EL1, ICC_RPR_EL1).
        for enc in [
            (3, 1, 12, 11, 6),
            (3, 2, 12, 11, 7),
            (3, 4, 12, 11, 5),
            (3, 0, 12, 11, 1),
            (3, 0, 12, 11, 3),
            (3, 0, 12, 12, 5),
            (2, 0, 12, 11, 5),
        ] {
            assert_eq!(SgiRegister::decode(enc), None, "{enc:?}");
        }
        assert_eq!(SgiRegister::Sgi0r.name(), "ICC_SGI0R_EL1");
    }

    #[test]
    fn sgi1r_reaches_own_vcpus_only() {
        let mut t = T::new(V3, 3, &[]);
        t.dist_on();
        for v in 0..3 {
            t.wr(
                0,
                v * VGICR_STRIDE + GICR_SGI_BASE + GICD_ISENABLER,
                4,
                0xffff,
            );
        }
        let sgi = |intid: u64, list: u64| (intid << 24) | list;
        let req = |intid: u32, targets: u8, foreign: bool| (intid, targets, 0u8, foreign);
        let s = |r: SgiRequest| (r.intid, r.targets, r.latched, r.foreign);
        assert_eq!(s(t.sgi1r(0, sgi(5, 0b101))), req(5, 0b101, false));
        assert_eq!(s(t.sgi1r(0, sgi(15, 0b1001))), req(15, 0b001, true));
        assert_eq!(s(t.sgi1r(2, sgi(1, 0xffff))), req(1, 0b111, true));
        assert_eq!(s(t.sgi1r(1, sgi(0, 0))), req(0, 0, false));
        // IRM: every other vCPU of the domain.
        assert_eq!(s(t.sgi1r(1, (1 << 40) | sgi(2, 0))), req(2, 0b101, false));
        assert_eq!(
            s(t.sgi1r(0, (1 << 40) | sgi(2, 0xffff))),
            req(2, 0b110, false)
        );
        // Other clusters, range selectors: nobody in the domain.
        for high in [1u64 << 16, 1 << 32, 1 << 44, 1 << 48, 0xff << 48] {
            assert_eq!(
                s(t.sgi1r(0, high | sgi(3, 1))),
                req(3, 0, true),
                "{high:#x}"
            );
        }
        // Fields outside INTID/targets do not matter (bits 31:28, 43:41).
        assert_eq!(
            s(t.sgi1r(0, (0xf << 28) | (0b111 << 41) | sgi(4, 2))),
            req(4, 2, false)
        );
        // Each target's priority comes with the request (its own banked one).
        t.wr(
            2,
            2 * VGICR_STRIDE + GICR_SGI_BASE + GICD_IPRIORITYR + 5,
            1,
            0x80,
        );
        let r = t.sgi1r(0, sgi(5, 0b101));
        assert_eq!(r.priorities[2], 0x80);
        assert_ne!(r.priorities[0], 0x80);
        let one = T::new(V3, 1, &[]);
        let mut one = one;
        one.dist_on();
        assert_eq!(one.sgi1r(0, 1 << 40).targets, 0, "alone: nobody else");
        // Whatever the value and sender, targets stay inside the domain.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let r = t.sgi1r((x >> 60) as usize, x);
            assert_eq!((r.targets | r.latched) & !0b111, 0, "{x:#x}");
            assert!(r.intid < 16);
        }
    }

    #[test]
    fn v2_sgir_filters() {
        let mut t = T::new(V2, 3, &[]);
        t.dist_on();
        for v in 0..3 {
            t.w(v, GICD_ISENABLER, 4, 0xffff);
        }
        let mut send = |sender: usize, value: u32| {
            let o = t.w(sender, GICD_SGIR, 4, u64::from(value));
            (o.sgi.unwrap(), o.foreign)
        };
        let (r, f) = send(0, (0b110 << 16) | 7);
        assert_eq!((r.intid, r.targets, r.foreign, f), (7, 0b110, false, None));
        let value = (0b1000_0001 << 16) | 3;
        let (r, f) = send(0, value);
        assert_eq!((r.targets, r.foreign), (0b001, true));
        assert_eq!(
            f,
            dist_foreign(GICD_SGIR, Touched::SgiTargets(u64::from(value)))
        );
        let (r, f) = send(1, (1 << 24) | (0xff << 16) | 1);
        assert_eq!(
            (r.targets, r.foreign, f),
            (0b101, false, None),
            "all but self"
        );
        let (r, _) = send(2, (2 << 24) | 2);
        assert_eq!(r.targets, 0b100, "self");
        let (r, f) = send(2, (3 << 24) | (0xff << 16));
        assert_eq!(
            (r.targets, r.latched, r.foreign, f),
            (0, 0, false, None),
            "reserved"
        );
        assert_eq!(t.r(0, GICD_SGIR, 4).value, 0, "write-only");
        // A GICv3 distributor has no SGIR.
        let mut t = T::new(V3, 3, &[]);
        assert_eq!(t.w(0, GICD_SGIR, 4, 0b111 << 16).sgi, None);
    }

    #[test]
    fn disabled_sgis_are_latched_until_deliverable() {
        let mut t = T::new(V3, 2, &[]);
        t.dist_on();
        let frame1 = VGICR_STRIDE + GICR_SGI_BASE;
        // vCPU 1 has SGI 3 disabled: latched, not delivered.
        let r = t.sgi1r(0, (3 << 24) | 0b10);
        assert_eq!((r.targets, r.latched), (0, 0b10));
        assert_eq!(t.rr(1, frame1 + GICD_ISPENDR, 4).value, 1 << 3);
        assert_eq!(t.vd.take_sgi(&t.d, 1), None);
        // Enabling it (from another vCPU's trap) makes it ready.
        let o = t.wr(0, frame1 + GICD_ISENABLER, 4, 1 << 3);
        assert_eq!(o.sgi_ready, 0b10);
        let got = t.vd.take_sgi(&t.d, 1).unwrap();
        assert_eq!(
            got,
            Virq {
                intid: 3,
                hw: false,
                priority: RESET_PRIORITY,
                source: 0
            }
        );
        assert_eq!(t.vd.take_sgi(&t.d, 1), None);
        assert_eq!(t.rr(1, frame1 + GICD_ISPENDR, 4).value, 0);
        // Now enabled: delivered at once, nothing latched.
        let r = t.sgi1r(0, (3 << 24) | 0b10);
        assert_eq!((r.targets, r.latched), (0b10, 0));
        // Pended by a register write; cleared by one.
        t.wr(1, frame1 + GICD_IPRIORITYR + 3, 1, 0x47);
        let o = t.wr(1, frame1 + GICD_ISPENDR, 4, 1 << 3);
        assert_eq!(o.sgi_ready, 0b10);
        t.wr(1, frame1 + GICD_ICPENDR, 4, 1 << 3);
        assert_eq!(t.vd.sgi_ready(&t.d), 0);
        t.wr(1, frame1 + GICD_ISPENDR, 4, 1 << 3);
        assert_eq!(t.vd.take_sgi(&t.d, 1).map(|v| v.priority), Some(0x40));
        // Distributor off: everything waits.
        t.wr(1, frame1 + GICD_ISPENDR, 4, 1 << 3);
        assert_eq!(t.w(0, GICD_CTLR, 4, 0).sgi_ready, 0);
        assert_eq!(t.vd.take_sgi(&t.d, 1), None);
        let r = t.sgi1r(1, 1 << 40);
        assert_eq!((r.targets, r.latched), (0, 0b01));
        assert_eq!(
            t.w(0, GICD_CTLR, 4, 0b10).sgi_ready,
            0b10,
            "vCPU 0's SGI 0 is disabled"
        );
        t.vd.pend_sgi(&t.d, 0, 9, 1);
        t.wr(0, GICD_ISENABLER + GICR_SGI_BASE, 4, 1 << 9);
        assert_eq!(t.vd.sgi_ready(&t.d), 0b11);

        // GICv2: one pending bit per source.
        let mut t = T::new(V2, 3, &[]);
        t.dist_on();
        for sender in [2, 0] {
            let o = t.w(sender, GICD_SGIR, 4, (0b010 << 16) | 3);
            assert_eq!(o.sgi.map(|r| r.latched), Some(0b010));
        }
        assert_eq!(t.r(1, GICD_SPENDSGIR + 3, 1).value, 0b101);
        assert_eq!(t.read32(1, GICD_CPENDSGIR), 0x0500_0000);
        assert_eq!(t.read32(1, GICD_ISPENDR), 1 << 3);
        assert_eq!(t.read32(0, GICD_ISPENDR), 0, "banked per vCPU");
        // ISPENDR0 cannot pend SGIs on GICv2.
        t.w(1, GICD_ISPENDR, 4, 1 << 4);
        assert_eq!(t.read32(1, GICD_ISPENDR), 1 << 3);
        let o = t.w(1, GICD_ISENABLER, 4, 1 << 3);
        assert_eq!(o.sgi_ready, 0b010);
        let a = t.vd.take_sgi(&t.d, 1).unwrap();
        let b = t.vd.take_sgi(&t.d, 1).unwrap();
        assert_eq!((a.intid, a.source, b.intid, b.source), (3, 0, 3, 2));
        assert_eq!(t.vd.take_sgi(&t.d, 1), None);
        // SPENDSGIR / CPENDSGIR; sources of no vCPU are dropped.
        t.w(1, GICD_SPENDSGIR + 4, 1, 0xff);
        assert_eq!(t.r(1, GICD_SPENDSGIR + 4, 1).value, 0b111);
        t.w(1, GICD_CPENDSGIR + 4, 1, 0b011);
        assert_eq!(t.r(1, GICD_SPENDSGIR + 4, 1).value, 0b100);
    }

    #[test]
    fn redistributor_frames_describe_own_vcpus_only() {
        let mut t = T::new(V3, 3, &[]);
        for n in 0..3u64 {
            let rd = n * VGICR_STRIDE;
            let last = if n == 2 { 1 << 4 } else { 0 };
            let typer = (n << 32) | (n << 8) | last;
            assert_eq!(
                t.rr(0, rd + GICR_TYPER, 8),
                Outcome {
                    value: typer,
                    ..Outcome::default()
                }
            );
            assert_eq!(t.rr(1, rd + GICR_TYPER, 4).value, typer & 0xffff_ffff);
            assert_eq!(t.rr(2, rd + GICR_TYPER + 4, 4).value, n);
            assert_eq!(t.rr(0, rd + GICR_IIDR, 4).value, u64::from(IIDR));
            assert_eq!(t.rr(0, rd + GICR_PIDR2, 4).value, 0x30);
            assert_eq!(t.rr(0, rd + GICR_CTLR, 4).value, 0);
            // Waking up.
            assert_eq!(t.rr(0, rd + GICR_WAKER, 4).value, 0b110);
            t.wr(0, rd + GICR_WAKER, 4, 0);
            assert_eq!(t.rr(0, rd + GICR_WAKER, 4).value, 0);
            let sgi = rd + GICR_SGI_BASE;
            assert_eq!(t.rr(0, sgi + GICD_IGROUPR, 4).value, 0x0800_ffff);
            assert_eq!(t.rr(0, sgi + GICD_ICFGR, 4).value, 0xaaaa_aaaa);
            assert_eq!(t.rr(0, sgi + GICD_ICFGR + 4, 4).value, 0);
        }
        // Put vCPU 1 back to sleep; the others stay awake.
        t.wr(2, VGICR_STRIDE + GICR_WAKER, 4, 0b10);
        assert_eq!(t.rr(0, VGICR_STRIDE + GICR_WAKER, 4).value, 0b110);
        assert_eq!(t.rr(0, GICR_WAKER, 4).value, 0);
        // Frames past the last vCPU are foreign, for reads and writes.
        for off in [
            3 * VGICR_STRIDE,
            3 * VGICR_STRIDE + GICR_TYPER,
            7 * VGICR_STRIDE + 0x1_0100,
            u64::MAX,
        ] {
            let o = t.rr(0, off, 4);
            let n = off / VGICR_STRIDE;
            let f = Foreign {
                region: Region::Redistributors,
                offset: off,
                write: false,
                what: Touched::Vcpu(n),
            };
            assert_eq!(
                o,
                Outcome {
                    foreign: Some(f),
                    ..Outcome::default()
                }
            );
            let o = t.wr(0, off, 4, 0xffff_ffff);
            assert_eq!(o.foreign, Some(Foreign { write: true, ..f }));
        }
        assert_eq!(t.m.take(), []);
        // A GICv2 domain has no redistributors.
        let mut t = T::new(V2, 3, &[]);
        assert_eq!(t.rr(0, GICR_TYPER, 8), Outcome::default());
        assert_eq!(
            t.wr(0, GICR_SGI_BASE + GICD_ISENABLER, 4, !0),
            Outcome::default()
        );
        assert_eq!(t.m.take(), []);
    }

    #[test]
    fn the_timer_ppi_reaches_its_own_core_and_other_ppis_do_not_exist() {
        let mut t = T::new(V3, 2, &[]);
        let sgi1 = VGICR_STRIDE + GICR_SGI_BASE;
        // Linux-style: every PPI enabled, every SGI enabled.
        assert_eq!(t.wr(0, sgi1 + GICD_ISENABLER, 4, 0xffff_ffff).foreign, None);
        assert_eq!(t.m.take(), [Call::SetEnabled(27, Some(1), true)]);
        assert_eq!(t.rr(0, sgi1 + GICD_ISENABLER, 4).value, 0x0800_ffff);
        assert!(t.deliverable(1, 27));
        assert!(!t.deliverable(0, 27));
        assert!(!t.deliverable(1, 26) && !t.deliverable(1, 30) && !t.deliverable(5, 27));
        // Pending/active of the timer go to hardware; other PPIs are ignored.
        t.wr(0, sgi1 + GICD_ISPENDR, 4, 0xffff_0000);
        t.wr(0, sgi1 + GICD_ICACTIVER, 4, 0xffff_0000);
        assert_eq!(
            t.m.take(),
            [
                Call::SetPending(27, Some(1), true),
                Call::SetActive(27, Some(1), false)
            ]
        );
        assert_eq!(t.rr(1, sgi1 + GICD_ISPENDR, 4).value, 1 << 27);
        t.m.take();
        // Virtual priorities, five bits, only for SGIs and the timer.
        t.wr(0, sgi1 + GICD_IPRIORITYR + 24, 4, 0x8787_8787);
        assert_eq!(t.rr(0, sgi1 + GICD_IPRIORITYR + 24, 4).value, 0x8000_0000);
        assert_eq!(t.vd.priority(&t.d, &t.m, 1, 27), 0x80);
        assert_eq!(t.vd.priority(&t.d, &t.m, 1, 26), 0xff);
        assert_eq!(t.vd.priority(&t.d, &t.m, 0, 27), RESET_PRIORITY);
        t.wr(1, sgi1 + GICD_IPRIORITYR + 2, 1, 0x11);
        assert_eq!(t.vd.priority(&t.d, &t.m, 1, 2), 0x10);
        t.wr(0, sgi1 + GICD_ICENABLER, 4, 0xffff_ffff);
        assert_eq!(t.m.take(), [Call::SetEnabled(27, Some(1), false)]);
        assert!(!t.deliverable(1, 27));
        // The GICv3 distributor's banked registers are RAZ/WI (ARE).
        assert_eq!(t.w(1, GICD_ISENABLER, 4, !0), Outcome::default());
        assert_eq!(t.read32(1, GICD_ISENABLER), 0);
        assert_eq!(t.w(1, GICD_IPRIORITYR, 4, !0), Outcome::default());
        assert_eq!(t.m.take(), []);

        // GICv2: the banked distributor registers are the caller's own.
        let mut t = T::new(V2, 2, &[]);
        assert_eq!(t.w(1, GICD_ISENABLER, 4, 0xffff_ffff).foreign, None);
        assert_eq!(t.m.take(), [Call::SetEnabled(27, Some(1), true)]);
        assert_eq!(t.read32(1, GICD_ISENABLER), 0x0800_ffff);
        assert_eq!(t.read32(0, GICD_ISENABLER), 0);
        assert_eq!(t.read32(0, GICD_IGROUPR), 0, "group 0 on GICv2");
        assert_eq!(t.read32(0, GICD_ICFGR), 0xaaaa_aaaa);
        assert_eq!(t.read32(0, GICD_ICFGR + 4), 0);
        t.w(0, GICD_IPRIORITYR + 27, 1, 0x30);
        assert_eq!(t.vd.priority(&t.d, &t.m, 0, 27), 0x30);
        assert_eq!(t.vd.priority(&t.d, &t.m, 1, 27), RESET_PRIORITY);
        assert!(t.m.take().iter().all(|c| c.vcpu().is_some()));
    }

    #[test]
    fn the_distributor_enable_gates_spis_in_hardware() {
        let mut t = T::new(V3, 1, &[1]);
        t.w(0, GICD_ISENABLER + 4, 4, 0b10);
        assert_eq!(t.m.take(), [Call::SetEnabled(33, None, false)]);
        assert_eq!(t.read32(0, GICD_ISENABLER + 4), 0b10, "the guest's view");
        assert!(!t.deliverable(0, 33));
        assert_eq!(t.read32(0, GICD_CTLR), 0x50, "ARE and DS");
        t.w(0, GICD_CTLR, 4, 0xffff_ffff);
        assert_eq!(t.m.take(), [Call::SetEnabled(33, None, true)]);
        assert_eq!(t.read32(0, GICD_CTLR), 0x53);
        assert!(t.deliverable(0, 33));
        assert!(!t.deliverable(0, 34));
        assert!(!t.deliverable(0, 1023));
        assert!(!t.deliverable(0, u32::MAX));
        t.w(0, GICD_CTLR, 4, 0b01);
        assert_eq!(t.m.take(), [Call::SetEnabled(33, None, false)]);
        assert!(!t.deliverable(0, 33));
        t.w(0, GICD_ICENABLER + 4, 4, 0b10);
        t.w(0, GICD_CTLR, 4, 0b10);
        assert_eq!(
            t.m.take(),
            [
                Call::SetEnabled(33, None, false),
                Call::SetEnabled(33, None, false)
            ]
        );
        let mut t = T::new(V2, 1, &[1]);
        t.w(0, GICD_CTLR, 4, 0b1);
        t.w(0, GICD_ISENABLER + 4, 4, 0b10);
        assert_eq!(t.read32(0, GICD_CTLR), 1);
        assert!(t.deliverable(0, 33));
        t.w(0, GICD_IPRIORITYR + 33, 1, 0x60);
        assert_eq!(t.vd.priority(&t.d, &t.m, 0, 33), 0x60);
        assert_eq!(t.vd.priority(&t.d, &t.m, 0, 34), 0xff);
    }

    #[test]
    fn identification_registers() {
        let mut t = T::new(V3, 2, &[1]);
        assert_eq!(t.read32(0, GICD_TYPER), 8 | (9 << 19));
        assert_eq!(t.read32(0, GICD_IIDR), u64::from(IIDR));
        assert_eq!(t.read32(0, GICD_PIDR2), 0x30);
        assert_eq!(t.read32(0, GICD_PIDR2_V2), 0, "reserved on GICv3");
        let mut t = T::new(V2, 2, &[1]);
        assert_eq!(t.read32(0, GICD_TYPER), 8 | (1 << 5));
        assert_eq!(t.read32(0, GICD_PIDR2), 0x20);
        assert_eq!(t.read32(0, GICD_PIDR2_V2), 0x20, "GICv2 layout");
        assert_eq!((t.read32(0, GICD_PIDR2) >> 4) & 0xf, 2);
        // An SPI past 256 widens ITLinesNumber to cover it.
        let mut t = T::new(V2, 4, &[300]);
        assert_eq!(t.read32(0, GICD_TYPER), 10 | (3 << 5));
        let mut t = T::new(V3, 1, &[987]);
        assert_eq!(t.read32(0, GICD_TYPER) & 0x1f, 31);
        // Unknown offsets read as zero and are never foreign.
        for off in [
            0x00c,
            0x010,
            0xd00,
            0xe00,
            0xf30,
            0x5ffc,
            0x8000,
            0xffd0,
            0xfffc,
            0x1_0000,
            u64::MAX - 3,
        ] {
            assert_eq!(t.r(0, off, 4), Outcome::default(), "{off:#x}");
            assert_eq!(t.w(0, off, 4, !0), Outcome::default(), "{off:#x}");
        }
    }

    #[test]
    fn wrong_sizes_and_alignment_are_ignored() {
        let mut t = T::new(V3, 2, &[1]);
        t.dist_on();
        let (reg, bit) = bit_reg(GICD_ISENABLER, 33);
        for (off, size) in [
            (reg, 1),
            (reg, 2),
            (reg, 8),
            (reg + 1, 4),
            (reg + 2, 2),
            (reg, 3),
            (reg, 0),
        ] {
            assert_eq!(t.w(0, off, size, !0), Outcome::default(), "{off:#x}/{size}");
            assert_eq!(t.r(0, off, size), Outcome::default());
        }
        assert_eq!(
            t.w(0, 0x421, 2, !0),
            Outcome::default(),
            "priority halfword"
        );
        assert_eq!(t.w(0, 0x421, 4, !0), Outcome::default(), "misaligned word");
        assert_eq!(t.w(0, GICD_CTLR, 8, !0), Outcome::default());
        assert_eq!(t.m.take(), []);
        // The right size works; a read zero-extends to the size.
        t.w(0, reg, 4, bit);
        assert_eq!(t.r(0, reg, 4).value, bit);
        t.w(0, 0x421, 1, 0xc0);
        assert_eq!(t.r(0, 0x421, 1).value, 0xc0);
        // Calls with a vCPU the domain does not have do nothing.
        assert_eq!(t.w(2, reg, 4, bit), Outcome::default());
        assert_eq!(t.r(9, reg, 4), Outcome::default());
        assert_eq!(t.rr(usize::MAX, GICR_TYPER, 8), Outcome::default());
        assert_eq!(
            t.sgi1r(2, 0xffff),
            SgiRequest {
                foreign: true,
                ..SgiRequest::default()
            }
        );
    }

    /// A domain's SPI priorities are virtual: whatever it writes (byte or
    /// word, up to 0, the highest), the physical priority stays
    /// RESET_PRIORITY, below the partitioner's own interrupts; the guest
    /// reads back, and its list registers carry, what it wrote.
    #[test]
    fn spi_priorities_never_reach_the_hardware() {
        for v in [V2, V3] {
            let mut t = T::new(v, 2, &[1, 2, 3]);
            t.vd.reset(&t.d, &mut t.m);
            t.dist_on();
            // 0x400 + 32: INTIDs 32 (not owned), 33, 34, 35.
            let o = t.w(0, GICD_IPRIORITYR + 32, 4, 0x1800_0800);
            assert_eq!(o.foreign, None, "{v:?}: zero for the foreign byte");
            t.w(1, GICD_IPRIORITYR + 35, 1, 0x00);
            t.w(0, GICD_IPRIORITYR + 34, 1, 0x47);
            let calls = t.m.take();
            assert!(
                !calls.iter().any(|c| matches!(c, Call::SetPriority(..))),
                "{v:?}: {calls:?}"
            );
            for intid in [33, 34, 35] {
                assert_eq!(t.m.prio.get(&(intid, None)), Some(&RESET_PRIORITY));
            }
            // What the guest sees: its own values (five bits), per SPI.
            assert_eq!(t.read32(0, GICD_IPRIORITYR + 32), 0x0040_0800, "{v:?}");
            assert_eq!(t.r(1, GICD_IPRIORITYR + 34, 1).value, 0x40);
            assert_eq!(t.vd.priority(&t.d, &t.m, 0, 33), 0x08);
            assert_eq!(t.vd.priority(&t.d, &t.m, 1, 35), 0x00);
            assert_eq!(t.vd.priority(&t.d, &t.m, 0, 32), 0xff, "not owned");
            const { assert!(PARTITIONER_PRIORITY < RESET_PRIORITY) };
            // Reset: virtual back to the default, physical set again.
            t.vd.reset(&t.d, &mut t.m);
            assert_eq!(t.vd.priority(&t.d, &t.m, 0, 35), RESET_PRIORITY);
            assert_eq!(t.m.prio.get(&(35, None)), Some(&RESET_PRIORITY));
        }
    }

    #[test]
    fn reset_restores_the_reset_state() {
        for version in [V3, V2] {
            let mut t = T::new(version, 2, &[1, 200]);
            t.dist_on();
            t.w(0, GICD_ISENABLER + 4, 4, 0b10);
            t.w(0, GICD_IPRIORITYR + 33, 1, 0x10);
            t.w(0, GICD_ICFGR + 8, 4, 0b10 << 2);
            if version == V3 {
                t.w(0, GICD_IROUTER + 8 * 33, 8, 1);
                t.wr(0, VGICR_STRIDE + GICR_SGI_BASE + GICD_ISENABLER, 4, !0);
                t.wr(0, VGICR_STRIDE + GICR_WAKER, 4, 0);
            } else {
                t.w(0, GICD_ITARGETSR + 33, 1, 2);
                t.w(1, GICD_ISENABLER, 4, !0);
            }
            t.vd.pend_sgi(&t.d, 1, 4, 0);
            t.m.take();
            t.vd.reset(&t.d, &mut t.m);
            let calls = t.m.take();
            for intid in [33, 232] {
                let expect = [
                    Call::SetEnabled(intid, None, false),
                    Call::SetPending(intid, None, false),
                    Call::SetActive(intid, None, false),
                    Call::SetPriority(intid, None, RESET_PRIORITY),
                    Call::SetEdge(intid, None, false),
                    Call::Route(intid, 0),
                ];
                for c in expect {
                    assert!(calls.contains(&c), "{c:?} in {calls:?}");
                }
            }
            let banked: Vec<Call> = calls.iter().copied().filter(|c| c.intid() < 32).collect();
            if version == V3 {
                for v in 0..2 {
                    for c in [
                        Call::SetEnabled(27, Some(v), false),
                        Call::SetPending(27, Some(v), false),
                        Call::SetActive(27, Some(v), false),
                    ] {
                        assert!(banked.contains(&c), "{c:?}");
                    }
                }
                assert_eq!(banked.len(), 6);
            } else {
                assert_eq!(banked, [], "GICv2 banks are left to reset_vcpu");
            }
            assert!(calls.iter().all(|c| [33, 232, 27].contains(&c.intid())));
            // Virtual state is back to reset.
            assert_eq!(t.vd, VDistributor::new(&t.d));
            assert_eq!(t.read32(0, GICD_ISENABLER + 4), 0);
            assert_eq!(t.vd.sgi_ready(&t.d), 0);
            assert!(!t.deliverable(0, 33));
            if version == V3 {
                assert_eq!(t.r(0, GICD_IROUTER + 8 * 33, 8).value, 0);
                assert_eq!(t.rr(0, VGICR_STRIDE + GICR_WAKER, 4).value, 0b110);
            } else {
                assert_eq!(t.r(0, GICD_ITARGETSR + 33, 1).value, 1);
            }
            // One vCPU restarting: its own banked state, on its own core.
            t.w(1, GICD_ISENABLER, 4, 1 << 27);
            t.m.take();
            t.vd.reset_vcpu(&t.d, &mut t.m, 1);
            assert_eq!(
                t.m.take(),
                [
                    Call::SetEnabled(27, Some(1), false),
                    Call::SetPending(27, Some(1), false),
                    Call::SetActive(27, Some(1), false),
                ]
            );
            t.vd.reset_vcpu(&t.d, &mut t.m, 2);
            assert_eq!(t.m.take(), []);
        }
    }

    /// A physical interrupt the domain deactivated behind its list
    /// register (ICACTIVER) and that fires again is recognised as held,
    /// whatever the entry's state and however it is deactivated; nothing
    /// else is.
    #[test]
    fn a_list_register_holding_a_physical_interrupt_is_recognised() {
        for v in [V2, V3] {
            for how in [Deactivation::Hardware, Deactivation::Maintenance] {
                let hw = Virq {
                    intid: 40,
                    hw: true,
                    priority: 0xa0,
                    source: 0,
                };
                let pending = lr(v, &hw, how);
                let (state_shift, pending_bit) = match v {
                    V3 => (62, 1u64 << 62),
                    V2 => (28, 1u64 << 28),
                };
                let active = (pending & !(0b11 << state_shift)) | (0b10 << state_shift);
                let both = pending | active;
                for l in [pending, active, both] {
                    assert!(lr_holds_physical(v, l, 40), "{v:?} {how:?} {l:#x}");
                    assert!(!lr_holds_physical(v, l, 41), "{v:?} {how:?} {l:#x}");
                }
                // Ended (free): held no more.
                let ended = pending & !pending_bit;
                assert!(!lr_holds_physical(v, ended, 40), "{v:?} {how:?}");
                // A software interrupt of the same INTID (the virtual
                // console's line, an SGI) is not a physical one.
                let soft = Virq { hw: false, ..hw };
                assert!(!lr_holds_physical(v, lr(v, &soft, how), 40), "{v:?}");
                let sgi = Virq {
                    intid: 3,
                    hw: false,
                    ..hw
                };
                assert!(!lr_holds_physical(v, lr(v, &sgi, how), 3), "{v:?}");
            }
        }
    }

    #[test]
    fn list_register_encodings_are_bit_exact() {
        let spi = Virq {
            intid: 33,
            hw: true,
            priority: 0xa0,
            source: 0,
        };
        let sgi = Virq {
            intid: 5,
            hw: false,
            priority: 0x80,
            source: 3,
        };
        let timer = Virq {
            intid: 27,
            hw: true,
            priority: 0xa0,
            source: 0,
        };
        use Deactivation::{Hardware as Hw, Maintenance as Eoi};
        assert_eq!(lr_v3(&spi, Hw), 0x70a0_0021_0000_0021);
        assert_eq!(lr_v3(&sgi, Hw), 0x5080_0000_0000_0005);
        assert_eq!(lr_v3(&timer, Hw), 0x70a0_001b_0000_001b);
        assert_eq!(lr_v2(&timer, Hw), 0x9a00_6c1b);
        assert_eq!(lr_v2(&sgi, Hw), 0x1800_0c05);
        assert_eq!(lr_v2(&spi, Hw), 0x9a00_8421);
        // EOI maintenance instead of the hardware bit: no HW, no pINTID.
        assert_eq!(lr_v2(&timer, Eoi), 0x1a08_001b);
        assert_eq!(lr_v3(&spi, Eoi), 0x50a0_0200_0000_0021);
        assert_eq!(lr_v2(&sgi, Eoi), lr_v2(&sgi, Hw), "software SGIs unchanged");
        let low = Virq {
            intid: 1019,
            hw: false,
            priority: 0xff,
            source: 7,
        };
        assert_eq!(lr_v2(&low, Hw), 0x1f80_03fb, "no CPUID outside SGIs");
        assert_eq!(lr_v3(&low, Hw), 0x50ff_0000_0000_03fb);
        assert_eq!(lr(V3, &spi, Hw), lr_v3(&spi, Hw));
        assert_eq!(lr(V2, &sgi, Hw), u64::from(lr_v2(&sgi, Hw)));

        assert!(lr_is_free_v3(0) && lr_is_free_v2(0));
        assert!(!lr_is_free_v3(lr_v3(&spi, Hw)) && !lr_is_free_v2(lr_v2(&spi, Hw)));
        assert!(
            !lr_is_free_v3(0b10 << 62) && !lr_is_free_v2(0b10 << 28),
            "active"
        );
        assert!(lr_is_free_v3(lr_v3(&spi, Hw) & !(0b11 << 62)));
        assert!(lr_is_free(V2, 0xcfff_ffff));
        assert_eq!(lr_physical(V3, lr_v3(&spi, Hw)), Some(33));
        // Pending, pending and active: yet to be taken. Active or free: no.
        for version in [V2, V3] {
            let shift = if version == V3 { 62 } else { 28 };
            let base = lr(version, &sgi, Hw) & !(0b11 << shift);
            assert!(lr_pending(version, lr(version, &sgi, Hw)));
            assert!(lr_pending(version, base | (0b11 << shift)));
            assert!(!lr_pending(version, base | (0b10 << shift)));
            assert!(!lr_pending(version, base));
            assert!(!lr_pending(version, 0));
        }
        assert_eq!(
            lr_physical(V3, (lr_v3(&timer, Hw) & !(0b11 << 62)) | (0b10 << 62)),
            Some(27)
        );
        assert_eq!(lr_physical(V3, lr_v3(&sgi, Hw)), None);
        assert_eq!(lr_physical(V3, lr_v3(&spi, Hw) & !(0b11 << 62)), None);
        assert_eq!(lr_physical(V2, u64::from(lr_v2(&timer, Hw))), Some(27));
        assert_eq!(lr_physical(V2, u64::from(lr_v2(&sgi, Hw))), None);
        assert_eq!(lr_physical(V2, 0x8000_0000), None);
        assert_eq!(lr_physical(V3, !0), None, "INTID 1020+ is never returned");
        // A maintenance entry names its physical interrupt in every state,
        // including after the guest's EOI (invalid, EOI bit still set).
        let eoi_timer = u64::from(lr_v2(&timer, Eoi));
        assert_eq!(lr_physical(V2, eoi_timer), Some(27));
        assert_eq!(lr_physical(V2, eoi_timer & !(0b11 << 28)), Some(27));
        assert_eq!(lr_physical(V3, lr_v3(&spi, Eoi) & !(0b11 << 62)), Some(33));
        // An SGI never names a physical interrupt, whatever its bits say.
        assert_eq!(
            lr_physical(V2, u64::from(lr_v2(&sgi, Hw)) | (1 << 19)),
            None
        );
    }

    #[test]
    fn a_waiting_interrupt_never_takes_a_second_list_register() {
        use Deactivation::{Hardware as Hw, Maintenance as Eoi};
        let sgi = |source| Virq {
            intid: 5,
            hw: false,
            priority: 0x80,
            source,
        };
        let timer = Virq {
            intid: 27,
            hw: true,
            priority: 0xa0,
            source: 0,
        };
        for v in [V2, V3] {
            let pending = lr(v, &sgi(1), Hw);
            let (state, active) = match v {
                V3 => (0b11u64 << 62, 0b10u64 << 62),
                V2 => (0b11 << 28, 0b10 << 28),
            };
            let active_lr = (pending & !state) | active;
            assert_eq!(lr_match(v, 0, &sgi(1), false), LrMatch::Other, "{v:?} free");
            assert_eq!(
                lr_match(v, pending, &sgi(1), false),
                LrMatch::AlreadyPending
            );
            assert_eq!(
                lr_match(v, active_lr, &sgi(1), false),
                LrMatch::Repend(active_lr | (state & !active))
            );
            assert_eq!(
                lr_match(v, pending | active, &sgi(1), false),
                LrMatch::AlreadyPending
            );
            assert_eq!(
                lr_match(v, lr(v, &timer, Hw), &sgi(1), false),
                LrMatch::Other
            );
            for how in [Hw, Eoi] {
                let t = lr(v, &timer, how);
                assert_eq!(lr_match(v, t, &timer, false), LrMatch::AlreadyPending);
                assert_eq!(
                    lr_match(v, (t & !state) | active, &timer, false),
                    LrMatch::AlreadyPending
                );
            }
        }
        // GICv2 SGIs from different senders are different interrupts.
        assert_eq!(
            lr_match(V2, lr(V2, &sgi(1), Hw), &sgi(2), false),
            LrMatch::Other
        );
        // GICv3 SGIs from different senders merge.
        assert_eq!(
            lr_match(V3, lr(V3, &sgi(1), Hw), &sgi(2), false),
            LrMatch::AlreadyPending
        );
        // Where the virtual IRQ is HCR_EL2.VI (raised at exits only), an SGI
        // active in its entry is not re-pended there: it waits for the
        // guest's EOI, which the EOI bit turns into an exit. Pending, or
        // active and pending, it is already there; other interrupts behave
        // as anywhere.
        let pending = lr(V3, &sgi(1), Hw);
        let active_lr = (pending & !(0b11 << 62)) | (0b10 << 62);
        let eoi = 1u64 << 41;
        assert_eq!(
            lr_match(V3, active_lr, &sgi(2), true),
            LrMatch::WaitForEoi(active_lr | eoi)
        );
        // Already EOI-maintained (`lr_with_eoi_maintenance`): still an SGI
        // to wait for, never taken for a physically backed entry, which
        // would drop the new SGI.
        assert_eq!(lr_with_eoi_maintenance(active_lr), Some(active_lr | eoi));
        assert_eq!(
            lr_match(V3, active_lr | eoi, &sgi(1), true),
            LrMatch::WaitForEoi(active_lr | eoi)
        );
        assert_eq!(
            lr_match(V3, active_lr | eoi, &sgi(1), false),
            LrMatch::Repend(active_lr | eoi | (0b01 << 62))
        );
        assert_eq!(
            lr_match(V3, pending, &sgi(1), true),
            LrMatch::AlreadyPending
        );
        assert_eq!(
            lr_match(V3, pending | (0b10 << 62), &sgi(1), true),
            LrMatch::AlreadyPending
        );
        let spi = Virq {
            intid: 40,
            hw: false,
            priority: 0x80,
            source: 0,
        };
        let spi_active = (lr(V3, &spi, Hw) & !(0b11 << 62)) | (0b10 << 62);
        assert_eq!(
            lr_match(V3, spi_active, &spi, true),
            LrMatch::Repend(spi_active | (0b01 << 62))
        );
        // A software SPI entry with the EOI bit stands for a physical
        // interrupt: never re-raised while it is active.
        assert_eq!(
            lr_match(V3, spi_active | eoi, &spi, true),
            LrMatch::AlreadyPending
        );
    }

    #[test]
    fn pending_queue_orders_dedups_and_overflows() {
        let v = |intid, priority, source| Virq {
            intid,
            hw: intid >= 16,
            priority,
            source,
        };
        let mut q = PendingIrqs::new();
        assert!(q.is_empty() && q.pop().is_none() && q.peek().is_none());
        q.push(v(33, 0xa0, 0)).unwrap();
        q.push(v(27, 0x80, 0)).unwrap();
        q.push(v(40, 0xa0, 0)).unwrap();
        q.push(v(2, 0x80, 1)).unwrap();
        q.push(v(3, 0x00, 0)).unwrap();
        // Duplicates are merged; another source is another interrupt.
        q.push(v(33, 0x10, 0)).unwrap();
        q.push(v(2, 0x80, 1)).unwrap();
        q.push(v(2, 0x80, 2)).unwrap();
        assert_eq!(q.len(), 6);
        assert_eq!(q.peek().map(|x| x.intid), Some(3));
        let order: Vec<(u32, u8)> = core::iter::from_fn(|| q.pop())
            .map(|x| (x.intid, x.source))
            .collect();
        assert_eq!(order, [(3, 0), (27, 0), (2, 1), (2, 2), (33, 0), (40, 0)]);
        assert!(q.is_empty());
        // Full: the newcomer is handed back, nothing is lost or reordered.
        for i in 0..PENDING_CAPACITY as u32 {
            q.push(v(i % 1020, (i % 7) as u8, (i / 1020) as u8))
                .unwrap();
        }
        let extra = v(1000, 0, 9);
        assert_eq!(q.push(extra), Err(extra));
        assert_eq!(q.push(v(0, 0, 0)), Ok(()), "already waiting");
        assert_eq!(q.len(), PENDING_CAPACITY);
        let mut last = 0;
        while let Some(x) = q.pop() {
            assert!(x.priority >= last);
            last = x.priority;
        }
        q.push(v(33, 1, 0)).unwrap();
        q.push(v(34, 1, 0)).unwrap();
        assert!(q.remove(33) && !q.remove(33));
        assert_eq!(q.len(), 1);
        q.clear();
        assert!(q.is_empty());
        // The queue can be a static.
        static _Q: PendingIrqs = PendingIrqs::new();
    }

    #[test]
    fn foreign_accesses_read_well() {
        let f = Foreign {
            region: Region::Distributor,
            offset: 0x104,
            write: true,
            what: Touched::Interrupt(34),
        };
        assert_eq!(f.to_string(), "distributor write at offset 0x104: INTID 34");
        let f = Foreign {
            region: Region::Redistributors,
            offset: 0x60000,
            write: false,
            what: Touched::Vcpu(3),
        };
        assert_eq!(
            f.to_string(),
            "redistributor read at offset 0x60000: redistributor of vCPU 3, which the domain does not have"
        );
        let f = Foreign {
            region: Region::Distributor,
            offset: 0x6108,
            write: true,
            what: Touched::Route(5),
        };
        assert!(f
            .to_string()
            .ends_with("route 0x5 names vCPUs the domain does not have"));
    }

    /// A hostile guest hammering every window with random accesses: no
    /// panic, and the hardware only ever hears about what the domain owns.
    #[test]
    fn hostile_accesses_never_escape_the_domain() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        for version in [V3, V2] {
            for vcpus in 1..=4usize {
                let mut t = T::new(version, vcpus, &[1, 8]);
                t.dist_on();
                for _ in 0..40_000 {
                    let r = next();
                    let vcpu = (r % vcpus as u64) as usize;
                    let size = [1u8, 2, 4, 4, 4, 8, 3][(r >> 8) as usize % 7];
                    let value = if r & (1 << 20) != 0 { next() } else { !0 };
                    let kind = (r >> 21) % 6;
                    let offset = match (r >> 24) % 4 {
                        0 => (r >> 32) % 0x1000,
                        1 => 0x6000 + (r >> 32) % 0x2000,
                        2 => (r >> 32) % 0x10_0000,
                        _ => next(),
                    } & !((r >> 28) & 1);
                    match kind {
                        0 => {
                            t.r(vcpu, offset, size);
                        }
                        1 | 2 => {
                            let o = t.w(vcpu, offset, size, value);
                            if let Some(s) = o.sgi {
                                assert_eq!((s.targets | s.latched) & !t.d.vcpu_mask(), 0);
                            }
                            assert_eq!(o.sgi_ready & !t.d.vcpu_mask(), 0);
                        }
                        3 => {
                            t.rr(vcpu, offset, size);
                        }
                        4 => {
                            t.wr(vcpu, offset, size, value);
                        }
                        _ => {
                            let s = t.sgi1r(vcpu, value);
                            assert_eq!((s.targets | s.latched) & !t.d.vcpu_mask(), 0);
                        }
                    }
                    for c in t.m.take() {
                        assert!(
                            !matches!(c, Call::SetPriority(..)),
                            "{version:?}: physical priority {c:?} after op {kind} at {offset:#x}"
                        );
                        match c.intid() {
                            33 | 40 => match c {
                                Call::Route(_, v) => assert!(v < vcpus, "{c:?}"),
                                _ => assert_eq!(c.vcpu(), None, "{c:?}"),
                            },
                            27 => {
                                let v = c.vcpu().unwrap();
                                assert!(v < vcpus, "{c:?}");
                                if version == V2 {
                                    assert_eq!(v, vcpu, "GICv2 banks: the caller's only");
                                }
                            }
                            _ => panic!("{version:?}: {c:?} after op {kind} at {offset:#x}"),
                        }
                    }
                    for v in 0..vcpus {
                        while let Some(s) = t.vd.take_sgi(&t.d, v) {
                            assert!(s.intid < 16 && !s.hw && usize::from(s.source) < vcpus);
                        }
                    }
                }
            }
        }
    }
}
