"""HubSpot: ``client`` (deliveries through the SDK), ``reader`` (the contact
directory's incremental reads), ``webhooks`` (signature v3 of its webhook requests)."""
