"""Policy: waves, failure budgets, gates and cancellation. No transport details here."""
