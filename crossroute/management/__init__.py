"""The management API's parts: key check and bans (auth), config editing (config_edit), accounts
(accounts), OAuth logins driven from the panel (logins), and what it reads from the observers
(observed). The routes themselves are in crossroute/api/management.py."""
