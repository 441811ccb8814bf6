"""``/data/$metadata``: an OData v4 EDMX shaped like F&O's (reference §2 "EDMX shape", OBS R1)."""

from __future__ import annotations

from functools import cache
from xml.sax.saxutils import quoteattr

from .schema import ENTITY_SETS, ENUMS, NAMESPACE

_CORE = "Microsoft.Dynamics.OData.Core.V1"


@cache
def edmx() -> bytes:
    out = ['<?xml version="1.0" encoding="utf-8"?>',
           '<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">',
           "<edmx:DataServices>",
           f'<Schema Namespace="{NAMESPACE}" xmlns="http://docs.oasis-open.org/odata/ns/edm">']
    for es in ENTITY_SETS.values():
        out.append(f'<EntityType Name="{es.entity_type}">')
        out.append("<Key>" + "".join(f'<PropertyRef Name="{k}" />' for k in es.keys) + "</Key>")
        for p in es.props:
            # Keys, numbers and dates are non-nullable in F&O; strings and enums are nullable (reference §3).
            not_null = p.name in es.keys or p.kind in ("d", "D", "T", "i", "l")
            attrs = f'Name="{p.name}" Type="{p.edm_type}"' + (' Nullable="false"' if not_null else "")
            if p.kind == "d":
                attrs += ' Precision="32" Scale="6"'
            if p.kind == "s":
                attrs += ' MaxLength="255"' if p.name != "FormattedPrimaryAddress" else ""
            out.append(f"<Property {attrs}>"
                       f'<Annotation Term="{_CORE}.AXType" EnumMember="{_CORE}.AXType/'
                       f'{_axtype(p.kind)}" />'
                       f'<Annotation Term="{_CORE}.AllowEdit" Bool="{"false" if p.name in es.keys else "true"}" />'
                       "</Property>")
        if es.read_only:
            out.append(f'<Annotation Term="{_CORE}.IsReadOnly" Bool="true" />')
        out.append("</EntityType>")
    for name, members in ENUMS.items():
        out.append(f'<EnumType Name="{name}">')
        out.extend(f"<Member Name={quoteattr(m)} Value=\"{i}\" />" for i, m in enumerate(members))
        out.append("</EnumType>")
    out.append('<EntityContainer Name="Resources">')
    for es in ENTITY_SETS.values():
        out.append(f'<EntitySet Name="{es.name}" EntityType="{NAMESPACE}.{es.entity_type}" />')
    out.append("</EntityContainer>")
    out.append("</Schema></edmx:DataServices></edmx:Edmx>")
    return "\n".join(out).encode()


def _axtype(kind: str) -> str:
    return {"s": "String", "d": "Real", "i": "Int32", "l": "Int64", "D": "Date", "T": "UtcDateTime",
            "e": "Enum"}[kind]


def service_document(base: str) -> dict[str, object]:
    return {"@odata.context": f"{base}/data/$metadata",
            "value": [{"name": es.name, "kind": "EntitySet", "url": es.name} for es in ENTITY_SETS.values()]}
