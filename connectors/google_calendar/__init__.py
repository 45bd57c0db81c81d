"""Google Calendar: ``client`` (busy times, events, changes and watch channels)."""
