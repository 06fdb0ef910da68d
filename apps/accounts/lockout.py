"""What a sign-in that django-axes has locked out sees (settings.AXES_LOCKOUT_CALLABLE).

The sign-in page again, with the reason and how long to wait, answered 429; the admin's sign-in gets the
same page. Lockouts are per username *and* client address, so someone guessing one account from one
place cannot lock its owner out everywhere else.
"""
from __future__ import annotations

from axes.helpers import get_client_username, get_cool_off
from django.contrib.auth.forms import AuthenticationForm
from django.shortcuts import render
from rest_framework.throttling import BaseThrottle


def _minutes(delta) -> str:
    minutes = max(1, round(delta.total_seconds() / 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def lockout_response(request, original_response=None, credentials=None):
    cool_off = get_cool_off(request)
    wait = f"Try again in {_minutes(cool_off)}" if cool_off else "Ask an admin to unlock it"
    message = f"Too many failed sign-ins for this account from your address. {wait}."
    username = get_client_username(request, credentials) or ""
    form = AuthenticationForm(request, initial={"username": username})
    context = {"form": form, "lockout_message": message, "next": request.POST.get("next", "")}
    response = render(request, "registration/login.html", context, status=429)
    if cool_off:
        response["Retry-After"] = str(int(cool_off.total_seconds()))
    return response


def client_address(request) -> str | None:
    """The client's address as the API throttles see it (REST_FRAMEWORK["NUM_PROXIES"], LOOPLAB_NUM_PROXIES)."""
    return BaseThrottle().get_ident(request)
