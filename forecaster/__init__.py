"""The time-series forecasting model: numpy arrays of history in, quantile forecasts out.

The bottom layer. It may import torch and numpy; it must not import asyncio, aiohttp, the
Kubernetes client or anything of `adapter` and `apiservice` (import-linter enforces this).
The model, its training, inference and the model folder land here with issue 3.
"""
