"""Reading the sandbox's ServiceNow tables by DOCUMENTED LABEL, references followed to the referenced record's
field: what a person sees on a form. The end-state checks use it, so one check holds on the documented instance
and on the variant one, whatever the column names there."""

from __future__ import annotations

from typing import Any

from d365_snow_assets.sandbox.servicenow.state import SnowState

ERP = "D365FO"


class SnowView:
    def __init__(self, state: SnowState) -> None:
        self.state = state

    def rows(self, table: str) -> list[dict[str, str]]:
        self.state.drain_imports()
        return self.state.dump(table)

    def get(self, table: str, row: dict[str, str], *path: str) -> str:
        """The value at ``path`` (labels; each but the last a reference to follow) of ``row`` of ``table``."""
        current_table, current = table, row
        for i, label in enumerate(path):
            element = self.state.el(current_table, label)
            value = current.get(element, "")
            if i == len(path) - 1:
                return value
            target = self.state.tables[current_table].reference_of(element)
            if not value or target is None:
                return ""
            current = self.state.tables[target].rows.get(value, {})
            current_table = target
        return ""

    def ours(self, table: str, *erp_path: str) -> list[dict[str, str]]:
        """The rows of ``table`` whose ERP source (at ``erp_path``) is this connector's."""
        return [r for r in self.rows(table) if self.get(table, r, *erp_path) == ERP]

    def status(self, table: str, label: str, choice_label: str) -> str:
        return self.state.choice_value(table, label, choice_label)

    def outbound_status(self, row: dict[str, str]) -> str:
        """The outbound invoice's integration status as a logical name (new / in_progress / processed / error)."""
        value = self.get("sn_spend_intg_outbound_invoice", row, "Integration status")
        for logical, labels in (("new", ("New",)), ("in_progress", ("In progress", "In process")),
                                ("processed", ("Processed",)), ("error", ("Error", "Failed"))):
            for label in labels:
                try:
                    if self.status("sn_spend_intg_outbound_invoice", "Integration status", label) == value:
                        return logical
                except KeyError:
                    continue
        return value

    def outbound_invoices(self) -> list[dict[str, Any]]:
        """Every outbound invoice as a logical dict, with its lines (ordered by Number)."""
        header_t, line_t = "sn_spend_intg_outbound_invoice", "sn_spend_intg_outbound_invoice_line"
        lines: dict[str, list[dict[str, str]]] = {}
        for li in self.rows(line_t):
            lines.setdefault(self.get(line_t, li, "Invoice"), []).append(li)
        out = []
        for h in self.rows(header_t):
            mine = sorted(lines.get(h["sys_id"], []), key=lambda r: (self.get(line_t, r, "Number"), r["sys_id"]))
            out.append({
                "sys_id": h["sys_id"], "number": self.get(header_t, h, "Number"),
                "status": self.outbound_status(h), "erp_number": self.get(header_t, h, "ERP number"),
                "message": self.get(header_t, h, "Processing message"),
                "legal_entity": self.get(header_t, h, "Legal entity", "ERP company code"),
                "supplier": self.get(header_t, h, "Supplier", "ERP company code"),
                "supplier_invoice_number": self.get(header_t, h, "Supplier invoice number"),
                "amount_invoiced": self.get(header_t, h, "Amount invoiced"),
                "lines": [self.get(line_t, li, "Line amount invoiced") for li in mine],
            })
        return out
