"""Deterministic, vectorised data of a mid-sized manufacturer, generated straight into DuckDB.

Everything is a set-based ``INSERT … SELECT`` over ``range()`` with DuckDB's ``hash()`` seeded by
``SandboxDataSize.seed``, so a million PO lines take about a second and the same seed always gives the same rows.
Value shapes follow reference/d365.md: vendor accounts ``DAT-0000000043`` and PO numbers ``DAT-000050`` (OBS R2),
Date fields stored as DATE (served as ``T12:00:00Z``), empty dates as 1900-01-01.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from ..config import SandboxDataSize
from .schema import ENTITY_SETS, NULL_DATE, NULL_DATETIME, EntitySet

RECID_BASE = 5637144576  # real F&O RecIds start here (the observed ControlNumber has the same shape)
SHARED_PARTY_BASE = 800_000_000  # party keys of vendor parties that hold an account in several companies
CHART_OF_ACCOUNTS = "General Chart"  # [OBS R2 real MainAccounts row]

# Per-company facts (the accounting currency also lands on Ledgers, reference §3.8).
_KNOWN_COMPANIES = {
    "usmf": ("Contoso Manufacturing USA", "USA", "US", "USD", "GMTMINUS0500EASTERNTIME", "en-us", "Chicago"),
    "demf": ("Contoso Fertigung Deutschland GmbH", "DEU", "DE", "EUR", "GMTPLUS0100AMSTERDAM_BERLIN_BERN_ROME",
             "de", "München"),
    "gbsi": ("Contoso Manufacturing UK Ltd", "GBR", "GB", "GBP", "GMT_DUBLIN_EDINBURGH_LISBON_LONDON", "en-gb",
             "Manchester"),
}


@dataclass(frozen=True)
class Company:
    id: str
    name: str
    country: str
    iso: str
    currency: str
    timezone: str
    language: str
    city: str


def companies(size: SandboxDataSize) -> list[Company]:
    out = []
    for le in size.legal_entities:
        # Inference: an unknown company code gets US defaults; only the code matters to the connector.
        name, country, iso, cur, tz, lang, city = _KNOWN_COMPANIES.get(
            le.lower(), (f"Contoso {le.upper()}", "USA", "US", "USD", "GMTMINUS0500EASTERNTIME", "en-us", "Dallas"))
        out.append(Company(le.lower(), name, country, iso, cur, tz, lang, city))
    return out


def _default(kind: str, enum: str | None) -> str:
    from .schema import ENUMS

    return {"s": "''", "d": "0", "i": "0", "l": "0", "D": f"DATE '{NULL_DATE}'",
            "T": f"TIMESTAMP '{NULL_DATETIME}'", "e": f"'{ENUMS[enum][0]}'" if enum else "''"}[kind]


def create_tables(conn: duckdb.DuckDBPyConnection) -> None:
    """One table per entity set; unset columns take F&O-like defaults ('' / 0 / null date / first enum member)."""
    for es in ENTITY_SETS.values():
        conn.execute(f'DROP TABLE IF EXISTS "{es.name}"')
        cols = ", ".join(f'"{p.name}" {p.sql_type} NOT NULL DEFAULT {_default(p.kind, p.enum)}' for p in es.props)
        # No PRIMARY KEY: DuckDB's ART index makes bulk inserts ~20x slower; writes.py checks keys itself.
        conn.execute(f'CREATE TABLE "{es.name}" ({cols})')


def _list(values: list[str]) -> str:
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def _pick(values: list[str], h: str) -> str:
    return f"list_element({_list(values)}, ({h} % {len(values)})::BIGINT + 1)"


_ADJ = ["Northern", "Pacific", "Atlas", "Summit", "Precision", "Global", "Allied", "Pioneer", "Keystone", "Apex",
        "Harbor", "Granite", "Liberty", "Midwest", "Coastal", "Evergreen", "Silverline", "Ironwood"]
_NOUN = ["Steel", "Components", "Fasteners", "Plastics", "Logistics", "Electronics", "Machining", "Castings",
         "Packaging", "Hydraulics", "Chemicals", "Tooling", "Bearings", "Textiles", "Supply"]
_SUFFIX = ["Inc.", "LLC", "Corp.", "Ltd", "GmbH", "Co.", "Group", "& Sons"]
_SPECIAL = {  # names that break naive escaping: quotes, carets, commas, non-ASCII
    3: ["O'Brien & Sons Metalworks", "D'Angelo Precision Parts", "Rock 'n' Roll Freight"],
    5: ["Alpha^Beta Supply", "Caret^^Corp Components", "X^Y Industrial"],
    7: ["Smith, Jones and Co.", "Parts, Tools & More Ltd", "Brown, Green, and Gray LLC"],
    11: ["Müller Präzisionsteile GmbH", "Société Générale d'Équipement", "株式会社 東京部品", "Łódź Metal Sp. z o.o.",
         "Ångström Optics AB"],
}
_FIRST = ["Maria", "James", "Aisha", "Chen", "Olga", "Pedro", "Sean", "Zoë", "Jürgen", "Priya"]
_LAST = ["Garcia", "O'Connor", "Nakamura", "Schmidt", "Okafor", "Lefèvre", "Novak", "Smith", "Brandt", "Kowalski"]
_CITIES = ["Springfield", "Riverside", "Fairview", "Franklin", "Greenville", "Bristol", "Clinton", "Madison"]
_STREETS = ["Main St", "Oak Ave", "Industrial Pkwy", "Harbor Rd", "Mill Ln", "Commerce Dr"]
_CC_NAMES = ["Finance", "Production", "Maintenance", "Quality", "Logistics", "R&D", "Sales", "IT", "Buyer's Office",
             "Facilities", "HR", "Procurement", "Assembly", "Paint Shop", "Warehouse"]
_CATEGORIES = ["Structural Steel", "Fasteners", "Office Supplies", "Electronic Components", "Packaging Materials",
               "Maintenance Services", "Lubricants", "Safety Equipment", "IT Hardware", "Freight"]
_UNITS = ["ea", "pcs", "kg", "m", "box", "h"]
_EXPENSE_NAMES = ["Office supplies", "Raw materials", "Purchased services", "Freight in", "Repairs", "Utilities",
                  "Consumables", "Tools", "Software licences", "Travel", "Subcontracting", "Packaging"]


def generate(conn: duckdb.DuckDBPyConnection, size: SandboxDataSize) -> list[Company]:
    """Fill every entity table from ``size``; returns the companies (with their accounting currencies)."""
    create_tables(conn)
    comps = companies(size)
    nle = len(comps)
    seed = int(size.seed)
    conn.execute(f"CREATE OR REPLACE MACRO h(i, salt) AS hash({seed}, i, salt)")
    conn.execute("CREATE OR REPLACE TEMP TABLE le_info (idx BIGINT, le VARCHAR, cur VARCHAR, country VARCHAR, "
                 "iso VARCHAR, city VARCHAR)")
    conn.executemany("INSERT INTO le_info VALUES (?, ?, ?, ?, ?, ?)",
                     [[i, c.id, c.currency, c.country, c.iso, c.city] for i, c in enumerate(comps)])

    # -- legal entities and AP parameters ---------------------------------------------------------------------
    # Structured address fields as in a recorded real LegalEntities row (NangoHQ integration-templates test data).
    conn.executemany('INSERT INTO LegalEntities BY NAME SELECT ? AS LegalEntityId, ? AS "Name", ? AS NameAlias, '
                     '? AS PartyNumber, ? AS AddressCountryRegionId, ? AS AddressCountryRegionISOCode, '
                     '? AS AddressStreet, ? AS AddressCity, ? AS AddressZipCode, '
                     '? AS FullPrimaryAddress, ? AS LanguageId, ? AS TimeZone, ? AS VATNum',
                     [[c.id, c.name, c.id.upper(), f"{i + 1:09d}", c.country, c.iso, "1 Factory Road", c.city,
                       f"{10000 + i * 1111}", f"1 Factory Road\n{c.city}\n{c.country}", c.language, c.timezone,
                       f"{c.iso}{100000 + i}"]
                      for i, c in enumerate(comps)])
    # Group reporting in USD: the reporting currency of every ledger (a common setup; the field is observed in
    # F&O's metadata, the value is a choice of this data set).
    conn.executemany('INSERT INTO Ledgers BY NAME SELECT ? AS LegalEntityId, ? AS "Name", ? AS ChartOfAccounts, '
                     '? AS AccountingCurrency, ? AS ReportingCurrency',
                     [[c.id, c.id.upper(), CHART_OF_ACCOUNTS, c.currency, "USD"] for c in comps])
    conn.executemany("INSERT INTO VendorParameters BY NAME SELECT ? AS dataAreaId, 'NoDuplicate' AS "
                     "IsCheckInvoiceNumberUsed, 'Yes' AS CheckTheTaxInvoiceNumberUsed, 'Yes' AS "
                     "EnableInvoiceMatchingValidation, 'Warning' AS PostInvoiceMatchDiscrepancies",
                     [[c.id] for c in comps])

    # -- vendors ----------------------------------------------------------------------------------------------
    # Row k is the m-th vendor account of company k % nle. Some accounts are one party's in several companies
    # (F&O keeps vendor accounts per company; the same party is often set up with the same number in each): shared
    # by every company when m % 10 is 1, 4 or 7, by the first two when m % 10 = 2. A few numbers name DIFFERENT
    # parties in the first two companies (m % 50 = 5). Party attributes (names, address) follow the party key pk;
    # account attributes (currency, terms, holds) stay per company.
    shared = "(m % 10 IN (1, 4, 7) OR (m % 10 = 2 AND l.idx < 2))"
    conflict = "(m % 50 = 5 AND l.idx < 2)"
    special = " ".join(f"WHEN pk % {m} = {m // 2} THEN {_pick(v, f'h(pk, {m})')}" for m, v in
                       {17: _SPECIAL[3], 19: _SPECIAL[5], 13: _SPECIAL[7], 23: _SPECIAL[11]}.items())
    org_name = (f"CASE {special} ELSE {_pick(_ADJ, 'h(pk, 1)')} || ' ' || {_pick(_NOUN, 'h(pk, 2)')} || ' ' || "
                f"{_pick(_SUFFIX, 'h(pk, 3)')} END")
    conn.execute(f"""
        INSERT INTO VendorsV2 BY NAME
        WITH a AS (
          SELECT k, k // {nle} + 1 AS m, l.idx, l.le, l.cur FROM range({int(size.vendors)}) r(k)
          JOIN le_info l ON l.idx = k % {nle}),
        b AS (
          SELECT k, m, idx, le, cur, {shared} AS shared,
                 CASE WHEN {shared} OR {conflict} THEN 'V-' || lpad(m::VARCHAR, 6, '0')
                      ELSE upper(le) || '-' || lpad(m::VARCHAR, 10, '0') END AS acct,
                 CASE WHEN {shared} THEN {SHARED_PARTY_BASE} + m ELSE k END AS pk
          FROM a l),
        v AS (
          SELECT k, b.le, b.cur, home.country, home.iso, acct, pk, (pk % 10 = 9) AS person, {org_name} AS org,
                 {_pick(_FIRST, 'h(pk, 4)')} AS fn, {_pick(_LAST, 'h(pk, 5)')} AS ln,
                 {_pick(_CITIES, 'h(pk, 6)')} AS city,
                 ((h(pk, 7) % 9000) + 100)::VARCHAR || ' ' || {_pick(_STREETS, 'h(pk, 8)')} AS street,
                 lpad((h(pk, 9) % 90000 + 10000)::VARCHAR, 5, '0') AS zip
          FROM b JOIN le_info home ON home.idx = b.pk % {nle})
        SELECT le AS dataAreaId, acct AS VendorAccountNumber,
               CASE WHEN person THEN '' ELSE org END AS VendorOrganizationName,
               upper(left(CASE WHEN person THEN ln ELSE org END, 20)) AS VendorSearchName,
               {_pick(["10", "20", "30", "40", "50"], "h(k, 10)")} AS VendorGroupId,
               lpad((100000 + pk)::VARCHAR, 9, '0') AS VendorPartyNumber,
               CASE WHEN person THEN 'Person' ELSE 'Organization' END AS VendorPartyType,
               CASE WHEN person THEN fn || ' ' || ln ELSE '' END AS VendorKnownAsName,
               CASE WHEN person THEN fn ELSE '' END AS PersonFirstName,
               CASE WHEN person THEN ln ELSE '' END AS PersonLastName,
               cur AS CurrencyCode,
               {_pick(["Net30", "Net45", "Net10", "Net60"], "h(k, 11)")} AS DefaultPaymentTermsName,
               {_pick(["CHECK", "ELECTRONIC", "WIRE"], "h(k, 12)")} AS DefaultVendorPaymentMethodName,
               ((h(k, 13) % 50) * 1000)::DECIMAL(32,6) AS CreditLimit,
               CASE WHEN k % 29 = 1 THEN 'All' WHEN k % 31 = 2 THEN 'Invoice' WHEN k % 37 = 3 THEN 'Payment'
                    ELSE 'No' END AS OnHoldStatus,
               {_pick(["ThreeWayMatch", "TwoWayMatch", "NoMatch"], "h(k, 14)")} AS VendorInvoiceLineMatchingPolicy,
               'No' AS IsOneTimeVendor, '' AS InvoiceVendorAccountNumber, upper(le) || '-TAX' AS SalesTaxGroupCode,
               iso || lpad((h(pk, 15) % 100000000)::VARCHAR, 9, '0') AS TaxExemptNumber,
               'ap' || pk::VARCHAR || '@vendor' || (pk % 97)::VARCHAR || '.example.com' AS PrimaryEmailAddress,
               '+1 555 ' || lpad((h(pk, 16) % 10000000)::VARCHAR, 7, '0') AS PrimaryPhoneNumber,
               country AS AddressCountryRegionId, iso AS AddressCountryRegionISOCode, city AS AddressCity,
               street AS AddressStreet, zip AS AddressZipCode,
               CASE WHEN iso = 'US' THEN {_pick(["IL", "TX", "OH", "WA", "GA"], "h(pk, 17)")} ELSE '' END
                 AS AddressStateId,
               street || chr(10) || city || ' ' || zip || chr(10) || country AS FormattedPrimaryAddress
        FROM v""")

    # -- main accounts (shared chart, no dataAreaId) ----------------------------------------------------------
    m = int(size.main_accounts)
    n_bs = max(2, m // 5)
    conn.execute(f"""
        INSERT INTO MainAccounts BY NAME
        SELECT '{CHART_OF_ACCOUNTS}' AS ChartOfAccounts,
               CASE WHEN i = 0 THEN '200100' WHEN i < {n_bs} THEN (110100 + i * 100)::VARCHAR
                    ELSE (600100 + (i - {n_bs}) * 10)::VARCHAR END AS MainAccountId,
               CASE WHEN i = 0 THEN 'Accounts payable' WHEN i < {n_bs} THEN 'Balance account ' || i::VARCHAR
                    ELSE {_pick(_EXPENSE_NAMES, 'i')} || ' ' || ((i - {n_bs}) // {len(_EXPENSE_NAMES)} + 1)::VARCHAR
               END AS "Name",
               CASE WHEN i = 0 THEN 'Liability' WHEN i < {n_bs} THEN 'Asset' ELSE 'Expense' END AS MainAccountType,
               CASE WHEN i < {n_bs} THEN 'BS' ELSE 'EXP' END AS MainAccountCategory,
               {RECID_BASE} + 10000 + i AS MainAccountRecId,
               CASE WHEN i >= {n_bs} AND i % 9 = 4 THEN 'Yes' ELSE 'No' END AS IsSuspended,
               DATE '2015-01-01' AS ActiveFrom
        FROM range({m}) r(i)""")

    # -- cost centers: some shared (LegalEntityId ''), some per company, some only in one company -------------
    n_cc = int(size.cost_centers)
    conn.execute(f"""
        INSERT INTO FinancialDimensionValues BY NAME
        WITH c AS (
          SELECT i, CASE WHEN i % 5 = 3 THEN 'CC-' || lpad((100 + i)::VARCHAR, 3, '0')
                         ELSE lpad(((i + 1) * 10)::VARCHAR, 3, '0') END AS val,
                 {_pick(_CC_NAMES, 'i')} AS descr
          FROM range({n_cc}) r(i))
        SELECT 'CostCenter' AS FinancialDimension, les.le AS LegalEntityId, val AS DimensionValue,
               descr AS Description, CASE WHEN i % 7 = 5 THEN 'Yes' ELSE 'No' END AS IsSuspended,
               DATE '2018-01-01' AS ActiveFrom
        FROM c JOIN (SELECT '' AS le, -1 AS idx UNION ALL SELECT le, idx FROM le_info) les
          ON (i % 3 = 0 AND les.idx = -1)
          OR (i % 3 <> 0 AND i % 4 <> 2 AND les.idx >= 0)
          OR (i % 3 <> 0 AND i % 4 = 2 AND les.idx = i % {nle})
        UNION ALL
        SELECT 'Department', '', d, d || ' department', 'No', DATE '2018-01-01'
        FROM (VALUES ('022'), ('023'), ('024')) t(d)""")
    # Active cost centers valid for each company (shared or own). Open orders in a healthy F&O rarely point at a
    # suspended account or cost center, so only deliberate 1% shares of lines do (below), enough for the
    # connector's validation to have something to hold back without making the demo look broken.
    conn.execute("""
        CREATE OR REPLACE TEMP TABLE cc_avail AS
        SELECT l.idx AS le_idx, row_number() OVER (PARTITION BY l.idx ORDER BY f.DimensionValue) - 1 AS n,
               count(*) OVER (PARTITION BY l.idx) AS cnt, f.DimensionValue AS val
        FROM le_info l JOIN FinancialDimensionValues f
          ON f.FinancialDimension = 'CostCenter' AND (f.LegalEntityId = '' OR f.LegalEntityId = l.le)
             AND f.IsSuspended = 'No'""")
    # Equi-joins only below (a join on `n = h(..) % cnt` with cnt from the right side is a nested loop).
    conn.execute("CREATE OR REPLACE TEMP TABLE cc_cnt AS SELECT le_idx, max(cnt) AS cnt FROM cc_avail GROUP BY 1")
    conn.execute("""
        CREATE OR REPLACE TEMP TABLE exp_accts AS
        SELECT row_number() OVER (ORDER BY MainAccountId) - 1 AS n, count(*) OVER () AS cnt, MainAccountId AS id
        FROM MainAccounts WHERE MainAccountType = 'Expense' AND IsSuspended = 'No'""")

    # -- purchase order headers -------------------------------------------------------------------------------
    # Each company numbers its orders from 1. The first two share the format PO-000123, so the same number exists
    # in both (F&O numbers are per company); the others prefix their code. About 10 % of orders are invoiced by
    # another vendor account than the one they are ordered from.
    conn.execute("""
        CREATE OR REPLACE TEMP TABLE vend_idx AS
        SELECT l.idx AS le_idx, row_number() OVER (PARTITION BY l.idx ORDER BY v.VendorAccountNumber) - 1 AS n,
               count(*) OVER (PARTITION BY l.idx) AS cnt, v.VendorAccountNumber AS acct
        FROM le_info l JOIN VendorsV2 v ON v.dataAreaId = l.le""")
    conn.execute("CREATE OR REPLACE TEMP TABLE vend_cnt AS SELECT le_idx, max(cnt) AS cnt FROM vend_idx GROUP BY 1")
    p = int(size.purchase_orders)
    po_number = (f"CASE WHEN l.idx < 2 THEN 'PO-' ELSE upper(l.le) || '-' END || "
                 f"lpad(((j // {nle}) + 1)::VARCHAR, 6, '0')")
    conn.execute(f"""
        INSERT INTO PurchaseOrderHeadersV2 BY NAME
        WITH o0 AS (
          SELECT j, l.idx AS le_idx, l.le, l.cur, {po_number} AS po, h(j, 20) % vc.cnt AS vn,
                 CASE WHEN h(j, 27) % 10 = 0 THEN (h(j, 20) + 1) % vc.cnt ELSE h(j, 20) % vc.cnt END AS ivn,
                 h(j, 21) % 100 AS st, h(j, 22) % 100 AS ap,
                 DATE '2024-01-01' + (h(j, 23) % 700)::INTEGER AS odate, h(j, 26) % k.cnt AS ccn
          FROM range({p}) r(j) JOIN le_info l ON l.idx = j % {nle} JOIN cc_cnt k ON k.le_idx = l.idx
          JOIN vend_cnt vc ON vc.le_idx = l.idx),
        o AS (
          SELECT o0.*, ov.acct AS vend, iv.acct AS ivend FROM o0
          JOIN vend_idx ov ON ov.le_idx = o0.le_idx AND ov.n = o0.vn
          JOIN vend_idx iv ON iv.le_idx = o0.le_idx AND iv.n = o0.ivn)
        SELECT o.le AS dataAreaId, po AS PurchaseOrderNumber, vend AS OrderVendorAccountNumber,
               ivend AS InvoiceVendorAccountNumber,
               coalesce(nullif(v.VendorOrganizationName, ''), v.VendorKnownAsName, '') AS PurchaseOrderName,
               CASE WHEN st < 60 THEN 'Backorder' WHEN st < 80 THEN 'Received' WHEN st < 95 THEN 'Invoiced'
                    ELSE 'Canceled' END AS PurchaseOrderStatus,
               CASE WHEN ap < 50 THEN 'Confirmed' WHEN ap < 85 THEN 'Approved' WHEN ap < 95 THEN 'Draft'
                    ELSE 'InReview' END AS DocumentApprovalStatus,
               odate AS AccountingDate, odate + (14 + h(j, 24) % 46)::INTEGER AS RequestedDeliveryDate,
               CASE WHEN ap < 50 THEN odate + (20 + h(j, 24) % 46)::INTEGER ELSE DATE '{NULL_DATE}' END
                 AS ConfirmedDeliveryDate,
               o.cur AS CurrencyCode, coalesce(v.DefaultPaymentTermsName, 'Net30') AS PaymentTermsName,
               'VREF-' || j::VARCHAR AS VendorOrderReference,
               replace(c.val, '-', '\\-') AS DefaultLedgerDimensionDisplayValue,
               {_pick(["PURCH", "MRO", "IT"], "h(j, 25)")} AS BuyerGroupId,
               coalesce(v.DefaultVendorPaymentMethodName, 'CHECK') AS VendorPaymentMethodName,
               upper(o.le) || '-TAX' AS SalesTaxGroupCode, 'en-us' AS LanguageId
        FROM o
        LEFT JOIN VendorsV2 v ON v.dataAreaId = o.le AND v.VendorAccountNumber = o.vend
        JOIN cc_avail c ON c.le_idx = o.le_idx AND c.n = o.ccn""")

    # -- purchase order lines ---------------------------------------------------------------------------------
    conn.execute(f"""
        CREATE OR REPLACE TEMP TABLE po_idx AS
        SELECT j, {po_number} AS po, l.le, l.idx AS le_idx,
               k.cnt AS cc_cnt
        FROM range({p}) r(j) JOIN le_info l ON l.idx = j % {nle} JOIN cc_cnt k ON k.le_idx = l.idx""")
    n_exp = max(1, conn.execute("SELECT count(*) FROM exp_accts").fetchone()[0])
    conn.execute(f"""
        INSERT INTO PurchaseOrderLinesV2 BY NAME
        WITH li AS (
          SELECT i, i % {p} AS j, i // {p} + 1 AS line, h(i, 30) % 3 = 0 AS cat_line,
                 ((h(i, 31) % 40) + 1)::DECIMAL(32,6) AS qty,
                 round(((h(i, 32) % 50000) / 100.0 + 1), 2)::DECIMAL(32,6) AS price
          FROM range({int(size.po_lines)}) r(i)),
        lj AS (SELECT li.*, x.le, x.po, x.le_idx, h(i, 40) % x.cc_cnt AS ccn, h(i, 39) % {n_exp} AS accn
               FROM li JOIN po_idx x ON x.j = li.j)
        SELECT x.le AS dataAreaId, x.po AS PurchaseOrderNumber, line AS LineNumber,
               CASE WHEN cat_line THEN '' ELSE 'M' || lpad((h(i, 33) % 5000)::VARCHAR, 5, '0') END AS ItemNumber,
               {_pick(_CATEGORIES, "h(i, 34)")} || CASE WHEN cat_line THEN ' (service)' ELSE ' item' END
                 AS LineDescription,
               {_pick(_CATEGORIES, "h(i, 34)")} AS ProcurementProductCategoryName,
               qty AS OrderedPurchaseQuantity, {_pick(_UNITS, "h(i, 35)")} AS PurchaseUnitSymbol,
               price AS PurchasePrice, 1 AS PurchasePriceQuantity, round(qty * price, 2) AS LineAmount,
               hd.PurchaseOrderStatus AS PurchaseOrderLineStatus,
               CASE WHEN cat_line THEN 'TwoWayMatch' ELSE 'ThreeWayMatch' END AS VendorInvoiceMatchingPolicy,
               -- An item line usually has no main account of its own (the item's posting profile decides at
               -- invoicing): 85 % of them are blank; category (service) lines keep theirs.
               CASE WHEN NOT cat_line AND h(i, 42) % 100 < 85 THEN ''
                    WHEN h(i, 36) % 100 = 0 THEN '999999' WHEN h(i, 36) % 100 = 1 AND bad.acct IS NOT NULL
                    THEN bad.acct ELSE a.id END AS MainAccountIdDisplayValue,
               -- About a fifth of the lines carry no cost center at all.
               CASE WHEN h(i, 41) % 5 = 0 THEN ''
                    WHEN h(i, 37) % 100 = 2 AND bad.cc IS NOT NULL THEN replace(bad.cc, '-', '\\-')
                    WHEN h(i, 37) % 10 = 0 THEN replace(c.val, '-', '\\-')
                    ELSE hd.DefaultLedgerDimensionDisplayValue END AS DefaultLedgerDimensionDisplayValue,
               hd.RequestedDeliveryDate AS RequestedDeliveryDate, hd.ConfirmedDeliveryDate AS ConfirmedDeliveryDate,
               CASE WHEN cat_line THEN '' ELSE 'WH' || (h(i, 38) % 3 + 1)::VARCHAR END AS ReceivingWarehouseId,
               CASE WHEN cat_line THEN '' ELSE 'SITE1' END AS ReceivingSiteId,
               hd.SalesTaxGroupCode AS SalesTaxGroupCode, 'ALL' AS SalesTaxItemGroupCode
        FROM lj x
        JOIN PurchaseOrderHeadersV2 hd ON hd.dataAreaId = x.le AND hd.PurchaseOrderNumber = x.po
        JOIN exp_accts a ON a.n = x.accn
        JOIN cc_avail c ON c.le_idx = x.le_idx AND c.n = x.ccn
        CROSS JOIN (SELECT (SELECT min(MainAccountId) FROM MainAccounts
                            WHERE MainAccountType = 'Expense' AND IsSuspended = 'Yes') AS acct,
                           (SELECT min(DimensionValue) FROM FinancialDimensionValues
                            WHERE FinancialDimension = 'CostCenter' AND LegalEntityId = ''
                              AND IsSuspended = 'Yes') AS cc) bad""")

    # -- posted history: one posted invoice per invoiced PO, most of them paid --------------------------------
    conn.execute(f"""
        CREATE OR REPLACE TEMP TABLE hist AS
        SELECT row_number() OVER (ORDER BY hd.dataAreaId, hd.PurchaseOrderNumber) AS n,
               row_number() OVER (PARTITION BY hd.dataAreaId ORDER BY hd.PurchaseOrderNumber) AS cn,
               hd.dataAreaId, hd.PurchaseOrderNumber AS po, hd.OrderVendorAccountNumber AS vend, hd.CurrencyCode AS cur,
               hd.AccountingDate + 30 AS idate, coalesce(s.amt, 0) AS amt, coalesce(s.qty, 0) AS qty,
               hash({seed}, hd.PurchaseOrderNumber, 'paid') % 10 < 7 AS paid
        FROM PurchaseOrderHeadersV2 hd
        LEFT JOIN (SELECT dataAreaId, PurchaseOrderNumber, sum(LineAmount) AS amt, sum(OrderedPurchaseQuantity) AS qty
                   FROM PurchaseOrderLinesV2 GROUP BY ALL) s USING (dataAreaId, PurchaseOrderNumber)
        WHERE hd.PurchaseOrderStatus = 'Invoiced'""")
    conn.execute(f"""
        INSERT INTO VendInvoiceJourBiEntities BY NAME
        SELECT dataAreaId, {RECID_BASE} + 200000000 + n AS SourceKey, 'HIST-' || po AS InvoiceId,
               vend AS InvoiceAccount, vend AS OrderAccount, po AS PurchId,
               upper(dataAreaId) || '-VI' || lpad(cn::VARCHAR, 6, '0') AS InternalInvoiceId,
               'APINV' || lpad(cn::VARCHAR, 6, '0') AS LedgerVoucher, 'Posted invoice for ' || po AS Description,
               idate AS InvoiceDate, idate AS DocumentDate, idate + 30 AS DueDate, idate AS ReceivedDate,
               cur AS CurrencyCode, amt AS InvoiceAmount, amt AS InvoiceAmountMST, amt AS SalesBalance, qty AS Qty,
               100 AS ExchRate, 'Net30' AS Payment, 'GEN' AS PostingProfile, 'HIST-' || po AS ParmId,
               idate::TIMESTAMP + INTERVAL 15 HOUR AS CreatedOn,
               idate::TIMESTAMP + INTERVAL 15 HOUR AS SysModifiedDateTime, 'Admin' AS SysCreatedBy
        FROM hist""")
    conn.execute(f"""
        INSERT INTO VendTransBiEntities BY NAME
        SELECT dataAreaId, {RECID_BASE} + 300000000 + n * 2 AS SourceKey, vend AS AccountNum,
               'HIST-' || po AS Invoice, 'APINV' || lpad(cn::VARCHAR, 6, '0') AS Voucher, 'HIST-' || po AS DocumentNum,
               idate AS TransDate, idate AS DocumentDate, idate + 30 AS DueDate, 'Purch' AS TransType,
               cur AS CurrencyCode, -amt AS AmountCur, -amt AS AmountMST,
               CASE WHEN paid THEN -amt ELSE 0 END AS SettleAmountCur,
               CASE WHEN paid THEN -amt ELSE 0 END AS SettleAmountMST,
               CASE WHEN paid THEN idate + 28 ELSE DATE '{NULL_DATE}' END AS Closed,
               CASE WHEN paid THEN idate + 28 ELSE DATE '{NULL_DATE}' END AS LastSettleDate,
               CASE WHEN paid THEN 'APPAY' || lpad(cn::VARCHAR, 6, '0') ELSE '' END AS LastSettleVoucher,
               CASE WHEN paid THEN vend ELSE '' END AS LastSettleAccountNum,
               CASE WHEN paid THEN dataAreaId ELSE '' END AS LastSettleCompany,
               'Yes' AS Approved, idate AS ApprovedDate, 'ELECTRONIC' AS PaymMode, 'GEN' AS PostingProfile,
               'Invoice ' || po AS Txt, idate::TIMESTAMP + INTERVAL 15 HOUR AS CreatedOn,
               (CASE WHEN paid THEN idate + 28 ELSE idate END)::TIMESTAMP + INTERVAL 15 HOUR AS SysModifiedDateTime
        FROM hist
        UNION ALL BY NAME
        SELECT dataAreaId, {RECID_BASE} + 300000000 + n * 2 + 1 AS SourceKey, vend AS AccountNum, '' AS Invoice,
               'APPAY' || lpad(cn::VARCHAR, 6, '0') AS Voucher, '' AS DocumentNum, idate + 28 AS TransDate,
               idate + 28 AS DocumentDate, idate + 28 AS DueDate, 'Payment' AS TransType, cur AS CurrencyCode,
               amt AS AmountCur, amt AS AmountMST, amt AS SettleAmountCur, amt AS SettleAmountMST,
               idate + 28 AS Closed, idate + 28 AS LastSettleDate,
               'APINV' || lpad(cn::VARCHAR, 6, '0') AS LastSettleVoucher, vend AS LastSettleAccountNum,
               dataAreaId AS LastSettleCompany, 'Yes' AS Approved, idate + 28 AS ApprovedDate,
               'ELECTRONIC' AS PaymMode, 'GEN' AS PostingProfile, 'Payment ' || po AS Txt,
               (idate + 28)::TIMESTAMP + INTERVAL 15 HOUR AS CreatedOn,
               (idate + 28)::TIMESTAMP + INTERVAL 15 HOUR AS SysModifiedDateTime
        FROM hist WHERE paid""")
    for tmp in ("hist", "po_idx", "cc_avail", "cc_cnt", "exp_accts", "vend_idx", "vend_cnt", "le_info"):
        conn.execute(f"DROP TABLE IF EXISTS {tmp}")
    return comps


def entity(name: str) -> EntitySet:
    return ENTITY_SETS[name]
