"""Sessions end when they should: a copy of the session cookie taken before a sign-out, a new
password, or a change of role or access opens nothing afterwards, while a new sign-in works."""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD, Auth, csrf_token_from

NEW_PASSWORD = "a new password"


def copy_of_session(app, browser):
    """A second client holding a copy of `browser`'s session cookie, as a thief would."""
    thief = app.test_client()
    thief.set_cookie("session", browser.get_cookie("session").value)
    return thief


def signed_in(client) -> bool:
    """Whether the client's cookie still signs it in, or it is sent to sign in (401 on the API)."""
    page, api = client.get("/links"), client.get("/api/links")
    if page.status_code == 302:
        assert page.headers["Location"].startswith("/login") and api.status_code == 401
        return False
    assert (page.status_code, api.status_code) in ((200, 200), (403, 403))  # a viewer may not list links
    return True


def sign_in(app, name: str, password: str):
    """A new browser, signed in."""
    browser = app.test_client()
    token = csrf_token_from(browser.get("/login").get_data(as_text=True))
    response = browser.post("/login", data={"name": name, "password": password, "csrf_token": token})
    assert response.status_code == 303
    return browser


def admin_resets_password(victim_user, admin, runner):
    form = {"password": NEW_PASSWORD, "csrf_token": admin.csrf_token}
    assert admin.client.post(f"/admin/users/{victim_user.id}/password", data=form).status_code == 303
    return NEW_PASSWORD


def cli_sets_password(victim_user, admin, runner):
    result = runner.invoke(
        args=["users", "set-password", victim_user.name, "--password-stdin"], input=f"{NEW_PASSWORD}\n"
    )
    assert result.exit_code == 0 and "sessions have ended" in result.output, result.output
    return NEW_PASSWORD


def change_user(victim_user, admin, role: str, disabled: str):
    form = {"role": role, "disabled": disabled, "csrf_token": admin.csrf_token}
    assert admin.client.post(f"/admin/users/{victim_user.id}", data=form).status_code == 303


def admin_disables(victim_user, admin, runner):
    change_user(victim_user, admin, "operator", "1")
    change_user(victim_user, admin, "operator", "0")  # enabled again: old cookies stay dead
    return PASSWORD


def admin_demotes(victim_user, admin, runner):
    change_user(victim_user, admin, "viewer", "0")
    return PASSWORD


@pytest.mark.parametrize(
    "end", [admin_resets_password, cli_sets_password, admin_disables, admin_demotes], ids=lambda f: f.__name__
)
def test_a_copied_cookie_dies_with_the_change_and_a_new_sign_in_works(app, auth, runner, end):
    auth.login("admin", "boss")
    victim_user = Auth(app, app.test_client()).create("victim", "operator")
    victim = sign_in(app, "victim", PASSWORD)
    thief = copy_of_session(app, victim)
    assert signed_in(thief)
    password = end(victim_user, auth, runner)
    assert not signed_in(thief)
    assert not signed_in(victim)
    assert signed_in(sign_in(app, "victim", password))
    assert signed_in(auth.client)  # the admin who made the change stays signed in


def test_signing_out_ends_every_copy_of_the_session(app, auth):
    user = auth.login("operator", "ops")
    thief = copy_of_session(app, auth.client)
    other_device = sign_in(app, user.name, PASSWORD)
    assert signed_in(thief) and signed_in(other_device)
    assert auth.client.post("/logout", data={"csrf_token": auth.csrf_token}).status_code == 303
    assert not signed_in(thief)
    assert not signed_in(other_device)  # signing out signs out everywhere
    assert not signed_in(auth.client)
    assert signed_in(sign_in(app, user.name, PASSWORD))


def test_another_users_sign_out_or_an_unchanged_save_ends_nothing(app, auth):
    auth.login("admin", "boss")
    other = Auth(app, app.test_client())
    other_user = other.login("operator", "ops")
    bystander = sign_in(app, "boss", PASSWORD)
    change_user(other_user, auth, "operator", "0")  # the form saved as it was
    assert signed_in(other.client)
    assert other.client.post("/logout", data={"csrf_token": other.csrf_token}).status_code == 303
    assert signed_in(auth.client) and signed_in(bystander)


def test_an_admin_who_sets_their_own_password_stays_signed_in_here_only(app, auth):
    admin = auth.login("admin", "boss")
    thief = copy_of_session(app, auth.client)
    form = {"password": NEW_PASSWORD, "csrf_token": auth.csrf_token}
    assert auth.client.post(f"/admin/users/{admin.id}/password", data=form).status_code == 303
    assert signed_in(auth.client)
    assert not signed_in(thief)


def test_a_cookie_from_before_session_epochs_signs_in_again(app, auth):
    """Cookies issued before the upgrade hold only the user id: they open nothing any more."""
    user = auth.create("ops", "operator")
    client = app.test_client()
    with client.session_transaction() as session:
        session["_user_id"] = str(user.id)
        session["_fresh"] = True
    assert not signed_in(client)


def test_set_password_refusals(app, runner):
    unknown = runner.invoke(
        args=["users", "set-password", "nobody", "--password-stdin"], input="long enough\n"
    )
    assert unknown.exit_code != 0 and "No user named 'nobody'" in unknown.output
    runner.invoke(args=["users", "create", "ops", "--password-stdin"], input=f"{PASSWORD}\n")
    short = runner.invoke(args=["users", "set-password", "ops", "--password-stdin"], input="short\n")
    assert short.exit_code != 0 and "8 characters" in short.output
    assert signed_in(sign_in(app, "ops", PASSWORD))  # the refused change left the password alone
