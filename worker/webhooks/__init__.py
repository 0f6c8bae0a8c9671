"""Outgoing webhooks: event bodies, signing, the SSRF guard, one attempt, the engine and its log."""
