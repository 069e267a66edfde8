"""Forms of the web shell (CSRF-protected by flask-wtf)."""

from flask import abort, flash, request
from flask_wtf import FlaskForm as _FlaskForm
from wtforms import BooleanField, EmailField, HiddenField, PasswordField
from wtforms.validators import DataRequired, EqualTo, Length

from ..audit.capture.context import note_error
from ..errors import ApiError


class FlaskForm(_FlaskForm):
    """A web form reads only what a browser's form sends (form fields and files), never a
    JSON body: flask-wtf would build the form's data from any JSON (an array or a string is a
    TypeError, a list as a field's value an AttributeError), a 500 for input a client sends."""

    class Meta(_FlaskForm.Meta):
        def wrap_formdata(self, form, formdata):
            if request.is_json and request.method in ("POST", "PUT", "PATCH", "DELETE"):
                return request.form  # empty: the fields are missing, a 400 as for any form
            return super().wrap_formdata(form, formdata)


class LoginForm(FlaskForm):
    """Presence only: the one email rule (``emails``) is for making accounts, not logging in."""

    email = EmailField("Email", validators=[DataRequired(), Length(max=320)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])
    next = HiddenField()


class ChangePasswordForm(FlaskForm):
    currentPassword = PasswordField("Current password", validators=[DataRequired()])
    newPassword = PasswordField(
        "New password", validators=[DataRequired(), Length(min=8, max=1024)]
    )
    confirmPassword = PasswordField(
        "Repeat the new password",
        validators=[DataRequired(), EqualTo("newPassword", message="The two passwords differ.")],
    )
    revokeCreated = BooleanField(
        "Also revoke every API key and invitation I created (if a credential of mine may "
        "have been stolen)"
    )


class AcceptInvitationForm(FlaskForm):
    """Accepting an invitation; a new account also chooses its password here."""

    password = PasswordField("Choose a password", validators=[Length(max=1024)])
    confirmPassword = PasswordField(
        "Repeat the password",
        validators=[EqualTo("password", message="The two passwords differ.")],
    )


class SwitchOrganizationForm(FlaskForm):
    organizationId = HiddenField(validators=[DataRequired(), Length(min=24, max=24)])


class ActionForm(FlaskForm):
    """A form that carries only its CSRF token; the page reads its fields from the request."""


def require_valid_form() -> None:
    """Refuse a POST whose CSRF token is missing or stale, with a message that says so."""
    if not ActionForm().validate_on_submit():
        abort(400, "The form expired or was not sent by this site; reload the page and retry.")


def refused(error: ApiError) -> None:
    """A form's change was refused: tell the person (a flash on the page it returns to) and
    the audit record (its ``response`` carries the error, as an API call's would)."""
    note_error(error.code, error.message)
    flash(error.message, "error")
