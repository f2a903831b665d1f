//! Wire types shared by the Rempart client and server.
//!
//! Its wire types do no I/O and hold no state. It defines:
//!
//! - identifiers that are valid once constructed ([`UserName`], [`DeviceId`],
//!   [`GroupId`], [`MessageId`]);
//! - the account-signed device list ([`SignedDeviceList`]), the only way a
//!   device key becomes part of an account;
//! - the signed-request scheme every device uses to authenticate to the server
//!   ([`auth`]);
//! - the JSON bodies of the HTTP API ([`api`]) and the limits both sides
//!   enforce ([`limits`]);
//! - apart from the wire, helpers the Rempart binaries share for their own
//!   process ([`local`]): secret seed files, durations given on the command
//!   line, error chains for logs. They are the crate's only I/O.
//!
//! The server never sees a secret or a plaintext: every wire type here
//! carries public keys, signatures or MLS ciphertext only.
//!
//! ```
//! use rempart_proto::{DeviceId, UserName};
//!
//! let alice: UserName = "alice".parse().unwrap();
//! assert!("Alice!".parse::<UserName>().is_err());
//! let device: DeviceId = "00112233445566ff".parse().unwrap();
//! assert_eq!(device.to_string(), "00112233445566ff");
//! # let _ = alice;
//! ```

pub mod api;
pub mod auth;
pub mod b64;
pub mod device_list;
pub mod directory;
pub mod ids;
pub mod limits;
pub mod local;
pub mod mail;

pub use device_list::{
    AccountSignedDeviceList, DeviceEntry, DeviceList, DeviceListError, PublicKey, SignedDeviceList,
};
pub use ids::{DeviceId, GroupId, IdError, LinkId, MessageId, UserName};
