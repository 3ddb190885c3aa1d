//! Whole commands over the LVM fake ([`crate::lvm::fake::FakeLvm`]) and an
//! in-process agent: the real agent library serving an archive in a
//! temporary directory on a socketpair, in a thread.

mod arch_check;
mod consistency;
mod delete;
mod diff;
mod harness;
mod monitor;
mod qubes;
mod qubes_reflink;
mod qubes_world;
mod restore_qube;
mod restore_qube_devices;
mod restore_qube_settle;
mod restore_service;
mod send;
