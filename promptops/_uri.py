"""URIs as promptops writes or shows them: without credentials (issue 11).

A tracking URI or capture URL may carry a password (`http://alice:pw@host`, `postgresql://svc:pw@db/app`), a
token as its user name (`https://TOKEN@host`) or in its query (`?access_token=...`). Every URI written to a
file (the prompt cache), shown in a `repr`, a log line, an error message or a report goes through
`redact_uri` first.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

__all__ = ["HIDDEN", "redact_uri"]

HIDDEN: Final = "***"
"""What a password, a bare user name or a secret query value becomes."""
_SECRET_PARAMETERS = frozenset({"sig", "signature", "key", "code"})  # signed URLs, OAuth codes


def redact_uri(uri: str) -> str:
    """`uri` with its credentials hidden, for files, messages and logs. Never raises.

    The password of the userinfo becomes `***` (`http://alice:***@host`); a user name given alone, which is
    how tokens are usually passed (`https://<token>@host`), becomes `***` too; so does the value of a query
    parameter whose name is a sensitive key (`token`, `api_key`, `password`, `sig`, ...). A URI that does not
    parse is hidden whole if it holds an `@`.

    Args:
        uri: Any URI or SQLAlchemy URL.

    Returns:
        The URI, unchanged when it has no credentials.
    """
    if "@" not in uri and "?" not in uri:
        return uri  # the common case: nothing to hide
    from ._redact import Redactor  # lazily: `import promptops` stays light

    try:
        parts = urlsplit(uri)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, host = netloc.rpartition("@")
            user, colon, _password = userinfo.partition(":")
            netloc = f"{user}:{HIDDEN}@{host}" if colon and user else f"{HIDDEN}@{host}"
        query = parts.query
        if query:
            keys = Redactor()
            pairs = parse_qsl(query, keep_blank_values=True)
            hidden = [keys.sensitive_key(name) or name.lower() in _SECRET_PARAMETERS for name, _ in pairs]
            if any(hidden):
                query = "&".join(
                    f"{quote(name, safe='')}={HIDDEN if hide else quote(value, safe='')}"
                    for (name, value), hide in zip(pairs, hidden)
                )
        if netloc == parts.netloc and query == parts.query:
            return uri
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    except ValueError:
        return HIDDEN if "@" in uri else uri
