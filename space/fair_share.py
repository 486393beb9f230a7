"""How much of a shared resource (the generation slots) each visitor and each network address hold at once, so that
one script posing as many visitors cannot take every slot: beyond its share a request is refused at once (it does
not wait), and the slots it would have taken stay free for the others."""

import threading
from collections import Counter


class OverShare(Exception):
    """`kind` ("visitor" or "client") already holds its share; `limit` is that share."""

    def __init__(self, kind: str, limit: int):
        super().__init__(kind)
        self.kind, self.limit = kind, limit


class FairShare:
    def __init__(self, per_visitor: int, per_client: int):
        self.per_visitor, self.per_client = per_visitor, per_client
        self._lock = threading.Lock()
        self._held: Counter = Counter()

    def take(self, visitor: str, client: str) -> None:
        """One unit for `visitor` from `client`; OverShare (nothing taken) beyond a share. give_back() after."""
        keys = (("visitor", visitor), ("client", client))
        with self._lock:
            for key, limit in zip(keys, (self.per_visitor, self.per_client)):
                if self._held[key] >= limit:
                    raise OverShare(key[0], limit)
            self._held.update(keys)

    def give_back(self, visitor: str, client: str) -> None:
        keys = (("visitor", visitor), ("client", client))
        with self._lock:
            self._held.subtract(keys)
            for key in keys:
                if self._held[key] <= 0:
                    del self._held[key]
