//! The partitioner's own console UART, as policy: how long a byte may wait
//! for room in its transmitter. The UART is the partitioner's alone, but
//! one that stops draining (a transmit FIFO held full, e.g. by hardware
//! flow control with nothing on the other end) must not stop the machine:
//! every core prints its reports in the console's turn, so one core stuck
//! on a full FIFO would hold up every other core that has a line to print,
//! whichever domain it runs. So a byte waits at most a bounded time; after
//! that the console counts as stalled, and bytes are dropped (and counted)
//! without waiting until the transmitter has room again. The count is then
//! reported before the next line.

/// Whether a byte may be written now, waiting at most `limit` ticks of
/// `now()` for the transmitter (`full()`) to have room, unless it is
/// already known to be stalled.
#[derive(Debug, Default)]
pub struct Transmit {
    stalled: bool,
    dropped: u64,
}

impl Transmit {
    pub const fn new() -> Self {
        Self {
            stalled: false,
            dropped: 0,
        }
    }

    /// Decide about one byte: `true` to write it (there is room), `false`
    /// if it is dropped. A stalled transmitter is not waited for again.
    pub fn room(
        &mut self,
        mut full: impl FnMut() -> bool,
        mut now: impl FnMut() -> u64,
        limit: u64,
    ) -> bool {
        if !full() {
            self.stalled = false;
            return true;
        }
        if !self.stalled {
            let start = now();
            while now().wrapping_sub(start) <= limit {
                if !full() {
                    return true;
                }
                core::hint::spin_loop();
            }
            self.stalled = true;
        }
        self.dropped += 1;
        false
    }

    /// Bytes dropped since the last call, if the transmitter has room
    /// again (`None` while it is stalled, or if nothing was dropped).
    pub fn take_dropped(&mut self) -> Option<u64> {
        (!self.stalled && self.dropped > 0).then(|| core::mem::take(&mut self.dropped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::Cell;

    #[test]
    fn a_draining_transmitter_is_waited_for() {
        let mut t = Transmit::new();
        // Full for the first three looks, then room.
        let looks = Cell::new(0);
        let clock = Cell::new(0u64);
        let full = || {
            looks.set(looks.get() + 1);
            looks.get() <= 3
        };
        let now = || {
            clock.set(clock.get() + 1);
            clock.get()
        };
        assert!(t.room(full, now, 100));
        assert_eq!(t.take_dropped(), None);
        assert!(t.room(|| false, || 0, 100));
    }

    #[test]
    fn a_stalled_transmitter_costs_one_wait_then_bytes_are_dropped_and_counted() {
        let mut t = Transmit::new();
        let clock = Cell::new(0u64);
        let now = || {
            clock.set(clock.get() + 1);
            clock.get()
        };
        // Never any room: the first byte waits out the limit, then gives up.
        assert!(!t.room(|| true, now, 50));
        let waited = clock.get();
        assert!(waited > 50, "waited {waited} ticks");
        // The next ones do not wait at all.
        for _ in 0..9 {
            assert!(!t.room(|| true, || panic!("no wait when stalled"), 50));
        }
        assert_eq!(t.take_dropped(), None, "still stalled: nothing to report");
        // Room again: the byte goes out, and the loss is reported once.
        assert!(t.room(|| false, || 0, 50));
        assert_eq!(t.take_dropped(), Some(10));
        assert_eq!(t.take_dropped(), None);
        // A later stall waits again.
        let clock = Cell::new(0u64);
        assert!(!t.room(
            || true,
            || {
                clock.set(clock.get() + 1);
                clock.get()
            },
            5
        ));
        assert!(clock.get() > 5);
    }
}
