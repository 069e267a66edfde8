"""Forms of the web shell (CSRF-protected by flask-wtf)."""

from flask import abort
from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, PasswordField
from wtforms.validators import DataRequired, Email, Length


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Email(), Length(max=320)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])
    next = HiddenField()


class SwitchOrganizationForm(FlaskForm):
    organizationId = HiddenField(validators=[DataRequired(), Length(min=24, max=24)])


class ActionForm(FlaskForm):
    """A form that carries only its CSRF token; the page reads its fields from the request."""


def require_valid_form() -> None:
    """Refuse a POST whose CSRF token is missing or stale, with a message that says so."""
    if not ActionForm().validate_on_submit():
        abort(400, "The form expired or was not sent by this site; reload the page and retry.")
