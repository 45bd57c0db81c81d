"""Outlook / Microsoft 365 through Graph: ``client`` (busy times, events, changes
and subscriptions)."""
