"""The platform's support staff: installation accounts that read a customer's log only
under a grant with a stated reason, every access written into the customer's own log."""
