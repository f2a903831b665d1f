//! Checking a user's device list before any of its keys is trusted.
//!
//! A [`VerifiedDeviceList`] can only be made here, in one of two ways:
//!
//! - from a [`ProvenDeviceList`]: a list the key-transparency directory
//!   proves against a [`CheckedHead`] (signature, no rollback, no
//!   equivocation, witness quorum), which only `rempart_kt` makes;
//! - from this device's own store: a list proven before (it keeps the epoch
//!   of its proof), or this account's own list, which this account signed.
//!
//! Either way the account key's signature over the list is checked
//! ([`AccountSignedDeviceList`], the type the server keeps too), and the
//! account key must be the one pinned for the user (the first one seen is
//! pinned; a different one later is the `account_key_changed` alert, never a
//! silent switch). Group code takes only this type, so no unchecked device
//! key can reach a conversation.
//!
//! [`CheckedHead`]: rempart_kt::CheckedHead

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use rempart_kt::{CheckedHead, ProvenDeviceList};
use rempart_proto::api::KnownVersion;
use rempart_proto::directory::UserLookup;
use rempart_proto::limits::MAX_LOOKUPS_PER_REQUEST;
use rempart_proto::{
    AccountSignedDeviceList, DeviceEntry, DeviceId, DeviceList, PublicKey, SignedDeviceList,
    UserName,
};

use crate::Client;
use crate::directory::{AcceptedHead, PinnedDirectory};
use crate::error::ClientError;
use crate::event::{Alert, AlertCode};
use crate::store::Store;

/// A device list whose account signature verified under the account key
/// pinned for its user, and which the directory proved (or this account
/// signed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedDeviceList {
    list: AccountSignedDeviceList,
    proven_at: Option<u64>,
}

impl VerifiedDeviceList {
    /// A list the directory proved: its account signature is checked, and
    /// its account key must be the one pinned for its user.
    pub(crate) fn from_proven(
        store: &Store,
        proven: ProvenDeviceList,
    ) -> Result<Self, ClientError> {
        let (user, signed, epoch) = proven.into_parts();
        Ok(Self {
            list: check_pinned(store, &user, signed)?,
            proven_at: Some(epoch),
        })
    }

    /// A list from this device's store: a contact's, proven before at
    /// `proven_at`, or this account's own (`None`: this account signed it).
    /// Its signature and pin are checked again.
    pub(crate) fn from_store(
        store: &Store,
        user: &UserName,
        signed: &SignedDeviceList,
        proven_at: Option<u64>,
    ) -> Result<Self, ClientError> {
        Ok(Self {
            list: check_pinned(store, user, signed.clone())?,
            proven_at,
        })
    }

    /// The user.
    pub fn user(&self) -> &UserName {
        &self.list.list().user
    }

    /// The user's account key.
    pub fn account_key(&self) -> &PublicKey {
        &self.list.list().account_key
    }

    /// The list's version.
    pub fn version(&self) -> u64 {
        self.list.list().version
    }

    /// The directory epoch it was proven at, if it came from the directory.
    pub fn proven_at(&self) -> Option<u64> {
        self.proven_at
    }

    /// The devices.
    pub fn devices(&self) -> &[DeviceEntry] {
        &self.list.list().devices
    }

    /// The entry of `device`, if listed.
    pub fn device(&self, device: &DeviceId) -> Option<&DeviceEntry> {
        self.list.list().device(device)
    }

    /// The list's content.
    pub(crate) fn list(&self) -> &DeviceList {
        self.list.list()
    }

    /// The list as signed.
    pub(crate) fn signed(&self) -> &SignedDeviceList {
        self.list.signed()
    }

    /// True if `device` is listed with exactly `signature_key`.
    pub fn authorizes(&self, device: &DeviceId, signature_key: &[u8]) -> bool {
        self.list
            .list()
            .device(device)
            .is_some_and(|d| d.signature_key.as_bytes().as_slice() == signature_key)
    }
}

/// Checks `signed` as `user`'s account-signed device list, and its account
/// key against the one pinned for `user`, pinning it on first sight. A
/// failure is a security alert ([`ClientError::Alert`]).
fn check_pinned(
    store: &Store,
    user: &UserName,
    signed: SignedDeviceList,
) -> Result<AccountSignedDeviceList, ClientError> {
    let checked = AccountSignedDeviceList::verify(signed, user).map_err(|e| Alert {
        code: AlertCode::DeviceListSignatureInvalid,
        conversation: None,
        user: Some(user.clone()),
        message: format!("the device list the server gave for {user} is not validly signed by an account key: {e}"),
    })?;
    let account_key = checked.list().account_key;
    match store.pinned_key(user)? {
        None => store.pin_key(user, &account_key)?,
        Some(pinned) if pinned == account_key => {}
        Some(pinned) => {
            // Kept so the user can compare safety numbers for it and, if it
            // is a genuine reset, accept it (`Client::confirm_safety_number`).
            store.note_presented_key(user, &account_key, checked.signed())?;
            return Err(Alert {
                code: AlertCode::AccountKeyChanged,
                conversation: None,
                user: Some(user.clone()),
                message: format!(
                    "{user}'s account key changed from {} to {}; their devices are not trusted",
                    pinned.fingerprint(),
                    account_key.fingerprint()
                ),
            }
            .into());
        }
    }
    Ok(checked)
}

/// How long a fetch waits for a user's pending device-list change to be
/// published (and so provable) before going on without it.
pub(crate) const PUBLISH_WAIT: Duration = Duration::from_secs(15);

/// Verified device lists fetched during one operation, by user.
pub(crate) type DeviceLists = HashMap<UserName, VerifiedDeviceList>;

/// What fetching several device lists gave: the verified lists (the newest
/// verified one per user), and an alert for each user whose new list failed.
#[derive(Debug, Default)]
pub(crate) struct Fetched {
    pub lists: DeviceLists,
    pub alerts: Vec<Alert>,
}

impl Client {
    /// Fetches the published device lists of `users` that are newer than the
    /// verified ones cached here, with their lookup proofs, and verifies
    /// each: the proof against a checked head, then the account key's
    /// signature. A list that fails is an alert, and the cached one stays:
    /// for this device's own account a bad signature is
    /// `unknown_own_device`, since the server is showing a device list this
    /// account did not sign.
    ///
    /// A user whose new list is not yet published is waited for, up to
    /// [`PUBLISH_WAIT`]: it is proven after the directory's next epoch.
    pub(crate) async fn device_lists<'a>(
        &self,
        users: impl IntoIterator<Item = &'a UserName>,
    ) -> Result<Fetched, ClientError> {
        let users: BTreeSet<&UserName> = users.into_iter().collect();
        let mut fetched = Fetched::default();
        let mut ask = Vec::with_capacity(users.len());
        for &user in &users {
            let cached = if user == &self.id.user {
                Some((self.store.own_device_list()?, None))
            } else {
                self.store.cached_device_list(user)?
            };
            let cached = cached.map(|(signed, proven_at)| {
                VerifiedDeviceList::from_store(&self.store, user, &signed, proven_at)
            });
            let version = match cached.transpose() {
                Ok(Some(list)) => {
                    let version = list.version();
                    fetched.lists.insert(user.clone(), list);
                    version
                }
                Ok(None) => 0,
                // The cached list no longer matches the pinned key: treat as
                // unknown and let the fresh one be judged.
                Err(ClientError::Alert(_)) => 0,
                Err(e) => return Err(e),
            };
            ask.push(KnownVersion {
                user: user.clone(),
                version,
            });
        }
        if ask.is_empty() {
            return Ok(fetched);
        }
        let pinned = self.pinned_directory()?;
        let deadline = Instant::now() + PUBLISH_WAIT;
        let mut pause = Duration::from_millis(20);
        loop {
            let mut pending = BTreeSet::new();
            for chunk in ask.chunks(MAX_LOOKUPS_PER_REQUEST) {
                let response = self.api.lookups(chunk.to_vec()).await?;
                pending.extend(response.pending.into_iter().filter(|u| users.contains(u)));
                for unknown in &response.unknown {
                    fetched.lists.remove(unknown);
                }
                if response.lookups.is_empty() {
                    continue;
                }
                let Some(signed_head) = response.head else {
                    fetched.alerts.push(Alert {
                        code: AlertCode::KtProofInvalid,
                        conversation: None,
                        user: None,
                        message: "the server sent lookup proofs without the head they are for"
                            .into(),
                    });
                    continue;
                };
                let accepted = match self.accept_head(&pinned, &signed_head) {
                    Ok(head) => head,
                    Err(ClientError::Alert(alert)) => {
                        fetched.alerts.push(alert);
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                // New key material is used only under a head its witnesses
                // cosigned: wait for them, or refuse it all.
                let newcomers: Vec<&UserName> = response
                    .lookups
                    .iter()
                    .filter(|l| users.contains(&l.user) && brings_new(l, &fetched.lists))
                    .map(|l| &l.user)
                    .collect();
                let head = match accepted {
                    AcceptedHead::Checked(head) => head,
                    // Nothing new to use: nothing can be proven under it,
                    // and nothing needs to be.
                    AcceptedHead::Uncosigned(_) if newcomers.is_empty() => continue,
                    AcceptedHead::Uncosigned(uncosigned) => {
                        let brings = format!("new keys for {}", join_names(&newcomers));
                        match self.await_quorum(&pinned, &uncosigned, &brings).await {
                            Ok(head) => head,
                            Err(ClientError::Alert(mut alert)) => {
                                alert.user = newcomers.first().map(|u| (*u).clone());
                                fetched.alerts.push(alert);
                                continue;
                            }
                            Err(e) => return Err(e),
                        }
                    }
                };
                // One local transaction for all the pins and caches.
                self.store.atomic(|| {
                    for lookup in response.lookups {
                        if users.contains(&lookup.user) {
                            self.accept_lookup(&pinned, &head, lookup, &mut fetched)?;
                        }
                    }
                    Ok(())
                })?;
            }
            if pending.is_empty() || Instant::now() >= deadline {
                return Ok(fetched);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
            ask = pending
                .into_iter()
                .map(|user| {
                    let version = fetched
                        .lists
                        .get(&user)
                        .map_or(0, VerifiedDeviceList::version);
                    KnownVersion { user, version }
                })
                .collect();
        }
    }

    /// Proves one lookup against the checked `head` and, if it is newer
    /// than the list held, caches it; failures are alerts in `fetched`.
    fn accept_lookup(
        &self,
        pinned: &PinnedDirectory,
        head: &CheckedHead,
        lookup: UserLookup,
        fetched: &mut Fetched,
    ) -> Result<(), ClientError> {
        let UserLookup {
            user,
            proof,
            device_list: signed,
        } = lookup;
        let proven = match rempart_kt::prove_device_list(
            &pinned.vrf_public_key,
            head,
            user.clone(),
            &proof,
            signed,
        ) {
            Ok(proven) => proven,
            Err(e) => {
                fetched.alerts.push(Alert {
                    code: AlertCode::KtProofInvalid,
                    conversation: None,
                    message: format!(
                        "the server's key-transparency proof for {user}'s device list does not verify ({e}): it may be showing a list it did not publish for everyone"
                    ),
                    user: Some(user),
                });
                return Ok(());
            }
        };
        let cached_version = fetched
            .lists
            .get(&user)
            .map_or(0, VerifiedDeviceList::version);
        match VerifiedDeviceList::from_proven(&self.store, proven) {
            Ok(list) if list.version() > cached_version => {
                if user == self.id.user {
                    self.store.set_own_device_list(list.signed())?;
                } else {
                    self.store.cache_device_list(
                        &user,
                        list.version(),
                        list.signed(),
                        head.epoch(),
                    )?;
                }
                fetched.lists.insert(user, list);
            }
            Ok(_) => {}
            Err(ClientError::Alert(mut alert)) => {
                if user == self.id.user {
                    alert.code = AlertCode::UnknownOwnDevice;
                    alert.message = format!(
                        "the server shows a device list for your account that your account key did not sign ({})",
                        alert.message
                    );
                }
                fetched.alerts.push(alert);
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Checks that the directory proves this account's device list as this
    /// device holds it, under a head that carries the witness quorum: a new
    /// device is new key material like any other, so the quorum is waited
    /// for (see [`Client::set_witness_wait`]). What `init` does once the
    /// witnesses are configured; an alert is returned as the error.
    pub async fn check_own_account(&self) -> Result<(), ClientError> {
        let pinned = self.pinned_directory()?;
        let own = self.store.own_device_list()?;
        let deadline = Instant::now() + PUBLISH_WAIT;
        let mut pause = Duration::from_millis(20);
        loop {
            let ask = vec![KnownVersion {
                user: self.id.user.clone(),
                version: 0,
            }];
            let response = self.api.lookups(ask).await?;
            let lookup = response
                .lookups
                .into_iter()
                .find(|l| l.user == self.id.user && !response.pending.contains(&l.user));
            if let Some(lookup) = lookup {
                let Some(signed_head) = response.head else {
                    return Err(own_alert(
                        AlertCode::KtProofInvalid,
                        "the server sent a lookup proof without the head it is for".into(),
                    ));
                };
                let head = match self.accept_head(&pinned, &signed_head)? {
                    AcceptedHead::Checked(head) => head,
                    AcceptedHead::Uncosigned(uncosigned) => {
                        self.await_quorum(&pinned, &uncosigned, "this device's own account")
                            .await?
                    }
                };
                let proven = rempart_kt::prove_device_list(
                    &pinned.vrf_public_key,
                    &head,
                    lookup.user,
                    &lookup.proof,
                    lookup.device_list,
                )
                .map_err(|e| {
                    own_alert(
                        AlertCode::KtProofInvalid,
                        format!("the directory's proof for your own account does not verify: {e}"),
                    )
                })?;
                if proven.signed() != &own {
                    return Err(own_alert(
                        AlertCode::UnknownOwnDevice,
                        "the directory publishes a device list for your account other than the one this device signed".into(),
                    ));
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ClientError::OwnAccountUnpublished);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// The verified device lists of `users`, or the first alert as an error.
    pub(crate) async fn device_lists_or_alert<'a>(
        &self,
        users: impl IntoIterator<Item = &'a UserName>,
    ) -> Result<DeviceLists, ClientError> {
        let fetched = self.device_lists(users).await?;
        match fetched.alerts.into_iter().next() {
            Some(alert) => Err(alert.into()),
            None => Ok(fetched.lists),
        }
    }
}

/// An alert about this device's own account, as an error.
fn own_alert(code: AlertCode, message: String) -> ClientError {
    Alert {
        code,
        conversation: None,
        user: None,
        message,
    }
    .into()
}

/// Whether `lookup` brings key material not yet trusted here: a user seen
/// for the first time, a newer version than the one `held`, or another
/// account key. Read before its signature is checked, which happens only
/// under a head with its witness quorum; a list that cannot be read brings
/// nothing (its verification refuses it).
fn brings_new(lookup: &UserLookup, held: &DeviceLists) -> bool {
    let Ok(claimed) = serde_json::from_slice::<DeviceList>(&lookup.device_list.list) else {
        return false;
    };
    held.get(&lookup.user).is_none_or(|held| {
        claimed.version > held.version() || &claimed.account_key != held.account_key()
    })
}

/// `a, b and c`.
fn join_names(users: &[&UserName]) -> String {
    let names: Vec<&str> = users.iter().map(|u| u.as_str()).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => names.concat(),
    }
}

#[cfg(test)]
mod tests {
    use rempart_proto::{DeviceEntry, DeviceId};

    use super::*;
    use crate::keys::{AccountKey, DeviceKey};

    fn signed_list(user: &str, account: &AccountKey) -> SignedDeviceList {
        let list = DeviceList {
            user: user.parse().unwrap(),
            account_key: account.public(),
            version: 1,
            timestamp: 0,
            devices: vec![DeviceEntry {
                id: DeviceId::random(),
                signature_key: DeviceKey::generate().public(),
            }],
            mail: Vec::new(),
        };
        SignedDeviceList::sign(&list, account.signing_key()).unwrap()
    }

    fn verify(
        store: &Store,
        user: &UserName,
        signed: &SignedDeviceList,
    ) -> Result<VerifiedDeviceList, ClientError> {
        VerifiedDeviceList::from_store(store, user, signed, None)
    }

    fn alert_code(result: Result<VerifiedDeviceList, ClientError>) -> AlertCode {
        match result {
            Err(ClientError::Alert(alert)) => alert.code,
            other => panic!("expected an alert, got {other:?}"),
        }
    }

    #[test]
    fn first_key_is_pinned_and_a_different_one_is_an_alert() {
        let home = tempfile::TempDir::new().unwrap();
        let store = Store::create(home.path(), None).unwrap();
        let bob: UserName = "bob".parse().unwrap();
        let first = AccountKey::generate();
        let verified = verify(&store, &bob, &signed_list("bob", &first)).unwrap();
        assert_eq!(verified.account_key(), &first.public());
        // Same key again: fine.
        verify(&store, &bob, &signed_list("bob", &first)).unwrap();
        // A validly signed list under another account key: a silent "reset".
        let other = AccountKey::generate();
        let code = alert_code(verify(&store, &bob, &signed_list("bob", &other)));
        assert_eq!(code, AlertCode::AccountKeyChanged);
        // The pin did not move.
        assert_eq!(store.pinned_key(&bob).unwrap(), Some(first.public()));
    }

    #[test]
    fn a_cached_list_keeps_the_epoch_of_its_proof() {
        let home = tempfile::TempDir::new().unwrap();
        let store = Store::create(home.path(), None).unwrap();
        let bob: UserName = "bob".parse().unwrap();
        let signed = signed_list("bob", &AccountKey::generate());
        let list = verify(&store, &bob, &signed).unwrap();
        store
            .cache_device_list(&bob, list.version(), &signed, 7)
            .unwrap();
        let (cached, epoch) = store.cached_device_list(&bob).unwrap().unwrap();
        assert_eq!((&cached, epoch), (&signed, Some(7)));
        let reloaded = VerifiedDeviceList::from_store(&store, &bob, &cached, epoch).unwrap();
        assert_eq!(reloaded.proven_at(), Some(7));
        assert_eq!(reloaded.devices(), list.devices());
    }

    #[test]
    fn a_list_with_a_ghost_device_is_an_alert() {
        let home = tempfile::TempDir::new().unwrap();
        let store = Store::create(home.path(), None).unwrap();
        let account = AccountKey::generate();
        let mut signed = signed_list("bob", &account);
        let mut list: DeviceList = serde_json::from_slice(&signed.list).unwrap();
        list.devices.push(DeviceEntry {
            id: DeviceId::random(),
            signature_key: DeviceKey::generate().public(),
        });
        signed.list = serde_json::to_vec(&list).unwrap();
        let code = alert_code(verify(&store, &"bob".parse().unwrap(), &signed));
        assert_eq!(code, AlertCode::DeviceListSignatureInvalid);
        // Nothing was pinned from a list that failed verification.
        assert_eq!(store.pinned_key(&"bob".parse().unwrap()).unwrap(), None);
    }

    #[test]
    fn a_list_for_another_user_is_refused() {
        let home = tempfile::TempDir::new().unwrap();
        let store = Store::create(home.path(), None).unwrap();
        let signed = signed_list("carol", &AccountKey::generate());
        let code = alert_code(verify(&store, &"bob".parse().unwrap(), &signed));
        assert_eq!(code, AlertCode::DeviceListSignatureInvalid);
    }
}
