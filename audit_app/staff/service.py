"""The staff's rules, one place for the API, the web pages and the CLI.

- Staff accounts are the installation's, not any organization's: ``create_staff``,
  ``remove_staff`` (which ends their sessions and grants at once).
- A staff credential (a session of ``/staff/login`` or a token of
  ``POST /api/v1/staff/token``) is resolved only on staff paths (``principal.load_staff``);
  the token is signed with a key of its own and carries an audience no other endpoint
  accepts, so it is nobody anywhere else.
- A grant names one organization, a justification and maybe a ticket; the organization's
  ``staffAccess`` decides whether it is active at once (``open``), waits for an Owner or
  Admin (``approval``) or is refused (``none``). Every read under a grant asks the store
  for a live grant (``find_live_grant``): expiry and revocation hold on every worker.
- Every grant request, decision and access is recorded in the organization's own log (the
  request hooks, with ``authType: "staff"``) and in the installation's staff log.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from bson import ObjectId
from flask import current_app, g, request

from ..audit.capture.context import note_action, note_details, note_target
from ..audit.capture.hooks import store_journaled
from ..audit.capture.record import redactor
from ..audit.capture.redaction import scrub_decoded
from ..audit.store.repository import organization_of_record, organizations_of_request
from ..auth.passwords import hash_password, verify_password
from ..auth.principal import Principal
from ..db import Document, get_audit_db, get_db
from ..emails import InvalidEmail, clean_email
from ..errors import ApiError, bad_request, not_found
from ..ids import canonical_ip, iso, utcnow
from ..organizations.permissions import VIEW_AUDIT_LOG
from ..organizations.service import (
    DEFAULT_STAFF_ACCESS,
    STAFF_ACCESS_SETTINGS,
    checked_password,
    staff_access_of,
)
from . import repository as staff_db
from .repository import ACTIVE as ACTIVE
from .repository import DENIED, PENDING

STAFF_AUTH = "staff"  # the records' ``authType`` of a staff member's requests
ACCESS_SETTINGS = STAFF_ACCESS_SETTINGS
DEFAULT_ACCESS = DEFAULT_STAFF_ACCESS
PENDING_HOURS = 24
JUSTIFICATION = (10, 500)
TICKET_MAX = 100
TOKEN_AUDIENCE = "audit-log-staff"
TOKEN_TYPE = "staff"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_OBJECT_ID = re.compile(r"^[0-9a-fA-F]{24}$")


@dataclass(frozen=True)
class StaffCaller:
    """A signed-in staff member: who, and by which credential (its name in the logs)."""

    staff_id: ObjectId
    email: str
    credential_id: str

    def principal(self, organization_id: ObjectId | None, *, reading: bool = False) -> Principal:
        """The principal the audit hooks and the log's reader see: ``authType`` staff, the
        staff member's email as actor, in one organization; under a grant it may read that
        organization's log (``viewAuditLog``) and nothing else."""
        return Principal(
            auth_type=STAFF_AUTH,
            organization_id=organization_id,
            account_email=self.email,
            credential_id=self.credential_id,
            permissions=frozenset({VIEW_AUDIT_LOG}) if reading else frozenset(),
        )


# Accounts -------------------------------------------------------------------------------


def _email(text: object, field: str = "email") -> str:
    try:
        return clean_email(text)
    except InvalidEmail as error:
        raise bad_request(f"{field}: {error}", field) from None


def create_staff(email: str, password: str) -> Document:
    """A new staff account; an email already taken is a 409."""
    address = _email(email)
    checked_password(password)
    db = get_db()
    if staff_db.find_staff_by_email(db, address) is not None:
        raise ApiError(409, "conflict", f"A staff account for {address} exists already.", "email")
    document = {
        "_id": ObjectId(),
        "email": address,
        "passwordHash": hash_password(password),
        "credentialVersion": 0,
        "createdAt": utcnow(),
    }
    staff_db.insert_staff(db, document)
    log_staff_action(document, "staff.create", via="cli")
    return document


def list_staff(limit: int = 200) -> tuple[list[Document], bool]:
    return staff_db.list_staff(get_db(), limit)


def remove_staff(email: str) -> dict[str, Any]:
    """Remove a staff account: its sessions end and its grants are revoked at once (a token
    dies with the account: every request looks the account up)."""
    address = _email(email)
    db = get_db()
    staff = staff_db.find_staff_by_email(db, address)
    if staff is None:
        raise not_found("Staff account", "email")
    sessions = staff_db.delete_sessions_of(db, staff["_id"])
    grants = staff_db.revoke_grants_of(db, staff["_id"], utcnow())
    staff_db.delete_staff(db, staff["_id"])
    log_staff_action(staff, "staff.remove", via="cli", sessionsEnded=sessions, grantsEnded=grants)
    return {
        "staffId": staff["_id"],
        "email": address,
        "sessionsEnded": sessions,
        "grantsEnded": grants,
    }


def authenticate(email: object, password: object) -> Document | None:
    """The staff account of this email and password, or None (the same work either way)."""
    address = email.strip().lower() if isinstance(email, str) else ""
    staff = staff_db.find_staff_by_email(get_db(), address) if address else None
    given = password if isinstance(password, str) else ""
    if not verify_password(staff["passwordHash"] if staff else None, given):
        return None
    return staff


# Sessions and tokens --------------------------------------------------------------------


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def start_session(staff: Document) -> tuple[str, ObjectId]:
    """A server-side session for the staff member: the cookie's token, and the session's id."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session_id = ObjectId()
    staff_db.insert_session(
        get_db(),
        {
            "_id": session_id,
            "tokenHash": _hash(token),
            "staffId": staff["_id"],
            "createdAt": now,
            "expiresAt": now + session_lifetime(),
        },
    )
    return token, session_id


def session_lifetime() -> timedelta:
    return timedelta(hours=current_app.config["STAFF_SESSION_HOURS"])


def caller_of_session(token: object) -> StaffCaller | None:
    if not isinstance(token, str) or not token or len(token) > 200:
        return None
    db = get_db()
    found = staff_db.find_live_session(db, _hash(token), utcnow())
    if found is None:
        return None
    staff = staff_db.find_staff(db, found["staffId"])
    if staff is None:
        return None
    return StaffCaller(staff["_id"], staff["email"], f"stfs_{found['_id']}")


def end_session(token: object) -> None:
    if isinstance(token, str) and token:
        staff_db.delete_session(get_db(), _hash(token))


def _token_key() -> bytes:
    """The staff tokens' own signing key, derived from SECRET_KEY: an organization's JWT
    does not verify as a staff token, nor a staff token as an organization's JWT."""
    secret = current_app.config["SECRET_KEY"].encode("utf-8")
    return hmac.new(secret, b"audit-log staff tokens v1", hashlib.sha256).digest()


def issue_token(staff: Document) -> tuple[str, int]:
    lifetime = int(session_lifetime().total_seconds())
    now = datetime.now(UTC)
    claims = {
        "sub": str(staff["_id"]),
        "aud": TOKEN_AUDIENCE,
        "typ": TOKEN_TYPE,
        "ver": int(staff.get("credentialVersion") or 0),
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(seconds=lifetime),
        "jti": secrets.token_urlsafe(16),
    }
    return jwt.encode(claims, _token_key(), algorithm="HS256"), lifetime


class StaffTokenError(Exception):
    pass


def caller_of_token(token: str) -> StaffCaller:
    try:
        claims = jwt.decode(
            token,
            _token_key(),
            algorithms=["HS256"],
            audience=TOKEN_AUDIENCE,
            options={"require": ["exp", "iat", "sub", "aud", "typ", "jti"]},
            leeway=5,
        )
    except jwt.ExpiredSignatureError:
        raise StaffTokenError("The staff token has expired; request a new one.") from None
    except jwt.InvalidTokenError:
        raise StaffTokenError(
            "Not a staff token: staff endpoints take a token of POST /api/v1/staff/token."
        ) from None
    if claims.get("typ") != TOKEN_TYPE or not ObjectId.is_valid(str(claims.get("sub"))):
        raise StaffTokenError("Not a staff token.")
    staff = staff_db.find_staff(get_db(), ObjectId(claims["sub"]))
    if staff is None:
        raise StaffTokenError("The token's staff account no longer exists.")
    if claims.get("ver") != int(staff.get("credentialVersion") or 0):
        raise StaffTokenError("The staff token was issued before a password change.")
    jti = str(claims["jti"])[:64]
    return StaffCaller(staff["_id"], staff["email"], f"stft_{jti}")


# The lookup -----------------------------------------------------------------------------

# a request id is the client's to choose: the lookup names every distinct organization whose
# records carry it, up to this many (one index seek each: ``organizations_of_request``)
REQUEST_ORGANIZATIONS = 20


def lookup(caller: StaffCaller, text: object) -> dict[str, Any]:
    """What a pasted id is and which organization(s) it belongs to, with their names and
    staff access; nothing of any record. Every lookup is in the staff log."""
    value = text.strip() if isinstance(text, str) else ""
    if not value:
        raise bad_request("id: give a 24-hex ObjectId or a request id.", "id")
    matches: list[dict[str, Any]] = []
    organization_ids: list[ObjectId] = []
    # the journal's records too, so a request id answered a moment ago is found (when the
    # journal's disk fails, the lookup answers from what the store has)
    with contextlib.suppress(OSError):
        store_journaled()
    if _OBJECT_ID.match(value):
        object_id = ObjectId(value)
        for kind, owners in staff_db.kinds_of_id(get_db(), object_id):
            matches.append({"kind": kind, "organizationIds": owners})
            organization_ids += owners
        record_org = organization_of_record(get_audit_db(), object_id)
        if record_org is not None:
            matches.append({"kind": "auditLog", "organizationIds": [record_org]})
            organization_ids.append(record_org)
    elif not _REQUEST_ID.match(value):
        raise bad_request(
            "id: is a 24-hex ObjectId or a request id (1 to 128 characters of A-Z, a-z, "
            "0-9 and . _ : -).",
            "id",
        )
    if not matches or not _OBJECT_ID.match(value):
        # every distinct organization whose records carry it (up to REQUEST_ORGANIZATIONS):
        # a client chooses its request ids, so one tenant's flood of another's id, or
        # records of no organization, never hide the other
        by_request = organizations_of_request(get_audit_db(), value, REQUEST_ORGANIZATIONS + 1)
        if by_request:
            unique = by_request[:REQUEST_ORGANIZATIONS]
            match: dict[str, Any] = {"kind": "requestId", "organizationIds": unique}
            if len(by_request) > 1:
                match["ambiguous"] = True
                match["message"] = (
                    "This request id was sent to more than one organization"
                    + (
                        f" (more than {REQUEST_ORGANIZATIONS}; the first listed)"
                        if len(by_request) > REQUEST_ORGANIZATIONS
                        else ""
                    )
                    + "; ask the customer for the record id."
                )
            matches.append(match)
            organization_ids += unique
    organizations = [
        {
            "id": str(o["_id"]),
            "name": o.get("name"),
            "staffAccess": staff_access_of(o),
        }
        for o in staff_db.find_organizations(get_db(), organization_ids)
    ]
    kinds = [m["kind"] for m in matches]
    # a secret pasted into the box (an API key a customer sent) is masked in the staff log,
    # as the audit log masks it
    log_staff_action(caller, "staff.lookup", id=scrub_decoded(value), found=kinds)
    return {
        "id": value,
        "kind": kinds[0] if kinds else None,
        "kinds": kinds,
        "matches": [
            {**m, "organizationIds": [str(i) for i in m["organizationIds"]]} for m in matches
        ],
        "organizations": organizations,
    }


# Grants ---------------------------------------------------------------------------------


staff_access = staff_access_of


# line breaks and tabs (a textarea's) become a space; every other control character (C0,
# DEL, C1) and the bidirectional overrides and isolates are refused: they would rewrite
# what an Admin's page or an operator's terminal shows
_LINE_BREAKS = frozenset("\t\n\r\x0b\x0c\x85\u2028\u2029")
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# characters that show nothing although Unicode does not file them as spaces or formats
_BLANKS = frozenset("\u115f\u1160\u2800\u3164\uffa0\u034f")
_UNSEEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp", "Mn", "Me"})


def _shown_text(text: str, field: str) -> str:
    """The text as stored: line breaks and tabs as spaces, stripped; refused (400, naming
    the field and the character) when it holds another control or a direction override."""
    for char in text:
        if char in _LINE_BREAKS:
            continue
        if unicodedata.category(char) == "Cc" or char in _BIDI_CONTROLS:
            raise bad_request(
                f"{field}: holds the control character U+{ord(char):04X}; control characters "
                "and text-direction overrides are refused (line breaks and tabs are kept as "
                "spaces).",
                field,
            )
    return "".join(" " if char in _LINE_BREAKS else char for char in text).strip()


def visible_length(text: str) -> int:
    """How many characters of the text show something: no spaces, formats (zero-width,
    direction marks), controls, combining marks alone or blank-looking letters."""
    return sum(
        1
        for char in text
        if char not in _BLANKS and unicodedata.category(char) not in _UNSEEN_CATEGORIES
    )


def checked_justification(text: object) -> str:
    low, high = JUSTIFICATION
    said = (
        f"justification: state why you need this organization's log, in {low} to {high} "
        f"characters, at least {low} of them visible (not spaces or invisible characters)."
    )
    if not isinstance(text, str):
        raise bad_request(said, "justification")
    shown = _shown_text(text, "justification")
    if not low <= len(shown) <= high or visible_length(shown) < low:
        raise bad_request(said, "justification")
    return shown


def checked_ticket(text: object) -> str | None:
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    if not isinstance(text, str) or len(text.strip()) > TICKET_MAX:
        raise bad_request(f"ticket: a reference of at most {TICKET_MAX} characters.", "ticket")
    return _shown_text(text, "ticket") or None


def request_grant(
    caller: StaffCaller, organization_id: ObjectId, justification: object, ticket: object
) -> Document:
    """Ask to read one organization's log: active at once (``open``), pending its approval
    (``approval``) or refused (``none``, 403). Recorded in the organization's own log,
    refused or not, with the justification and the ticket."""
    db = get_db()
    found = staff_db.find_organizations(db, [organization_id])
    if not found:
        raise not_found("Organization", "organizationId")
    organization = found[0]
    # from here on the request is this organization's business: its log records it
    g.principal = caller.principal(organization_id)
    note_target("organization", organization_id, organization.get("name"))
    # stored as the audit log stores text: a secret pasted into a reason is masked
    clean = redactor()
    reason = clean.text(checked_justification(justification))
    reference = checked_ticket(ticket)
    reference = clean.text(reference) if reference is not None else None
    note_details("staffGrant", {"justification": reason, "ticket": reference})
    setting = staff_access(organization)
    if setting == "none":
        log_staff_action(
            caller, "staff.grantRequested", organizationId=organization_id, refused="none"
        )
        raise ApiError(
            403,
            "staff_access_refused",
            "This organization does not let platform staff read its log (staffAccess: none).",
            "organizationId",
        )
    now = utcnow()
    state = ACTIVE if setting == "open" else PENDING
    lifetime = grant_lifetime() if state == ACTIVE else timedelta(hours=PENDING_HOURS)
    grant = {
        "_id": ObjectId(),
        "staffId": caller.staff_id,
        "staffEmail": caller.email,
        "organizationId": organization_id,
        "justification": reason,
        "ticket": reference,
        "state": state,
        "createdAt": now,
        "expiresAt": now + lifetime,
        "requestId": g.get("request_id"),
    }
    staff_db.insert_grant(db, grant)
    note_target("staffGrant", grant["_id"], caller.email)
    note_details("staffGrant", _grant_details(grant))
    log_staff_action(
        caller,
        "staff.grantRequested",
        organizationId=organization_id,
        grantId=grant["_id"],
        state=state,
    )
    return grant


def grant_lifetime() -> timedelta:
    return timedelta(minutes=current_app.config["STAFF_GRANT_MINUTES"])


def _grant_details(grant: Document) -> dict[str, Any]:
    """What an organization's record says of a grant (``request.staffGrant``)."""
    return {
        "grantId": str(grant["_id"]),
        "staffEmail": grant["staffEmail"],
        "justification": grant["justification"],
        "ticket": grant.get("ticket"),
        "state": grant["state"],
        "expiresAt": iso(grant["expiresAt"]),
    }


def list_grants(caller: StaffCaller, limit: int = 50) -> list[Document]:
    """The staff member's own grants, newest first, each with its state as of now."""
    grants, _ = staff_db.list_grants_of_staff(get_db(), caller.staff_id, limit)
    return [shown_grant(grant) for grant in grants]


def shown_grant(grant: Document) -> Document:
    """A grant as it stands now: an active or pending one past its time has expired."""
    state = grant["state"]
    if state in (ACTIVE, PENDING) and grant["expiresAt"] <= utcnow():
        state = "expired"
    return {**grant, "state": state}


def allowed_now(setting: str, grant: Document) -> bool:
    """Whether the organization's current ``staffAccess`` lets this active grant read:
    ``none`` lets nothing read (whenever the grant was made); ``approval`` only grants an
    Owner or Admin approved, not those made active at once under ``open``."""
    if setting == "none":
        return False
    if setting == "approval":
        return grant.get("decidedBy") is not None
    return True


def live_grant(caller: StaffCaller, organization_id: ObjectId) -> Document:
    """The live grant that lets this staff member read this organization's log now, read
    from the store on every request (never a cache), under the organization's staff access
    as it is now (``allowed_now``); else 403 saying what to do. On success the request
    becomes the organization's business: recorded in its log as ``staff.access``, with
    the grant's justification and ticket."""
    db = get_db()
    grant = staff_db.find_live_grant(db, caller.staff_id, organization_id, utcnow())
    found = staff_db.find_organizations(db, [organization_id])
    setting = staff_access(found[0]) if found else "none"
    if grant is not None and not allowed_now(setting, grant):
        raise ApiError(
            403,
            "staff_access_refused",
            f"This organization's staffAccess is now {setting}: "
            + (
                "platform staff do not read its log."
                if setting == "none"
                else "only grants an Owner or Admin approved read its log; request one."
            ),
            "organizationId",
        )
    if grant is None:
        raise ApiError(
            403,
            "staff_grant_required",
            "No active grant for this organization: request one with a justification "
            "(POST /api/v1/staff/grants); a pending one waits for the organization's approval.",
            "organizationId",
        )
    g.principal = caller.principal(organization_id, reading=True)
    g.staff_grant = grant
    note_target("staffGrant", grant["_id"], caller.email)
    note_details("staffGrant", _grant_details(grant))
    return grant


def enter_grant(caller: StaffCaller, organization_id: ObjectId, what: str) -> Document:
    """The live grant a staff request reads under (API and pages alike); a refusal is kept
    in the staff log, an access noted for the organization's own log."""
    try:
        grant = live_grant(caller, organization_id)
    except ApiError:
        log_staff_action(caller, "staff.accessRefused", organizationId=organization_id, what=what)
        raise
    note_access(caller, grant, what)
    return grant


def note_access(caller: StaffCaller, grant: Document, what: str, **detail: Any) -> None:
    """A read under a grant, in the installation's staff log (the organization's own log
    records the request itself)."""
    log_staff_action(
        caller,
        "staff.access",
        organizationId=grant["organizationId"],
        grantId=grant["_id"],
        what=what,
        path=request.path,
        **detail,
    )


# Decisions (the organization's Owners and Admins) ---------------------------------------

DECIDERS = ("owner", "admin")


def pending_requests(principal: Principal, limit: int = 50) -> list[Document]:
    grants, _ = staff_db.list_grants_of_organization(get_db(), principal.org, PENDING, limit)
    now = utcnow()
    return [grant for grant in grants if grant["expiresAt"] > now]


def may_decide(principal: Principal) -> bool:
    """An Owner or an Admin in person (an API key never decides for the organization)."""
    return (
        principal.is_authenticated
        and principal.auth_type in ("session", "jwt")
        and principal.role_key in DECIDERS
    )


def decide(principal: Principal, grant_id: ObjectId, approve: bool) -> Document:
    """Approve or deny a pending request of platform staff to read the organization's log.
    Only an Owner or Admin of that organization, in person, and never the staff member
    who asked; a decided or expired request is a 409."""
    action = "staff.grantApproved" if approve else "staff.grantDenied"
    note_action(action)
    if not may_decide(principal):
        raise ApiError(
            403,
            "forbidden",
            "Only an Owner or an Admin of the organization approves or denies platform "
            "staff's requests (an API key never does).",
        )
    db = get_db()
    grant = staff_db.find_grant(db, grant_id)
    if grant is None or grant["organizationId"] != principal.org:
        raise not_found("Staff request", "grantId")
    note_target("staffGrant", grant["_id"], grant["staffEmail"])
    note_details("staffGrant", _grant_details(grant))
    if (principal.account_email or "").lower() == grant["staffEmail"].lower():
        raise ApiError(
            403, "forbidden", "A staff member cannot approve or deny their own request.", "grantId"
        )
    if approve:
        found = staff_db.find_organizations(db, [principal.org])
        if not found or staff_access(found[0]) == "none":
            raise ApiError(
                409,
                "conflict",
                "This organization's staffAccess is none: no request is approved while it "
                "is; change staffAccess first (or deny the request).",
                "staffAccess",
            )
    now = utcnow()
    changes: dict[str, Any] = {
        "state": ACTIVE if approve else DENIED,
        "decidedBy": {"accountId": principal.account_id, "email": principal.account_email},
    }
    if approve:
        changes["expiresAt"] = now + grant_lifetime()
    decided = staff_db.decide_grant(db, grant_id, principal.org, now, changes)
    if decided is None:
        current = shown_grant(grant)
        raise ApiError(
            409,
            "conflict",
            f"This request is {current['state']}: only a pending request can be decided.",
            "grantId",
        )
    note_details("staffGrant", _grant_details(decided))
    log_staff_action(
        {"_id": grant["staffId"], "email": grant["staffEmail"]},
        action,
        organizationId=principal.org,
        grantId=grant_id,
        decidedBy=principal.account_email,
    )
    return decided


def active_grants(principal: Principal, limit: int = 50) -> list[Document]:
    """The organization's grants that are active now, newest first (what Revoke ends)."""
    grants, _ = staff_db.list_grants_of_organization(get_db(), principal.org, ACTIVE, limit)
    now = utcnow()
    return [grant for grant in grants if grant["expiresAt"] > now]


def find_grant_of(principal: Principal, grant_id: ObjectId) -> Document:
    """A grant of the principal's organization (another's is a 404)."""
    grant = staff_db.find_grant(get_db(), grant_id)
    if grant is None or grant["organizationId"] != principal.org:
        raise not_found("Staff request", "grantId")
    return grant


def revoke(principal: Principal, grant_id: ObjectId) -> Document:
    """End an active grant of platform staff at once (the next read under it is refused).
    Only an Owner or Admin of that organization, in person, as for approving; a grant that
    is not active (pending, decided, expired, revoked) is a 409."""
    note_action("staff.grantRevoked")
    if not may_decide(principal):
        raise ApiError(
            403,
            "forbidden",
            "Only an Owner or an Admin of the organization revokes platform staff's access "
            "(an API key never does).",
        )
    db = get_db()
    grant = find_grant_of(principal, grant_id)
    note_target("staffGrant", grant["_id"], grant["staffEmail"])
    note_details("staffGrant", _grant_details(grant))
    now = utcnow()
    revoked = staff_db.revoke_grant(
        db,
        grant_id,
        principal.org,
        now,
        {"revokedBy": {"accountId": principal.account_id, "email": principal.account_email}},
    )
    if revoked is None:
        current = shown_grant(grant)
        raise ApiError(
            409,
            "conflict",
            f"This grant is {current['state']}: only an active grant can be revoked "
            "(a pending request is denied).",
            "grantId",
        )
    note_details("staffGrant", _grant_details(revoked))
    log_staff_action(
        {"_id": grant["staffId"], "email": grant["staffEmail"]},
        "staff.grantRevoked",
        organizationId=principal.org,
        grantId=grant_id,
        revokedBy=principal.account_email,
    )
    return revoked


# The installation's staff log -----------------------------------------------------------


def log_staff_action(who: StaffCaller | Document, action: str, **detail: Any) -> None:
    """One entry of the staff log: who, what, when, from where, and the details."""
    if isinstance(who, StaffCaller):
        staff_id, email = who.staff_id, who.email
    else:
        staff_id, email = who["_id"], who["email"]
    has_request = bool(request) if _in_request() else False
    staff_db.insert_log_entry(
        get_db(),
        {
            "_id": ObjectId(),
            "staffId": staff_id,
            "staffEmail": email,
            "action": action,
            "createdAt": utcnow(),
            "requestId": g.get("request_id") if has_request else None,
            "ip": canonical_ip(request.remote_addr) if has_request else None,
            "details": {k: v for k, v in detail.items() if v is not None},
        },
    )


def _in_request() -> bool:
    from flask import has_request_context

    return has_request_context()


def staff_log(limit: int, email: str | None = None) -> tuple[list[Document], bool]:
    return staff_db.list_log(get_db(), limit, email.strip().lower() if email else None)


def organization_name(organization_id: ObjectId) -> Document:
    """The id and name of the organization a grant names (a page's heading)."""
    found = staff_db.find_organizations(get_db(), [organization_id])
    return found[0] if found else {"_id": organization_id, "name": str(organization_id)}
