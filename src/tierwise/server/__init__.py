"""The OpenAI-compatible router proxy (``tierwise serve``): routes, keys with budgets, the spend dashboard."""
