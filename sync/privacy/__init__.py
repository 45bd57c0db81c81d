"""Personal data as a data protection officer expects it (issue 15).

- :mod:`sync.store.privacy_models`: the access log (a hash chain per tenant), its chain
  heads, the retention runs.
- :mod:`sync.privacy.audit`: append to and verify the access log.
- :mod:`sync.privacy.subject`: everything held about one person (export, erase).
- :mod:`sync.privacy.retention`: purge or redact what the tenant's retention expired.
- :mod:`sync.privacy.crm_erase`: the erasure issued to the CRM (``privacy.erase_in_crm``).
"""
