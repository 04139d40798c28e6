//! The virtual GIC distributor and redistributors (`VDistributor`) driven by
//! a random sequence of accesses from random vCPUs of a random domain (GIC
//! version, vCPU count and owned SPIs come from the input too).
//!
//! The physical GIC is a fake that holds its state and asserts on every
//! call, reads included, that it concerns only what the domain owns: one of
//! its SPIs (with no vCPU), or the virtual timer PPI of one of its vCPUs (on
//! GICv2 only the vCPU making the access, whose core's banked registers the
//! firmware can reach). After every step: no read shows a bit, byte or route
//! of an SPI the domain does not own; SGI targets and ready masks name only
//! its vCPUs; the hardware enable of every owned SPI and of every vCPU's
//! timer PPI equals what the model says it delivers (on GICv2, once the
//! vCPU's core has run `reset_vcpu` after a `reset`, which leaves the banked
//! PPI to it).
#![no_main]

use std::cell::Cell;
use std::collections::{HashMap, HashSet};

use bulkhead_core::plan::{GicVersion, MAX_CPUS, VGICR_STRIDE};
use bulkhead_core::vgic::{regs, Domain, Outcome, PhysGic, VDistributor, DOMAIN_PPIS, FIRST_SPI};
use bulkhead_fuzz::Input;
use libfuzzer_sys::fuzz_target;

type Key = (u32, Option<usize>);

struct Fake {
    dom: Domain,
    /// GICv2: the vCPU whose core the access runs on.
    caller: Cell<Option<usize>>,
    enabled: HashSet<Key>,
    pending: HashSet<Key>,
    active: HashSet<Key>,
    prio: HashMap<Key, u8>,
    edge: HashSet<Key>,
    routes: HashMap<u32, usize>,
}

impl Fake {
    fn allowed(&self, what: &str, intid: u32, vcpu: Option<usize>) {
        match vcpu {
            None => assert!(
                self.dom.owns(intid),
                "{what} of INTID {intid}, which the domain does not own ({:?})",
                self.dom
            ),
            Some(v) => {
                assert!(
                    intid < FIRST_SPI && DOMAIN_PPIS & (1 << intid) != 0,
                    "{what} of banked INTID {intid}, not a domain PPI"
                );
                assert!(
                    self.dom.has_vcpu(v),
                    "{what} of INTID {intid} on vCPU {v}, not the domain's"
                );
                if self.dom.version == GicVersion::V2 {
                    if let Some(c) = self.caller.get() {
                        assert_eq!(
                            v, c,
                            "GICv2 {what} of INTID {intid}: another core's banked registers"
                        );
                    }
                }
            }
        }
    }
    fn set(set: &mut HashSet<Key>, k: Key, on: bool) {
        if on {
            set.insert(k);
        } else {
            set.remove(&k);
        }
    }
}

impl PhysGic for Fake {
    fn set_enabled(&mut self, intid: u32, vcpu: Option<usize>, on: bool) {
        self.allowed("set_enabled", intid, vcpu);
        Self::set(&mut self.enabled, (intid, vcpu), on);
    }
    fn enabled(&self, intid: u32, vcpu: Option<usize>) -> bool {
        self.allowed("enabled", intid, vcpu);
        self.enabled.contains(&(intid, vcpu))
    }
    fn set_pending(&mut self, intid: u32, vcpu: Option<usize>, on: bool) {
        self.allowed("set_pending", intid, vcpu);
        Self::set(&mut self.pending, (intid, vcpu), on);
    }
    fn pending(&self, intid: u32, vcpu: Option<usize>) -> bool {
        self.allowed("pending", intid, vcpu);
        self.pending.contains(&(intid, vcpu))
    }
    fn set_active(&mut self, intid: u32, vcpu: Option<usize>, on: bool) {
        self.allowed("set_active", intid, vcpu);
        Self::set(&mut self.active, (intid, vcpu), on);
    }
    fn active(&self, intid: u32, vcpu: Option<usize>) -> bool {
        self.allowed("active", intid, vcpu);
        self.active.contains(&(intid, vcpu))
    }
    fn set_priority(&mut self, intid: u32, vcpu: Option<usize>, prio: u8) {
        self.allowed("set_priority", intid, vcpu);
        self.prio.insert((intid, vcpu), prio);
    }
    fn priority(&self, intid: u32, vcpu: Option<usize>) -> u8 {
        self.allowed("priority", intid, vcpu);
        self.prio.get(&(intid, vcpu)).copied().unwrap_or(0)
    }
    fn set_edge(&mut self, intid: u32, vcpu: Option<usize>, edge: bool) {
        self.allowed("set_edge", intid, vcpu);
        Self::set(&mut self.edge, (intid, vcpu), edge);
    }
    fn edge(&self, intid: u32, vcpu: Option<usize>) -> bool {
        self.allowed("edge", intid, vcpu);
        self.edge.contains(&(intid, vcpu))
    }
    fn route(&mut self, intid: u32, vcpu: usize) {
        assert!(
            self.dom.owns(intid),
            "route of INTID {intid}, not the domain's"
        );
        assert!(
            self.dom.has_vcpu(vcpu),
            "INTID {intid} routed to vCPU {vcpu}, not the domain's"
        );
        self.routes.insert(intid, vcpu);
    }
}

const SIZES: [u8; 4] = [1, 2, 4, 8];

/// A distributor read shows nothing of an SPI the domain does not own.
fn check_dist_read(dom: &Domain, offset: u64, size: u8, value: u64) {
    let foreign = |intid: u64| intid >= u64::from(FIRST_SPI) && !dom.owns(intid as u32);
    match offset {
        regs::GICD_IGROUPR..regs::GICD_IPRIORITYR if size == 4 && offset % 4 == 0 => {
            let r = ((offset - regs::GICD_IGROUPR) % 0x80) / 4;
            for bit in 0..32 {
                if value & (1 << bit) != 0 {
                    assert!(
                        !foreign(32 * r + bit),
                        "read at {offset:#x} shows INTID {}",
                        32 * r + bit
                    );
                }
            }
        }
        regs::GICD_IPRIORITYR..regs::GICD_ICFGR if size == 1 || (size == 4 && offset % 4 == 0) => {
            let first = if offset < regs::GICD_ITARGETSR {
                offset - regs::GICD_IPRIORITYR
            } else {
                offset - regs::GICD_ITARGETSR
            };
            for k in 0..u64::from(size) {
                if (value >> (8 * k)) & 0xff != 0 {
                    assert!(
                        !foreign(first + k),
                        "read at {offset:#x} shows INTID {}",
                        first + k
                    );
                }
            }
        }
        regs::GICD_ICFGR..0xd00 if size == 4 && offset % 4 == 0 => {
            let first = (offset - regs::GICD_ICFGR) * 4;
            for bit in 0..32 {
                if value & (1 << bit) != 0 {
                    assert!(
                        !foreign(first + bit / 2),
                        "ICFGR read shows INTID {}",
                        first + bit / 2
                    );
                }
            }
        }
        0x6000..0x8000 if dom.version == GicVersion::V3 => {
            let intid = (offset - regs::GICD_IROUTER) / 8;
            if value != 0 {
                assert!(!foreign(intid), "IROUTER read shows INTID {intid}");
            }
        }
        _ => {}
    }
}

fn check_outcome(dom: &Domain, out: &Outcome, size: u8) {
    let mask = dom.vcpu_mask();
    assert_eq!(
        out.sgi_ready & !mask,
        0,
        "SGIs ready on vCPUs the domain does not have"
    );
    if size < 8 {
        assert_eq!(
            out.value >> (8 * u32::from(size)),
            0,
            "read wider than the access"
        );
    }
    if let Some(req) = out.sgi {
        assert!(req.intid < 16);
        assert_eq!(
            (req.targets | req.latched) & !mask,
            0,
            "SGI to a foreign vCPU: {req:?}"
        );
    }
}

/// `stale`: GICv2 vCPUs whose core has not run `reset_vcpu` since the last
/// `reset` (which leaves their banked timer PPI to it, as documented).
fn check_state(dom: &Domain, vd: &VDistributor, phys: &Fake, stale: &[bool; MAX_CPUS]) {
    phys.caller.set(None);
    for intid in dom.owned_spis.iter().filter(|&i| dom.owns(i)) {
        assert_eq!(
            phys.enabled.contains(&(intid, None)),
            vd.deliverable(dom, phys, 0, intid),
            "hardware enable of INTID {intid} differs from what the domain forwards"
        );
    }
    for t in (0..dom.vcpus).filter(|&t| !stale[t]) {
        for ppi in (16..32).filter(|p| DOMAIN_PPIS & (1 << p) != 0) {
            assert_eq!(
                phys.enabled.contains(&(ppi, Some(t))),
                vd.deliverable(dom, phys, t, ppi),
                "hardware enable of PPI {ppi} on vCPU {t} differs from the model's"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let head = input.u8();
    let version = if head & 1 == 0 {
        GicVersion::V2
    } else {
        GicVersion::V3
    };
    let vcpus = 1 + (head as usize >> 1) % MAX_CPUS;
    let spis: Vec<u32> = (0..input.u8() % 9)
        .map(|_| u32::from(input.u16() % 1100))
        .collect();
    let dom = Domain::with_spis(version, vcpus, &spis);
    let mut phys = Fake {
        dom: dom.clone(),
        caller: Cell::new(None),
        enabled: HashSet::new(),
        pending: HashSet::new(),
        active: HashSet::new(),
        prio: HashMap::new(),
        edge: HashSet::new(),
        routes: HashMap::new(),
    };
    let mut vd = VDistributor::new(&dom);
    let mut stale = [false; MAX_CPUS];
    let mut steps = 0;
    while !input.is_empty() && steps < 4096 {
        steps += 1;
        let op = input.u8();
        // Some callers are not the domain's vCPUs: those accesses must do nothing.
        let vcpu = input.u8() as usize % (MAX_CPUS + 2);
        phys.caller.set(Some(vcpu));
        let size = SIZES[(op >> 4) as usize % 4];
        match op % 10 {
            0 => {
                let offset = u64::from(input.u16());
                let out = vd.read(&dom, &mut phys, vcpu, offset, size);
                check_outcome(&dom, &out, size);
                check_dist_read(&dom, offset, size, out.value);
            }
            1 => {
                let offset = u64::from(input.u16());
                let out = vd.write(&dom, &mut phys, vcpu, offset, size, input.u64());
                check_outcome(&dom, &out, size);
            }
            2 => {
                let frame = u64::from(input.u8()) % (MAX_CPUS as u64 + 2);
                let offset = frame * VGICR_STRIDE + u64::from(input.u32()) % VGICR_STRIDE;
                let out = vd.read_redist(&dom, &mut phys, vcpu, offset, size);
                check_outcome(&dom, &out, size);
            }
            3 => {
                let frame = u64::from(input.u8()) % (MAX_CPUS as u64 + 2);
                let offset = frame * VGICR_STRIDE + u64::from(input.u32()) % VGICR_STRIDE;
                let out = vd.write_redist(&dom, &mut phys, vcpu, offset, size, input.u64());
                check_outcome(&dom, &out, size);
            }
            4 => {
                let req = vd.sgi1r(&dom, vcpu, input.u64());
                assert!(req.intid < 16);
                assert_eq!((req.targets | req.latched) & !dom.vcpu_mask(), 0, "{req:?}");
            }
            5 => {
                let intid = u32::from(input.u8() % 20);
                let source = input.u8() as usize % (MAX_CPUS + 2);
                vd.pend_sgi(&dom, vcpu, intid, source);
            }
            6 => {
                if let Some(virq) = vd.take_sgi(&dom, vcpu) {
                    assert!(dom.has_vcpu(vcpu));
                    assert!(virq.intid < 16 && !virq.hw);
                    if version == GicVersion::V2 {
                        assert!(dom.has_vcpu(usize::from(virq.source)));
                    }
                }
            }
            7 => {
                let intid = u32::from(input.u16() % 1100);
                let _ = vd.deliverable(&dom, &phys, vcpu, intid);
                let _ = vd.priority(&dom, &phys, vcpu, intid);
            }
            8 => {
                phys.caller.set(None);
                vd.reset(&dom, &mut phys);
                stale = [version == GicVersion::V2; MAX_CPUS];
            }
            _ => {
                vd.reset_vcpu(&dom, &mut phys, vcpu);
                if let Some(s) = stale.get_mut(vcpu) {
                    *s = false;
                }
            }
        }
        check_state(&dom, &vd, &phys, &stale);
    }
});
