//! The commands, one file per group; `crate::run` dispatches to them.

pub(crate) mod bench;
pub(crate) mod reports;
pub(crate) mod run;
pub(crate) mod sweep;
pub(crate) mod tui;
