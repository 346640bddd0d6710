"""Orders, the seller's side: pull (and export), accept or cancel paid lines, ship, invoice
and register serials, one module per step; ``files`` reads and walks their row files,
``records`` holds the order states and state rows, ``report`` the outcome of each row.

Every change is preceded by a fresh read of the order and recorded as it arrives; a
confirmed change is never sent again. Must not import the publish, market or cli packages.
"""
