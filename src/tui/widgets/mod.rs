//! Widgets of our own; the rest are ratatui's.

pub mod histogram;
pub mod timeline;
