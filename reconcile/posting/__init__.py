"""The exactly-once posting engine: what any caller uses to send a credit or debit to Moesif."""
