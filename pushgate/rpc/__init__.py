"""Generated gRPC stubs of ``proto/pushgate/rpc/pushgate.proto`` (``make proto``; do not edit).

Kept out of a top-level ``proto`` package: an installed library already owns that name.
"""
