"""Forms of the web shell (CSRF-protected by flask-wtf)."""

from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, PasswordField
from wtforms.validators import DataRequired, Email, Length


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Email(), Length(max=320)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])
    next = HiddenField()


class SwitchOrganizationForm(FlaskForm):
    organizationId = HiddenField(validators=[DataRequired(), Length(min=24, max=24)])
