"""TLS for `serve`: a certificate and its key, both or neither, checked before anything starts."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import NamedTuple

from ticketlog.config import ConfigError

# An encrypted private key's passphrase comes from the environment, never the command line
# (which any local user can read in the process list).
PASSWORD_VARIABLE = "TICKETLOG_SSL_KEYFILE_PASSWORD"  # noqa: S105 (a variable name)


class TlsFiles(NamedTuple):
    certfile: str | None
    keyfile: str | None
    password: str | None


def checked_tls(certfile: str | None, keyfile: str | None, password: str | None = None) -> TlsFiles:
    """The files for uvicorn (both None: plain HTTP); ConfigError, one line, when they cannot
    work, so `serve` stops with exit code 2 before opening anything."""
    if certfile is None and keyfile is None:
        return TlsFiles(None, None, None)
    if certfile is None or keyfile is None:
        raise ConfigError("--ssl-certfile and --ssl-keyfile go together: give both or neither")
    for flag, name in (("--ssl-certfile", certfile), ("--ssl-keyfile", keyfile)):
        path = Path(name)
        if not path.is_file():
            raise ConfigError(f"{flag}: no such file: {name}")
        try:
            path.open("rb").close()
        except OSError as e:
            raise ConfigError(f"{flag}: cannot read {name}: {e.strerror}") from None
    try:
        # Without a password, an encrypted key fails to load instead of prompting on a terminal.
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(
            certfile, keyfile, password=lambda: (password or "").encode()
        )
    except (ssl.SSLError, OSError):
        raise ConfigError(
            f"--ssl-certfile {certfile} and --ssl-keyfile {keyfile} do not load as a PEM "
            "certificate and its private key (an encrypted key needs its passphrase in "
            f"{PASSWORD_VARIABLE})"
        ) from None
    return TlsFiles(certfile, keyfile, password)
