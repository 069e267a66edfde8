"""The store: the audit_logs collection (MongoDB) or table (embedded), the query, the counters."""
