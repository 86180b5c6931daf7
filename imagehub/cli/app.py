"""The ``imagehub`` command group, its global options, output and error handling."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import importlib
import io
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
from ..writes import output_error
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
    #: tables: ids whole (--wide), else cut to the shortest unique prefix, at least this
    wide: bool = False
    id_width: int = 12
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
COMMAND_MODULES = ("images", "info", "migrate", "capabilities")  # most used first

_CLOUD_HELP = "cloud to act on (default: the configured default, 'local')"


# -- shell completion -------------------------------------------------------------------------
def _completion_config(ctx: click.Context) -> Config:
    from ..config import load_config

    root = ctx.find_root()
    return load_config(root.params.get("config_path"))


def complete_cloud(ctx: click.Context, _param: click.Parameter,
                   incomplete: str) -> list[Any]:
    """Cloud names for ``-c`` (never an error: completion must not print tracebacks)."""
    try:
        return [n for n in _completion_config(ctx).clouds if n.startswith(incomplete)]
    except Exception:  # noqa: BLE001 - a broken config completes nothing
        return []


def complete_ref(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[Any]:
    """``[CLOUD:]REF``: images' names, aliases and ids of the cloud, and ``CLOUD:``."""
    try:
        config = _completion_config(ctx)
        head, sep, rest = incomplete.partition(":")
        cloud: str | None
        if sep and head in config.clouds:
            cloud, prefix, wanted = head, f"{head}:", rest
        else:
            cloud, prefix, wanted = ctx.find_root().params.get("cloud"), "", incomplete
        manager = config.connect(cloud)
        try:
            names: dict[str, None] = {}
            for image in manager.all():
                for ref in (image.name, *image.aliases, image.id):
                    if ref and ref.startswith(wanted):
                        names[prefix + ref] = None
        finally:
            manager.close()
        found = list(names)
        if not prefix:
            found += [f"{n}:" for n in config.clouds if n.startswith(incomplete)]
        return found
    except Exception:  # noqa: BLE001 - an unreachable cloud completes nothing
        return []

_CONFIG_HELP = "clouds file (default: $IMAGEHUB_CONFIG, then the XDG config dir)"
_FORMAT_HELP = "output format; json and yaml are stable for scripts"


class _LazyGroup(click.Group):
    # The subcommands (and the whole API behind them) are imported only when one is
    # looked up, so --version, --help of an option and usage errors start in a few ms,
    # and `list` does not pay for the migration machinery behind `migrate`.
    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        for name in COMMAND_MODULES:
            if cmd_name in self.commands:
                break
            importlib.import_module(f"{__package__}.{name}")
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            # Global options after the command too, given as each command is loaded.
            add_global_options(command)
        return command

    def list_commands(self, ctx: click.Context) -> list[str]:
        _load_commands()
        return super().list_commands(ctx)


def _load_commands() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__package__}.{name}")


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help=_CONFIG_HELP)
@click.option("-c", "--cloud", help=_CLOUD_HELP, shell_complete=complete_cloud)
@click.option("-f", "--format", "fmt", type=click.Choice(FORMATS), default="table",
              show_default=True, help=_FORMAT_HELP)
@click.option("--debug", is_flag=True, help="show tracebacks and debug logging")
@click.option("-q", "--quiet", is_flag=True, help="no progress bars or chatter")
# The version given, not looked up: reading package metadata costs more than the rest.
@click.version_option(version=__version__, prog_name="imagehub")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, cloud: str | None, fmt: str,
        debug: bool, quiet: bool) -> None:
    """Manage machine images across clouds through one interface.

    The options above may also be given after the command, as in
    'imagehub list -c lab -f json'.
    """
    global _debug
    _debug = debug
    logs.setup(debug)
    state = State(config_path, cloud, fmt, debug, quiet)
    ctx.obj = state
    ctx.call_on_close(state.close)


def _set_global(field: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    """A callback storing a global option given after the command into the State."""
    def store(ctx: click.Context, _param: click.Parameter, value: Any) -> None:
        if value is None or value is False or ctx.resilient_parsing:
            return
        state = ctx.find_object(State)
        if state is None:
            return
        if field == "config_path" and state._config is not None:
            state._config = None  # not read yet in practice; never keep a stale one
        setattr(state, field, value)
        if field == "debug":
            global _debug
            _debug = True
            logs.setup(True)
    return store


def _global_params() -> list[click.Parameter]:
    """The group's options again, for every command: after the command they mean the same."""
    return [
        click.Option(["--config", "config_path"], type=click.Path(dir_okay=False),
                     help=_CONFIG_HELP, expose_value=False, callback=_set_global("config_path"),
                     is_eager=True),
        click.Option(["-c", "--cloud"], help=_CLOUD_HELP, expose_value=False,
                     callback=_set_global("cloud"), is_eager=True,
                     shell_complete=complete_cloud),
        click.Option(["-f", "--format", "fmt"], type=click.Choice(FORMATS), help=_FORMAT_HELP,
                     expose_value=False, callback=_set_global("format"), is_eager=True),
        click.Option(["--debug"], is_flag=True, default=None, help="tracebacks, debug logs",
                     expose_value=False, callback=_set_global("debug"), is_eager=True),
        click.Option(["-q", "--quiet"], is_flag=True, default=None, help="no chatter",
                     expose_value=False, callback=_set_global("quiet"), is_eager=True),
    ]


def add_global_options(command: click.Command) -> None:
    """Give ``command`` and every command under it the global options (once)."""
    if getattr(command, "_imagehub_globals", False):
        return
    if command is not cli:
        taken = {o for p in command.params for o in getattr(p, "opts", [])}
        command.params.extend(p for p in _global_params() if not taken & set(p.opts))
    command._imagehub_globals = True  # type: ignore[attr-defined]
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            add_global_options(sub)


_debug = False


def fail(message: str) -> NoReturn:
    raise ImageHubError(message)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point: one line on stderr and exit 1 for imagehub errors, 2 for usage."""
    if sys.stdout is None:  # started with stdout closed (cmd >&-)
        sys.stdout = _ClosedStdout()
    try:
        _main(argv)
    finally:
        _quiet_stdout()


class _ClosedStdout(io.TextIOBase):
    """Stands in for a stdout the process was started without: writing to it is the
    one-line 'cannot write standard output' error, not an AttributeError on None."""

    name = "<stdout>"

    def __init__(self) -> None:
        super().__init__()
        self.buffer = _ClosedBuffer()

    def write(self, _text: str) -> int:
        raise OSError(errno.EBADF, "standard output is closed")

    def isatty(self) -> bool:
        return False

    def flush(self) -> None:
        pass


class _ClosedBuffer(io.RawIOBase):
    name = "<stdout>"

    def writable(self) -> bool:
        return True

    def write(self, _data: Any) -> int:
        raise OSError(errno.EBADF, "standard output is closed")


def echo_out(text: str, *, nl: bool = True) -> None:
    """Print to stdout; a full, closed or vanished stdout is one OutputError line."""
    try:
        click.echo(text, nl=nl)
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise output_error(exc, "standard output") from exc


def _quiet_stdout() -> None:
    # A reader that went away (or a full disk behind stdout) was reported once already;
    # Python's own flush at exit must not add a second report with a traceback.
    if isinstance(sys.stdout, _ClosedStdout):
        return
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())


def parse_filters(pairs: tuple[str, ...]) -> dict[str, object]:
    """``--filter K=V`` options; a key given twice collects its values (any of them)."""
    wanted: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--filter")
        if key == "latest":
            raise click.BadParameter("'latest' is not a filter; use --latest",
                                     param_hint="--filter")
        if key in ("limit", "marker"):
            raise click.BadParameter(f"{key!r} is not a filter; use --{key} where the "
                                     "command has it", param_hint="--filter")
        previous = wanted.get(key)
        if previous is None:
            wanted[key] = value
        elif isinstance(previous, list):
            previous.append(value)
        else:
            wanted[key] = [previous, value]
    return wanted


def _main(argv: Sequence[str] | None) -> NoReturn:
    try:
        add_global_options(cli)
        # Without standalone mode click returns an Exit's code instead of raising it.
        code = cli.main(args=list(argv) if argv is not None else None, prog_name="imagehub",
                        standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except ImageHubError as exc:
        if _debug:
            click.echo(redact(traceback.format_exc()).rstrip("\n"), err=True)
        if exc.cli_hint:
            exc.hint = exc.cli_hint  # the same advice, in the syntax of where it is read
        click.echo(f"imagehub: error: {_one_line(str(exc))}", err=True)
        # A bad argument is a usage error, whichever layer noticed it.
        sys.exit(2 if isinstance(exc, InvalidArgument) else 1)
    except click.exceptions.Abort:
        click.echo("imagehub: interrupted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("imagehub: interrupted", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # click 8.2+: a bare group, its help
            exc.show()
            sys.exit(exc.exit_code)
        # One line, as every other error: what was wrong, and where the usage is told.
        where = exc.ctx.command_path if exc.ctx is not None else "imagehub"
        click.echo(f"imagehub: error: {_one_line(exc.format_message())} (see '{where} "
                   "--help')", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"imagehub: error: {_one_line(exc.format_message())}", err=True)
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
    """Print records as a table, JSON or YAML. JSON/YAML get the full records.

    Output is redacted like errors and logs: records carry what servers and backends
    said (a resolved auth_url with userinfo, a raw record quoting a location URL).
    """
    records = [_record(x) for x in data] if isinstance(data, list) else _record(data)
    if state.format == "json":
        echo_out(redact(json.dumps(records, indent=2, sort_keys=True, default=str)))
    elif state.format == "yaml":
        import yaml  # only for this format: it costs start-up time everywhere else

        echo_out(redact(yaml.safe_dump(records, sort_keys=True, default_flow_style=False)),
                 nl=False)
    elif isinstance(records, list):
        echo_out(redact(table(records, columns or (list(records[0]) if records else []),
                              id_width=None if state.wide else state.id_width)))
    else:
        shown = {k: v for k, v in records.items() if k != "raw"}  # raw: json/yaml only
        width = max((len(k) for k in shown), default=0)
        for key, value in shown.items():
            echo_out(redact(f"{key.ljust(width)}  {_cell(value, key, full=True)}"))


def _record(item: Any) -> dict[str, Any]:
    if hasattr(item, "to_dict"):
        out: dict[str, Any] = item.to_dict()
        return out
    return dict(item)


def _cell(value: Any, key: str, full: bool = False, id_width: int | None = None) -> str:
    return printable(_plain_cell(value, key, full, id_width))


def _plain_cell(value: Any, key: str, full: bool, id_width: int | None = None) -> str:
    if value is None:
        return "-"
    if key == "size" and isinstance(value, int):
        return _human_size(value)
    if key == "id" and not full and id_width is not None and isinstance(value, str):
        return value[:id_width]
    if key.endswith("_at") and isinstance(value, str):
        return _when(value)
    if isinstance(value, list):
        return ",".join(map(str, value)) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
    return str(value)


def _when(value: str) -> str:
    """A timestamp to the second, with its zone: ``2024-05-01 10:00:00 UTC``."""
    import datetime as dt

    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    shown = when.strftime("%Y-%m-%d %H:%M:%S")
    offset = when.utcoffset()
    if offset is None:
        return shown
    if not offset:
        return f"{shown} UTC"
    return f"{shown} {when.strftime('%z')[:3]}:{when.strftime('%z')[3:]}"


def unique_prefix_width(ids: Sequence[str], minimum: int) -> int:
    """The shortest width at which every distinct id in ``ids`` is told apart, >= minimum."""
    import itertools

    # Sorted, an id shares its longest prefix with a neighbour.
    ordered = sorted(set(ids))
    return max([minimum, *(len(os.path.commonprefix([a, b])) + 1  # noqa: RUF071 - ids, not paths
                           for a, b in itertools.pairwise(ordered))])


def _human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return str(n)


def table(records: Iterable[dict[str, Any]], columns: Sequence[str],
          id_width: int | None = 12) -> str:
    """Rows under upper-case headers; ids cut to ``id_width`` or more, never ambiguous
    within the table (None: whole)."""
    records = list(records)
    if id_width is not None:
        id_width = unique_prefix_width(
            [r["id"] for r in records if isinstance(r.get("id"), str)], id_width)
    rows = [[_cell(r.get(c), c, id_width=id_width) for c in columns] for r in records]
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
