//! Placeholder: every operation is unavailable until the PostgreSQL store is written.

use async_trait::async_trait;
use rempart_proto::api::{
    ClaimedKeyPackage, CommitUpload, InboxPage, KeyPackageStatus, KeyPackageUpload, LogPage,
};
use rempart_proto::{DeviceId, GroupId, LinkId, MessageId, SignedDeviceList, UserName};

use super::PostgresStore;
use crate::store::{AppendOutcome, DeviceRecord, Pruned, Store, StoreError, VerifiedDeviceList};

#[async_trait]
impl Store for PostgresStore {
    async fn register(&self, _: VerifiedDeviceList) -> Result<(), StoreError> {
        Err(StoreError::Unavailable)
    }
    async fn device_list(&self, _: &UserName) -> Result<Option<SignedDeviceList>, StoreError> {
        Err(StoreError::Unavailable)
    }
    async fn replace_device_list(
        &self,
        _: DeviceId,
        _: VerifiedDeviceList,
    ) -> Result<Vec<DeviceId>, StoreError> {
        Err(StoreError::Unavailable)
    }
    async fn device(&self, _: DeviceId) -> Result<Option<DeviceRecord>, StoreError> {
        Err(StoreError::Unavailable)
    }
    async fn consume_nonce(&self, _: DeviceId, _: String, _: i64) -> Result<(), StoreError> {
        Err(StoreError::Unavailable)
    }
    async fn upload_key_packages(
        &self,
        _: DeviceId,
        _: KeyPackageUpload,
    ) -> Result<KeyPackageStatus, StoreError> {
        Err(StoreError::Unavailable)
    }
    async fn key_package_status(&self, _: DeviceId) -> Result<KeyPackageStatus, StoreError> {
        Err(StoreError::Unavailable)
    }
    async fn claim_key_packages(
        &self,
        _: DeviceId,
        _: &UserName,
    ) -> Result<Vec<ClaimedKeyPackage>, StoreError> {
        Err(StoreError::Unavailable)
    }
    async fn claim_key_packages_batch(
        &self,
        _: DeviceId,
        _: Vec<UserName>,
    ) -> Result<Vec<ClaimedKeyPackage>, StoreError> {
        Err(StoreError::Unavailable)
    }
    async fn append_commit(
        &self,
        _: GroupId,
        _: DeviceId,
        _: CommitUpload,
    ) -> Result<AppendOutcome, StoreError> {
        Err(StoreError::Unavailable)
    }
    async fn append_message(
        &self,
        _: GroupId,
        _: DeviceId,
        _: MessageId,
        _: u64,
        _: Vec<u8>,
    ) -> Result<AppendOutcome, StoreError> {
        Err(StoreError::Unavailable)
    }
    async fn read_log(
        &self,
        _: GroupId,
        _: DeviceId,
        _: u64,
        _: u32,
    ) -> Result<LogPage, StoreError> {
        Err(StoreError::Unavailable)
    }
    async fn group_members(&self, _: GroupId) -> Result<Vec<DeviceId>, StoreError> {
        Err(StoreError::Unavailable)
    }
    async fn read_inbox(&self, _: DeviceId, _: u64, _: u32) -> Result<InboxPage, StoreError> {
        Err(StoreError::Unavailable)
    }
    async fn ack_inbox(&self, _: DeviceId, _: Vec<u64>) -> Result<u64, StoreError> {
        Err(StoreError::Unavailable)
    }
    async fn create_link(&self, _: DeviceId, _: LinkId, _: i64) -> Result<(), StoreError> {
        Err(StoreError::Unavailable)
    }
    async fn put_link_request(&self, _: LinkId, _: Vec<u8>, _: i64) -> Result<(), StoreError> {
        Err(StoreError::Unavailable)
    }
    async fn link_request(
        &self,
        _: DeviceId,
        _: LinkId,
        _: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Err(StoreError::Unavailable)
    }
    async fn put_link_response(
        &self,
        _: DeviceId,
        _: LinkId,
        _: Vec<u8>,
        _: i64,
    ) -> Result<(), StoreError> {
        Err(StoreError::Unavailable)
    }
    async fn take_link_response(&self, _: LinkId, _: i64) -> Result<Option<Vec<u8>>, StoreError> {
        Err(StoreError::Unavailable)
    }
    async fn prune(&self, _: i64) -> Result<Pruned, StoreError> {
        Err(StoreError::Unavailable)
    }
    async fn close(&self) {}
}
