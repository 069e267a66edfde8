"""Workspaces as a principal may use them: one rule for the API, the pages and the CLI."""

from __future__ import annotations

from bson import ObjectId

from ..audit.context import note_workspace
from ..auth.principal import Principal
from ..db import Document, get_db
from ..errors import ApiError, not_found
from . import repository as workspaces


def workspace_in_scope(
    principal: Principal, workspace_id: ObjectId, field: str, *, refuse_other: bool = False
) -> Document:
    """The workspace, if the principal may act in it; noted for the request's record.

    It must belong to the principal's organization, and a key bound to a workspace acts
    in that one only: another is unknown to it (404), or, when the caller named it
    explicitly in a header (``refuse_other``), refused (403).
    """
    bound = principal.bound_workspace_id
    if bound is not None and workspace_id != bound:
        if refuse_other:
            raise ApiError(403, "forbidden", "This API key is bound to another workspace.", field)
        raise not_found("Workspace", field)
    workspace = workspaces.find_workspace(get_db(), principal.org, workspace_id)
    if workspace is None:
        raise not_found("Workspace", field)
    note_workspace(workspace_id)
    return workspace
