//! Security metadata: SCRAM credentials (salted, never the password) and ACL bindings with
//! Kafka's authorizer semantics (`StandardAuthorizer`): literal, wildcard and prefixed resource
//! patterns, deny wins over allow, implied operations, super users and
//! `allow.everyone.if.no.acl.found`. Pure: no I/O, no clock.

use serde::{Deserialize, Serialize};

/// A SCRAM mechanism (Kafka's ScramMechanism, with its wire codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ScramMechanism {
    ScramSha256,
    ScramSha512,
}

impl ScramMechanism {
    pub fn from_code(code: i8) -> Option<ScramMechanism> {
        match code {
            1 => Some(ScramMechanism::ScramSha256),
            2 => Some(ScramMechanism::ScramSha512),
            _ => None,
        }
    }

    pub fn code(self) -> i8 {
        match self {
            ScramMechanism::ScramSha256 => 1,
            ScramMechanism::ScramSha512 => 2,
        }
    }

    /// The SASL mechanism name (`SCRAM-SHA-256`).
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::ScramSha256 => "SCRAM-SHA-256",
            ScramMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<ScramMechanism> {
        match name {
            "SCRAM-SHA-256" => Some(ScramMechanism::ScramSha256),
            "SCRAM-SHA-512" => Some(ScramMechanism::ScramSha512),
            _ => None,
        }
    }

    /// Kafka's minimum iteration count (4096) and maximum (16384).
    pub const MIN_ITERATIONS: i32 = 4096;
    pub const MAX_ITERATIONS: i32 = 16384;
}

/// What the broker keeps of a SCRAM user (RFC 5802): the salt, the iteration count and the two
/// keys derived from the salted password. The password itself is never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: i32,
}

/// Kafka's ACL resource types (wire codes in comments).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ResourceType {
    /// 2
    Topic,
    /// 3
    Group,
    /// 4
    Cluster,
    /// 5
    TransactionalId,
}

impl ResourceType {
    pub fn from_code(code: i8) -> Option<ResourceType> {
        match code {
            2 => Some(ResourceType::Topic),
            3 => Some(ResourceType::Group),
            4 => Some(ResourceType::Cluster),
            5 => Some(ResourceType::TransactionalId),
            _ => None,
        }
    }

    pub fn code(self) -> i8 {
        match self {
            ResourceType::Topic => 2,
            ResourceType::Group => 3,
            ResourceType::Cluster => 4,
            ResourceType::TransactionalId => 5,
        }
    }
}

/// How an ACL's resource name matches (Kafka's PatternType; MATCH and ANY are filters only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PatternType {
    /// 3: the name exactly, or every resource when the name is `*`.
    Literal,
    /// 4: every resource whose name starts with the pattern.
    Prefixed,
}

impl PatternType {
    pub fn from_code(code: i8) -> Option<PatternType> {
        match code {
            3 => Some(PatternType::Literal),
            4 => Some(PatternType::Prefixed),
            _ => None,
        }
    }

    pub fn code(self) -> i8 {
        match self {
            PatternType::Literal => 3,
            PatternType::Prefixed => 4,
        }
    }
}

/// Kafka's ACL operations (AclOperation), without the filter-only ANY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AclOperation {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
}

impl AclOperation {
    pub fn from_code(code: i8) -> Option<AclOperation> {
        use AclOperation::*;
        Some(match code {
            2 => All,
            3 => Read,
            4 => Write,
            5 => Create,
            6 => Delete,
            7 => Alter,
            8 => Describe,
            9 => ClusterAction,
            10 => DescribeConfigs,
            11 => AlterConfigs,
            12 => IdempotentWrite,
            _ => return None,
        })
    }

    pub fn code(self) -> i8 {
        use AclOperation::*;
        match self {
            All => 2,
            Read => 3,
            Write => 4,
            Create => 5,
            Delete => 6,
            Alter => 7,
            Describe => 8,
            ClusterAction => 9,
            DescribeConfigs => 10,
            AlterConfigs => 11,
            IdempotentWrite => 12,
        }
    }

    /// Whether an ALLOW of `self` grants `requested` (Kafka: ALL grants everything; READ, WRITE,
    /// DELETE and ALTER imply DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS).
    fn allow_grants(self, requested: AclOperation) -> bool {
        use AclOperation::*;
        self == All
            || self == requested
            || (requested == Describe && matches!(self, Read | Write | Delete | Alter))
            || (requested == DescribeConfigs && self == AlterConfigs)
    }

    /// Whether a DENY of `self` refuses `requested` (Kafka: only the operation itself or ALL).
    fn deny_refuses(self, requested: AclOperation) -> bool {
        self == AclOperation::All || self == requested
    }
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AclPermission {
    /// 2
    Deny,
    /// 3
    Allow,
}

impl AclPermission {
    pub fn from_code(code: i8) -> Option<AclPermission> {
        match code {
            2 => Some(AclPermission::Deny),
            3 => Some(AclPermission::Allow),
            _ => None,
        }
    }

    pub fn code(self) -> i8 {
        match self {
            AclPermission::Deny => 2,
            AclPermission::Allow => 3,
        }
    }
}

/// One ACL: `principal` from `host` is allowed or denied `operation` on the resources the
/// pattern matches (Kafka's AclBinding).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern_type: PatternType,
    /// `User:alice`, or `User:*` for every principal.
    pub principal: String,
    /// A client IP address, or `*`.
    pub host: String,
    pub operation: AclOperation,
    pub permission: AclPermission,
}

impl AclBinding {
    /// Whether this binding's resource pattern covers the resource `name` of `resource_type`.
    pub fn matches_resource(&self, resource_type: ResourceType, name: &str) -> bool {
        self.resource_type == resource_type
            && match self.pattern_type {
                PatternType::Literal => self.resource_name == "*" || self.resource_name == name,
                PatternType::Prefixed => name.starts_with(&self.resource_name),
            }
    }

    fn matches_principal(&self, principal: &str, host: &str) -> bool {
        (self.principal == principal || self.principal == "User:*") && (self.host == "*" || self.host == host)
    }
}

/// How an ACL filter matches resource patterns (Kafka's PatternType in DescribeAcls and
/// DeleteAcls filters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PatternFilter {
    /// 1: any pattern type.
    Any,
    /// 2: every binding that would apply to the named resource (literal, wildcard, prefixes).
    Match,
    /// 3 or 4: exactly this pattern type.
    Exactly(PatternType),
}

impl PatternFilter {
    pub fn from_code(code: i8) -> Option<PatternFilter> {
        match code {
            1 => Some(PatternFilter::Any),
            2 => Some(PatternFilter::Match),
            other => PatternType::from_code(other).map(PatternFilter::Exactly),
        }
    }
}

/// An ACL filter (Kafka's AclBindingFilter): `None` fields match anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclFilter {
    pub resource_type: Option<ResourceType>,
    pub resource_name: Option<String>,
    pub pattern: PatternFilter,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<AclOperation>,
    pub permission: Option<AclPermission>,
}

impl AclFilter {
    pub fn matches(&self, acl: &AclBinding) -> bool {
        let name_ok = match (&self.pattern, &self.resource_name) {
            (PatternFilter::Match, Some(name)) => match acl.pattern_type {
                PatternType::Literal => acl.resource_name == *name || acl.resource_name == "*",
                PatternType::Prefixed => name.starts_with(&acl.resource_name),
            },
            (PatternFilter::Exactly(p), name) => {
                acl.pattern_type == *p && name.as_ref().is_none_or(|n| *n == acl.resource_name)
            }
            (_, name) => name.as_ref().is_none_or(|n| *n == acl.resource_name),
        };
        name_ok
            && self.resource_type.is_none_or(|t| t == acl.resource_type)
            && self.principal.as_ref().is_none_or(|p| *p == acl.principal)
            && self.host.as_ref().is_none_or(|h| *h == acl.host)
            && self.operation.is_none_or(|o| o == acl.operation)
            && self.permission.is_none_or(|p| p == acl.permission)
    }
}

/// The authorizer's static settings (Kafka's `super.users` and
/// `allow.everyone.if.no.acl.found`).
#[derive(Debug, Clone, Default)]
pub struct AuthorizerSettings {
    pub super_users: Vec<String>,
    pub allow_everyone_if_no_acl_found: bool,
}

/// Kafka's authorization decision for `principal` at `host` doing `operation` on the resource
/// `name` of `resource_type`, given every ACL in the cluster.
pub fn authorize<'a>(
    acls: impl IntoIterator<Item = &'a AclBinding>,
    settings: &AuthorizerSettings,
    principal: &str,
    host: &str,
    operation: AclOperation,
    resource_type: ResourceType,
    name: &str,
) -> bool {
    if settings.super_users.iter().any(|s| s == principal) {
        return true;
    }
    let mut any_acl = false;
    let mut allowed = false;
    for acl in acls {
        if !acl.matches_resource(resource_type, name) {
            continue;
        }
        any_acl = true;
        if !acl.matches_principal(principal, host) {
            continue;
        }
        match acl.permission {
            AclPermission::Deny if acl.operation.deny_refuses(operation) => return false,
            AclPermission::Allow if acl.operation.allow_grants(operation) => allowed = true,
            _ => {}
        }
    }
    allowed || (!any_acl && settings.allow_everyone_if_no_acl_found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(
        rt: ResourceType,
        name: &str,
        pt: PatternType,
        who: &str,
        op: AclOperation,
        perm: AclPermission,
    ) -> AclBinding {
        AclBinding {
            resource_type: rt,
            resource_name: name.into(),
            pattern_type: pt,
            principal: who.into(),
            host: "*".into(),
            operation: op,
            permission: perm,
        }
    }

    #[test]
    fn kafka_authorizer_semantics() {
        use AclOperation::*;
        use AclPermission::*;
        use PatternType::*;
        use ResourceType::*;
        let acls = vec![
            acl(Topic, "orders", Literal, "User:alice", Read, Allow),
            acl(Topic, "pay-", Prefixed, "User:alice", Write, Allow),
            acl(Topic, "pay-secret", Literal, "User:alice", All, Deny),
            acl(Topic, "*", Literal, "User:bob", Describe, Allow),
            acl(Group, "g", Literal, "User:*", Read, Allow),
        ];
        let settings = AuthorizerSettings {
            super_users: vec!["User:admin".into()],
            allow_everyone_if_no_acl_found: false,
        };
        let ok = |who: &str, op, rt, name: &str| authorize(&acls, &settings, who, "10.0.0.1", op, rt, name);
        assert!(ok("User:alice", Read, Topic, "orders"));
        assert!(ok("User:alice", Describe, Topic, "orders"), "read implies describe");
        assert!(!ok("User:alice", Write, Topic, "orders"));
        assert!(ok("User:alice", Write, Topic, "pay-1"), "prefixed");
        assert!(!ok("User:alice", Write, Topic, "pay-secret"), "deny wins");
        assert!(ok("User:bob", Describe, Topic, "anything"), "wildcard");
        assert!(!ok("User:bob", Read, Topic, "anything"));
        assert!(ok("User:carol", Read, Group, "g"), "User:*");
        assert!(ok("User:admin", Delete, Cluster, "kafka-cluster"), "super user");
        assert!(!ok("User:carol", Read, Topic, "unguarded"), "only bob's wildcard acl");
        assert!(!ok("User:carol", Write, TransactionalId, "tx"), "no acl, default deny");
        let open = AuthorizerSettings {
            allow_everyone_if_no_acl_found: true,
            ..settings.clone()
        };
        assert!(authorize(&acls, &open, "User:carol", "h", Write, TransactionalId, "tx"));
        assert!(
            !authorize(&acls, &open, "User:carol", "h", Read, Topic, "unguarded"),
            "wildcard acl exists"
        );
        assert!(
            !authorize(&acls, &open, "User:carol", "h", Read, Topic, "orders"),
            "acls exist"
        );
    }
}
