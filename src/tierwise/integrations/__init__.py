"""tierwise inside the frameworks users already run: every model call of an OpenAI Agents SDK or pydantic-ai
agent goes through the one path (routed, budgeted, metered, in the ledger).

Each framework sits behind its own extra and is imported only by its module:
``tierwise.integrations.agents`` (``pip install 'tierwise[agents]'``) and
``tierwise.integrations.pydantic_ai`` (``pip install 'tierwise[pydantic-ai]'``).
"""
