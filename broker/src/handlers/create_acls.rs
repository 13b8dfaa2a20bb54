//! CreateAcls (key 30): adds ACL bindings as metadata records. Needs ALTER on the cluster;
//! each creation is validated as Kafka does (known resource, pattern, operation and permission
//! types; a `Type:name` principal; the cluster resource named `kafka-cluster`).

use std::sync::Arc;

use fjord_metadata::security::{AclBinding, AclOperation, AclPermission, PatternType, ResourceType};
use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_protocol::kafka_protocol::messages::create_acls_request::AclCreation;
use fjord_protocol::kafka_protocol::messages::create_acls_response::AclCreationResult;
use fjord_protocol::kafka_protocol::messages::{CreateAclsRequest, CreateAclsResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::security::{CLUSTER_RESOURCE, Session};

fn binding(c: &AclCreation) -> Result<AclBinding, String> {
    let resource_type =
        ResourceType::from_code(c.resource_type).ok_or_else(|| format!("invalid resource type {}", c.resource_type))?;
    let pattern_type = PatternType::from_code(c.resource_pattern_type)
        .ok_or_else(|| format!("invalid resource pattern type {}", c.resource_pattern_type))?;
    let operation = AclOperation::from_code(c.operation).ok_or_else(|| format!("invalid operation {}", c.operation))?;
    let permission = AclPermission::from_code(c.permission_type)
        .ok_or_else(|| format!("invalid permission type {}", c.permission_type))?;
    let principal = c.principal.to_string();
    if principal
        .split_once(':')
        .is_none_or(|(t, n)| t.is_empty() || n.is_empty())
    {
        return Err(format!("invalid principal {principal:?}: expected Type:name"));
    }
    let name = c.resource_name.to_string();
    if name.is_empty() {
        return Err("resource name must not be empty".into());
    }
    if resource_type == ResourceType::Cluster && name != CLUSTER_RESOURCE {
        return Err(format!("the cluster resource is named {CLUSTER_RESOURCE}"));
    }
    Ok(AclBinding {
        resource_type,
        resource_name: name,
        pattern_type,
        principal,
        host: c.host.to_string(),
        operation,
        permission,
    })
}

pub(super) async fn handle(broker: &Arc<Broker>, session: &Session, request: CreateAclsRequest) -> CreateAclsResponse {
    let fail_all = |code: ResponseError, message: &str| {
        CreateAclsResponse::default().with_results(
            request
                .creations
                .iter()
                .map(|_| {
                    AclCreationResult::default()
                        .with_error_code(code.code())
                        .with_error_message(Some(str_bytes(message)))
                })
                .collect(),
        )
    };
    if !broker.config.authorizer.enabled {
        return fail_all(ResponseError::SecurityDisabled, "no authorizer is configured");
    }
    if !broker.authorize_cluster(session, AclOperation::Alter) {
        return fail_all(ResponseError::ClusterAuthorizationFailed, "");
    }
    let parsed: Vec<Result<AclBinding, String>> = request.creations.iter().map(binding).collect();
    let valid: Vec<AclBinding> = parsed.iter().filter_map(|p| p.as_ref().ok().cloned()).collect();
    let committed = if valid.is_empty() {
        Ok(())
    } else {
        broker.blocking(move |b| b.create_acls(valid)).await
    };
    let results = parsed
        .iter()
        .map(|p| match (p, &committed) {
            (Err(message), _) => AclCreationResult::default()
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(Some(str_bytes(message.as_str()))),
            (Ok(_), Err(e)) => AclCreationResult::default()
                .with_error_code(e.code.code())
                .with_error_message(Some(str_bytes(e.message.as_str()))),
            (Ok(_), Ok(())) => AclCreationResult::default(),
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}
