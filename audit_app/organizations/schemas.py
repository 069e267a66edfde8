"""Input and output schemas for the organization, its members and its roles."""

from marshmallow import Schema, ValidationError, fields, validate, validates

from ..apidoc import list_of
from ..schemas import EmailAddress, ObjectIdField, Text, UtcDateTime
from .permissions import PERMISSIONS, unknown_permissions


class RetentionBoundsSchema(Schema):
    minDays = fields.Integer()
    maxDays = fields.Integer()
    graceDays = fields.Integer(
        metadata={"description": "Days a shortened retention waits before it applies."}
    )


class RetentionPendingSchema(Schema):
    days = fields.Integer(metadata={"description": "The shorter retention asked for."})
    effectiveAt = UtcDateTime(
        metadata={"description": "When it applies; until then the purge keeps the longer one."}
    )


class OrganizationSchema(Schema):
    id = ObjectIdField(attribute="_id")
    name = fields.String()
    auditRetentionDays = fields.Integer(
        metadata={"description": "How long the audit log keeps records (days)."}
    )
    auditLegalHold = fields.Boolean(
        metadata={"description": "True: nothing of this organization's audit log is deleted."}
    )
    staffAccess = fields.String(
        metadata={
            "enum": ["open", "approval", "none"],
            "description": "Whether and how the platform's support staff may read this "
            "organization's log: open (under a grant with a reason), approval (an Owner or "
            "Admin approves each grant first) or none.",
        }
    )
    auditRetentionPending = fields.Nested(
        RetentionPendingSchema,
        allow_none=True,
        metadata={
            "description": "A shortening of the retention waiting for its grace to pass; "
            "cancel it by setting auditRetentionDays back to its current value."
        },
    )
    auditRetentionBounds = fields.Nested(
        RetentionBoundsSchema, metadata={"description": "The installation's bounds and grace."}
    )
    createdAt = UtcDateTime()
    updatedAt = UtcDateTime()


class OrganizationUpdateSchema(Schema):
    """Checked by the service (``audit.retention``): a whole number of days within the
    installation's bounds, and ``true`` or ``false``; nothing else is taken for either."""

    name = Text(validate=validate.Length(max=200))
    auditRetentionDays = fields.Raw(metadata={"type": "integer"})
    auditLegalHold = fields.Raw(metadata={"type": "boolean"})
    staffAccess = fields.Raw(metadata={"type": "string", "enum": ["open", "approval", "none"]})


class RoleSchema(Schema):
    id = ObjectIdField(attribute="_id")
    name = fields.String()
    description = fields.String(allow_none=True)
    builtIn = fields.Boolean()
    permissions = fields.List(fields.String())
    createdAt = UtcDateTime()
    updatedAt = UtcDateTime()


class _PermissionsMixin:
    @validates("permissions")
    def _known(self, value, **kwargs):
        unknown = unknown_permissions(value)
        if unknown:
            raise ValidationError(
                f"Unknown permission {unknown[0]!r}; accepted: {', '.join(sorted(PERMISSIONS))}."
            )


class RoleCreateSchema(_PermissionsMixin, Schema):
    name = Text(required=True, validate=validate.Length(max=100))
    description = fields.String(load_default=None, validate=validate.Length(max=500))
    permissions = fields.List(
        fields.String(), load_default=list, validate=validate.Length(max=len(PERMISSIONS))
    )


class RoleUpdateSchema(_PermissionsMixin, Schema):
    name = Text(validate=validate.Length(max=100))
    description = fields.String(validate=validate.Length(max=500))
    permissions = fields.List(fields.String(), validate=validate.Length(max=len(PERMISSIONS)))


class MemberSchema(Schema):
    accountId = ObjectIdField(attribute="account._id")
    email = fields.String(attribute="account.email")
    name = fields.String(attribute="account.name", allow_none=True)
    roleId = ObjectIdField(attribute="role._id")
    roleName = fields.String(attribute="role.name")
    joinedAt = UtcDateTime(attribute="membership.createdAt")


class MemberCreateSchema(Schema):
    """An invitation: the invited person chooses their own password when accepting."""

    email = EmailAddress(required=True)
    roleId = ObjectIdField(required=True)
    password = fields.Raw(
        load_default=None,
        metadata={"description": "Not accepted: the invited person chooses the password."},
    )

    @validates("password")
    def _no_password(self, value, **kwargs):
        if value is not None:
            raise ValidationError(
                "An organization cannot choose a member's password: the invited person "
                "chooses it when accepting the invitation (acceptUrl)."
            )


class InvitationSchema(Schema):
    invitationId = ObjectIdField(attribute="_id")
    email = fields.String()
    roleId = ObjectIdField()
    createdAt = UtcDateTime()
    expiresAt = UtcDateTime()


class InvitationCreatedSchema(InvitationSchema):
    acceptUrl = fields.String()


class InvitationAcceptSchema(Schema):
    token = fields.String(required=True, validate=validate.Length(min=1, max=200))
    password = fields.String(load_default=None, validate=validate.Length(min=8, max=1024))


class InvitationAcceptedSchema(Schema):
    organizationId = ObjectIdField()
    accountId = ObjectIdField()
    roleId = ObjectIdField()
    accountCreated = fields.Boolean()


class MemberUpdateSchema(Schema):
    roleId = ObjectIdField(required=True)


MemberListSchema = list_of("MemberList", MemberSchema)
InvitationListSchema = list_of("InvitationList", InvitationSchema)
RoleListSchema = list_of("RoleList", RoleSchema)
