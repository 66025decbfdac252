//! The signed lineage as a [`RecordSink`]: every training record is appended under the
//! training-authority key; checkpoints follow the policy's lineage cadence.

use std::sync::Arc;

use warden_keys::SigningKey;
use warden_lineage::RecordDraft;
use warden_store::Lineage;

use crate::trainer::RecordSink;
use crate::TrainError;

pub struct LineageSink<'a> {
    pub lineage: &'a Lineage,
    pub key: Arc<SigningKey>,
}

impl RecordSink for LineageSink<'_> {
    fn append(
        &mut self,
        kind: &str,
        payload: serde_json::Value,
        policy_version: &str,
    ) -> Result<u64, TrainError> {
        let draft = RecordDraft::new(kind, payload).with_policy_version(policy_version);
        self.lineage
            .append(draft, &self.key)
            .map(|a| a.index)
            .map_err(|e| TrainError::lineage(format!("appending {kind}"), e))
    }

    fn checkpoint(&mut self) -> Result<(), TrainError> {
        self.lineage
            .checkpoint()
            .map(|_| ())
            .map_err(|e| TrainError::lineage("signing a checkpoint", e))
    }
}
