"""tierwise: route each unit of LLM work to the right model tier."""
