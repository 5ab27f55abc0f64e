"""HTTP/2 towards the push providers, written for that traffic alone: the bridge's
client (:mod:`.client`) and the fake providers' server (:mod:`.server`), two roles on
one framing layer (:mod:`.frames`, :mod:`.hpack`, :mod:`.connection`).

Why not httpx or the ``h2`` state machine: provider traffic is small POSTs and small
answers by the million; measured here, httpx cost 1.5-2.5 ms of client CPU per
request and ``h2`` driven directly ~350 µs, this package ~60 µs (docs/design-notes.md
§7). No provider's header names live here: the APNs modules pass theirs
(``not_indexed``).
"""
