//! Safety numbers: what two people compare, out of band, to know that each
//! sees the other's real account key.
//!
//! Each side's half is 30 digits derived from its user name and account key
//! by 5,200 iterations of SHA-512 (the construction Signal uses for its
//! numeric fingerprints); the safety number is the two halves in a fixed
//! order, 60 digits in groups of five. It is the same on both sides and
//! changes when either account key changes.

use rempart_proto::{PublicKey, UserName};
use serde::Serialize;
use sha2::{Digest, Sha512};

use crate::Client;
use crate::error::ClientError;
use crate::event::{Alert, AlertCode};

const VERSION: [u8; 2] = [0, 1];
const ITERATIONS: usize = 5200;

/// A safety number with a contact, and whether the user confirmed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SafetyNumber {
    /// The contact.
    pub user: UserName,
    /// 60 digits in twelve groups of five, separated by spaces.
    pub safety_number: String,
    /// True once the user confirmed this number.
    pub verified: bool,
    /// True if the server presents an account key for the contact that
    /// differs from the one pinned: this number is for the new key.
    pub key_changed: bool,
}

/// One side's 30 digits.
fn half(user: &UserName, key: &PublicKey) -> String {
    let mut hash = Sha512::new()
        .chain_update(VERSION)
        .chain_update(key.as_bytes())
        .chain_update(user.as_str().as_bytes())
        .finalize();
    for _ in 0..ITERATIONS {
        hash = Sha512::new()
            .chain_update(hash)
            .chain_update(key.as_bytes())
            .finalize();
    }
    hash[..30]
        .chunks(5)
        .map(|chunk| {
            let value = chunk.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            format!("{:05}", value % 100_000)
        })
        .collect()
}

/// The safety number of two (user, account key) pairs: symmetric.
pub fn safety_number(a: (&UserName, &PublicKey), b: (&UserName, &PublicKey)) -> String {
    let (x, y) = (half(a.0, a.1), half(b.0, b.1));
    let (first, second) = if x <= y { (x, y) } else { (y, x) };
    let digits = first + &second;
    digits
        .as_bytes()
        .chunks(5)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn normalize(number: &str) -> String {
    number.chars().filter(char::is_ascii_digit).collect()
}

impl Client {
    /// The safety number with `user`, for the account key the server
    /// presents for them now (refreshed first).
    pub async fn safety_number(&self, user: &UserName) -> Result<SafetyNumber, ClientError> {
        if user == &self.id.user {
            return Err(ClientError::SelfConversation);
        }
        // Refresh: pins on first sight, notes a different presented key.
        self.device_lists([user]).await?;
        let keys = self
            .store
            .contact_keys(user)?
            .ok_or_else(|| ClientError::UnknownUser(user.clone()))?;
        let key = keys.presented.unwrap_or(keys.pinned);
        let own = self.id.account_key.public();
        Ok(SafetyNumber {
            user: user.clone(),
            safety_number: safety_number((&self.id.user, &own), (user, &key)),
            verified: keys.presented.is_none() && keys.verified == Some(keys.pinned),
            key_changed: keys.presented.is_some(),
        })
    }

    /// Confirms the safety number with `user` after comparing it out of
    /// band. If it is for a new account key the server presents, that key
    /// replaces the pinned one (an account reset the user accepted), and the
    /// next sync moves the conversations to its devices.
    pub async fn confirm_safety_number(
        &self,
        user: &UserName,
        number: &str,
    ) -> Result<SafetyNumber, ClientError> {
        let current = self.safety_number(user).await?;
        if normalize(number) != normalize(&current.safety_number) {
            return Err(ClientError::SafetyNumberMismatch(user.clone()));
        }
        let keys = self
            .store
            .contact_keys(user)?
            .ok_or_else(|| ClientError::UnknownUser(user.clone()))?;
        let key = keys.presented.unwrap_or(keys.pinned);
        self.store.confirm_key(user, &key)?;
        self.safety_number(user).await
    }

    /// Where this device stands with `user`'s account key: verified and
    /// unchanged since, and changed since it was verified.
    pub(crate) fn verification(&self, user: &UserName) -> Result<(bool, bool), ClientError> {
        let Some(keys) = self.store.contact_keys(user)? else {
            return Ok((false, false));
        };
        let changed = keys.verified.is_some() && keys.presented.is_some();
        Ok((
            keys.verified.as_ref() == Some(&keys.pinned) && !changed,
            changed,
        ))
    }

    /// Refuses to send where a verified contact's account key changed and
    /// was not re-verified.
    pub(crate) fn check_verified_keys<'a>(
        &self,
        users: impl IntoIterator<Item = &'a UserName>,
        conversation: &str,
    ) -> Result<(), ClientError> {
        for user in users {
            let Some(keys) = self.store.contact_keys(user)? else {
                continue;
            };
            if keys.verified.is_some() && keys.presented.is_some() {
                return Err(Alert {
                    code: AlertCode::AccountKeyChanged,
                    conversation: Some(conversation.to_owned()),
                    user: Some(user.clone()),
                    message: format!(
                        "{user}'s account key changed since you verified it; sending here is blocked until you compare safety numbers again (`rempart verify {user}`)"
                    ),
                }
                .into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::AccountKey;

    #[test]
    fn symmetric_sixty_digits_and_key_bound() {
        let (alice, bob): (UserName, UserName) = ("alice".parse().unwrap(), "bob".parse().unwrap());
        let (ka, kb) = (
            AccountKey::generate().public(),
            AccountKey::generate().public(),
        );
        let ab = safety_number((&alice, &ka), (&bob, &kb));
        assert_eq!(ab, safety_number((&bob, &kb), (&alice, &ka)));
        assert_eq!(normalize(&ab).len(), 60);
        assert_eq!(ab.split(' ').count(), 12);
        let kb2 = AccountKey::generate().public();
        assert_ne!(ab, safety_number((&alice, &ka), (&bob, &kb2)));
        let ka2 = AccountKey::generate().public();
        assert_ne!(ab, safety_number((&alice, &ka2), (&bob, &kb)));
    }
}
