"""The Stripe side: the SDK client, the extractor of expected entries, and a fake Stripe server."""
