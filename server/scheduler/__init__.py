"""Rate-limit-aware scheduling: wait budgets, per-credential gates, and the transport that applies them."""
