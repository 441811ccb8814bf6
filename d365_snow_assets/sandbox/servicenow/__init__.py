"""The fake ServiceNow instance of the sandbox (Table API, Import Set API, OAuth, APO lifecycle, rate limits).

Facts it imitates are in reference/servicenow.md (platform) and reference/servicenow-s2p-schema.md (the documented
S2P/APO schema: tables, labels, transform maps, lifecycle); behaviour the references do not pin down is marked
"inference" where it is implemented.
"""

from .app import build_snow_app
from .state import SnowState

__all__ = ["SnowState", "build_snow_app"]
