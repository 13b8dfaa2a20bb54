//! Security metadata changes as controller operations: SCRAM credentials
//! (AlterUserScramCredentials) and ACLs (CreateAcls, DeleteAcls), committed as metadata records
//! on the active controller like every other cluster change.

use fjord_metadata::MetadataRecord;
use fjord_metadata::security::{AclBinding, AclFilter, ScramCredential, ScramMechanism};
use fjord_protocol::kafka_protocol::error::ResponseError;
use serde::{Deserialize, Serialize};

use crate::broker::Broker;
use crate::cluster::{ControllerRequest, WireError};
use crate::controller::{ApiError, metadata_failure};

/// One change of AlterUserScramCredentials, already validated by the handler.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ScramChange {
    Upsert {
        user: String,
        mechanism: ScramMechanism,
        credential: ScramCredential,
    },
    Delete {
        user: String,
        mechanism: ScramMechanism,
    },
}

impl Broker {
    /// Applies SCRAM changes; the result of each change, in order (RESOURCE_NOT_FOUND for a
    /// deletion of a credential that does not exist).
    pub fn alter_scram_credentials(&self, changes: Vec<ScramChange>) -> Result<Vec<Option<WireError>>, ApiError> {
        self.controller_call(ControllerRequest::AlterScramCredentials { changes })
    }

    pub(crate) fn alter_scram_credentials_local(
        &self,
        changes: Vec<ScramChange>,
    ) -> Result<Vec<Option<WireError>>, ApiError> {
        let (_, results) = self
            .metadata
            .commit_with(|image| {
                let mut records = Vec::new();
                let mut results = Vec::new();
                for change in &changes {
                    match change {
                        ScramChange::Upsert {
                            user,
                            mechanism,
                            credential,
                        } => {
                            records.push(MetadataRecord::ScramCredential {
                                user: user.clone(),
                                mechanism: *mechanism,
                                credential: credential.clone(),
                            });
                            results.push(None);
                        }
                        ScramChange::Delete { user, mechanism } => {
                            if image.scram_credential(user, *mechanism).is_some() {
                                records.push(MetadataRecord::RemoveScramCredential {
                                    user: user.clone(),
                                    mechanism: *mechanism,
                                });
                                results.push(None);
                            } else {
                                results.push(Some(WireError::from(ApiError::new(
                                    ResponseError::ResourceNotFound,
                                    format!("attempt to delete a user credential that does not exist: {user}"),
                                ))));
                            }
                        }
                    }
                }
                Ok((records, results))
            })
            .map_err(metadata_failure)?;
        for change in &changes {
            match change {
                ScramChange::Upsert { user, mechanism, .. } => {
                    tracing::info!(user, mechanism = mechanism.name(), "scram credential set")
                }
                ScramChange::Delete { user, mechanism } => {
                    tracing::info!(user, mechanism = mechanism.name(), "scram credential deleted")
                }
            }
        }
        Ok(results)
    }

    /// Creates ACLs (an ACL that exists already is left as it is).
    pub fn create_acls(&self, bindings: Vec<AclBinding>) -> Result<(), ApiError> {
        self.controller_call(ControllerRequest::CreateAcls { bindings })
    }

    pub(crate) fn create_acls_local(&self, bindings: Vec<AclBinding>) -> Result<(), ApiError> {
        self.metadata
            .commit_with(|image| {
                let mut seen = std::collections::BTreeSet::new();
                let records = bindings
                    .iter()
                    .filter(|b| !image.acls().contains(*b) && seen.insert((*b).clone()))
                    .map(|b| MetadataRecord::Acl { binding: b.clone() })
                    .collect();
                Ok((records, ()))
            })
            .map_err(metadata_failure)?;
        tracing::info!(count = bindings.len(), "acls created");
        Ok(())
    }

    /// Deletes every ACL each filter matches; the bindings deleted per filter.
    pub fn delete_acls(&self, filters: Vec<AclFilter>) -> Result<Vec<Vec<AclBinding>>, ApiError> {
        self.controller_call(ControllerRequest::DeleteAcls { filters })
    }

    pub(crate) fn delete_acls_local(&self, filters: Vec<AclFilter>) -> Result<Vec<Vec<AclBinding>>, ApiError> {
        let (_, matched) = self
            .metadata
            .commit_with(|image| {
                let matched: Vec<Vec<AclBinding>> = filters
                    .iter()
                    .map(|f| image.acls().iter().filter(|b| f.matches(b)).cloned().collect())
                    .collect();
                let unique: std::collections::BTreeSet<&AclBinding> = matched.iter().flatten().collect();
                let records = unique
                    .into_iter()
                    .map(|b| MetadataRecord::RemoveAcl { binding: b.clone() })
                    .collect();
                Ok((records, matched))
            })
            .map_err(metadata_failure)?;
        tracing::info!(count = matched.iter().map(Vec::len).sum::<usize>(), "acls deleted");
        Ok(matched)
    }
}
