"""The ``imagehub`` command group, its global options, output and error handling."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

import click

from .. import __version__
from .._redact import redact
from ..errors import ImageHubError, InvalidArgument
from ..refs import split_ref
from . import logs

if TYPE_CHECKING:
    from ..config import Config
    from ..manager import ImageManager

__all__ = ["State", "cli", "main", "pass_state", "printable"]

FORMATS = ("table", "json", "yaml")


@dataclasses.dataclass
class State:
    config_path: str | None
    cloud: str | None
    format: str
    debug: bool
    quiet: bool
    _config: Config | None = None
    _managers: dict[str, ImageManager] = dataclasses.field(default_factory=dict)

    @property
    def config(self) -> Config:
        if self._config is None:
            from ..config import load_config

            self._config = load_config(self.config_path)
        return self._config

    def manager(self, cloud: str | None = None) -> ImageManager:
        name = cloud or self.cloud or self.config.default
        if name not in self._managers:
            self._managers[name] = self.config.connect(name)
        return self._managers[name]

    def target(self, ref: str) -> tuple[ImageManager, str]:
        """The manager and bare ref for a ``[CLOUD:]REF`` argument."""
        cloud, bare = split_ref(ref, self.config.clouds)
        return self.manager(cloud), bare

    def progress(self, total: int | None, label: str) -> Callable[[int], None] | None:
        """A byte-progress callback drawing a bar with rate and ETA, only on a TTY."""
        if self.quiet or not sys.stderr.isatty():
            return None
        from tqdm import tqdm

        try:
            width = os.get_terminal_size(sys.stderr.fileno()).columns
        except OSError:
            width = 0
        # A pty with no size set reports 0 columns, and tqdm then draws nothing.
        bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label,
                   file=sys.stderr, leave=False, ncols=width if width > 0 else 80)
        _open_bars.append(bar)

        def advance(n: int) -> None:
            bar.update(n)

        return advance

    def close(self) -> None:
        for bar in _open_bars:
            bar.close()
        _open_bars.clear()
        for m in self._managers.values():
            m.close()


_open_bars: list[Any] = []
pass_state = click.make_pass_decorator(State)

# The modules whose import registers the subcommands on `cli`.
COMMAND_MODULES = ("images", "info", "migrate")


class _LazyGroup(click.Group):
    # The subcommands (and the whole API behind them) are imported only when one is
    # looked up, so --version, --help of an option and usage errors start in a few ms,
    # and `list` does not pay for the migration machinery behind `migrate`.
    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        for name in COMMAND_MODULES:
            if cmd_name in self.commands:
                break
            importlib.import_module(f"{__package__}.{name}")
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        _load_commands()
        return super().list_commands(ctx)


def _load_commands() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__package__}.{name}")


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="clouds file (default: $IMAGEHUB_CONFIG, then the XDG config dir)")
@click.option("-c", "--cloud", help="cloud to act on (default: the configured default, 'local')")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table",
              show_default=True, help="output format; json and yaml are stable for scripts")
@click.option("--debug", is_flag=True, help="show tracebacks and debug logging")
@click.option("-q", "--quiet", is_flag=True, help="no progress bars or chatter")
# The version given, not looked up: reading package metadata costs more than the rest.
@click.version_option(version=__version__, prog_name="imagehub")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, cloud: str | None, fmt: str,
        debug: bool, quiet: bool) -> None:
    """Manage machine images across clouds through one interface."""
    global _debug
    _debug = debug
    logs.setup(debug)
    state = State(config_path, cloud, fmt, debug, quiet)
    ctx.obj = state
    ctx.call_on_close(state.close)


_debug = False


def fail(message: str) -> NoReturn:
    raise ImageHubError(message)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point: one line on stderr and exit 1 for imagehub errors, 2 for usage."""
    try:
        _main(argv)
    finally:
        _quiet_stdout()


def _quiet_stdout() -> None:
    # A reader that went away (or a full disk behind stdout) was reported once already;
    # Python's own flush at exit must not add a second report with a traceback.
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())


def _main(argv: Sequence[str] | None) -> NoReturn:
    try:
        # Without standalone mode click returns an Exit's code instead of raising it.
        code = cli.main(args=list(argv) if argv is not None else None, prog_name="imagehub",
                        standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except ImageHubError as exc:
        if _debug:
            click.echo(redact(traceback.format_exc()).rstrip("\n"), err=True)
        click.echo(f"imagehub: error: {_one_line(str(exc))}", err=True)
        # A bad argument is a usage error, whichever layer noticed it.
        sys.exit(2 if isinstance(exc, InvalidArgument) else 1)
    except click.exceptions.Abort:
        click.echo("imagehub: interrupted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("imagehub: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001 - a bug still gets one (redacted) line
        if _debug:
            click.echo(redact(traceback.format_exc()).rstrip("\n"), err=True)
        click.echo(f"imagehub: error: unexpected {type(exc).__name__}: "
                   f"{_one_line(redact(str(exc)))[:500]}; run with --debug for the traceback",
                   err=True)
        sys.exit(1)
    sys.exit(0)


def _one_line(text: str) -> str:
    return printable(" ".join(text.split()))


def printable(text: str) -> str:
    """``text`` with control characters and escape sequences shown escaped.

    A newline or an ESC in a name or property (anyone who can create an image chooses
    them) must not forge an output line or drive the terminal. JSON and YAML output keep
    values exact; only text meant for eyes goes through here.
    """
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(ch)
    if named:
        return named
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


# -- output ---------------------------------------------------------------------------------
IMAGE_COLUMNS = ("id", "name", "architecture", "size", "status", "visibility", "created_at",
                 "aliases")


def emit(state: State, data: Any, *, columns: Sequence[str] | None = None) -> None:
    """Print records as a table, JSON or YAML. JSON/YAML get the full records."""
    records = [_record(x) for x in data] if isinstance(data, list) else _record(data)
    if state.format == "json":
        click.echo(json.dumps(records, indent=2, sort_keys=True, default=str))
    elif state.format == "yaml":
        import yaml

        click.echo(yaml.safe_dump(records, sort_keys=True, default_flow_style=False), nl=False)
    elif isinstance(records, list):
        click.echo(table(records, columns or (list(records[0]) if records else [])))
    else:
        shown = {k: v for k, v in records.items() if k != "raw"}  # raw: json/yaml only
        width = max((len(k) for k in shown), default=0)
        for key, value in shown.items():
            click.echo(f"{key.ljust(width)}  {_cell(value, key, full=True)}")


def _record(item: Any) -> dict[str, Any]:
    if hasattr(item, "to_dict"):
        out: dict[str, Any] = item.to_dict()
        return out
    return dict(item)


def _cell(value: Any, key: str, full: bool = False) -> str:
    return printable(_plain_cell(value, key, full))


def _plain_cell(value: Any, key: str, full: bool) -> str:
    if value is None:
        return "-"
    if key == "size" and isinstance(value, int):
        return _human_size(value)
    if key == "id" and not full and isinstance(value, str) and len(value) > 12:
        return value[:12]
    if key in ("created_at", "updated_at") and isinstance(value, str) and not full:
        return value[:19].replace("T", " ")
    if isinstance(value, list):
        return ",".join(map(str, value)) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
    return str(value)


def _human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return str(n)


def table(records: Iterable[dict[str, Any]], columns: Sequence[str]) -> str:
    rows = [[_cell(r.get(c), c) for c in columns] for r in records]
    head = [c.upper().replace("_AT", "") for c in columns]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
              for r in rows]
    return "\n".join(lines)


@contextmanager
def stdout_binary() -> Iterator[Any]:
    yield sys.stdout.buffer


def parse_pairs(pairs: Iterable[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint=what)
        out[key] = value
    return out
