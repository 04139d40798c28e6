//! Translation-table building for both regimes Bulkhead uses: the EL2
//! stage-1 tables that map the partitioner itself, and the stage-2 tables that
//! confine each domain. 4 KiB granule, 39-bit input addresses, walks start at
//! level 1, so one table covers 512 GiB.
//!
//! The builder never touches memory directly: frames come from a
//! [`FrameAllocator`] and are accessed through it, so the very same code runs
//! on the host under `cargo test` (with a `Vec`-backed allocator) and in the
//! firmware (with a static pool).

/// Size of a translation granule and of every table.
pub const PAGE: u64 = 4096;
/// Bytes covered by one level-2 block.
pub const BLOCK_2M: u64 = 2 << 20;
/// Bytes covered by one level-1 block.
pub const BLOCK_1G: u64 = 1 << 30;
/// Bits of input address (IPA for stage 2, VA for EL2 stage 1).
pub const INPUT_BITS: u32 = 39;
/// Output address bits the tables are built for (VTCR_EL2.PS / TCR_EL2.PS).
pub const OUTPUT_BITS: u32 = 40;

const ENTRIES: usize = 512;
const VALID: u64 = 1 << 0;
const TABLE: u64 = 1 << 1; // at levels 1 and 2; at level 3 it marks a page
const AF: u64 = 1 << 10;
const ADDR_MASK: u64 = ((1 << 48) - 1) & !(PAGE - 1);

/// Hands out zeroed, page-aligned 4 KiB frames and gives access to them.
pub trait FrameAllocator {
    /// A new zeroed frame's physical address, or `None` when exhausted.
    fn alloc(&mut self) -> Option<u64>;
    /// The 512 descriptors of the frame at `pa`.
    fn table(&mut self, pa: u64) -> &mut [u64; ENTRIES];
}

/// Which translation regime a table belongs to: decides the attribute bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Regime {
    /// EL2 stage 1: attributes index MAIR_EL2 (see [`mair_el2`]).
    El2Stage1,
    /// Stage 2 (guest IPA to PA): attributes are encoded directly.
    Stage2,
}

/// What a mapping allows and what memory type it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attrs {
    pub device: bool,
    pub writable: bool,
    pub executable: bool,
}

impl Attrs {
    /// Normal memory, read/write, never executable.
    pub const RAM_RW: Attrs = Attrs {
        device: false,
        writable: true,
        executable: false,
    };
    /// Normal memory, read/write/execute (guest RAM in stage 2 only).
    pub const RAM_RWX: Attrs = Attrs {
        device: false,
        writable: true,
        executable: true,
    };
    /// Normal memory, read-only, executable (the partitioner's code).
    pub const RAM_RX: Attrs = Attrs {
        device: false,
        writable: false,
        executable: true,
    };
    /// Normal memory, read-only, never executable.
    pub const RAM_RO: Attrs = Attrs {
        device: false,
        writable: false,
        executable: false,
    };
    /// Device-nGnRE, read/write, never executable.
    pub const DEVICE: Attrs = Attrs {
        device: true,
        writable: true,
        executable: false,
    };
}

/// MAIR_EL2 value matching [`Regime::El2Stage1`] descriptors:
/// index 0 = Device-nGnRE, index 1 = Normal write-back read/write-allocate.
pub const fn mair_el2() -> u64 {
    0x04 | (0xff << 8)
}

/// Leaf descriptor bits (everything but the address and the type bits).
pub fn leaf_attrs(regime: Regime, a: Attrs) -> u64 {
    let sh_inner = 0b11 << 8;
    match regime {
        Regime::El2Stage1 => {
            let attr_idx: u64 = if a.device { 0 } else { 1 };
            // AP[2:1]: AP[2] set = read-only. AP[1] is RES1 in the EL2
            // regime (it has no EL0), so it is always set.
            let ap: u64 = if a.writable { 0b01 } else { 0b11 };
            // XN is bit 54 in the EL2 regime with one privilege level.
            let xn: u64 = if a.executable { 0 } else { 1 << 54 };
            (attr_idx << 2) | (ap << 6) | if a.device { 0 } else { sh_inner } | AF | xn
        }
        Regime::Stage2 => {
            // MemAttr[3:0]: 0b0001 Device-nGnRE, 0b1111 Normal inner/outer WB.
            let mem_attr: u64 = if a.device { 0b0001 } else { 0b1111 };
            // S2AP[1:0]: bit 0 = read, bit 1 = write.
            let s2ap: u64 = if a.writable { 0b11 } else { 0b01 };
            // XN[1:0] at bits 54:53: 0b10 = not executable at EL1 or EL0.
            let xn: u64 = if a.executable { 0 } else { 0b10 << 53 };
            (mem_attr << 2) | (s2ap << 6) | if a.device { 0 } else { sh_inner } | AF | xn
        }
    }
}

/// Decode leaf attribute bits back into [`Attrs`] (used by the table walker).
pub fn decode_attrs(regime: Regime, desc: u64) -> Attrs {
    match regime {
        Regime::El2Stage1 => Attrs {
            device: (desc >> 2) & 0b111 == 0,
            writable: (desc >> 7) & 1 == 0,
            executable: desc & (1 << 54) == 0,
        },
        Regime::Stage2 => Attrs {
            device: (desc >> 2) & 0b1111 != 0b1111,
            writable: (desc >> 7) & 1 == 1,
            executable: (desc >> 53) & 0b11 == 0,
        },
    }
}

/// Why a mapping could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// Address or size not 4 KiB aligned, or zero size.
    Unaligned,
    /// The input or output range does not fit the table format.
    OutOfRange,
    /// Part of the range is already mapped.
    AlreadyMapped { input: u64 },
    /// The frame allocator ran out.
    OutOfFrames,
}

/// A set of translation tables rooted at one level-1 table.
pub struct Tables {
    pub regime: Regime,
    /// Physical address of the level-1 table (for VTTBR_EL2 / TTBR0_EL2).
    pub root: u64,
}

fn level_shift(level: u32) -> u32 {
    39 - 9 * level // level 1: 30, level 2: 21, level 3: 12
}

fn index(level: u32, input: u64) -> usize {
    ((input >> level_shift(level)) & 0x1ff) as usize
}

impl Tables {
    /// A new, empty set of tables.
    pub fn new(regime: Regime, alloc: &mut dyn FrameAllocator) -> Result<Self, MapError> {
        let root = alloc.alloc().ok_or(MapError::OutOfFrames)?;
        Ok(Self { regime, root })
    }

    /// Map `[input, input + size)` to `[output, output + size)`, using 1 GiB and
    /// 2 MiB blocks wherever both addresses are aligned and the remaining size
    /// allows, 4 KiB pages elsewhere. Refuses to overwrite an existing mapping.
    pub fn map(
        &mut self,
        alloc: &mut dyn FrameAllocator,
        input: u64,
        output: u64,
        size: u64,
        attrs: Attrs,
    ) -> Result<(), MapError> {
        self.map_leaves(alloc, input, output, size, attrs, true)
    }

    /// [`Tables::map`] with 4 KiB pages only, whatever the alignment (for a
    /// board whose stage 2 must not use blocks: `board::Stage2Leaves`).
    pub fn map_pages(
        &mut self,
        alloc: &mut dyn FrameAllocator,
        input: u64,
        output: u64,
        size: u64,
        attrs: Attrs,
    ) -> Result<(), MapError> {
        self.map_leaves(alloc, input, output, size, attrs, false)
    }

    fn map_leaves(
        &mut self,
        alloc: &mut dyn FrameAllocator,
        input: u64,
        output: u64,
        size: u64,
        attrs: Attrs,
        blocks: bool,
    ) -> Result<(), MapError> {
        if size == 0 || !(input | output | size).is_multiple_of(PAGE) {
            return Err(MapError::Unaligned);
        }
        let in_end = input.checked_add(size).ok_or(MapError::OutOfRange)?;
        let out_end = output.checked_add(size).ok_or(MapError::OutOfRange)?;
        if in_end > 1 << INPUT_BITS || out_end > 1 << OUTPUT_BITS {
            return Err(MapError::OutOfRange);
        }
        // Check first so that a refused mapping leaves the tables unchanged:
        // hole by hole (an invalid entry at level 1 or 2 clears a whole
        // 1 GiB or 2 MiB at once), not page by page.
        let mut at = input;
        while at < in_end {
            match self.hole(alloc, at, in_end) {
                Some(len) => at += len,
                None => return Err(MapError::AlreadyMapped { input: at }),
            }
        }
        let leaf = leaf_attrs(self.regime, attrs);
        let (mut i, mut o, mut left) = (input, output, size);
        while left > 0 {
            let len = if blocks && (i | o).is_multiple_of(BLOCK_1G) && left >= BLOCK_1G {
                let table = self.table_for(alloc, 1, i)?;
                alloc.table(table)[index(1, i)] = (o & ADDR_MASK) | leaf | VALID;
                BLOCK_1G
            } else if blocks && (i | o).is_multiple_of(BLOCK_2M) && left >= BLOCK_2M {
                let table = self.table_for(alloc, 2, i)?;
                alloc.table(table)[index(2, i)] = (o & ADDR_MASK) | leaf | VALID;
                BLOCK_2M
            } else {
                // Pages, as many as the range has in this level-3 table (it
                // covers one 2 MiB-aligned stretch of input, so no block
                // could start before its end), with one walk.
                let table = self.table_for(alloc, 3, i)?;
                let first = index(3, i);
                let n = ((left / PAGE) as usize).min(ENTRIES - first);
                let entries = &mut alloc.table(table)[first..first + n];
                let mut out = o;
                for e in entries.iter_mut() {
                    *e = (out & ADDR_MASK) | leaf | TABLE | VALID;
                    out += PAGE;
                }
                n as u64 * PAGE
            };
            i += len;
            o += len;
            left -= len;
        }
        Ok(())
    }

    /// The table that holds the level-`level` entry for `input`, with the
    /// tables above it made where missing.
    fn table_for(
        &mut self,
        alloc: &mut dyn FrameAllocator,
        level: u32,
        input: u64,
    ) -> Result<u64, MapError> {
        let mut table = self.root;
        for l in 1..level {
            let idx = index(l, input);
            let desc = alloc.table(table)[idx];
            table = if desc & VALID == 0 {
                let next = alloc.alloc().ok_or(MapError::OutOfFrames)?;
                alloc.table(table)[idx] = next | TABLE | VALID;
                next
            } else if desc & TABLE != 0 {
                desc & ADDR_MASK
            } else {
                return Err(MapError::AlreadyMapped { input });
            };
        }
        Ok(table)
    }

    /// Remove the mapping of `[input, input + size)`, which must be covered
    /// by whole leaves (as `map` made them for the same range). The tables
    /// below stay in place, so mapping the same range again needs no new
    /// frames. The caller invalidates the TLB.
    pub fn unmap(
        &mut self,
        alloc: &mut dyn FrameAllocator,
        input: u64,
        size: u64,
    ) -> Result<(), MapError> {
        if size == 0 || !(input | size).is_multiple_of(PAGE) {
            return Err(MapError::Unaligned);
        }
        let end = input.checked_add(size).ok_or(MapError::OutOfRange)?;
        // Check first so that a refused unmap leaves the tables unchanged.
        let mut at = input;
        while at < end {
            match self.leaf_slot(alloc, at) {
                Some((_, _, span)) if at.is_multiple_of(span) && at + span <= end => at += span,
                Some(_) => return Err(MapError::Unaligned),
                None => at += PAGE,
            }
        }
        let mut at = input;
        while at < end {
            match self.leaf_slot(alloc, at) {
                Some((table, idx, span)) => {
                    alloc.table(table)[idx] = 0;
                    at += span;
                }
                None => at += PAGE,
            }
        }
        Ok(())
    }

    /// `None` if `input` is mapped; otherwise the bytes from `input` to the
    /// end of the run of invalid entries the walk stopped at, in that table
    /// (all of them unmapped), looking no further than the entry that
    /// holds `end - 1`.
    fn hole(&self, alloc: &mut dyn FrameAllocator, input: u64, end: u64) -> Option<u64> {
        let mut table = self.root;
        for level in 1..=3 {
            let idx = index(level, input);
            let entries = alloc.table(table);
            if entries[idx] & VALID == 0 {
                let shift = level_shift(level);
                let span = 1u64 << shift;
                let needed = (((end - 1) >> shift) - (input >> shift) + 1) as usize;
                let free = entries[idx..]
                    .iter()
                    .take(needed)
                    .take_while(|&&d| d & VALID == 0)
                    .count() as u64;
                return Some(free * span - (input & (span - 1)));
            }
            let desc = entries[idx];
            if level == 3 || desc & TABLE == 0 {
                return None;
            }
            table = desc & ADDR_MASK;
        }
        None
    }

    /// The table and index of the leaf mapping `input`, and the leaf's span.
    fn leaf_slot(&self, alloc: &mut dyn FrameAllocator, input: u64) -> Option<(u64, usize, u64)> {
        let mut table = self.root;
        for level in 1..=3 {
            let idx = index(level, input);
            let desc = alloc.table(table)[idx];
            if desc & VALID == 0 {
                return None;
            }
            if level == 3 || desc & TABLE == 0 {
                return Some((table, idx, 1u64 << level_shift(level)));
            }
            table = desc & ADDR_MASK;
        }
        None
    }

    /// Walk the tables for `input`: `(output address, level, bytes left in the
    /// leaf from input, attributes)` or `None` when unmapped.
    pub fn translate(
        &self,
        alloc: &mut dyn FrameAllocator,
        input: u64,
    ) -> Option<(u64, u32, u64, Attrs)> {
        if input >= 1 << INPUT_BITS {
            return None;
        }
        let mut table = self.root;
        for level in 1..=3 {
            let desc = alloc.table(table)[index(level, input)];
            if desc & VALID == 0 {
                return None;
            }
            let is_table = level < 3 && desc & TABLE != 0;
            if !is_table {
                let span = 1u64 << level_shift(level);
                let off = input & (span - 1);
                let base = desc & ADDR_MASK & !(span - 1);
                return Some((
                    base + off,
                    level,
                    span - off,
                    decode_attrs(self.regime, desc),
                ));
            }
            table = desc & ADDR_MASK;
        }
        None
    }

    /// Every mapped leaf, merged into maximal runs of contiguous input and
    /// output addresses with equal attributes: `(input, output, size, attrs)`.
    /// Used by tests to prove the tables map exactly what was asked.
    pub fn runs(&self, alloc: &mut dyn FrameAllocator, mut f: impl FnMut(u64, u64, u64, Attrs)) {
        self.runs_dyn(alloc, &mut f)
    }

    /// [`Tables::runs`], not generic, so that it exists once.
    #[inline(never)]
    fn runs_dyn(&self, alloc: &mut dyn FrameAllocator, f: &mut dyn FnMut(u64, u64, u64, Attrs)) {
        let mut cur: Option<(u64, u64, u64, Attrs)> = None;
        self.walk(alloc, self.root, 1, 0, &mut |i, o, s, a| match &mut cur {
            Some((ci, co, cs, ca)) if *ci + *cs == i && *co + *cs == o && *ca == a => *cs += s,
            _ => {
                if let Some((ci, co, cs, ca)) = cur.take() {
                    f(ci, co, cs, ca);
                }
                cur = Some((i, o, s, a));
            }
        });
        if let Some((ci, co, cs, ca)) = cur {
            f(ci, co, cs, ca);
        }
    }

    fn walk(
        &self,
        alloc: &mut dyn FrameAllocator,
        table: u64,
        level: u32,
        base: u64,
        f: &mut dyn FnMut(u64, u64, u64, Attrs),
    ) {
        let span = 1u64 << level_shift(level);
        // Leaves of this table in a row (contiguous input and output, the
        // same attribute bits) go to `f` as one: a table of 512 pages that
        // map one range is one call, not 512.
        let mut run: Option<(u64, u64, u64, u64)> = None;
        let mut idx = 0;
        while idx < ENTRIES {
            // The table is looked up once, and again after each descent
            // (which needs the allocator).
            let entries = alloc.table(table);
            let mut next: Option<(u64, u64)> = None;
            while idx < ENTRIES {
                let desc = entries[idx];
                let input = base + ((idx as u64) << level_shift(level));
                idx += 1;
                if desc & VALID == 0 {
                    continue;
                }
                if level < 3 && desc & TABLE != 0 {
                    next = Some((desc & ADDR_MASK, input));
                    break;
                }
                let (out, bits) = (desc & ADDR_MASK, desc & !ADDR_MASK);
                match &mut run {
                    Some((i, o, s, d)) if *i + *s == input && *o + *s == out && *d == bits => {
                        *s += span
                    }
                    _ => {
                        if let Some((i, o, s, d)) = run.replace((input, out, span, bits)) {
                            f(i, o, s, decode_attrs(self.regime, d));
                        }
                    }
                }
            }
            if let Some((sub, input)) = next {
                if let Some((i, o, s, d)) = run.take() {
                    f(i, o, s, decode_attrs(self.regime, d));
                }
                self.walk(alloc, sub, level + 1, input, f);
            }
        }
        if let Some((i, o, s, d)) = run {
            f(i, o, s, decode_attrs(self.regime, d));
        }
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use std::vec::Vec;

    /// Host frame allocator: frame `n` stands at fake physical address
    /// `FIRST + n * PAGE`.
    #[derive(Clone)]
    pub struct HostFrames {
        pub frames: Vec<Box<[u64; ENTRIES]>>,
        limit: usize,
    }

    const FIRST: u64 = 0x7000_0000;

    impl HostFrames {
        pub fn new(limit: usize) -> Self {
            Self {
                frames: Vec::new(),
                limit,
            }
        }
    }

    impl FrameAllocator for HostFrames {
        fn alloc(&mut self) -> Option<u64> {
            if self.frames.len() >= self.limit {
                return None;
            }
            self.frames.push(Box::new([0; ENTRIES]));
            Some(FIRST + (self.frames.len() as u64 - 1) * PAGE)
        }
        fn table(&mut self, pa: u64) -> &mut [u64; ENTRIES] {
            pa.checked_sub(FIRST)
                .filter(|off| off.is_multiple_of(PAGE))
                .and_then(|off| self.frames.get_mut((off / PAGE) as usize))
                .expect("walk reached a frame never allocated")
        }
    }

    fn runs(t: &Tables, a: &mut HostFrames) -> Vec<(u64, u64, u64, Attrs)> {
        let mut v = Vec::new();
        t.runs(a, |i, o, s, at| v.push((i, o, s, at)));
        v
    }

    #[test]
    fn maps_exactly_the_ranges_asked_with_their_attributes() {
        let mut a = HostFrames::new(64);
        let mut t = Tables::new(Regime::Stage2, &mut a).unwrap();
        t.map(&mut a, 0x4000_0000, 0x4800_0000, 0x20_0000, Attrs::RAM_RWX)
            .unwrap();
        t.map(&mut a, 0x0904_0000, 0x0904_0000, 0x1000, Attrs::DEVICE)
            .unwrap();
        let r = runs(&t, &mut a);
        assert_eq!(
            r,
            vec![
                (0x0904_0000, 0x0904_0000, 0x1000, Attrs::DEVICE),
                (0x4000_0000, 0x4800_0000, 0x20_0000, Attrs::RAM_RWX),
            ]
        );
        // Nothing around the mappings is reachable.
        for probe in [
            0x0903_f000,
            0x0904_1000,
            0x3fff_f000,
            0x4020_0000,
            0x4800_0000,
        ] {
            assert_eq!(
                t.translate(&mut a, probe),
                None,
                "{probe:#x} must be unmapped"
            );
        }
    }

    #[test]
    fn uses_blocks_where_alignment_allows() {
        let mut a = HostFrames::new(64);
        let mut t = Tables::new(Regime::Stage2, &mut a).unwrap();
        // 1 GiB + 2 MiB + 4 KiB, all aligned: one 1 GiB block, one 2 MiB block, one page.
        t.map(
            &mut a,
            0x4000_0000,
            0x8000_0000,
            BLOCK_1G + BLOCK_2M + PAGE,
            Attrs::RAM_RWX,
        )
        .unwrap();
        assert_eq!(t.translate(&mut a, 0x4000_0000).unwrap().1, 1);
        assert_eq!(t.translate(&mut a, 0x8000_0000).unwrap().1, 2);
        assert_eq!(t.translate(&mut a, 0x8020_0000).unwrap().1, 3);
        // root + L2 + L3 only.
        assert_eq!(a.frames.len(), 3);
        // Misaligned output forces pages even for a large range.
        let mut b = HostFrames::new(64);
        let mut u = Tables::new(Regime::Stage2, &mut b).unwrap();
        u.map(&mut b, 0x4000_0000, 0x4800_1000, BLOCK_2M, Attrs::RAM_RWX)
            .unwrap();
        assert_eq!(
            u.translate(&mut b, 0x4010_0000).unwrap(),
            (0x4810_1000, 3, PAGE, Attrs::RAM_RWX)
        );
        // Pages across a level-3 table boundary, every one where it belongs.
        let mut c = HostFrames::new(64);
        let mut w = Tables::new(Regime::Stage2, &mut c).unwrap();
        w.map(&mut c, 0x4010_0000, 0x4810_1000, BLOCK_2M, Attrs::RAM_RWX)
            .unwrap();
        for k in 0..BLOCK_2M / PAGE {
            assert_eq!(
                w.translate(&mut c, 0x4010_0000 + k * PAGE).unwrap(),
                (0x4810_1000 + k * PAGE, 3, PAGE, Attrs::RAM_RWX)
            );
        }
        assert_eq!(w.translate(&mut c, 0x400f_f000), None);
        assert_eq!(w.translate(&mut c, 0x4030_0000), None);
        assert_eq!(runs(&w, &mut c).len(), 1);
    }

    #[test]
    fn stage2_attribute_bits_follow_the_architecture() {
        // RAM: MemAttr 0b1111, S2AP RW, inner shareable, AF, executable.
        assert_eq!(
            leaf_attrs(Regime::Stage2, Attrs::RAM_RWX),
            (0b1111 << 2) | (0b11 << 6) | (0b11 << 8) | AF
        );
        // Device: MemAttr 0b0001, S2AP RW, XN = 0b10.
        assert_eq!(
            leaf_attrs(Regime::Stage2, Attrs::DEVICE),
            (0b0001 << 2) | (0b11 << 6) | AF | (0b10 << 53)
        );
        // Read-only must clear S2AP[1] (write), keep S2AP[0] (read).
        let ro = leaf_attrs(Regime::Stage2, Attrs::RAM_RO);
        assert_eq!((ro >> 6) & 0b11, 0b01);
        for a in [
            Attrs::RAM_RW,
            Attrs::RAM_RWX,
            Attrs::RAM_RX,
            Attrs::RAM_RO,
            Attrs::DEVICE,
        ] {
            for r in [Regime::Stage2, Regime::El2Stage1] {
                assert_eq!(decode_attrs(r, leaf_attrs(r, a)), a, "{r:?} {a:?}");
            }
        }
    }

    #[test]
    fn el2_code_is_never_writable_and_data_never_executable() {
        let rx = leaf_attrs(Regime::El2Stage1, Attrs::RAM_RX);
        assert_eq!((rx >> 6) & 0b11, 0b11, "AP = read-only, AP[1] RES1");
        assert_eq!(rx & (1 << 54), 0, "executable");
        let rw = leaf_attrs(Regime::El2Stage1, Attrs::RAM_RW);
        assert_eq!((rw >> 6) & 0b11, 0b01, "AP = read/write, AP[1] RES1");
        assert_ne!(rw & (1 << 54), 0, "XN");
        assert_eq!(
            (leaf_attrs(Regime::El2Stage1, Attrs::DEVICE) >> 2) & 0b111,
            0,
            "MAIR index 0 = device"
        );
        assert_eq!(mair_el2() & 0xff, 0x04);
        assert_eq!((mair_el2() >> 8) & 0xff, 0xff);
    }

    #[test]
    fn refuses_overlap_bad_alignment_range_and_exhaustion_without_changes() {
        let mut a = HostFrames::new(64);
        let mut t = Tables::new(Regime::Stage2, &mut a).unwrap();
        t.map(&mut a, 0x4000_0000, 0x4000_0000, BLOCK_2M, Attrs::RAM_RWX)
            .unwrap();
        let before = runs(&t, &mut a);
        assert_eq!(
            t.map(&mut a, 0x401f_f000, 0x5000_0000, 0x2000, Attrs::RAM_RWX),
            Err(MapError::AlreadyMapped { input: 0x401f_f000 })
        );
        assert_eq!(
            t.map(&mut a, 0x1000, 0x1800, 0x1000, Attrs::DEVICE),
            Err(MapError::Unaligned)
        );
        assert_eq!(
            t.map(&mut a, 0x1000, 0x1000, 0, Attrs::DEVICE),
            Err(MapError::Unaligned)
        );
        assert_eq!(
            t.map(&mut a, (1 << 39) - 0x1000, 0, 0x2000, Attrs::DEVICE),
            Err(MapError::OutOfRange)
        );
        assert_eq!(
            t.map(&mut a, 0, 1 << 40, 0x1000, Attrs::DEVICE),
            Err(MapError::OutOfRange)
        );
        assert_eq!(runs(&t, &mut a), before);
        let mut small = HostFrames::new(2);
        let mut s = Tables::new(Regime::Stage2, &mut small).unwrap();
        assert_eq!(
            s.map(&mut small, 0x1000, 0x1000, 0x1000, Attrs::DEVICE),
            Err(MapError::OutOfFrames)
        );
    }

    #[test]
    fn overlap_check_finds_the_first_mapped_page_across_holes() {
        let mut a = HostFrames::new(64);
        let mut t = Tables::new(Regime::Stage2, &mut a).unwrap();
        // One page deep inside a large range, in a level-3 table of its own.
        t.map(&mut a, 0x8765_4000, 0x1000, PAGE, Attrs::RAM_RW)
            .unwrap();
        // A 2 MiB block in another gigabyte.
        t.map(&mut a, 0xc020_0000, 0xc020_0000, BLOCK_2M, Attrs::RAM_RW)
            .unwrap();
        let before = runs(&t, &mut a);
        assert_eq!(
            t.map(&mut a, 0, 0, 4 * BLOCK_1G, Attrs::RAM_RW),
            Err(MapError::AlreadyMapped { input: 0x8765_4000 })
        );
        assert_eq!(
            t.map(
                &mut a,
                0x8765_5000,
                0,
                0x4000_0000 - 0x0765_5000 + 0x20_1000,
                Attrs::RAM_RW
            ),
            Err(MapError::AlreadyMapped { input: 0xc020_0000 })
        );
        assert_eq!(runs(&t, &mut a), before, "refused: unchanged");
        // The pages around both are free.
        t.map(&mut a, 0x8700_0000, 0x8700_0000, 0x65_4000, Attrs::RAM_RW)
            .unwrap();
        t.map(
            &mut a,
            0x8765_5000,
            0x8765_5000,
            0xc020_0000 - 0x8765_5000,
            Attrs::RAM_RW,
        )
        .unwrap();
        assert_eq!(
            t.translate(&mut a, 0xc01f_f000).map(|x| x.0),
            Some(0xc01f_f000)
        );
    }

    #[test]
    fn unmap_removes_exactly_the_range_and_remap_needs_no_frames() {
        let mut a = HostFrames::new(64);
        let mut t = Tables::new(Regime::El2Stage1, &mut a).unwrap();
        // Pages, a 2 MiB block and pages again.
        let base = 0x4000_0000 + 0x1f_f000;
        let size = 0x1000 + 0x20_0000 + 0x3000;
        t.map(&mut a, base, base, size, Attrs::RAM_RW).unwrap();
        t.map(&mut a, 0x3000_0000, 0x3000_0000, 0x1000, Attrs::RAM_RO)
            .unwrap();
        let frames = a.frames.len();
        t.unmap(&mut a, base, size).unwrap();
        let mut left = Vec::new();
        t.runs(&mut a, |i, o, s, at| left.push((i, o, s, at)));
        assert_eq!(left, [(0x3000_0000, 0x3000_0000, 0x1000, Attrs::RAM_RO)]);
        t.map(&mut a, base, base, size, Attrs::RAM_RW).unwrap();
        assert_eq!(a.frames.len(), frames, "the tables were kept");
        assert!(t.translate(&mut a, base + 0x10_0000).is_some());
        // Part of a block cannot be unmapped; unmapped ranges are fine.
        assert_eq!(
            t.unmap(&mut a, 0x4020_0000, 0x1000),
            Err(MapError::Unaligned)
        );
        assert!(
            t.translate(&mut a, 0x4020_0000).is_some(),
            "refused: unchanged"
        );
        t.unmap(&mut a, 0x6000_0000, 0x20_0000).unwrap();
    }
}
