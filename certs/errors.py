"""The exceptions of the `certs` package.

```
TLSError                    base: anything about TLS material
├── CertificateFileError    a PEM file is missing, unreadable or not what it should be
└── KeyMismatchError        a certificate and a private key do not belong together
```

At start-up any of them is fatal. During a reload the caller keeps the last good context and
logs the error: a half-written rotation must never take the listener down. Library errors
(``ssl.SSLError``, ``OSError``, ``ValueError`` from ``cryptography``) are chained as causes,
never exposed as such.
"""


class TLSError(Exception):
    """Something is wrong with TLS material."""


class CertificateFileError(TLSError):
    """A PEM file is missing, unreadable, or does not hold what it should."""


class KeyMismatchError(TLSError):
    """A certificate and a private key do not belong together."""
