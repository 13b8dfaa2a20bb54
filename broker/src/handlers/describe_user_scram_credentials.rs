//! DescribeUserScramCredentials (key 50): each user's SCRAM mechanisms and iteration counts
//! (never salts or keys). Needs DESCRIBE on the cluster; an unknown user is RESOURCE_NOT_FOUND.

use std::collections::BTreeMap;

use fjord_metadata::security::AclOperation;
use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_protocol::kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use fjord_protocol::kafka_protocol::messages::{
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};

use super::str_bytes;
use crate::broker::Broker;
use crate::security::Session;

pub(super) fn handle(
    broker: &Broker,
    session: &Session,
    request: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    if !broker.authorize_cluster(session, AclOperation::Describe) {
        return DescribeUserScramCredentialsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    let image = broker.image();
    let mut by_user: BTreeMap<&str, Vec<CredentialInfo>> = BTreeMap::new();
    for (user, mechanism, credential) in image.scram_credentials() {
        by_user.entry(user).or_default().push(
            CredentialInfo::default()
                .with_mechanism(mechanism.code())
                .with_iterations(credential.iterations),
        );
    }
    // Null or empty: every user (Kafka).
    let results = match request.users.as_ref().filter(|u| !u.is_empty()) {
        None => by_user
            .into_iter()
            .map(|(user, infos)| {
                DescribeUserScramCredentialsResult::default()
                    .with_user(str_bytes(user))
                    .with_credential_infos(infos)
            })
            .collect(),
        Some(users) => {
            let mut seen = std::collections::HashSet::new();
            users
                .iter()
                .map(|u| {
                    let name = u.name.to_string();
                    let result = DescribeUserScramCredentialsResult::default().with_user(str_bytes(name.as_str()));
                    if !seen.insert(name.clone()) {
                        return result
                            .with_error_code(ResponseError::DuplicateResource.code())
                            .with_error_message(Some(str_bytes(format!("cannot describe user {name} twice"))));
                    }
                    match by_user.get(name.as_str()) {
                        Some(infos) => result.with_credential_infos(infos.clone()),
                        None => result
                            .with_error_code(ResponseError::ResourceNotFound.code())
                            .with_error_message(Some(str_bytes(format!(
                                "attempt to describe a user credential that does not exist: {name}"
                            )))),
                    }
                })
                .collect()
        }
    };
    DescribeUserScramCredentialsResponse::default().with_results(results)
}
