"""Input and output schemas for workspaces and pathways."""

from marshmallow import Schema, fields, validate

from ..apidoc import list_of
from ..schemas import ObjectIdField, Text, UtcDateTime


class WorkspaceSchema(Schema):
    id = ObjectIdField(attribute="_id")
    name = fields.String()
    description = fields.String(allow_none=True)
    createdAt = UtcDateTime()
    updatedAt = UtcDateTime()


class WorkspaceCreateSchema(Schema):
    name = Text(required=True, validate=validate.Length(max=200))
    description = fields.String(load_default=None, validate=validate.Length(max=2000))


class WorkspaceUpdateSchema(Schema):
    name = Text(validate=validate.Length(max=200))
    description = fields.String(allow_none=True, validate=validate.Length(max=2000))


class StepSchema(Schema):
    title = Text(required=True, validate=validate.Length(max=200))
    description = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(max=2000)
    )


class PathwaySchema(Schema):
    id = ObjectIdField(attribute="_id")
    workspaceId = ObjectIdField()
    name = fields.String()
    description = fields.String(allow_none=True)
    steps = fields.List(fields.Nested(StepSchema))
    createdBy = ObjectIdField(allow_none=True)
    createdAt = UtcDateTime()
    updatedAt = UtcDateTime()


class PathwayCreateSchema(Schema):
    name = Text(required=True, validate=validate.Length(max=200))
    description = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(max=5000)
    )
    steps = fields.List(
        fields.Nested(StepSchema), load_default=list, validate=validate.Length(max=100)
    )


class PathwayUpdateSchema(Schema):
    name = Text(validate=validate.Length(max=200))
    description = fields.String(allow_none=True, validate=validate.Length(max=5000))
    steps = fields.List(fields.Nested(StepSchema), validate=validate.Length(max=100))


WorkspaceListSchema = list_of("WorkspaceList", WorkspaceSchema)
PathwayListSchema = list_of("PathwayList", PathwaySchema)
