"""The administrator dashboard (Settings → API Keys) under ``/dashboard``: server-rendered pages (Jinja
templates and a little vendored JavaScript, shipped as package data) over the HTTP API's own command
handlers, queries and access rules. Sign-in with an ``admin:apikeys`` key opens a server-side session;
every request re-checks that key through the API's gate. May import domain, projections and
``services`` (never ``services.http.app``, which mounts it)."""
