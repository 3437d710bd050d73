"""One exception type for mistakes a user can fix.

The CLI turns a `UserError` into one line on stderr and exit status 2; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input: a path, a data line, a config key, a checkpoint.

    The message names the thing and the fix, in one line.
    """


class ConfigValueError(UserError, ValueError):
    """A config value outside what the run can use: names the dotted key and the fix.

    Also a `ValueError`, so library callers that build configs in code can catch it as one.
    `config_tree.merge_into` prefixes the key with the section it sits in (`n_heads` ->
    `model.n_heads`) and the source (a YAML file or "command line").
    """

    def __init__(self, key: str, problem: str, source: str = "") -> None:
        self.key, self.problem, self.source = key, problem, source
        super().__init__(f"{source}: {key}: {problem}" if source else f"{key}: {problem}")

    def within(self, section: str, source: str) -> ConfigValueError:
        """The same error seen from the parent config: `section.key`, from `source`."""
        key = f"{section}.{self.key}" if section else self.key
        return ConfigValueError(key, self.problem, self.source or source)


def check_config(checks: list[tuple[bool, str, str]]) -> None:
    """Raise a `ConfigValueError` for the first `(ok, key, problem and fix)` that is not ok."""
    for ok, key, problem in checks:
        if not ok:
            raise ConfigValueError(key, problem)
