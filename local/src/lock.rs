//! The one locking helper every module of the server shares.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Returns the guard of a mutex, ignoring poisoning (the data stays consistent under our locks).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
