"""Salesforce: ``client`` (deliveries through simple-salesforce), ``reader`` (the
contact directory's incremental reads)."""
