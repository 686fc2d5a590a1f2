"""The operator's web console: its login, sessions and CSRF protection (``auth``)."""
