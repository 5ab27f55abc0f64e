"""Local fake APNs and FCM servers speaking the real protocols (HTTP/2 + TLS, ES256
provider tokens / OAuth2 service-account tokens, the real error bodies), with failure
injection. Used by the tests and the benchmark; ``pushgate fake-apns`` and
``pushgate fake-fcm`` run them for trying the bridge without Apple or Google accounts.
"""
