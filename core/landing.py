"""Who gets the landing page instead of the file when opening a public link.

A person clicking a link in chat or mail (a browser asks for HTML first) and the link-preview
bots of chat apps and mail scanners must not use up a single-use link; curl, wget and scripts
(no text/html in Accept) get the file at once, as before.
"""

from __future__ import annotations

import re

from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

# Link unfurlers and mail link scanners: they fetch whatever they see, sometimes several times.
PREVIEW_BOTS = re.compile(
    r"slackbot|slack-imgproxy|twitterbot|facebookexternalhit|facebookcatalog|meta-externalagent|discordbot"
    r"|telegrambot|whatsapp|linkedinbot|skypeuripreview|googlebot|google-pagerenderer|googleother|bingbot"
    r"|bingpreview|applebot|microsoft office|ms-office|msoffice|microsoftpreview|microsoft preview"
    r"|mattermost|rocket\.chat|iframely|embedly|redditbot|pinterest|vkshare|viber|kakaotalk-scrap"
    r"|yandexbot|duckduckbot|mastodon|bitlybot|skypeuri|proofpoint|mimecast|barracuda|safelinks",
    re.IGNORECASE,
)
HTML_TYPES = ("text/html", "application/xhtml+xml")
ANY_TYPES = ("*/*", "application/*", "application/octet-stream")


def is_preview_bot(user_agent: str | None) -> bool:
    return bool(user_agent and PREVIEW_BOTS.search(user_agent))


def prefers_html(accept: str | None) -> bool:
    """A browser: text/html named explicitly, at least as welcome as anything else."""
    parsed = parse_accept_header(accept or "", MIMEAccept)
    html = max((quality for value, quality in parsed if value in HTML_TYPES), default=0)
    anything = max((quality for value, quality in parsed if value in ANY_TYPES), default=0)
    return html > 0 and html >= anything


def wants_landing_page(accept: str | None, user_agent: str | None, download_pressed: bool) -> bool:
    """Bots always; browsers until someone presses Download (a form POST, `download_pressed`)."""
    return is_preview_bot(user_agent) or (not download_pressed and prefers_html(accept))
