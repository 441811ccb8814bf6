"""The invoice round trip (DESIGN §5.2): ServiceNow approved invoices → F&O pending invoices, posted status and
payments back, and the month-end reconciliation."""
