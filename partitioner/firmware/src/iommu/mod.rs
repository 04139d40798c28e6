//! IOMMUs: the partitioner's drivers for the units in front of devices'
//! DMA (one file per kind, behind the functions here). Today the Arm
//! SMMUv3 in front of a PCIe host bridge (`board::PcieHost::iommu`).
//!
//! Life of the SMMU: [`init`] at boot, before any function may master the
//! bus, with every stream aborted; [`attach`] once a domain's stage-2
//! tables exist, for each function it owns; [`detach_domain`] when a
//! domain stops (its functions' streams abort again, its TLB entries are
//! dropped); [`on_interrupt`] drains the event queue and reports each DMA
//! fault.

mod smmuv3;

use bulkhead_core::board::{Board, Iommu};
use spin::Once;

static UNIT: Once<smmuv3::Smmu> = Once::new();

/// The IOMMU in front of the board's PCIe host, if it has one.
pub fn pcie_iommu(board: &Board) -> Option<&'static Iommu> {
    let name = board.pcie?.iommu?;
    crate::board().iommus.iter().find(|i| i.name == name)
}

/// Bring up the IOMMU in front of the PCIe host with every stream aborted.
/// Returns its event interrupt (SPI), if any.
pub fn init(board: &Board) -> Result<Option<u32>, &'static str> {
    let Some(unit) = pcie_iommu(board) else {
        return Ok(None);
    };
    let smmu = smmuv3::Smmu::init(unit.reg.base as usize)?;
    UNIT.call_once(|| smmu);
    Ok(unit.spis.first().copied())
}

/// Let stream `sid` reach memory through domain `vmid`'s stage-2 tables
/// at `root` (or, `bypass`, untranslated: an accepted risk).
pub fn attach(sid: u16, vmid: u16, root: u64, bypass: bool) {
    if let Some(s) = UNIT.get() {
        s.attach(sid, vmid, root, bypass);
    }
}

/// Abort streams `sids` again and drop domain `vmid`'s cached translations.
pub fn detach_domain(sids: &[u16], vmid: u16) {
    if let Some(s) = UNIT.get() {
        s.detach(sids, vmid);
    }
}

/// The event interrupt: report every DMA fault queued, the faults of one
/// transfer as one line.
pub fn on_interrupt() {
    use bulkhead_core::smmuv3::FaultRun;
    let Some(s) = UNIT.get() else { return };
    let mut run: Option<FaultRun> = None;
    s.drain_events(|e| {
        if run.as_mut().is_some_and(|r| r.extend(&e)) {
            return;
        }
        if let Some(r) = run.replace(FaultRun::new(e)) {
            crate::pci::report_dma_fault(&r);
        }
    });
    if let Some(r) = run {
        crate::pci::report_dma_fault(&r);
    }
}
