//! This account's devices: linking a new one, listing, removing.
//!
//! Linking uses a one-time code shown on an existing device and typed (or
//! scanned) on the new one. The code is 16 random bytes; HKDF-SHA256 derives
//! from it a rendezvous id (the only thing the server learns) and a
//! ChaCha20-Poly1305 key. The new device seals its device id and key to the
//! rendezvous; the existing device opens it, signs a new device list with
//! the account key, publishes it, and seals back the account's name, key,
//! that list and the account's mail keys. Without the code the server can neither read nor forge
//! either message, and the code works once and expires.

use std::path::Path;
use std::time::Duration;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hkdf::Hkdf;
use rand::RngCore as _;
use rand::rngs::OsRng;
use rempart_proto::api::{self, LinkState};
use rempart_proto::limits::LINK_TTL_SECS;
use rempart_proto::{
    DeviceEntry, DeviceId, DeviceList, LinkId, PublicKey, SignedDeviceList, UserName,
};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::Client;
use crate::api::{ServerApi, Signer, unix_now};
use crate::conversation::Change;
use crate::device_list::VerifiedDeviceList;
use crate::error::ClientError;
use crate::event::Event;
use crate::keys::{AccountKey, DeviceKey};
use crate::mail::LinkedMailKey;
use crate::store::{Identity, Store};

const LINK_SALT: &[u8] = b"rempart/link/v1";
const CODE_BYTES: usize = 16;

/// A device of this account, for display.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceInfo {
    /// The device id.
    pub device: DeviceId,
    /// Fingerprint of its key.
    pub fingerprint: String,
    /// True for the device this client runs on.
    pub this_device: bool,
}

/// A linking code shown on the existing device, waiting for the new one.
pub struct PendingLink {
    code: String,
    secrets: LinkSecrets,
    expires_at: i64,
}

impl std::fmt::Debug for PendingLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingLink")
            .field("link", &self.secrets.link)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl PendingLink {
    /// The one-time code to enter on the new device (a secret: show it only
    /// to the user).
    pub fn code(&self) -> &str {
        &self.code
    }

    /// Unix time at which the code stops working.
    pub fn expires_at(&self) -> i64 {
        self.expires_at
    }
}

struct LinkSecrets {
    link: LinkId,
    key: Zeroizing<[u8; 32]>,
}

impl LinkSecrets {
    fn derive(code: &[u8; CODE_BYTES]) -> Self {
        let hkdf = Hkdf::<Sha256>::new(Some(LINK_SALT), code);
        let mut id = [0u8; 16];
        let mut key = Zeroizing::new([0u8; 32]);
        // Both lengths are far below HKDF-SHA256's limit of 8160 bytes.
        let _ = hkdf.expand(b"rendezvous id", &mut id);
        let _ = hkdf.expand(b"sealing key", key.as_mut());
        Self {
            link: LinkId::from_bytes(id),
            key,
        }
    }

    fn seal(&self, direction: Direction, plaintext: &[u8]) -> Result<Vec<u8>, ClientError> {
        ChaCha20Poly1305::new(Key::from_slice(self.key.as_ref()))
            .encrypt(
                &direction.nonce(),
                Payload {
                    msg: plaintext,
                    aad: &self.aad(direction),
                },
            )
            .map_err(|_| ClientError::Corrupt("cannot seal link payload".into()))
    }

    fn open(&self, direction: Direction, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        ChaCha20Poly1305::new(Key::from_slice(self.key.as_ref()))
            .decrypt(
                &direction.nonce(),
                Payload {
                    msg: sealed,
                    aad: &self.aad(direction),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| ClientError::LinkTampered)
    }

    fn aad(&self, direction: Direction) -> Vec<u8> {
        let mut aad = LINK_SALT.to_vec();
        aad.extend_from_slice(direction.label());
        aad.extend_from_slice(self.link.as_bytes());
        aad
    }
}

/// Each key seals exactly one message per direction, so a fixed nonce per
/// direction never repeats under one key.
#[derive(Clone, Copy)]
enum Direction {
    Request,
    Response,
}

impl Direction {
    fn nonce(self) -> Nonce {
        let mut nonce = [0u8; 12];
        nonce[0] = match self {
            Direction::Request => 1,
            Direction::Response => 2,
        };
        Nonce::from(nonce)
    }

    fn label(self) -> &'static [u8] {
        match self {
            Direction::Request => b"/request",
            Direction::Response => b"/response",
        }
    }
}

/// What the new device sends.
#[derive(Serialize, Deserialize)]
struct LinkRequest {
    device: DeviceId,
    signature_key: PublicKey,
}

/// What the existing device sends back.
#[derive(Serialize, Deserialize)]
struct LinkResponse {
    user: UserName,
    #[serde(with = "rempart_proto::b64")]
    account_secret: Vec<u8>,
    device_list: SignedDeviceList,
    /// This account's mail keys, secrets included.
    #[serde(default)]
    mail_keys: Vec<LinkedMailKey>,
}

impl Drop for LinkResponse {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.account_secret);
    }
}

/// Polls a rendezvous at `path` until its sealed payload is there; the link
/// is expired once the server no longer knows it or `deadline` has passed.
async fn wait_for_sealed(
    api: &ServerApi,
    signer: Option<Signer<'_>>,
    path: &str,
    deadline: i64,
    poll: Duration,
) -> Result<Vec<u8>, ClientError> {
    loop {
        match api.link_state(signer, path).await {
            Ok(LinkState {
                sealed: Some(sealed),
            }) => return Ok(sealed),
            Ok(_) => {}
            Err(ClientError::Server { status: 404, .. }) => return Err(ClientError::LinkExpired),
            Err(e) => return Err(e),
        }
        if unix_now() > deadline {
            return Err(ClientError::LinkExpired);
        }
        tokio::time::sleep(poll).await;
    }
}

fn format_code(bytes: &[u8; CODE_BYTES]) -> String {
    let hex = hex::encode(bytes);
    hex.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-")
}

fn parse_code(code: &str) -> Result<Zeroizing<[u8; CODE_BYTES]>, ClientError> {
    let digits: Zeroizing<String> = Zeroizing::new(
        code.chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .map(|c| c.to_ascii_lowercase())
            .collect(),
    );
    let mut bytes = Zeroizing::new([0u8; CODE_BYTES]);
    hex::decode_to_slice(digits.as_bytes(), bytes.as_mut())
        .map_err(|_| ClientError::BadLinkCode)?;
    Ok(bytes)
}

impl Client {
    /// Opens a linking rendezvous and returns its one-time code.
    pub async fn start_link(&self) -> Result<PendingLink, ClientError> {
        let mut code = Zeroizing::new([0u8; CODE_BYTES]);
        OsRng.fill_bytes(code.as_mut());
        let secrets = LinkSecrets::derive(&code);
        self.api.create_link(self.signer(), secrets.link).await?;
        Ok(PendingLink {
            code: format_code(&code),
            secrets,
            expires_at: unix_now() + LINK_TTL_SECS,
        })
    }

    /// Waits for the new device to answer `pending`, then signs it into the
    /// account's device list, publishes the list, and hands the new device
    /// the account. Returns the new device's id. Its conversations get it at
    /// the next sync of any of their members.
    pub async fn finish_link(
        &mut self,
        pending: PendingLink,
        poll: Duration,
    ) -> Result<DeviceId, ClientError> {
        let path = api::link_path(&pending.secrets.link);
        let sealed = wait_for_sealed(
            &self.api,
            Some(self.signer()),
            &path,
            pending.expires_at,
            poll,
        )
        .await?;
        self.complete_link(&pending, &sealed).await
    }

    /// Checks once whether the new device answered `pending`: if it did,
    /// signs it into the account as [`Client::finish_link`] does and
    /// returns its id; if not yet, `None`. For a user interface that
    /// cannot wait in one call.
    pub async fn link_if_answered(
        &self,
        pending: &PendingLink,
    ) -> Result<Option<DeviceId>, ClientError> {
        let path = api::link_path(&pending.secrets.link);
        match self.api.link_state(Some(self.signer()), &path).await {
            Ok(LinkState {
                sealed: Some(sealed),
            }) => self.complete_link(pending, &sealed).await.map(Some),
            Ok(_) if unix_now() > pending.expires_at => Err(ClientError::LinkExpired),
            Ok(_) => Ok(None),
            Err(ClientError::Server { status: 404, .. }) => Err(ClientError::LinkExpired),
            Err(e) => Err(e),
        }
    }

    /// Signs in the new device whose sealed request answered `pending`.
    async fn complete_link(
        &self,
        pending: &PendingLink,
        sealed: &[u8],
    ) -> Result<DeviceId, ClientError> {
        let request: LinkRequest =
            serde_json::from_slice(&pending.secrets.open(Direction::Request, sealed)?)
                .map_err(|_| ClientError::LinkTampered)?;

        let current = self.own_list()?;
        let mut list = current.list().clone();
        list.version += 1;
        list.timestamp = unix_now();
        list.devices.push(DeviceEntry {
            id: request.device,
            signature_key: request.signature_key,
        });
        let signed = self.publish_own_list(&list).await?;
        let response = LinkResponse {
            user: self.id.user.clone(),
            account_secret: self.id.account_key.secret_bytes().to_vec(),
            device_list: signed,
            mail_keys: self.own_mail_keys_for_link()?,
        };
        let plaintext = Zeroizing::new(
            serde_json::to_vec(&response).map_err(|e| ClientError::Corrupt(e.to_string()))?,
        );
        let sealed = pending.secrets.seal(Direction::Response, &plaintext)?;
        self.api
            .put_link(
                Some(self.signer()),
                &api::link_response_path(&pending.secrets.link),
                sealed,
            )
            .await?;
        Ok(request.device)
    }

    /// Completes linking on the new device: answers the rendezvous named by
    /// `code`, waits for the account, checks it, and stores it in `home`.
    pub async fn link_device(
        home: &Path,
        server_url: &str,
        code: &str,
        poll: Duration,
    ) -> Result<Self, ClientError> {
        Self::link_device_with(home, server_url, code, poll, None).await
    }

    /// [`Self::link_device`], with this device's store encrypted under
    /// `passphrase`.
    pub async fn link_device_with(
        home: &Path,
        server_url: &str,
        code: &str,
        poll: Duration,
        passphrase: Option<&crate::Passphrase>,
    ) -> Result<Self, ClientError> {
        let secrets = LinkSecrets::derive(&*parse_code(code)?);
        let api = ServerApi::new(server_url)?;
        let store = Store::create(home, passphrase)?;
        let result = Self::link_device_inner(home, store, api, secrets, poll).await;
        if result.is_err() {
            crate::remove_store(home);
        }
        result
    }

    async fn link_device_inner(
        home: &Path,
        store: Store,
        api: ServerApi,
        secrets: LinkSecrets,
        poll: Duration,
    ) -> Result<Self, ClientError> {
        let device_key = DeviceKey::generate();
        let device = DeviceId::random();
        let request = LinkRequest {
            device,
            signature_key: device_key.public(),
        };
        let plaintext =
            serde_json::to_vec(&request).map_err(|e| ClientError::Corrupt(e.to_string()))?;
        match api
            .put_link(
                None,
                &api::link_request_path(&secrets.link),
                secrets.seal(Direction::Request, &plaintext)?,
            )
            .await
        {
            Ok(()) => {}
            Err(ClientError::Server {
                status: 404 | 409, ..
            }) => return Err(ClientError::LinkExpired),
            Err(e) => return Err(e),
        }
        let deadline = unix_now() + LINK_TTL_SECS;
        let path = api::link_response_path(&secrets.link);
        let sealed = wait_for_sealed(&api, None, &path, deadline, poll).await?;
        let response: LinkResponse =
            serde_json::from_slice(&secrets.open(Direction::Response, &sealed)?)
                .map_err(|_| ClientError::LinkTampered)?;
        let account_key =
            AccountKey::from_secret(&response.account_secret).ok_or(ClientError::LinkTampered)?;
        let list = response
            .device_list
            .verify_for(&response.user)
            .map_err(|_| ClientError::LinkTampered)?;
        let listed = list
            .device(&device)
            .is_some_and(|d| d.signature_key == device_key.public());
        if list.account_key != account_key.public() || !listed {
            return Err(ClientError::LinkTampered);
        }
        let id = Identity {
            user: response.user.clone(),
            device,
            server: api.base().to_owned(),
            account_key,
            device_key,
            device_list: response.device_list.clone(),
        };
        store.atomic(|| {
            store.save_identity(&id)?;
            crate::mail::keep_linked_keys(&store, &response.mail_keys)?;
            store.pin_key(&id.user, &id.account_key.public())
        })?;
        let client = Self::assemble(home, store, api, id);
        client.pin_directory().await?;
        client.upload_key_packages(true).await?;
        Ok(client)
    }

    /// This account's devices, as its latest verified device list says.
    pub async fn devices(&self) -> Result<Vec<DeviceInfo>, ClientError> {
        let fetched = self.device_lists([&self.id.user]).await?;
        if let Some(alert) = fetched.alerts.into_iter().next() {
            return Err(alert.into());
        }
        let list = self.own_list()?;
        Ok(list
            .devices()
            .iter()
            .map(|d| DeviceInfo {
                device: d.id,
                fingerprint: d.signature_key.fingerprint(),
                this_device: d.id == self.id.device,
            })
            .collect())
    }

    /// Removes `device` from this account: signs and publishes a device list
    /// without it, then removes it from every conversation by a commit.
    pub async fn remove_device(&mut self, device: DeviceId) -> Result<Vec<Event>, ClientError> {
        if device == self.id.device {
            return Err(ClientError::RemoveSelf);
        }
        // Start from the newest list, which another device may have changed.
        let fetched = self.device_lists([&self.id.user]).await?;
        if let Some(alert) = fetched.alerts.into_iter().next() {
            return Err(alert.into());
        }
        let current = self.own_list()?;
        if current.device(&device).is_none() {
            return Err(ClientError::UnknownDevice(device));
        }
        let mut list = current.list().clone();
        list.version += 1;
        list.timestamp = unix_now();
        list.devices.retain(|d| d.id != device);
        self.publish_own_list(&list).await?;
        let mut events = Vec::new();
        for conversation in self.store.writable_conversations()? {
            let change = Change {
                remove_devices: [(self.id.user.clone(), device)].into(),
                ..Change::default()
            };
            events.extend(self.apply_change(&conversation, change).await?);
        }
        Ok(events)
    }

    /// This device's copy of its account's device list, verified.
    pub(crate) fn own_list(&self) -> Result<VerifiedDeviceList, ClientError> {
        VerifiedDeviceList::from_store(
            &self.store,
            &self.id.user,
            &self.store.own_device_list()?,
            None,
        )
    }

    /// Signs `list` with the account key, publishes it, and keeps it.
    pub(crate) async fn publish_own_list(
        &self,
        list: &DeviceList,
    ) -> Result<SignedDeviceList, ClientError> {
        let signed = SignedDeviceList::sign(list, self.id.account_key.signing_key())
            .map_err(|e| ClientError::Corrupt(format!("cannot sign own device list: {e}")))?;
        self.api
            .put_device_list(self.signer(), &self.id.user, &signed)
            .await?;
        self.store.set_own_device_list(&signed)?;
        Ok(signed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_derive_the_same_secrets() {
        let bytes = [7u8; CODE_BYTES];
        let code = format_code(&bytes);
        assert_eq!(code.len(), 39);
        assert_eq!(*parse_code(&code).unwrap(), bytes);
        assert_eq!(
            *parse_code(&code.to_uppercase().replace('-', " ")).unwrap(),
            bytes
        );
        assert!(matches!(parse_code("1234"), Err(ClientError::BadLinkCode)));
        let (a, b) = (LinkSecrets::derive(&bytes), LinkSecrets::derive(&bytes));
        assert_eq!(a.link, b.link);
        assert_ne!(
            a.link.as_bytes()[..],
            a.key[..16],
            "id and key are independent"
        );
    }

    #[test]
    fn sealed_payloads_open_only_with_the_code_and_direction() {
        let secrets = LinkSecrets::derive(&[1; CODE_BYTES]);
        let sealed = secrets.seal(Direction::Request, b"hello").unwrap();
        assert_eq!(
            &secrets.open(Direction::Request, &sealed).unwrap()[..],
            b"hello"
        );
        assert!(matches!(
            secrets.open(Direction::Response, &sealed),
            Err(ClientError::LinkTampered)
        ));
        let other = LinkSecrets::derive(&[2; CODE_BYTES]);
        assert!(matches!(
            other.open(Direction::Request, &sealed),
            Err(ClientError::LinkTampered)
        ));
        let mut tampered = sealed.clone();
        tampered[0] ^= 1;
        assert!(matches!(
            secrets.open(Direction::Request, &tampered),
            Err(ClientError::LinkTampered)
        ));
    }
}
