"""One adapter per API the gateway gives memory to: chat completions, OpenAI Responses, Anthropic Messages."""
