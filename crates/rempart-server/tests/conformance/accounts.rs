//! Accounts, devices and device lists.

use ed25519_dalek::SigningKey;
use rand::rngs::OsRng;
use rempart_server::store::StoreError;

use crate::support::{Account, Db, Device, assert_err, fingerprint, key_packages, register};

/// Registration stores the exact signed list and every listed device; a
/// taken name or device id refuses the whole registration.
pub async fn registration(store: Db) {
    let alice = Account::new("alice", 2);
    store.register(alice.list(1)).await.unwrap();
    assert_eq!(
        store.device_list(&alice.user).await.unwrap().as_ref(),
        Some(alice.list(1).signed())
    );
    for device in &alice.devices {
        let record = store.device(device.id).await.unwrap().unwrap();
        assert_eq!(record.user, alice.user);
        assert_eq!(record.signature_key, device.public_key());
    }

    // The same name with another key and devices.
    let impostor = Account::new("alice", 1);
    assert_err!(
        store.register(impostor.list(1)).await,
        StoreError::NameTaken(name) if name == alice.user
    );
    assert!(store.device(impostor.id(0)).await.unwrap().is_none());
    assert_eq!(
        store.device_list(&alice.user).await.unwrap().as_ref(),
        Some(alice.list(1).signed())
    );

    // Bob lists a device of his own and one of Alice's.
    let bob = Account::new("bob", 1);
    let taken = bob.list_of(1, &bob.key, [&bob.devices[0], &alice.devices[1]]);
    assert_err!(
        store.register(taken).await,
        StoreError::DeviceTaken(device) if device == alice.id(1)
    );
    assert!(store.device_list(&bob.user).await.unwrap().is_none());
    assert!(store.device(bob.id(0)).await.unwrap().is_none());
    assert_eq!(
        store.device(alice.id(1)).await.unwrap().unwrap().user,
        alice.user
    );
    store.register(bob.list(1)).await.unwrap();

    let nobody = "nobody".parse().unwrap();
    assert!(store.device_list(&nobody).await.unwrap().is_none());
    assert!(store.device(Device::new().id).await.unwrap().is_none());
}

/// An invitation admits one account, in the registration's transaction: a
/// spent one refuses the whole registration, and a refused registration
/// (a taken name) spends nothing.
pub async fn registration_by_invitation(store: Db) {
    let (first, second) = ([1; 32], [2; 32]);
    let alice = Account::new("alice", 1);
    store.register_invited(alice.list(1), first).await.unwrap();
    let bob = Account::new("bob", 1);
    assert_err!(
        store.register_invited(bob.list(1), first).await,
        StoreError::InvitationUsed
    );
    assert!(store.device_list(&bob.user).await.unwrap().is_none());
    assert!(store.device(bob.id(0)).await.unwrap().is_none());
    let impostor = Account::new("alice", 1);
    assert_err!(
        store.register_invited(impostor.list(1), second).await,
        StoreError::NameTaken(_)
    );
    store.register_invited(bob.list(1), second).await.unwrap();
    assert!(store.device_list(&bob.user).await.unwrap().is_some());
}

/// A new list needs a current device of the account as signer, the stored
/// account key and a higher version; devices it drops lose their
/// KeyPackages and are no longer found.
pub async fn replace_device_list(store: Db) {
    let mut alice = register(&store, "alice", 3).await;
    let bob = register(&store, "bob", 1).await;
    let dropped = alice.id(2);
    store
        .upload_key_packages(dropped, key_packages("dropped", 2, true))
        .await
        .unwrap();

    // Version 2 drops device 2 and adds a new one.
    alice.devices.remove(2);
    alice.devices.push(Device::new());
    let v2 = alice.list(2);
    assert_eq!(
        store
            .replace_device_list(alice.id(0), v2.clone())
            .await
            .unwrap(),
        vec![dropped]
    );
    assert_eq!(
        store.device_list(&alice.user).await.unwrap().as_ref(),
        Some(v2.signed())
    );
    assert!(store.device(dropped).await.unwrap().is_none());
    let added = store.device(alice.id(2)).await.unwrap().unwrap();
    assert_eq!(added.user, alice.user);
    assert_eq!(added.signature_key, alice.devices[2].public_key());
    let status = store.key_package_status(dropped).await.unwrap();
    assert_eq!((status.one_time, status.last_resort), (0, false));
    let claimed = store
        .claim_key_packages(bob.id(0), &alice.user)
        .await
        .unwrap();
    assert!(claimed.is_empty(), "{claimed:?}");

    // Each refusal below breaks exactly one rule.
    assert_err!(
        store.replace_device_list(alice.id(0), v2.clone()).await,
        StoreError::StaleDeviceList {
            stored: 2,
            found: 2
        }
    );
    assert_err!(
        store.replace_device_list(alice.id(0), alice.list(1)).await,
        StoreError::StaleDeviceList {
            stored: 2,
            found: 1
        }
    );
    let other_key = SigningKey::generate(&mut OsRng);
    assert_err!(
        store
            .replace_device_list(alice.id(0), alice.list_of(3, &other_key, &alice.devices))
            .await,
        StoreError::AccountKeyChanged
    );
    for signer in [dropped, bob.id(0), Device::new().id] {
        assert_err!(
            store.replace_device_list(signer, alice.list(3)).await,
            StoreError::NotOwnDevice { device, user } if device == signer && user == alice.user
        );
    }
    let stealing = alice.list_of(3, &alice.key, alice.devices.iter().chain(&bob.devices));
    assert_err!(
        store.replace_device_list(alice.id(0), stealing).await,
        StoreError::DeviceTaken(device) if device == bob.id(0)
    );
    assert_eq!(
        store.device(bob.id(0)).await.unwrap().unwrap().user,
        bob.user
    );
    let carol = Account::new("carol", 1);
    assert_err!(
        store.replace_device_list(carol.id(0), carol.list(2)).await,
        StoreError::UnknownUser(user) if user == carol.user
    );
    assert_eq!(
        store.device_list(&alice.user).await.unwrap().as_ref(),
        Some(v2.signed()),
        "no refused list was stored"
    );
}

/// A device listed again with a new key keeps its id but loses the
/// KeyPackages made with the old key.
pub async fn new_key_for_a_device(store: Db) {
    let mut alice = register(&store, "alice", 2).await;
    let bob = register(&store, "bob", 1).await;
    let id = alice.id(1);
    store
        .upload_key_packages(id, key_packages("old key", 3, true))
        .await
        .unwrap();
    let kept = alice.id(0);
    store
        .upload_key_packages(kept, key_packages("kept", 1, false))
        .await
        .unwrap();

    alice.devices[1] = Device::with_id(id);
    assert_eq!(
        store
            .replace_device_list(kept, alice.list(2))
            .await
            .unwrap(),
        Vec::new()
    );
    let record = store.device(id).await.unwrap().unwrap();
    assert_eq!(record.signature_key, alice.devices[1].public_key());
    let status = store.key_package_status(id).await.unwrap();
    assert_eq!((status.one_time, status.last_resort), (0, false));
    let status = store.key_package_status(kept).await.unwrap();
    assert_eq!((status.one_time, status.last_resort), (1, false));
    let claimed = store
        .claim_key_packages(bob.id(0), &alice.user)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    assert_eq!(claimed[0].device, kept);
}

/// A mail address stays with the account whose list first bound it: a
/// registration or a list of another account binding it is refused whole.
/// Certificates are kept by fingerprint, each for one account, up to the
/// limit.
pub async fn mail_addresses_and_certificates(store: Db) {
    let alice = Account::new("alice", 1);
    store
        .register(alice.list_with_mail(1, &[("alice@example.org", 'A')]))
        .await
        .unwrap();
    let address = rempart_proto::mail::MailAddress::parse("alice@example.org").unwrap();
    assert_eq!(
        store.mail_holder(&address).await.unwrap(),
        Some(alice.user.clone())
    );

    let bob = Account::new("bob", 1);
    assert_err!(
        store
            .register(bob.list_with_mail(1, &[("alice@example.org", 'B')]))
            .await,
        StoreError::MailAddressTaken(taken) if taken == address
    );
    assert!(store.device_list(&bob.user).await.unwrap().is_none());
    store.register(bob.list(1)).await.unwrap();
    assert_err!(
        store
            .replace_device_list(
                bob.id(0),
                bob.list_with_mail(2, &[("bob@example.org", 'B'), ("alice@example.org", 'B')])
            )
            .await,
        StoreError::MailAddressTaken(_)
    );
    let bobs = rempart_proto::mail::MailAddress::parse("bob@example.org").unwrap();
    assert_eq!(
        store.mail_holder(&bobs).await.unwrap(),
        None,
        "nothing of the refused list stays"
    );
    // Alice's own later list keeps her address.
    store
        .replace_device_list(
            alice.id(0),
            alice.list_with_mail(2, &[("alice@example.org", 'C')]),
        )
        .await
        .unwrap();

    let certificate = |byte: u8| vec![byte; 300];
    store
        .put_mail_certificate(alice.user.clone(), fingerprint('A'), certificate(1))
        .await
        .unwrap();
    // A new copy replaces the old; another account cannot take it.
    store
        .put_mail_certificate(alice.user.clone(), fingerprint('A'), certificate(2))
        .await
        .unwrap();
    assert_err!(
        store
            .put_mail_certificate(bob.user.clone(), fingerprint('A'), certificate(3))
            .await,
        StoreError::MailCertificateTaken(_)
    );
    assert_eq!(
        store
            .mail_certificate(&alice.user, &fingerprint('A'))
            .await
            .unwrap(),
        Some(certificate(2))
    );
    assert_eq!(
        store
            .mail_certificate(&bob.user, &fingerprint('A'))
            .await
            .unwrap(),
        None
    );
    let max = rempart_proto::limits::MAX_MAIL_CERTIFICATES_PER_ACCOUNT;
    for i in 1..max {
        let hex = format!("{i:040X}");
        let fingerprint = rempart_proto::mail::Fingerprint::parse(&hex).unwrap();
        store
            .put_mail_certificate(bob.user.clone(), fingerprint, certificate(4))
            .await
            .unwrap();
    }
    store
        .put_mail_certificate(bob.user.clone(), fingerprint('B'), certificate(4))
        .await
        .unwrap();
    assert_err!(
        store
            .put_mail_certificate(bob.user.clone(), fingerprint('E'), certificate(4))
            .await,
        StoreError::TooManyMailCertificates
    );
}
