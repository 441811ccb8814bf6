"""The code location: every definition under ``defs/`` plus the resources built from the settings."""

import warnings
from pathlib import Path

import dagster as dg

# Dagster's own @sensor passes its beta `owners` parameter through even when unset; nothing here uses it.
warnings.filterwarnings("ignore", message="Parameter `owners` of initializer `SensorDefinition",
                        category=dg.BetaWarning)


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
