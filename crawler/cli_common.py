"""What every ``xunjian`` command shares: one-line errors with meaningful exit codes, and --db.

Exit codes: 0 success; 1 the work failed or was refused; 2 bad input or usage.
"""

from __future__ import annotations

import os

import click

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
# Group and others get nothing: files 0600, directories 0700.
PRIVATE_UMASK = 0o077


def keep_private() -> None:
    """Make every file and directory this process (and its children) creates private to its user.

    The database, logs, daily lists, exports and evidence hold advertisers' phone numbers and WeChat
    ids; with a default umask of 022 they would be world-readable. Called first by each entry point
    (the ``xunjian`` command, hence the scheduler, and ``crawler.crawl_job``).
    """
    os.umask(PRIVATE_UMASK)


class CliError(click.ClickException):
    """A one-line error for the inspector (``错误：…`` on stderr) with the exit code of its kind."""

    def __init__(self, message: str, code: int = EXIT_FAILED):
        super().__init__(message)
        self.exit_code = code

    def show(self, file=None) -> None:
        # A URL or typed value in the message may carry terminal escapes.
        from crawler.console import visible

        click.echo(f"错误：{visible(self.message)}", err=True)


class _OneLineUsage:
    """Option parsing errors as one Chinese line on stderr, exit code 2."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as error:
            raise CliError(f"命令参数有误：{error.format_message()}（用 --help 查看用法）", EXIT_BAD_INPUT) from None


class OneLineCommand(_OneLineUsage, click.Command):
    pass


class OneLineGroup(_OneLineUsage, click.Group):
    pass


def db_option(func):
    return click.option("--db", "db_url", metavar="URL",
                        help="Database URL (default: $XUNJIAN_DB_URL, else sqlite:///./data/xunjian.db).")(func)


def open_db(db_url: str | None):
    """The database, migrated; a StorageError becomes a one-line CliError (exit 1)."""
    from crawler.db import database_for
    from storage.errors import StorageError

    try:
        return database_for(db_url)
    except StorageError as exc:
        raise CliError(str(exc)) from None
