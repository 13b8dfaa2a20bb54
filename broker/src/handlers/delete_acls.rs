//! DeleteAcls (key 31): removes every ACL each filter matches and reports them. Needs ALTER
//! on the cluster.

use std::sync::Arc;

use fjord_metadata::security::AclOperation;
use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_protocol::kafka_protocol::messages::delete_acls_response::{DeleteAclsFilterResult, DeleteAclsMatchingAcl};
use fjord_protocol::kafka_protocol::messages::{DeleteAclsRequest, DeleteAclsResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::security::Session;

pub(super) async fn handle(broker: &Arc<Broker>, session: &Session, request: DeleteAclsRequest) -> DeleteAclsResponse {
    let fail = |code: ResponseError, message: &str| {
        DeleteAclsFilterResult::default()
            .with_error_code(code.code())
            .with_error_message(Some(str_bytes(message)))
    };
    let fail_all = |code: ResponseError, message: &str| {
        DeleteAclsResponse::default().with_filter_results(request.filters.iter().map(|_| fail(code, message)).collect())
    };
    if !broker.config.authorizer.enabled {
        return fail_all(ResponseError::SecurityDisabled, "no authorizer is configured");
    }
    if !broker.authorize_cluster(session, AclOperation::Alter) {
        return fail_all(ResponseError::ClusterAuthorizationFailed, "");
    }
    let parsed: Vec<Result<_, String>> = request
        .filters
        .iter()
        .map(|f| {
            super::describe_acls::filter(
                f.resource_type_filter,
                f.resource_name_filter.as_ref(),
                f.pattern_type_filter,
                f.principal_filter.as_ref(),
                f.host_filter.as_ref(),
                f.operation,
                f.permission_type,
            )
        })
        .collect();
    let valid: Vec<_> = parsed.iter().filter_map(|p| p.as_ref().ok().cloned()).collect();
    let deleted = broker.blocking(move |b| b.delete_acls(valid)).await;
    let mut deleted_iter = match &deleted {
        Ok(d) => d.clone().into_iter(),
        Err(_) => Vec::new().into_iter(),
    };
    let results = parsed
        .iter()
        .map(|p| match (p, &deleted) {
            (Err(message), _) => fail(ResponseError::InvalidRequest, message),
            (Ok(_), Err(e)) => fail(e.code, &e.message),
            (Ok(_), Ok(_)) => DeleteAclsFilterResult::default().with_matching_acls(
                deleted_iter
                    .next()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|a| {
                        DeleteAclsMatchingAcl::default()
                            .with_resource_type(a.resource_type.code())
                            .with_resource_name(str_bytes(a.resource_name))
                            .with_pattern_type(a.pattern_type.code())
                            .with_principal(str_bytes(a.principal))
                            .with_host(str_bytes(a.host))
                            .with_operation(a.operation.code())
                            .with_permission_type(a.permission.code())
                    })
                    .collect(),
            ),
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}
