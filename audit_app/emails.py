"""The one email rule of the product, used by the API, the web forms and the CLI.

An address is accepted when it is syntactically valid (email-validator's rules for the
part before the @, an internationalized domain name after it). Special-use and internal
domains are real in companies (``corp.local``, ``acme.test``, ``localhost``), so unlike
email-validator's default they are accepted: the domain is checked under a neutral suffix
so that only its syntax counts. Nothing is looked up in DNS.
"""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

MAX_LENGTH = 320
_SUFFIX = ".email-syntax.example"
RULE = "an email address such as name@company.com (internal domains such as corp.local are fine)"


class InvalidEmail(ValueError):
    """The text is not an email address; the message says why and what is accepted."""


def clean_email(text: object) -> str:
    """Return the address as it will be stored (trimmed, domain lower-cased), or raise."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidEmail(f"An email address is required: {RULE}.")
    address = text.strip()
    if len(address) > MAX_LENGTH:
        raise InvalidEmail(f"An email address has at most {MAX_LENGTH} characters.")
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or domain.startswith("["):
        raise InvalidEmail(f"Not an email address; expected {RULE}.")
    try:
        checked = validate_email(
            f"{local}@{domain.rstrip('.')}{_SUFFIX}",
            check_deliverability=False,
            allow_smtputf8=True,
        )
    except EmailNotValidError as error:
        reason = str(error).replace(_SUFFIX, "")
        raise InvalidEmail(f"Not an email address ({reason}); expected {RULE}.") from None
    normalized_domain = checked.domain[: -len(_SUFFIX)]
    return f"{checked.local_part}@{normalized_domain}"


def email_key(address: str) -> str:
    """The form accounts are looked up by: one account per address, whatever its case."""
    return address.strip().lower()
