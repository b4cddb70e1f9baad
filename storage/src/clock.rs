//! Time, injected so retention and flush policies are tested without waiting.

use std::sync::atomic::{AtomicI64, Ordering};

use crate::ids::Nanos;

pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Nanos;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Nanos {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Nanos(i64::try_from(since.as_nanos()).unwrap_or(i64::MAX))
    }
}

/// A clock that moves only when told.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(now: Nanos) -> Self {
        Self(AtomicI64::new(now.0))
    }

    pub fn set(&self, now: Nanos) {
        self.0.store(now.0, Ordering::SeqCst);
    }

    pub fn advance(&self, by: Nanos) {
        self.0.fetch_add(by.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Nanos {
        Nanos(self.0.load(Ordering::SeqCst))
    }
}
