"""How every help page reads: flags without a ``<bool>`` type label, arguments by their name in capitals
(``trace KEY``, not ``{key}``), and an epilog saying where settings come from and what the exit codes mean.

Pass :class:`Command` / :class:`Group` as ``cls`` when registering commands and Typer apps.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

SETTINGS_EPILOG = ("Settings: D365SNOW_* environment variables, else the file D365SNOW_CONFIG names (default "
                   "./d365snow.toml), secrets also from `d365-snow credentials set`; README \"Configuration\" lists "
                   "them.")
EXIT_EPILOG = "Exit codes: 0 done, 1 failed (the reason is printed), 2 configuration problem or wrong arguments."


def epilog(*lines: str) -> str:
    """Epilog paragraphs (rich mode keeps blank-line separated paragraphs apart)."""
    return "\n\n".join((*lines, SETTINGS_EPILOG, EXIT_EPILOG))


class _FlagsWithoutType:
    """Mixed into Typer's command and group classes."""

    def get_params(self, ctx: typer.Context) -> list[Any]:
        params: list[Any] = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            # A flag takes no value, so a type label (`<bool>`) only confuses; an empty metavar shows none.
            if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
                param.metavar = ""
        return params


class Command(_FlagsWithoutType, TyperCommand):
    """A command whose help page follows this module's rules."""

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []  # type: ignore[attr-defined]
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = (param.metavar or param.name or "").upper()
                name = name if param.required else f"[{name}]"
                pieces.append(name + ("..." if param.nargs != 1 else ""))
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces


class Group(_FlagsWithoutType, TyperGroup):
    """A group (the root app, ``credentials``, ``sandbox``, ``events``) whose help page follows the same rules."""
