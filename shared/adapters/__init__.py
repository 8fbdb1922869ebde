"""The adapters: the ports on MDE over HTTP, Azure Storage queues, the ledger table, and the ticket
systems (Jira, ServiceNow) releases are verified against."""
