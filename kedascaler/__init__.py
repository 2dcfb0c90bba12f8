"""KEDA's external scaler: the gRPC way in to the predictions, beside the APIService.

It reads the same `adapter.PredictionStore` the aggregated API serves and answers KEDA's
``externalscaler.ExternalScaler`` calls (`kedascaler.scaler`). It is the only package that
imports gRPC (the optional ``keda`` extra) and it never imports `apiservice`: the server in
`apiservice.server` starts it when ``--keda-grpc-port`` is set. The metrics-api way in is an
HTTPS endpoint of the main listener and lives in `apiservice.handlers`.
"""
