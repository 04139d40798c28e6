//! Arm SMMUv3 driver: a linear stream table for bus 0, a command queue and
//! an event queue in the partitioner's own memory. Every value written
//! comes from `bulkhead_core::smmuv3`.

use bulkhead_core::smmuv3::{self as s, cmd, reg, Event};
use core::sync::atomic::{AtomicBool, Ordering};
use spin::Mutex;

const STES: usize = 1 << s::STRTAB_LOG2;
const CMDS: usize = 1 << s::CMDQ_LOG2;
const EVENTS: usize = 1 << s::EVENTQ_LOG2;

/// The stream table, aligned to its size.
#[repr(C, align(16384))]
struct StreamTable([[u64; 8]; STES]);
#[repr(C, align(512))]
struct CmdQueue([[u64; 2]; CMDS]);
#[repr(C, align(4096))]
struct EventQueue([[u64; 4]; EVENTS]);

static STRTAB: Mutex<StreamTable> = Mutex::new(StreamTable([[0; 8]; STES]));
static CMDQ: Mutex<CmdQueue> = Mutex::new(CmdQueue([[0; 2]; CMDS]));
static EVENTQ: Mutex<EventQueue> = Mutex::new(EventQueue([[0; 4]; EVENTS]));
/// The SMMU's table walks and queue accesses snoop the CPUs' caches
/// (IDR0.COHACC): no cache maintenance needed.
static COHERENT: AtomicBool = AtomicBool::new(false);

pub struct Smmu {
    base: usize,
    oas: u64,
    /// The command queue's producer index (the partitioner's copy).
    prod: Mutex<u32>,
}

fn rd(addr: usize) -> u32 {
    // SAFETY: `addr` is a register of the board's SMMU, mapped as device
    // memory at EL2 and kept by the partitioner (no domain maps it).
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}
fn wr(addr: usize, v: u32) {
    // SAFETY: as for `rd`.
    unsafe { core::ptr::write_volatile(addr as *mut u32, v) }
}
fn wr64(addr: usize, v: u64) {
    // SAFETY: as for `rd`; the 64-bit registers are 8-byte aligned.
    unsafe { core::ptr::write_volatile(addr as *mut u64, v) }
}

/// Make `len` bytes at `at` visible to a non-coherent SMMU.
fn clean(at: usize, len: usize) {
    if COHERENT.load(Ordering::Relaxed) {
        aarch64_cpu::asm::barrier::dsb(aarch64_cpu::asm::barrier::ISHST);
    } else {
        crate::mmu::clean_to_poc(at as u64, len as u64);
    }
}

impl Smmu {
    pub fn init(base: usize) -> Result<Self, &'static str> {
        let idr0 = rd(base + reg::IDR0);
        if idr0 & s::IDR0_S2P == 0 {
            return Err("the SMMU cannot translate at stage 2");
        }
        COHERENT.store(idr0 & s::IDR0_COHACC != 0, Ordering::Relaxed);
        let oas = s::oas(rd(base + reg::IDR5));
        let smmu = Smmu {
            base,
            oas,
            prod: Mutex::new(0),
        };
        // Off, and aborting whatever arrives while off.
        smmu.set_cr0(0)?;
        wr(base + reg::GBPA, s::GBPA_UPDATE | s::GBPA_ABORT);
        smmu.wait(|| rd(base + reg::GBPA) & s::GBPA_UPDATE == 0)?;
        // Every stream aborts until a domain's function is attached.
        let table_pa = {
            let mut t = STRTAB.lock();
            for ste in t.0.iter_mut() {
                *ste = s::ste_abort();
            }
            clean(t.0.as_ptr() as usize, core::mem::size_of::<StreamTable>());
            t.0.as_ptr() as u64
        };
        wr64(base + reg::STRTAB_BASE, s::strtab_base(table_pa));
        wr(base + reg::STRTAB_BASE_CFG, s::strtab_base_cfg());
        let cmdq_pa = CMDQ.lock().0.as_ptr() as u64;
        wr64(base + reg::CMDQ_BASE, s::queue_base(cmdq_pa, s::CMDQ_LOG2));
        wr(base + reg::CMDQ_PROD, 0);
        wr(base + reg::CMDQ_CONS, 0);
        let eventq_pa = EVENTQ.lock().0.as_ptr() as u64;
        wr64(
            base + reg::EVENTQ_BASE,
            s::queue_base(eventq_pa, s::EVENTQ_LOG2),
        );
        wr(base + reg::EVENTQ_PROD, 0);
        wr(base + reg::EVENTQ_CONS, 0);
        wr(base + reg::CR1, s::cr1(COHERENT.load(Ordering::Relaxed)));
        // RECINVSID: record transactions of streams outside the table.
        wr(base + reg::CR2, 1 << 1);
        smmu.set_cr0(s::CR0_CMDQEN | s::CR0_EVENTQEN)?;
        smmu.command(cmd::tlbi_nsnh_all());
        for sid in 0..STES as u32 {
            smmu.command(cmd::cfgi_ste(sid));
        }
        smmu.sync()?;
        wr(base + reg::EVENTQ_IRQ_CFG0, 0);
        wr(
            base + reg::IRQ_CTRL,
            s::IRQ_CTRL_EVENTQ | s::IRQ_CTRL_GERROR,
        );
        smmu.wait(|| rd(base + reg::IRQ_CTRLACK) == s::IRQ_CTRL_EVENTQ | s::IRQ_CTRL_GERROR)?;
        smmu.set_cr0(s::CR0_CMDQEN | s::CR0_EVENTQEN | s::CR0_SMMUEN)?;
        Ok(smmu)
    }

    fn wait(&self, done: impl Fn() -> bool) -> Result<(), &'static str> {
        for _ in 0..10_000_000 {
            if done() {
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err("the SMMU does not answer")
    }

    fn set_cr0(&self, v: u32) -> Result<(), &'static str> {
        wr(self.base + reg::CR0, v);
        self.wait(|| rd(self.base + reg::CR0ACK) == v)
    }

    /// Queue one command (waiting while the queue is full).
    fn command(&self, c: [u64; 2]) {
        let mut prod = self.prod.lock();
        while s::queue_full(*prod, rd(self.base + reg::CMDQ_CONS), s::CMDQ_LOG2) {
            core::hint::spin_loop();
        }
        let slot = (*prod as usize) & (CMDS - 1);
        {
            let mut q = CMDQ.lock();
            q.0[slot] = c;
            clean(q.0[slot].as_ptr() as usize, 16);
        }
        *prod = s::queue_next(*prod, s::CMDQ_LOG2);
        wr(self.base + reg::CMDQ_PROD, *prod);
    }

    /// Wait until every command queued so far has completed.
    fn sync(&self) -> Result<(), &'static str> {
        self.command(cmd::sync());
        let target = *self.prod.lock();
        self.wait(|| {
            let cons = rd(self.base + reg::CMDQ_CONS);
            if cons >> 24 & 0x7f != 0 {
                return true; // an error: reported by the caller's check
            }
            s::queue_passed(target, cons, *self.prod.lock(), s::CMDQ_LOG2)
        })?;
        if rd(self.base + reg::CMDQ_CONS) >> 24 & 0x7f != 0 {
            return Err("the SMMU refused a command");
        }
        Ok(())
    }

    fn write_ste(&self, sid: u16, ste: [u64; 8]) {
        let mut t = STRTAB.lock();
        let e = &mut t.0[sid as usize % STES];
        // Invalidate first, then fill, then validate: the SMMU never sees a
        // half-written valid entry.
        e[0] = 0;
        clean(e.as_ptr() as usize, 64);
        e[1..].copy_from_slice(&ste[1..]);
        clean(e.as_ptr() as usize, 64);
        e[0] = ste[0];
        clean(e.as_ptr() as usize, 64);
    }

    pub fn attach(&self, sid: u16, vmid: u16, root: u64, bypass: bool) {
        let ste = if bypass {
            s::ste_bypass()
        } else {
            s::ste_stage2(vmid, root, bulkhead_core::sysregs::vtcr_el2(), self.oas)
        };
        self.write_ste(sid, ste);
        self.command(cmd::cfgi_ste(sid as u32));
        self.command(cmd::tlbi_s12_vmall(vmid));
        if let Err(e) = self.sync() {
            crate::fatal(format_args!(
                "SMMU: attaching stream {:#x}: {e}",
                u32::from(sid)
            ));
        }
    }

    pub fn detach(&self, sids: &[u16], vmid: u16) {
        for &sid in sids {
            self.write_ste(sid, s::ste_abort());
            self.command(cmd::cfgi_ste(sid as u32));
        }
        self.command(cmd::tlbi_s12_vmall(vmid));
        if let Err(e) = self.sync() {
            crate::fatal(format_args!(
                "SMMU: detaching VMID {}: {e}",
                u64::from(vmid)
            ));
        }
    }

    /// Hand every queued event to `f`, oldest first.
    pub fn drain_events(&self, mut f: impl FnMut(Event)) {
        let prod_reg = self.base + reg::EVENTQ_PROD;
        let cons_reg = self.base + reg::EVENTQ_CONS;
        // Bounded: at most one queue's worth per interrupt.
        for _ in 0..EVENTS {
            let prod = rd(prod_reg);
            let cons = rd(cons_reg);
            if s::queue_empty(prod, cons, s::EVENTQ_LOG2) {
                break;
            }
            let slot = (cons as usize) & (EVENTS - 1);
            let rec = {
                let q = EVENTQ.lock();
                if !COHERENT.load(Ordering::Relaxed) {
                    crate::mmu::clean_to_poc(q.0[slot].as_ptr() as u64, 32);
                }
                q.0[slot]
            };
            // Keep the overflow flag (bit 31) in step with the producer's.
            let next = s::queue_next(cons & 0x7fff_ffff, s::EVENTQ_LOG2) | (prod & 0x8000_0000);
            wr(cons_reg, next);
            f(Event::decode(rec));
        }
    }
}
