//! API tests over real TCP: a server bound on 127.0.0.1:0 over a temporary
//! data directory, driven with reqwest and requests signed by hand.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod accounts;
mod delivery;
mod directory;
mod keypackages;
mod limits;
mod links;
mod nodes;
mod push;
mod refusals;
mod restart;
mod sessions;
mod support;
