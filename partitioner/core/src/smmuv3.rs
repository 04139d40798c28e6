//! Arm SMMUv3: the values the partitioner writes to the SMMU and its
//! in-memory structures, and the decoding of what it reports. The driver
//! (`firmware/src/iommu/smmuv3.rs`) only moves these to and from the
//! hardware.
//!
//! The partitioner uses the SMMU for one thing: a device owned by a domain
//! reaches memory through that domain's own stage-2 tables (the very tables
//! its CPUs use, same VMID), so its DMA reaches exactly what the domain's
//! CPUs can; every other stream is aborted. Stage 1 is never used.

/// Register offsets (page 0, and page 1 for the event queue indices).
pub mod reg {
    pub const IDR0: usize = 0x0;
    pub const IDR1: usize = 0x4;
    pub const IDR5: usize = 0x14;
    pub const CR0: usize = 0x20;
    pub const CR0ACK: usize = 0x24;
    pub const CR1: usize = 0x28;
    pub const CR2: usize = 0x2c;
    pub const GBPA: usize = 0x44;
    pub const IRQ_CTRL: usize = 0x50;
    pub const IRQ_CTRLACK: usize = 0x54;
    pub const GERROR: usize = 0x60;
    pub const GERRORN: usize = 0x64;
    pub const STRTAB_BASE: usize = 0x80;
    pub const STRTAB_BASE_CFG: usize = 0x88;
    pub const CMDQ_BASE: usize = 0x90;
    pub const CMDQ_PROD: usize = 0x98;
    pub const CMDQ_CONS: usize = 0x9c;
    pub const EVENTQ_BASE: usize = 0xa0;
    pub const EVENTQ_IRQ_CFG0: usize = 0xb0;
    pub const EVENTQ_PROD: usize = 0x1_00a8;
    pub const EVENTQ_CONS: usize = 0x1_00ac;
}

/// CR0 bits.
pub const CR0_SMMUEN: u32 = 1 << 0;
pub const CR0_EVENTQEN: u32 = 1 << 2;
pub const CR0_CMDQEN: u32 = 1 << 3;
/// GBPA: abort incoming transactions while the SMMU is disabled; UPDATE
/// to make a write take effect.
pub const GBPA_ABORT: u32 = 1 << 20;
pub const GBPA_UPDATE: u32 = 1 << 31;
/// IRQ_CTRL: the event queue's interrupt (and the global error one).
pub const IRQ_CTRL_GERROR: u32 = 1 << 0;
pub const IRQ_CTRL_EVENTQ: u32 = 1 << 2;
/// IDR0: stage-2 translation supported (bit 0), 2-level stream tables
/// (bits 28:27), coherent table walks (bit 4).
pub const IDR0_S2P: u32 = 1 << 0;
pub const IDR0_COHACC: u32 = 1 << 4;

/// CR1: table and queue accesses inner-shareable, write-back cacheable
/// (only when the SMMU is coherent with the CPUs' caches).
pub const fn cr1(coherent: bool) -> u32 {
    if coherent {
        // TABLE_SH=ISH(3) [11:10], TABLE_OC=WB(1) [9:8], TABLE_IC=WB(1) [7:6],
        // QUEUE_SH=ISH [5:4], QUEUE_OC=WB [3:2], QUEUE_IC=WB [1:0].
        (3 << 10) | (1 << 8) | (1 << 6) | (3 << 4) | (1 << 2) | 1
    } else {
        0
    }
}

/// `log2` of the number of stream table entries: stream IDs are PCI
/// requester IDs of the root bus and what hangs below it, bus numbers 0-255
/// of one segment would need 2^16; Bulkhead assigns functions on bus 0
/// only, so 256 entries (bus 0), and any other stream is outside the table
/// (the SMMU aborts it and reports C_BAD_STREAMID).
pub const STRTAB_LOG2: u32 = 8;
/// Bytes of one stream table entry.
pub const STE_BYTES: usize = 64;
/// `log2` of the command queue's entries (16 bytes each).
pub const CMDQ_LOG2: u32 = 5;
/// `log2` of the event queue's entries (32 bytes each).
pub const EVENTQ_LOG2: u32 = 7;

/// STRTAB_BASE: the table's physical address (RA: read-allocate hint).
pub const fn strtab_base(pa: u64) -> u64 {
    (1 << 62) | (pa & 0x000f_ffff_ffff_ffc0)
}

/// STRTAB_BASE_CFG: linear format, `STRTAB_LOG2` entries.
pub const fn strtab_base_cfg() -> u32 {
    STRTAB_LOG2
}

/// CMDQ_BASE / EVENTQ_BASE: a queue at `pa` with `2^log2` entries.
pub const fn queue_base(pa: u64, log2: u32) -> u64 {
    (1 << 62) | (pa & 0x000f_ffff_ffff_ffe0) | log2 as u64
}

/// A stream table entry that aborts every transaction of the stream
/// without recording an event (valid, Config = abort).
pub const fn ste_abort() -> [u64; 8] {
    [1, 0, 0, 0, 0, 0, 0, 0]
}

/// A stream table entry that translates the stream with a domain's
/// stage-2 tables: `vmid`, its root `s2ttb`, and the geometry of VTCR_EL2
/// (`vtcr`: T0SZ, SL0, IRGN0, ORGN0, SH0, TG0 and PS, bits 18:0, are the
/// STE's S2T0SZ..S2PS fields, bits 50:32), with the PS field capped to what
/// the SMMU can output (`oas`, the IDR5.OAS encoding). Faults are recorded
/// (S2R) as events, never stalled.
pub fn ste_stage2(vmid: u16, s2ttb: u64, vtcr: u64, oas: u64) -> [u64; 8] {
    const V: u64 = 1;
    const CONFIG_S2: u64 = 0b110 << 1;
    // SHCFG = 1: use the incoming shareability.
    const SHCFG_INCOMING: u64 = 1 << 44;
    const S2AA64: u64 = 1 << 51;
    const S2PTW: u64 = 1 << 54;
    const S2R: u64 = 1 << 58;
    let ps = ((vtcr >> 16) & 7).min(oas & 7);
    let geometry = (vtcr & 0xffff) | (ps << 16);
    [
        V | CONFIG_S2,
        SHCFG_INCOMING,
        vmid as u64 | (geometry << 32) | S2AA64 | S2PTW | S2R,
        s2ttb & 0x000f_ffff_ffff_fff0,
        0,
        0,
        0,
        0,
    ]
}

/// A stream table entry letting the stream through untranslated (only for a
/// function whose config accepted unprotected DMA).
pub const fn ste_bypass() -> [u64; 8] {
    const SHCFG_INCOMING: u64 = 1 << 44;
    [1 | (0b100 << 1), SHCFG_INCOMING, 0, 0, 0, 0, 0, 0]
}

/// Commands (two 64-bit words each).
pub mod cmd {
    /// Forget any cached copy of stream `sid`'s table entry.
    pub const fn cfgi_ste(sid: u32) -> [u64; 2] {
        [0x03 | ((sid as u64) << 32), 1]
    }
    /// Forget every TLB entry of `vmid` (stage 1 and 2).
    pub const fn tlbi_s12_vmall(vmid: u16) -> [u64; 2] {
        [0x28 | ((vmid as u64) << 32), 0]
    }
    /// Forget every non-secure, non-hypervisor TLB entry.
    pub const fn tlbi_nsnh_all() -> [u64; 2] {
        [0x30, 0]
    }
    /// Complete when every earlier command has (no interrupt, no MSI: the
    /// driver watches the queue's consumer index).
    pub const fn sync() -> [u64; 2] {
        [0x46, 0]
    }
}

/// Queue index arithmetic: an index is `log2` bits of slot plus one wrap
/// bit above them.
pub const fn queue_full(prod: u32, cons: u32, log2: u32) -> bool {
    let mask = (1 << log2) - 1;
    (prod & mask) == (cons & mask) && (prod >> log2) & 1 != (cons >> log2) & 1
}
pub const fn queue_empty(prod: u32, cons: u32, log2: u32) -> bool {
    let wrap_mask = (2 << log2) - 1;
    (prod & wrap_mask) == (cons & wrap_mask)
}
/// Whether the consumer (`cons`) has taken every entry queued before
/// `target`, the producer index being `prod` now. Other cores may have
/// queued more since `target` was read, so the consumer may be past it:
/// waiting for `cons == target` could then wait for ever. Both distances
/// are counted from `target` in index arithmetic (the queue never holds
/// more than its size, so neither wraps twice).
pub const fn queue_passed(target: u32, cons: u32, prod: u32, log2: u32) -> bool {
    let wrap_mask = (2 << log2) - 1;
    let done = cons.wrapping_sub(target) & wrap_mask;
    let queued = prod.wrapping_sub(target) & wrap_mask;
    done <= queued
}
pub const fn queue_next(idx: u32, log2: u32) -> u32 {
    let wrap_mask = (2 << log2) - 1;
    (idx + 1) & wrap_mask
}

/// What an event record says, in the terms the partitioner reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// Event type (0x10 F_TRANSLATION, ...).
    pub kind: u8,
    pub stream: u32,
    /// The address the device used (an IPA of its domain).
    pub addr: u64,
    /// Read (true) or write.
    pub read: bool,
    /// Fault at stage 2 (the partitioner's tables).
    pub stage2: bool,
}

impl Event {
    pub fn decode(rec: [u64; 4]) -> Self {
        Self {
            kind: rec[0] as u8,
            stream: (rec[0] >> 32) as u32,
            addr: rec[2],
            read: rec[1] & (1 << 35) != 0,
            stage2: rec[1] & (1 << 39) != 0,
        }
    }

    /// The event type's name, as the SMMU architecture calls it.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            0x01 => "unsupported upstream transaction",
            0x02 => "bad stream ID",
            0x03 => "stream table entry fetch fault",
            0x04 => "bad stream table entry",
            0x06 => "stream disabled",
            0x07 => "translation forbidden",
            0x10 => "translation fault",
            0x11 => "address size fault",
            0x12 => "access flag fault",
            0x13 => "permission fault",
            0x20 => "TLB conflict",
            _ => "event",
        }
    }

    /// A fault of a DMA access (as opposed to a configuration problem).
    pub fn is_access_fault(&self) -> bool {
        (0x10..=0x13).contains(&self.kind)
    }
}

/// Consecutive faults of one DMA transfer, as one report: a device's
/// transfer faults once per access it makes (QEMU: every 4 bytes), and the
/// console wants one line for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultRun {
    pub first: Event,
    /// One past the last byte's address seen (at least `first.addr + 1`).
    pub end: u64,
    pub count: u32,
}

impl FaultRun {
    pub fn new(e: Event) -> Self {
        Self {
            first: e,
            end: e.addr + 1,
            count: 1,
        }
    }
    /// Take `e` into the run if it continues it (same stream, kind and
    /// direction, at most a page past its end); `false` otherwise.
    pub fn extend(&mut self, e: &Event) -> bool {
        let f = &self.first;
        let continues = e.stream == f.stream
            && e.kind == f.kind
            && e.read == f.read
            && e.addr >= f.addr
            && e.addr <= self.end.saturating_add(4096);
        if continues {
            self.end = self.end.max(e.addr + 1);
            self.count += 1;
        }
        continues
    }
}

/// IDR5.OAS encoding of the SMMU's output address size.
pub const fn oas(idr5: u32) -> u64 {
    (idr5 & 7) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage2_entry_carries_the_domains_tables_and_geometry() {
        let vtcr = crate::sysregs::vtcr_el2();
        let ste = ste_stage2(3, 0x4123_4000, vtcr, 5);
        assert_eq!(ste[0] & 1, 1, "valid");
        assert_eq!((ste[0] >> 1) & 7, 0b110, "stage 2 only");
        assert_eq!(ste[2] & 0xffff, 3, "VMID");
        assert_eq!((ste[2] >> 32) & 0xffff, vtcr & 0xffff, "T0SZ..TG0 as VTCR");
        assert_eq!(
            (ste[2] >> 48) & 7,
            (vtcr >> 16) & 7,
            "PS within the SMMU's OAS"
        );
        assert_ne!(ste[2] & (1 << 51), 0, "AArch64 tables");
        assert_ne!(ste[2] & (1 << 58), 0, "faults recorded");
        assert_eq!(ste[2] & (1 << 57), 0, "never stalled");
        assert_eq!(ste[3], 0x4123_4000);
        // An SMMU with a smaller output size caps PS.
        let capped = ste_stage2(3, 0x4123_4000, vtcr, 1);
        assert_eq!((capped[2] >> 48) & 7, 1);
    }

    #[test]
    fn other_entries_abort_or_bypass() {
        assert_eq!(ste_abort()[0], 1);
        assert_eq!((ste_bypass()[0] >> 1) & 7, 0b100);
    }

    #[test]
    fn queue_indices_wrap() {
        let l = 2; // 4 slots
        assert!(queue_empty(0, 0, l));
        // The consumer reached the target, passed it while another core
        // queued more, or has not reached it yet; with the wrap bit.
        assert!(queue_passed(1, 1, 1, l));
        assert!(queue_passed(1, 3, 4, l));
        assert!(!queue_passed(3, 2, 4, l));
        assert!(!queue_passed(3, 2, 3, l));
        // Indices 0-7 (slot and wrap bit): 7 -> 0 -> 1 is two steps.
        assert!(queue_passed(7, 1, 2, l));
        assert!(!queue_passed(7, 6, 2, l));
        // The register's error field (bits 30:24) is not an index.
        assert!(queue_passed(1, 1 | (1 << 24), 1, l));
        assert!(!queue_full(0, 0, l));
        let mut p = 0;
        for _ in 0..4 {
            p = queue_next(p, l);
        }
        assert_eq!(p, 0b100, "wrap bit set, slot 0");
        assert!(queue_full(p, 0, l));
        assert!(!queue_empty(p, 0, l));
        assert_eq!(queue_next(0b111, l), 0);
    }

    #[test]
    fn events_decode() {
        // F_TRANSLATION, stream 0x10 (00:02.0), a write at stage 2 to 0x48000000.
        let e = Event::decode([0x10 | (0x10 << 32), 1 << 39, 0x4800_0000, 0x4800_0000]);
        assert_eq!(e.kind, 0x10);
        assert_eq!(e.stream, 0x10);
        assert_eq!(e.addr, 0x4800_0000);
        assert!(!e.read && e.stage2 && e.is_access_fault());
        assert_eq!(e.kind_name(), "translation fault");
        let r = Event::decode([0x10, (1 << 35) | (1 << 39), 0, 0]);
        assert!(r.read);
    }

    #[test]
    fn the_faults_of_one_transfer_are_one_run() {
        let ev = |addr: u64, read: bool| Event {
            kind: 0x10,
            stream: 0x10,
            addr,
            read,
            stage2: true,
        };
        let mut run = FaultRun::new(ev(0x4800_0000, false));
        for a in (4..64).step_by(4) {
            assert!(run.extend(&ev(0x4800_0000 + a, false)));
        }
        assert_eq!(run.count, 16);
        assert_eq!(run.end, 0x4800_003d);
        assert!(!run.extend(&ev(0x4800_0000, true)), "a read is another run");
        assert!(!run.extend(&ev(0x5000_0000, false)), "far away");
        let mut other = ev(0x4800_0040, false);
        other.stream = 0x18;
        assert!(!run.extend(&other), "another device");
    }

    #[test]
    fn commands_encode() {
        assert_eq!(cmd::cfgi_ste(0x10), [0x10_0000_0003, 1]);
        assert_eq!(cmd::tlbi_s12_vmall(7)[0], 0x7_0000_0028);
        assert_eq!(cmd::sync()[0] & 0xff, 0x46);
    }
}
