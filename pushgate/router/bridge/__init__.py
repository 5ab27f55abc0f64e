"""The offline bridge: pushes through APNs and FCM for users no live session reached.

Pure modules: ``payload`` (validate the send's ``push`` block, map it to APNs and FCM
requests), ``policy`` (push or not, when, retry delays); the per-app rate uses the
shared token buckets of :mod:`pushgate.ratelimit`. I/O: ``base`` (the provider interface), ``apns`` and ``fcm`` (HTTP/2 clients),
``outbox`` (the router's sink: enqueue + ack recording), ``worker`` (claims due jobs,
sends, retries). See docs/offline-push.md.
"""
