"""Generated gRPC code for KEDA's external scaler interface (`externalscaler.proto`).

Regenerate with `make proto` after changing the .proto; never edit the generated modules.
"""
