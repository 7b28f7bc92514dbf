"""One budget for a whole Ray cluster: a bank (run as one Ray actor) that grants spend in reservation
batches. A worker asks for a grant once per block, spends it through its own local ``Budget`` (which
refuses before spending, as everywhere), and settles what it actually spent; so the actor is one round
trip per block, not per call, and grants outstanding at once can never together exceed the cap.
"""

from __future__ import annotations


class BudgetBank:
    """Plain class; ``ray.remote(BudgetBank)`` makes it the cluster's actor (and tests use it directly)."""

    def __init__(self, cap_usd: float | None, spent_usd: float = 0.0) -> None:
        self.cap = cap_usd
        self.spent = spent_usd  # settled spend (a resumed run starts from what it already paid)
        self.granted = 0.0  # outstanding grants
        self.refused = False

    def reserve(self, want_usd: float) -> float | None:
        """A grant of at most ``want_usd`` (None: no cap, spend freely); 0.0 once the cap is used up."""
        if self.cap is None:
            return None
        grant = max(0.0, min(want_usd, self.cap - self.spent - self.granted))
        self.granted += grant
        if grant <= 0:
            self.refused = True
        return grant

    def settle(self, grant_usd: float | None, spent_usd: float) -> None:
        if grant_usd is not None:
            self.granted = max(0.0, self.granted - grant_usd)
        self.spent += spent_usd

    def state(self) -> dict[str, float | bool | None]:
        return {"cap": self.cap, "spent": self.spent, "granted": self.granted, "refused": self.refused}
