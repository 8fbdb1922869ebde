"""The adapters: the ports on MDE over HTTP, Azure Storage queues and the ledger table."""
