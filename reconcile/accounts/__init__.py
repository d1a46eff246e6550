"""Many Stripe accounts (section 12): listed, then read in turn or spread over a queue."""
