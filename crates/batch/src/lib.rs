//! The Job and CronJob controllers.
#![forbid(unsafe_code)]

use ferry_runtime::{Informers, Task};

/// The control loops of this crate, subscribed to `informers`; the caller polls them.
pub fn controllers(_informers: &mut Informers) -> Vec<Task> {
    Vec::new()
}
