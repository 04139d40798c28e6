//! A value set once, at boot, and read ever after: the part of
//! `spin::Once` the firmware uses (`new`, `call_once`, `get`), with the
//! same `get` (one acquire load), but with the setting's slow path (claim
//! the value, or wait for whoever did) not generic: `spin::Once` has one
//! copy of it per type stored, about 200 bytes each.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU8, Ordering};

const EMPTY: u8 = 0;
const RUNNING: u8 = 1;
const READY: u8 = 2;

pub struct Once<T> {
    state: AtomicU8,
    value: UnsafeCell<MaybeUninit<T>>,
}

// SAFETY: the value is written once, by the one caller `claim` let move
// `state` from EMPTY to RUNNING, and published by its Release store of
// READY; it is only read (shared) after an Acquire load saw READY, and
// never written again. So a shared `Once<T>` hands out `&T` on any core
// (hence `T: Sync`), and a value made on one core to the others (`T: Send`),
// as `spin::Once` requires too.
unsafe impl<T: Send + Sync> Sync for Once<T> {}

impl<T> Once<T> {
    pub const fn new() -> Self {
        Self {
            state: AtomicU8::new(EMPTY),
            value: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// The value, if it is set.
    #[inline]
    pub fn get(&self) -> Option<&T> {
        if self.state.load(Ordering::Acquire) == READY {
            // SAFETY: READY, seen with Acquire, means the value was written
            // and published (see the `Sync` impl); it is never written again.
            Some(unsafe { (*self.value.get()).assume_init_ref() })
        } else {
            None
        }
    }

    /// Set the value to `f()` if it is not set yet (a caller that finds it
    /// being set waits for it); the value either way.
    pub fn call_once(&self, f: impl FnOnce() -> T) -> &T {
        if claim(&self.state) {
            // SAFETY: `claim` let only this caller move the state to
            // RUNNING: nothing else writes the value, and nothing reads it
            // before the READY stored just below.
            unsafe { (*self.value.get()).write(f()) };
            self.state.store(READY, Ordering::Release);
        }
        // SAFETY: READY now (stored above, or `claim` saw it with Acquire):
        // the value is written and never written again.
        unsafe { (*self.value.get()).assume_init_ref() }
    }
}

/// Move `state` from EMPTY to RUNNING (`true`: the caller sets the value),
/// or wait until it is READY (`false`). One copy for every [`Once`].
#[inline(never)]
fn claim(state: &AtomicU8) -> bool {
    loop {
        match state.compare_exchange(EMPTY, RUNNING, Ordering::Acquire, Ordering::Acquire) {
            Ok(_) => return true,
            Err(READY) => return false,
            Err(_) => core::hint::spin_loop(),
        }
    }
}
