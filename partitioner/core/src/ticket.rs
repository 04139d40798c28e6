//! A FIFO ticket lock: every core that asks takes the next ticket and is
//! served in ticket order, so no core can be passed over, however often
//! another asks. The partitioner's console uses it: a core waiting for the
//! console gets it after at most one line from each core that asked before
//! it (see `docs/architecture.md`).
//!
//! It guards no data itself, only a section of code (the console's UART).

use core::sync::atomic::{AtomicU32, Ordering};

/// The lock: the next ticket to hand out, and the ticket now served.
pub struct TicketLock {
    next: AtomicU32,
    serving: AtomicU32,
}

/// Held while it lives; dropping it serves the next ticket.
#[must_use = "the lock is released when the guard is dropped"]
pub struct TicketGuard<'a> {
    lock: &'a TicketLock,
}

impl Default for TicketLock {
    fn default() -> Self {
        Self::new()
    }
}

impl TicketLock {
    pub const fn new() -> Self {
        Self {
            next: AtomicU32::new(0),
            serving: AtomicU32::new(0),
        }
    }

    /// Take a ticket and wait for its turn.
    pub fn lock(&self) -> TicketGuard<'_> {
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        // `serving` only ever counts up by one per release; a ticket's turn
        // is when it is reached (wrapping comparison, so a count that passed
        // it can never strand a waiter).
        while (self.serving.load(Ordering::Acquire).wrapping_sub(ticket) as i32) < 0 {
            core::hint::spin_loop();
        }
        TicketGuard { lock: self }
    }

    /// Take the lock only if no one holds it or waits for it.
    pub fn try_lock(&self) -> Option<TicketGuard<'_>> {
        let serving = self.serving.load(Ordering::Acquire);
        self.next
            .compare_exchange(
                serving,
                serving.wrapping_add(1),
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .ok()
            .map(|_| TicketGuard { lock: self })
    }

    /// Cores holding or waiting for the lock.
    pub fn queued(&self) -> u32 {
        self.next
            .load(Ordering::Relaxed)
            .wrapping_sub(self.serving.load(Ordering::Relaxed))
    }
}

impl Drop for TicketGuard<'_> {
    fn drop(&mut self) {
        self.lock.serving.fetch_add(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::{Arc, Mutex};
    use std::vec::Vec;

    #[test]
    fn excludes() {
        let lock = Arc::new(TicketLock::new());
        let inside = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for _ in 0..4 {
            let (lock, inside) = (lock.clone(), inside.clone());
            threads.push(std::thread::spawn(move || {
                for _ in 0..10_000 {
                    let _g = lock.lock();
                    assert!(!inside.swap(true, Ordering::SeqCst), "two holders");
                    inside.store(false, Ordering::SeqCst);
                }
            }));
        }
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(lock.queued(), 0);
    }

    #[test]
    fn serves_in_ticket_order() {
        let lock = Arc::new(TicketLock::new());
        let order = Arc::new(Mutex::new(Vec::new()));
        let held = lock.lock();
        let mut threads = Vec::new();
        for i in 0..4u32 {
            let (l, o) = (lock.clone(), order.clone());
            threads.push(std::thread::spawn(move || {
                let _g = l.lock();
                o.lock().unwrap().push(i);
            }));
            // The next thread asks only once this one has its ticket.
            while lock.queued() != i + 2 {
                std::thread::yield_now();
            }
        }
        drop(held);
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3]);
    }

    #[test]
    fn a_core_asking_again_goes_to_the_back() {
        // One core releases and asks again at once while another waits: the
        // waiter goes first (an unfair spin lock may hand it straight back).
        let lock = Arc::new(TicketLock::new());
        let order = Arc::new(Mutex::new(Vec::new()));
        let first = lock.lock();
        let (l, o) = (lock.clone(), order.clone());
        let waiter = std::thread::spawn(move || {
            let _g = l.lock();
            o.lock().unwrap().push("waiter");
        });
        while lock.queued() != 2 {
            std::thread::yield_now();
        }
        drop(first);
        let _again = lock.lock();
        order.lock().unwrap().push("again");
        drop(_again);
        waiter.join().unwrap();
        assert_eq!(*order.lock().unwrap(), ["waiter", "again"]);
    }

    #[test]
    fn try_lock_only_when_free() {
        let lock = TicketLock::new();
        let g = lock.try_lock().expect("free");
        assert!(lock.try_lock().is_none());
        drop(g);
        assert!(lock.try_lock().is_some());
    }

    #[test]
    fn tickets_wrap() {
        let lock = TicketLock {
            next: AtomicU32::new(u32::MAX - 1),
            serving: AtomicU32::new(u32::MAX - 1),
        };
        for _ in 0..4 {
            drop(lock.lock());
        }
        assert_eq!(lock.queued(), 0);
        assert_eq!(lock.serving.load(Ordering::Relaxed), 2);
    }
}
