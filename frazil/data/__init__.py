"""The BaaS data store: tables of JSON records under an ACL, end users and their tokens.

`DataService` (service.py) is the one entry point; the HTTP routes (frazil.api.tables,
frazil.api.auth) and the in-function SDK (always with the admin principal) both call it.
"""
