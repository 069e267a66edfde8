"""Log streams: each organization's audit records delivered to its SIEM (docs/streams.md)."""
