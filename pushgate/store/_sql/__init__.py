"""The parts :class:`~pushgate.store.sql.SqlEventStore` is made of, one mixin per concern.

Each mixin builds on :class:`.tx.SqlTransactions` (the store's state and its
transaction runners) and holds the methods of one concern: ``append`` (seq allocation
and the two append paths), ``reads`` (events and heads), ``read_state`` (read state
and read marks), ``cleanup`` (deleting expired events), ``devices``, ``leases``. The push
outbox (``pushgate/store/outbox.py``) is mixed in the same way.
"""
