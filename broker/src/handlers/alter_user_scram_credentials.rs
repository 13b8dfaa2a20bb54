//! AlterUserScramCredentials (key 51): sets or deletes users' SCRAM credentials. The client
//! sends the salted password; the broker stores only StoredKey and ServerKey derived from it.
//! Needs ALTER on the cluster. Errors per user as Kafka: UNSUPPORTED_SASL_MECHANISM,
//! UNACCEPTABLE_CREDENTIAL (iterations, empty name or salt), DUPLICATE_RESOURCE (a user named
//! twice), RESOURCE_NOT_FOUND (deleting a credential that does not exist).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use fjord_metadata::security::{AclOperation, ScramMechanism};
use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_protocol::kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use fjord_protocol::kafka_protocol::messages::{AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::security::admin::ScramChange;
use crate::security::{Session, scram};

pub(super) async fn handle(
    broker: &Arc<Broker>,
    session: &Session,
    request: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    // Users in request order, each with its first error.
    let mut users: Vec<String> = Vec::new();
    let mut errors: HashMap<String, (ResponseError, String)> = HashMap::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let names = request
        .deletions
        .iter()
        .map(|d| d.name.to_string())
        .chain(request.upsertions.iter().map(|u| u.name.to_string()));
    for name in names {
        *counts.entry(name.clone()).or_default() += 1;
        if !users.contains(&name) {
            users.push(name);
        }
    }
    let authorized = broker.authorize_cluster(session, AclOperation::Alter);
    fn refuse(errors: &mut HashMap<String, (ResponseError, String)>, user: &str, code: ResponseError, message: String) {
        errors.entry(user.to_string()).or_insert((code, message));
    }
    for user in &users {
        if !authorized {
            refuse(
                &mut errors,
                user,
                ResponseError::ClusterAuthorizationFailed,
                String::new(),
            );
        } else if user.is_empty() {
            refuse(
                &mut errors,
                user,
                ResponseError::UnacceptableCredential,
                "username must not be empty".into(),
            );
        } else if counts[user] > 1 {
            refuse(
                &mut errors,
                user,
                ResponseError::DuplicateResource,
                "a user credential cannot be altered twice in the same request".into(),
            );
        }
    }
    let mut changes = Vec::new();
    let mut change_users = Vec::new();
    for d in &request.deletions {
        let user = d.name.to_string();
        match ScramMechanism::from_code(d.mechanism) {
            None => refuse(
                &mut errors,
                &user,
                ResponseError::UnsupportedSaslMechanism,
                "unknown scram mechanism".into(),
            ),
            Some(mechanism) => {
                if !errors.contains_key(&user) {
                    change_users.push(user.clone());
                    changes.push(ScramChange::Delete { user, mechanism });
                }
            }
        }
    }
    for u in &request.upsertions {
        let user = u.name.to_string();
        let Some(mechanism) = ScramMechanism::from_code(u.mechanism) else {
            refuse(
                &mut errors,
                &user,
                ResponseError::UnsupportedSaslMechanism,
                "unknown scram mechanism".into(),
            );
            continue;
        };
        if !(ScramMechanism::MIN_ITERATIONS..=ScramMechanism::MAX_ITERATIONS).contains(&u.iterations) {
            refuse(
                &mut errors,
                &user,
                ResponseError::UnacceptableCredential,
                format!(
                    "iterations must be between {} and {}",
                    ScramMechanism::MIN_ITERATIONS,
                    ScramMechanism::MAX_ITERATIONS
                ),
            );
            continue;
        }
        if u.salt.is_empty() || u.salted_password.is_empty() {
            refuse(
                &mut errors,
                &user,
                ResponseError::UnacceptableCredential,
                "salt and salted password must not be empty".into(),
            );
            continue;
        }
        if errors.contains_key(&user) {
            continue;
        }
        change_users.push(user.clone());
        changes.push(ScramChange::Upsert {
            user,
            mechanism,
            credential: scram::credential(mechanism, &u.salt, &u.salted_password, u.iterations),
        });
    }
    // A user with any refused change has none of its changes applied.
    let keep: Vec<bool> = change_users.iter().map(|u| !errors.contains_key(u)).collect();
    let changes: Vec<ScramChange> = changes
        .into_iter()
        .zip(&keep)
        .filter(|(_, k)| **k)
        .map(|(c, _)| c)
        .collect();
    let change_users: Vec<String> = change_users
        .into_iter()
        .zip(&keep)
        .filter(|(_, k)| **k)
        .map(|(u, _)| u)
        .collect();
    if !changes.is_empty() {
        match broker.blocking(move |b| b.alter_scram_credentials(changes)).await {
            Ok(results) => {
                for (user, result) in change_users.iter().zip(results) {
                    if let Some(e) = result {
                        let code = ResponseError::try_from_code(e.code).unwrap_or(ResponseError::UnknownServerError);
                        errors.entry(user.clone()).or_insert((code, e.message));
                    }
                }
            }
            Err(e) => {
                for user in &change_users {
                    errors.entry(user.clone()).or_insert((e.code, e.message.clone()));
                }
            }
        }
    }
    let results = users
        .into_iter()
        .map(|user| {
            let result = AlterUserScramCredentialsResult::default().with_user(str_bytes(user.as_str()));
            match errors.get(&user) {
                Some((code, message)) => result
                    .with_error_code(code.code())
                    .with_error_message(Some(str_bytes(message.as_str()))),
                None => result,
            }
        })
        .collect();
    AlterUserScramCredentialsResponse::default().with_results(results)
}
