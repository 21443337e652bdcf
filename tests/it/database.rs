//! The database file's realities on a Pi, through the real binary: a backup never lands on
//! the live file, one daemon per database, a restored copy is a new history (epoch) whose ids
//! never repeat, and operators' typos in the config.

mod backup_safety;
mod ids;
mod one_daemon;
mod restore;
