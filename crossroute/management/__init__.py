"""The management API's parts: key check and bans (auth), config editing (config_edit), accounts
(accounts), OAuth logins driven from the panel (logins), and the handlers: config_routes,
data_routes (accounts, logins), view_routes (usage, traces, logs), tool_routes (reset-quota,
api-call). The routes are mounted by
crossroute/api/management.py."""
