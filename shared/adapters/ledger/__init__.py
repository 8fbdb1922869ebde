"""The containment ledger: shared state across function instances and the SOC's audit trail, one
Azure Table with one module per store."""
