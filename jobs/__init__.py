"""Scheduled jobs that run reconcile unattended."""
