//! DescribeAcls (key 29): the ACLs a filter matches, grouped by resource pattern. Needs
//! DESCRIBE on the cluster; SECURITY_DISABLED when no authorizer is configured, as in Kafka.

use std::collections::BTreeMap;

use fjord_metadata::security::{
    AclBinding, AclFilter, AclOperation, AclPermission, PatternFilter, PatternType, ResourceType,
};
use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_protocol::kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use fjord_protocol::kafka_protocol::messages::{DescribeAclsRequest, DescribeAclsResponse};
use fjord_protocol::kafka_protocol::protocol::StrBytes;

use super::str_bytes;
use crate::broker::Broker;
use crate::security::Session;

/// A filter from its wire fields (1 = ANY for every code); `Err` names a bad field.
pub(super) fn filter(
    resource_type: i8,
    name: Option<&StrBytes>,
    pattern_type: i8,
    principal: Option<&StrBytes>,
    host: Option<&StrBytes>,
    operation: i8,
    permission: i8,
) -> Result<AclFilter, String> {
    let any_or = |code: i8, what: &str, parse: &dyn Fn(i8) -> bool| -> Result<(), String> {
        if code == 1 || parse(code) {
            Ok(())
        } else {
            Err(format!("unknown {what} {code}"))
        }
    };
    any_or(resource_type, "resource type", &|c| {
        ResourceType::from_code(c).is_some()
    })?;
    any_or(operation, "operation", &|c| AclOperation::from_code(c).is_some())?;
    any_or(permission, "permission type", &|c| {
        AclPermission::from_code(c).is_some()
    })?;
    Ok(AclFilter {
        resource_type: ResourceType::from_code(resource_type),
        resource_name: name.map(|n| n.to_string()),
        pattern: PatternFilter::from_code(pattern_type)
            .ok_or_else(|| format!("unknown pattern type {pattern_type}"))?,
        principal: principal.map(|p| p.to_string()),
        host: host.map(|h| h.to_string()),
        operation: AclOperation::from_code(operation),
        permission: AclPermission::from_code(permission),
    })
}

pub(super) fn handle(broker: &Broker, session: &Session, request: DescribeAclsRequest) -> DescribeAclsResponse {
    let refuse = |code: ResponseError, message: String| {
        DescribeAclsResponse::default()
            .with_error_code(code.code())
            .with_error_message(Some(str_bytes(message)))
    };
    if !broker.config.authorizer.enabled {
        return refuse(ResponseError::SecurityDisabled, "no authorizer is configured".into());
    }
    if !broker.authorize_cluster(session, AclOperation::Describe) {
        return refuse(ResponseError::ClusterAuthorizationFailed, String::new());
    }
    let filter = match filter(
        request.resource_type_filter,
        request.resource_name_filter.as_ref(),
        request.pattern_type_filter,
        request.principal_filter.as_ref(),
        request.host_filter.as_ref(),
        request.operation,
        request.permission_type,
    ) {
        Ok(f) => f,
        Err(message) => return refuse(ResponseError::InvalidRequest, message),
    };
    let image = broker.image();
    let mut resources: BTreeMap<(ResourceType, String, PatternType), Vec<&AclBinding>> = BTreeMap::new();
    for acl in image.acls().iter().filter(|a| filter.matches(a)) {
        resources
            .entry((acl.resource_type, acl.resource_name.clone(), acl.pattern_type))
            .or_default()
            .push(acl);
    }
    let resources = resources
        .into_iter()
        .map(|((rt, name, pt), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(rt.code())
                .with_resource_name(str_bytes(name))
                .with_pattern_type(pt.code())
                .with_acls(
                    acls.into_iter()
                        .map(|a| {
                            AclDescription::default()
                                .with_principal(str_bytes(a.principal.as_str()))
                                .with_host(str_bytes(a.host.as_str()))
                                .with_operation(a.operation.code())
                                .with_permission_type(a.permission.code())
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeAclsResponse::default().with_resources(resources)
}
