//! The [`Store`] operations over PostgreSQL: which run as a transaction and
//! which as a single statement (its own transaction).

use async_trait::async_trait;
use deadpool_postgres::Transaction;
use rempart_proto::api::{
    ClaimedKeyPackage, CommitUpload, InboxPage, KeyPackageStatus, KeyPackageUpload, LogPage,
};
use rempart_proto::mail::{Fingerprint, MailAddress};
use rempart_proto::{DeviceId, GroupId, LinkId, MessageId, SignedDeviceList, UserName};

use super::transaction::Pending;
use super::{PostgresStore, accounts, delivery, inbox, keypackages, links, mail};
use crate::store::{
    AccountSignedDeviceList, AppendOutcome, DeviceRecord, Pruned, Store, StoreError,
};

#[async_trait]
impl Store for PostgresStore {
    async fn register(&self, list: AccountSignedDeviceList) -> Result<(), StoreError> {
        self.write(&list, |tx, list| Box::pin(accounts::register(tx, list)))
            .await
    }

    async fn register_invited(
        &self,
        list: AccountSignedDeviceList,
        invitation: [u8; 32],
    ) -> Result<(), StoreError> {
        self.write(&(list, invitation), |tx, (list, invitation)| {
            Box::pin(async move {
                accounts::spend_invitation(tx, invitation, &list.list().user).await?;
                accounts::register(tx, list).await
            })
        })
        .await
    }

    async fn device_list(&self, user: &UserName) -> Result<Option<SignedDeviceList>, StoreError> {
        self.run(user, |conn, user| {
            Box::pin(accounts::device_list(conn, user))
        })
        .await
    }

    async fn replace_device_list(
        &self,
        signer: DeviceId,
        list: AccountSignedDeviceList,
    ) -> Result<Vec<DeviceId>, StoreError> {
        self.write(&(signer, list), |tx, (signer, list)| {
            Box::pin(accounts::replace_device_list(tx, *signer, list))
        })
        .await
    }

    async fn device(&self, device: DeviceId) -> Result<Option<DeviceRecord>, StoreError> {
        self.run(&device, |conn, device| {
            Box::pin(accounts::device(conn, *device))
        })
        .await
    }

    async fn put_mail_certificate(
        &self,
        user: UserName,
        fingerprint: Fingerprint,
        certificate: Vec<u8>,
    ) -> Result<(), StoreError> {
        self.write(
            &(user, fingerprint, certificate),
            |tx, (user, fingerprint, cert)| {
                Box::pin(mail::put_certificate(tx, user, fingerprint, cert))
            },
        )
        .await
    }

    async fn mail_certificate(
        &self,
        user: &UserName,
        fingerprint: &Fingerprint,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.run(&(user, fingerprint), |conn, (user, fingerprint)| {
            Box::pin(mail::certificate(conn, user, fingerprint))
        })
        .await
    }

    async fn mail_holder(&self, address: &MailAddress) -> Result<Option<UserName>, StoreError> {
        self.run(address, |conn, address| {
            Box::pin(mail::holder(conn, address))
        })
        .await
    }

    async fn consume_nonce(
        &self,
        device: DeviceId,
        nonce: String,
        timestamp: i64,
    ) -> Result<(), StoreError> {
        self.run(&(device, nonce, timestamp), |conn, (device, nonce, ts)| {
            Box::pin(accounts::consume_nonce(conn, *device, nonce, *ts))
        })
        .await
    }

    async fn upload_key_packages(
        &self,
        device: DeviceId,
        upload: KeyPackageUpload,
    ) -> Result<KeyPackageStatus, StoreError> {
        self.write(&(device, upload), |tx, (device, upload)| {
            Box::pin(keypackages::upload(tx, *device, upload))
        })
        .await
    }

    async fn key_package_status(&self, device: DeviceId) -> Result<KeyPackageStatus, StoreError> {
        self.run(&device, |conn, device| {
            Box::pin(keypackages::status(conn, *device))
        })
        .await
    }

    async fn claim_key_packages(
        &self,
        claimer: DeviceId,
        user: &UserName,
    ) -> Result<Vec<ClaimedKeyPackage>, StoreError> {
        self.write(&(claimer, user), |tx, (claimer, user)| {
            Box::pin(keypackages::claim(tx, *claimer, user))
        })
        .await
    }

    async fn claim_key_packages_batch(
        &self,
        claimer: DeviceId,
        users: Vec<UserName>,
    ) -> Result<Vec<ClaimedKeyPackage>, StoreError> {
        self.run(&(claimer, users), |conn, (claimer, users)| {
            Box::pin(keypackages::claim_batch(conn, *claimer, users))
        })
        .await
    }

    async fn append_commit(
        &self,
        group: GroupId,
        sender: DeviceId,
        commit: CommitUpload,
    ) -> Result<AppendOutcome, StoreError> {
        self.write(&(group, sender, commit), |tx, (group, sender, commit)| {
            Box::pin(delivery::append_commit(tx, *group, *sender, commit))
        })
        .await
    }

    async fn append_message(
        &self,
        group: GroupId,
        sender: DeviceId,
        message_id: MessageId,
        epoch: u64,
        data: Vec<u8>,
    ) -> Result<AppendOutcome, StoreError> {
        self.write(
            &(group, sender, message_id, epoch, data),
            |tx, (group, sender, message_id, epoch, data)| {
                Box::pin(delivery::append_message(
                    tx,
                    *group,
                    *sender,
                    *message_id,
                    *epoch,
                    data,
                ))
            },
        )
        .await
    }

    async fn read_log(
        &self,
        group: GroupId,
        reader: DeviceId,
        after: u64,
        limit: u32,
    ) -> Result<LogPage, StoreError> {
        self.run(
            &(group, reader, after, limit),
            |conn, (group, reader, after, limit)| {
                Box::pin(delivery::read_log(conn, *group, *reader, *after, *limit))
            },
        )
        .await
    }

    async fn group_members(&self, group: GroupId) -> Result<Vec<DeviceId>, StoreError> {
        self.run(&group, |conn, group| {
            Box::pin(delivery::members(conn, *group))
        })
        .await
    }

    async fn device_groups(&self, device: DeviceId) -> Result<Vec<GroupId>, StoreError> {
        self.run(&device, |conn, device| {
            Box::pin(delivery::groups_of(conn, *device))
        })
        .await
    }

    async fn read_inbox(
        &self,
        device: DeviceId,
        after: u64,
        limit: u32,
    ) -> Result<InboxPage, StoreError> {
        self.run(&(device, after, limit), |conn, (device, after, limit)| {
            Box::pin(inbox::read(conn, *device, *after, *limit))
        })
        .await
    }

    async fn ack_inbox(&self, device: DeviceId, ids: Vec<u64>) -> Result<u64, StoreError> {
        self.run(&(device, ids), |conn, (device, ids)| {
            Box::pin(inbox::ack(conn, *device, ids))
        })
        .await
    }

    async fn create_link(
        &self,
        creator: DeviceId,
        link: LinkId,
        now: i64,
    ) -> Result<(), StoreError> {
        self.run(&(creator, link, now), |conn, (creator, link, now)| {
            Box::pin(links::create(conn, *creator, *link, *now))
        })
        .await
    }

    async fn put_link_request(
        &self,
        link: LinkId,
        sealed: Vec<u8>,
        now: i64,
    ) -> Result<(), StoreError> {
        self.write(&(link, sealed, now), |tx, (link, sealed, now)| {
            Box::pin(links::put_request(tx, *link, sealed, *now))
        })
        .await
    }

    async fn link_request(
        &self,
        reader: DeviceId,
        link: LinkId,
        now: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.run(&(reader, link, now), |conn, (reader, link, now)| {
            Box::pin(links::request(conn, *reader, *link, *now))
        })
        .await
    }

    async fn put_link_response(
        &self,
        responder: DeviceId,
        link: LinkId,
        sealed: Vec<u8>,
        now: i64,
    ) -> Result<(), StoreError> {
        self.write(
            &(responder, link, sealed, now),
            |tx, (responder, link, sealed, now)| {
                Box::pin(links::put_response(tx, *responder, *link, sealed, *now))
            },
        )
        .await
    }

    async fn take_link_response(
        &self,
        link: LinkId,
        now: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.run(&(link, now), |conn, (link, now)| {
            Box::pin(links::take_response(conn, *link, *now))
        })
        .await
    }

    async fn prune(&self, now: i64) -> Result<Pruned, StoreError> {
        self.write(&now, prune).await
    }

    async fn close(&self) {
        // Operations holding a connection finish; any later one, and any
        // waiting for a connection, fails with `StoreError::Closed`.
        self.pool().close();
    }
}

/// Deletes the nonces and links expired at `now`.
fn prune<'t>(tx: &'t Transaction<'t>, now: &'t i64) -> Pending<'t, Pruned> {
    Box::pin(async move {
        Ok(Pruned {
            nonces: accounts::prune_nonces(tx, *now).await?,
            links: links::prune(tx, *now).await?,
        })
    })
}
