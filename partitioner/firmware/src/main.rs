//! Bulkhead's EL2 firmware: the thin layer that touches hardware. Every
//! decision (what the config means, what gets mapped, which register values,
//! how a fault is reflected) is made by `bulkhead-core` and tested on the host;
//! this crate carries the decisions out.
//!
//! Boot: `boot` (entry, stacks) → [`primary_main`]: console, vectors, EL2 MMU,
//! package and config checks, then `domain::setup` and `domain::start_all`.
#![no_std]
#![no_main]

mod boot;
mod checksum;
mod console;
mod cpu;
mod debug;
mod domain;
mod el1;
mod entropy;
mod exceptions;
mod exits;
mod gic;
mod iommu;
mod irq;
mod mmu;
mod pci;
mod power;
mod psci;
mod report;
mod uart;

use aarch64_cpu::registers::{Writeable, VBAR_EL2};
use bulkhead_core::board::{partitioner_footprint, Board, Range};
use bulkhead_core::package::Package;
use bulkhead_core::validate::{self, Layout};
use log::{error, info, warn};

/// Name of the board this firmware is built for: `cargo xtask build` sets
/// `BULKHEAD_BOARD` from the config's `board` property.
const BOARD_NAME: &str = match option_env!("BULKHEAD_BOARD") {
    Some(name) => name,
    None => "qemu-virt",
};

/// The board this firmware was built for (an unknown name fails the build).
static BOARD: &Board = match board_support::find(BOARD_NAME) {
    Some(b) => b,
    None => panic!("BULKHEAD_BOARD names a board that board-support does not have"),
};

/// How many cores the board has (for sizing static tables).
pub const BOARD_CPUS: usize = match board_support::find(BOARD_NAME) {
    Some(b) => b.cpus.len(),
    None => 0,
};

/// Extra translation-table frames the board's stage 2 needs to map pages
/// only (`Board::stage2_page_tables`).
pub const BOARD_STAGE2_PAGE_TABLES: usize = match board_support::find(BOARD_NAME) {
    Some(b) => b.stage2_page_tables(),
    None => 0,
};

/// The console's address, for the entry code's messages before anything is
/// set up (read PC-relative: valid before relocation).
#[no_mangle]
static EARLY_UART: u64 = BOARD.console.reg.base + BOARD.console.kind.tx_offset();

/// The board this firmware was built for.
pub fn board() -> &'static Board {
    BOARD
}

/// Offsets in the arm64 Image header that `cargo xtask build` fills in.
const HEADER_IMAGE_SIZE: u64 = 16;
const HEADER_PACKAGE_OFFSET: u64 = 32;

fn header_field(offset: u64) -> u64 {
    let at = boot::symbol_addr!(__image_start) + offset;
    // SAFETY: the header is the first 64 bytes of the loaded image, 8-byte
    // aligned fields inside it, readable for the firmware's whole life.
    unsafe { core::ptr::read_volatile(at as *const u64) }
}

/// Rust entry of the boot core, called by `boot` with the boot loader's DTB.
pub extern "C" fn primary_main(loader_dtb: u64) -> ! {
    let board = board();
    console::init(board.console);
    info!(
        "Bulkhead {} on {}, at EL2",
        env!("CARGO_PKG_VERSION"),
        board.name
    );
    VBAR_EL2.set(exceptions::vectors());
    let core = domain::identify_core();
    if core != 0 {
        fatal(format_args!(
            "booted on core {core}; the boot core must be core 0"
        ));
    }

    let start = boot::symbol_addr!(__image_start);
    let image_size = header_field(HEADER_IMAGE_SIZE);
    let pkg_offset = header_field(HEADER_PACKAGE_OFFSET);
    let code_end = boot::symbol_addr!(__image_end);
    if pkg_offset == 0 || image_size <= pkg_offset || start + pkg_offset < code_end {
        fatal(format_args!(
            "no package in this image (header: size {image_size:#x}, package at {pkg_offset:#x}): build it with `cargo xtask build`"
        ));
    }
    let package = Range::new(start + pkg_offset, image_size - pkg_offset);
    if let Err(e) = mmu::build_el2_map(board, package) {
        fatal(format_args!(
            "cannot build the partitioner's own page tables: {}",
            debug::MapErr(e)
        ));
    }
    mmu::enable(core);
    power::init(cpu_start_method(board, loader_dtb));
    entropy::init(board, loader_dtb);

    // SAFETY: the boot loader loaded `image_size` bytes from `start` (the Image header says so); the package part is
    // mapped read-only and never written, so a shared slice of it is sound for the firmware's life.
    let bytes =
        unsafe { core::slice::from_raw_parts(package.base as *const u8, package.size as usize) };
    let pkg = match Package::parse_deferring_images(bytes, checksum::crc32_updater()) {
        Ok(p) => p,
        Err(e) => {
            error!("{e}");
            refuse()
        }
    };
    let layout = Layout {
        partitioner: partitioner_footprint(start, image_size),
    };
    info!(
        "partitioner occupies {:#x}..{:#x}; config {} bytes, {} image(s)",
        layout.partitioner.base,
        layout.partitioner.base + layout.partitioner.size,
        pkg.config.len(),
        pkg.images().count()
    );
    // Parsed once here for the image lookups below (`entry_name` would
    // parse it again for every domain).
    let parsed = bulkhead_core::config::parse(pkg.config).ok();
    let plan = validate::check(
        pkg.config,
        &board_support::by_name,
        &layout,
        &|name, image| {
            let entry = bulkhead_core::package::entry_name_in(parsed.as_ref(), name, image);
            pkg.image(&entry).map(bulkhead_core::package::load_size)
        },
    );
    let mut plan = match plan {
        Ok(p) => p,
        Err(errors) => {
            for e in errors.iter() {
                error!("config: {e}");
            }
            error!("config: {} error(s)", errors.len());
            refuse()
        }
    };
    if plan.board != board.name {
        error!(
            "config: written for board \"{}\", this firmware runs on \"{}\"",
            plan.board, board.name
        );
        refuse()
    }
    // Risks the config accepted: said at every boot, not only by the host check.
    for (d, x) in plan.unprotected_dma() {
        warn!("{}", bulkhead_core::plan::DmaWarning(d, x));
    }
    // The PCIe functions: their DMA aborted by the IOMMU first, then every
    // function no domain owns off and the owned ones' BARs placed.
    // (The IOMMU only when a domain owns a function: a QEMU `virt` started
    // without `iommu=smmuv3` has none, and nothing else needs it.)
    let has_functions = plan
        .domains
        .iter()
        .any(|d| d.devices.iter().any(|x| x.pci.is_some()));
    let iommu_spi = if has_functions {
        match iommu::init(board) {
            Ok(spi) => spi,
            Err(e) => {
                error!("IOMMU: {e}");
                refuse()
            }
        }
    } else {
        None
    };
    if pci::setup(board, &mut plan).is_err() {
        error!("config: the PCI functions cannot be given as configured");
        refuse()
    }
    let Some(version) = gic::probe(board) else {
        fatal(format_args!(
            "none of the board's interrupt controllers answers"
        ));
    };
    gic::init_distributor(board);
    gic::init_cpu(core);
    // The board lists its cores; the machine may have fewer (QEMU started
    // with a smaller `-smp`). That is fine until a domain needs one.
    let mut missing = 0u32;
    for d in &plan.domains {
        for &c in &d.cpus {
            if let Some(why) = gic::absent(c) {
                error!(
                    "domain \"{}\": core {c} (MPIDR {:#x}) is not on this machine: {why} (give the machine at least {} cores, or the domain another)",
                    d.name,
                    board.cpus[c],
                    c + 1
                );
                missing += 1;
            }
        }
    }
    if missing > 0 {
        refuse()
    }
    info!(
        "interrupt controller: GICv{}, {} list registers; cores started by {}",
        u64::from(board_gic_number(version)),
        gic::lr_count(),
        power::describe()
    );
    // Hand-written device trees may only name what their domain owns, on
    // the GIC this board turned out to have.
    let mut rejected = 0u32;
    for d in plan.domains.iter() {
        let dtb_entry = bulkhead_core::plan::dtb_name(&d.name);
        if let Err(e) = pkg.verify(&dtb_entry, checksum::crc32_updater()) {
            error!("{e}");
            rejected += 1;
            continue;
        }
        if let Some(tree) = pkg.image(&dtb_entry) {
            if let Err(problems) = bulkhead_core::dtb_check::check_supplied(d, Some(version), tree)
            {
                for p in problems.iter() {
                    error!("config: domain \"{}\": device-tree: {p}", d.name);
                    rejected += 1;
                }
            }
        }
    }
    if rejected > 0 {
        error!("config: {} error(s)", u64::from(rejected));
        refuse();
    }
    domain::setup(plan, pkg, layout.partitioner);
    if let Some(spi) = iommu_spi {
        irq::enable_partitioner_interrupt(spi, core, iommu::on_interrupt);
    }
    // Ctrl-a s on the console: taken on this (the boot) core, at EL2.
    if let Some(&spi) = board
        .devices
        .iter()
        .find(|d| d.reg.base == board.console.reg.base)
        .and_then(|d| d.spis.first())
    {
        irq::enable_console_input(spi, core);
    }
    info!(
        "boot stack: {} KiB used of {} KiB",
        boot::boot_stack_used() / 1024,
        boot::BOOT_STACK_SIZE / 1024
    );
    domain::start_all(core)
}

/// Rust entry of a secondary core (PSCI CPU_ON), with its board index.
pub extern "C" fn secondary_main(core: u64) -> ! {
    if core as usize >= board().cpus.len() {
        fatal(format_args!(
            "started as core {core}, which the board does not have"
        ));
    }
    mmu::enable(core as usize);
    VBAR_EL2.set(exceptions::vectors());
    let me = domain::identify_core();
    if me != core as usize {
        fatal(format_args!("core {me} was started as core {core}"));
    }
    gic::init_cpu(me);
    domain::launch(me)
}

/// How to start the other cores: the board's way, except that a spin-table
/// board whose boot loader's device tree has a PSCI node (TF-A as the
/// armstub) uses that PSCI.
fn cpu_start_method(board: &Board, loader_dtb: u64) -> bulkhead_core::board::CpuStart {
    use bulkhead_core::board::{loader_psci, CpuStart};
    let CpuStart::SpinTable { .. } = board.cpu_start else {
        return board.cpu_start;
    };
    match with_loader_tree(board, loader_dtb, loader_psci).flatten() {
        Some(conduit) => {
            info!("the boot loader's device tree at {loader_dtb:#x} has PSCI: the cores are started through it, not the spin table");
            CpuStart::Psci(conduit)
        }
        None => board.cpu_start,
    }
}

/// `f` of the boot loader's device tree at `loader_dtb`, if that is one
/// (aligned, in the board's RAM, an FDT header, at most 1 MiB).
pub fn with_loader_tree<R>(
    board: &Board,
    loader_dtb: u64,
    f: impl FnOnce(&[u8]) -> R,
) -> Option<R> {
    const MAX_TREE: u64 = 1 << 20;
    let in_ram = |r: Range| board.ram.iter().any(|b| b.contains(&r));
    if loader_dtb == 0 || !loader_dtb.is_multiple_of(8) || !in_ram(Range::new(loader_dtb, 64)) {
        return None;
    }
    // The header says how big the tree is: look at it first.
    let total = mmu::with_ram_window(loader_dtb, 8, |h| {
        (h[..4] == [0xd0, 0x0d, 0xfe, 0xed])
            .then(|| u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as u64)
    })
    .flatten()
    .filter(|&t| (64..=MAX_TREE).contains(&t))?;
    if !in_ram(Range::new(loader_dtb, total)) {
        return None;
    }
    mmu::with_ram_window(loader_dtb, total, f)
}

fn board_gic_number(v: bulkhead_core::plan::GicVersion) -> u8 {
    match v {
        bulkhead_core::plan::GicVersion::V2 => 2,
        bulkhead_core::plan::GicVersion::V3 => 3,
    }
}

/// The configuration cannot run: say so and start nothing.
fn refuse() -> ! {
    error!("refusing to start any domain; fix the configuration and rebuild (`cargo xtask check <config>` shows every problem)");
    halt()
}

/// Report a condition the partitioner cannot recover from and stop this core.
pub fn fatal(args: core::fmt::Arguments) -> ! {
    console::emergency_line("bulkhead: FATAL: ", args);
    halt()
}

/// Stop this core for good, with interrupts masked.
pub fn halt() -> ! {
    loop {
        aarch64_cpu::asm::wfi();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    fatal(format_args!("panic: {info}"))
}
