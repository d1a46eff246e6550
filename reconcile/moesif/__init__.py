"""The Moesif side: the Management API client, its fake, and billing-report row normalising."""
