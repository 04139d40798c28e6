//! Set/way cache maintenance as the partitioner carries it out: a domain's
//! trapped `DC ISW`, `DC CSW` or `DC CISW` (HCR_EL2.TSW) becomes a clean
//! and invalidate, by address, of the domain's whole RAM (see
//! `docs/security.md`). That can be a long piece of work (hundreds of
//! milliseconds for a domain of a few GiB), done at EL2 with interrupts
//! masked, on a core that may also take the partitioner's own interrupts
//! (its console's input, the IOMMU's reports) and a stop request for its
//! domain. So it is done in pieces of [`PIECE`] bytes, and after each one
//! it gives way to a pending interrupt: the trapped instruction is then
//! not stepped over, the interrupt is taken as soon as the domain is
//! re-entered, and the instruction traps again and resumes the clean where
//! it stopped ([`Cursor`]). Only once the clean reaches the end of the RAM
//! is the instruction complete. A domain's set/way operation is thus
//! exactly as interruptible as a set/way loop on hardware, and nothing the
//! partitioner does for it holds up an interrupt for longer than one piece.

use crate::plan::Mapping;

/// Bytes cleaned between two looks for a pending interrupt: a few hundred
/// microseconds of `DC CIVAC` on a Cortex-A72.
pub const PIECE: u64 = 2 << 20;

/// Where a clean of a domain's RAM stands: `offset` bytes into its
/// `region`-th RAM mapping. The default is the start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    pub region: usize,
    pub offset: u64,
}

/// How a call of [`clean`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The whole RAM is clean: the operation is complete (the cursor is
    /// back at the start).
    Done,
    /// An interrupt is pending: the rest waits for the next call, from
    /// the cursor on.
    GaveWay,
}

/// Clean the physical ranges of `ram` from `cursor` on, one piece of at
/// most [`PIECE`] bytes at a time (`clean_range(pa, size)`), asking
/// `give_way()` after each piece whether an interrupt is pending. At least
/// one piece is cleaned per call (when anything is left), so a clean that
/// keeps being interrupted still finishes.
pub fn clean(
    ram: &[Mapping],
    cursor: &mut Cursor,
    mut clean_range: impl FnMut(u64, u64),
    mut give_way: impl FnMut() -> bool,
) -> Progress {
    // A cursor that is not one of this RAM's (never made) starts over.
    if cursor.region >= ram.len() {
        *cursor = Cursor::default();
    }
    loop {
        let Some(m) = ram.get(cursor.region) else {
            *cursor = Cursor::default();
            return Progress::Done;
        };
        if cursor.offset >= m.size {
            cursor.region += 1;
            cursor.offset = 0;
            continue;
        }
        let len = (m.size - cursor.offset).min(PIECE);
        clean_range(m.pa + cursor.offset, len);
        cursor.offset += len;
        let finished = cursor.offset >= m.size
            && ram
                .get(cursor.region + 1..)
                .is_none_or(|rest| rest.iter().all(|m| m.size == 0));
        if finished {
            *cursor = Cursor::default();
            return Progress::Done;
        }
        if give_way() {
            return Progress::GaveWay;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::MemKind;
    use std::vec::Vec;

    fn ram(regions: &[(u64, u64)]) -> Vec<Mapping> {
        regions
            .iter()
            .map(|&(pa, size)| Mapping {
                ipa: pa,
                pa,
                size,
                kind: MemKind::Ram,
            })
            .collect()
    }

    /// Run a whole operation, `pending(n)` saying whether an interrupt is
    /// pending after the n-th piece: the ranges cleaned, and how many
    /// calls (traps) it took.
    fn run(ram: &[Mapping], mut pending: impl FnMut(usize) -> bool) -> (Vec<(u64, u64)>, usize) {
        let mut cursor = Cursor::default();
        let mut cleaned = Vec::new();
        let mut calls = 0;
        loop {
            calls += 1;
            assert!(calls < 100_000, "never finishes");
            let before = cleaned.len();
            let pieces = core::cell::RefCell::new(&mut cleaned);
            let p = clean(
                ram,
                &mut cursor,
                |pa, len| pieces.borrow_mut().push((pa, len)),
                || pending(pieces.borrow().len()),
            );
            assert!(cleaned.len() > before, "a call cleaned nothing");
            if p == Progress::Done {
                assert_eq!(cursor, Cursor::default());
                return (cleaned, calls);
            }
        }
    }

    /// Every byte of every region exactly once, in order, in pieces.
    fn covers(ram: &[Mapping], cleaned: &[(u64, u64)]) {
        let mut want = Vec::new();
        for m in ram {
            let mut at = m.pa;
            while at < m.pa + m.size {
                let len = (m.pa + m.size - at).min(PIECE);
                want.push((at, len));
                at += len;
            }
        }
        assert_eq!(cleaned, &want[..]);
    }

    #[test]
    fn with_no_interrupt_the_whole_ram_is_cleaned_in_one_call() {
        let r = ram(&[(0x4000_0000, 64 << 20), (0x8000_0000, 0x3000)]);
        let (cleaned, calls) = run(&r, |_| false);
        assert_eq!(calls, 1);
        covers(&r, &cleaned);
    }

    #[test]
    fn a_pending_interrupt_stops_the_clean_after_one_piece() {
        // 1 GiB: before, one call cleaned all of it whatever was pending.
        let r = ram(&[(0x4000_0000, 1 << 30)]);
        let mut cursor = Cursor::default();
        let mut bytes = 0;
        let p = clean(&r, &mut cursor, |_, len| bytes += len, || true);
        assert_eq!(p, Progress::GaveWay);
        assert_eq!(bytes, PIECE, "at most one piece with an interrupt pending");
        assert_eq!(
            cursor,
            Cursor {
                region: 0,
                offset: PIECE
            }
        );
    }

    #[test]
    fn an_interrupted_clean_resumes_where_it_stopped_and_finishes() {
        let r = ram(&[
            (0x4000_0000, 5 * PIECE + 0x1000),
            (0x9000_0000, PIECE),
            (0xa000_0000, 0x2000),
        ]);
        // An interrupt after every piece: one piece per call.
        let (cleaned, calls) = run(&r, |_| true);
        covers(&r, &cleaned);
        assert_eq!(calls, cleaned.len());
        // Now and then.
        let (cleaned, calls) = run(&r, |n| n % 3 == 0);
        covers(&r, &cleaned);
        assert!(calls > 1 && calls < cleaned.len());
    }

    #[test]
    fn the_last_piece_completes_even_with_an_interrupt_pending() {
        // Nothing left after the piece: done, not another trap for nothing.
        let r = ram(&[(0x4000_0000, PIECE)]);
        let mut cursor = Cursor::default();
        assert_eq!(clean(&r, &mut cursor, |_, _| {}, || true), Progress::Done);
        let r = ram(&[]);
        assert_eq!(clean(&r, &mut cursor, |_, _| {}, || true), Progress::Done);
    }

    #[test]
    fn a_cursor_past_the_ram_starts_over() {
        // (A cursor is only ever kept for the RAM it was made for; one
        // that is not cleans it all rather than nothing.)
        let r = ram(&[(0x4000_0000, 0x1000)]);
        let mut cursor = Cursor {
            region: 3,
            offset: 7,
        };
        let mut cleaned = Vec::new();
        assert_eq!(
            clean(&r, &mut cursor, |pa, len| cleaned.push((pa, len)), || false),
            Progress::Done
        );
        covers(&r, &cleaned);
        assert_eq!(cursor, Cursor::default());
    }
}
