"""The dashboard at `/ui`: static pages and vendored libraries, and the read session.

`static/` holds the pages (plain JS modules, no build step) and `static/vendor/` the
pinned libraries (VENDORED.md). `sessions.py` keeps the dashboard's logins,
`cookie.py` turns a session cookie into the admin token for reads, `routes.py`
serves the pages and the login/logout endpoints. docs/design/control-plane.md
("Dashboard") says who may read what.
"""
