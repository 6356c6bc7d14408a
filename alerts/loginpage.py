"""The sign-in page: Swedish, no script, its style in login.css (the CSP allows no inline
script). Messages are fixed texts chosen by the server, never text taken from the URL."""

from __future__ import annotations

from html import escape

_PAGE = """<!doctype html>
<html lang="sv">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hemmon – logga in</title>
<link rel="stylesheet" href="/login.css">
</head>
<body>
<header><h1>hemmon – larmkorg för hemmonitorering</h1></header>
<main>
<section class="card" id="login">
<h2>Logga in</h2>
{message}{oidc}
<form method="post" action="/login/code" id="code-form">
<label for="code">Engångskod</label>
<input id="code" name="code" autocomplete="one-time-code" required maxlength="40"
 placeholder="ABCDE-12345">
<button type="submit" id="code-button">Logga in med kod</button>
<p class="muted">Koden skrivs ut av <code>hemmon demo</code> eller av systemförvaltaren
 (<code>hemmon token code</code>). Den gäller en gång, i tio minuter.</p>
</form>
</section>
</main>
</body>
</html>
"""

_OIDC = """<p><a class="button" id="oidc-login" href="/login/start">Logga in med
 e-tjänstekort (SITHS) via regionen</a></p>
<p class="muted">eller</p>
"""


def login_page(*, oidc: bool, message: str | None) -> str:
    shown = f'<p id="message" role="alert">{escape(message)}</p>\n' if message else ""
    return _PAGE.format(message=shown, oidc=_OIDC if oidc else "")
