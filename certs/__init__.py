"""TLS material for the adapter: issuing, writing, loading and serving certificates.

This package knows certificates, keys, files and ``ssl.SSLContext``; it knows nothing of
metrics, HTTP routes or Kubernetes objects (import-linter keeps it that way). The API surface
(`apiservice`) uses it to serve TLS, to reload rotated files, and to implement the
``predictive-metrics-adapter certs`` command.

Modules:
    errors      the package's exception tree
    issuing     CA, serving and client certificates (``cryptography``)
    files       PEM files written atomically with safe permissions, and read back
    serving     the listener's SSLContext, swapped whole on rotation
    kubeconfig  a kubeconfig for a minted client certificate (local use)
"""
