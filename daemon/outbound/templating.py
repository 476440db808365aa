"""Mail templates: Jinja2 files named ``<audience>/<event>.<part>.j2``.

The parts are ``subject``, ``txt`` and an optional ``html``. Templates in the configured
``helpdesk.templates_dir`` override the built-in ones of the same name. Only ``.html.j2``
files are autoescaped; every variable must exist (StrictUndefined).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta

import postdesk.daemon
from postdesk.daemon.config import Settings

BUILTIN_DIR = Path(postdesk.daemon.__file__).resolve().parent.parent / "templates"

CUSTOMER_ACKNOWLEDGEMENT = "customer/acknowledgement"
CUSTOMER_AGENT_REPLY = "customer/agent_reply"
CUSTOMER_CSAT_REQUEST = "customer/csat_request"
AGENT_NOTIFICATION = "agent/notification"
AGENT_COMMAND_ERROR = "agent/command_error"
AGENT_ALERT = "agent/alert"
AGENT_SLA_ALERT = "agent/sla_alert"  # an SLA target is at risk or breached
AGENT_DIGEST = "agent/digest"  # an agent's daily list of open tickets
AGENT_FLOOD = "agent/flood"
AGENT_AUTO_CAP = "agent/auto_cap"  # automatic mail stopped by outbound.auto_total_per_hour
CANNED_FOLDER = "canned"  # canned/<name>.txt.j2: text an agent inserts with "#reply <name>"

SUBJECT, TEXT, HTML = "subject", "txt", "html"
_NAME = re.compile(r"^[a-z0-9_-]+/[a-z0-9_-]+$")
_CLEAN = {"Cc": " ", "Zl": " ", "Zp": " ", "Cf": ""}
_ASCII_CONTROLS = re.compile("[\x00-\x1f\x7f]")  # category Cc within ASCII
_DICT_ATTRIBUTES = frozenset(dir(dict))  # what ``getattr`` finds on any dict


@dataclass(frozen=True)
class Rendered:
    """One rendered mail: a single-line subject, the plain text and, if there is one, HTML."""

    subject: str
    text: str
    html: str | None


def one_line(value: object, limit: int = 200) -> str:
    """``value`` as one line: control characters (CR, LF, NUL...) and line or paragraph
    separators become spaces, invisible format characters (bidi overrides) go, runs of
    whitespace collapse, and the result is cut to ``limit`` characters (ellipsis when cut)."""
    text = str(value)
    if text.isascii():  # the common case: only C0 controls and DEL need replacing
        cleaned = _ASCII_CONTROLS.sub(" ", text)
    else:
        cleaned = "".join(_CLEAN.get(unicodedata.category(ch), ch) for ch in text)
    text = " ".join(cleaned.split())
    return text if len(text) <= limit else text[: max(limit - 1, 0)].rstrip() + "…"


def _autoescape(name: str | None) -> bool:
    return name is not None and name.endswith(".html.j2")


class _Environment(jinja2.Environment):
    """A Jinja2 environment that renders the same text with less work per mail."""

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        """The environment's globals overlaid with the template's own ``d``, in one plain dict
        made when a template is loaded: Jinja's ``ChainMap`` is copied key by key in Python into
        every render's (and include's) context. The environment's globals never change."""
        return {**self.globals, **(d or {})}

    def getattr(self, obj: Any, attribute: str) -> Any:
        """``obj.attribute`` as Jinja reads it (the attribute first, else the item), with the
        templates' plain dicts answered at once: a dict has no attribute of that name unless
        the dict type has one, so Jinja's try of ``getattr`` would only raise."""
        if type(obj) is dict and attribute in obj and attribute not in _DICT_ATTRIBUTES:
            return obj[attribute]
        return super().getattr(obj, attribute)


class Templates:
    """Renders the named mail templates; override folder first, then the built-in one."""

    def __init__(
        self,
        settings: Settings,
        variables: Callable[[str, Mapping[str, object]], Mapping[str, object]] | None = None,
    ) -> None:
        """Build the Jinja2 environment for ``settings.helpdesk.templates_dir`` plus built-ins.

        ``variables(name, context)``, when given, returns what plugins add: templates see it
        as ``plugins``. It must depend on ``name`` and ``context["ticket"]`` only, so one
        rendering may serve several agents (:meth:`uses`), and it is called only for templates
        that may read ``plugins``.
        """
        self.variables = variables
        search = [Path(settings.helpdesk.templates_dir)] if settings.helpdesk.templates_dir else []
        search.append(BUILTIN_DIR)
        self.environment = _Environment(
            loader=jinja2.FileSystemLoader([str(p) for p in search]),
            undefined=jinja2.StrictUndefined,
            autoescape=_autoescape,
            keep_trailing_newline=True,
            auto_reload=False,  # read once per process: no stat of an included file per mail
            cache_size=-1,  # a plain dict, not an LRU with a lock (an include looks it up per mail)
        )
        self.environment.filters["oneline"] = one_line
        # mail template parts, read once per process like the configuration: file -> template
        self._parts: dict[str, jinja2.Template | None] = {}  # None: no such (optional) part
        self._uses: dict[tuple[str, str], bool] = {}  # (template, variable) -> may read it
        # file -> (variables it names, templates it includes; None: computed), None: missing
        self._reads: dict[str, tuple[frozenset[str], tuple[str | None, ...]] | None] = {}

    def render(self, name: str, context: Mapping[str, object]) -> Rendered:
        """Render the subject, text and (when present) HTML parts of template ``name``."""
        if not _NAME.match(name):
            raise ValueError(f"template names look like 'audience/event', got {name!r}")
        if self.variables is not None and self.uses(name, "plugins"):  # asked only if read
            context = {**context, "plugins": self.variables(name, context)}
        subject = self._part(name, SUBJECT, context)
        text = self._part(name, TEXT, context)
        html = self._part(name, HTML, context, optional=True)
        assert subject is not None and text is not None
        return Rendered(subject=one_line(subject, limit=998), text=text, html=html)

    def uses(self, name: str, variable: str) -> bool:
        """Whether template ``name`` may read ``variable``: some part, or a template it
        includes, names it; always True when the name of an included template is computed.
        (The plugins' variables depend on the template name and the ticket only.) Answered once
        per name."""
        key = (name, variable)
        if key not in self._uses:
            files = [f"{name}.{part}.j2" for part in (SUBJECT, TEXT, HTML)]
            self._uses[key] = self._names(files, variable)
        return self._uses[key]

    def _names(self, files: list[str], variable: str) -> bool:
        """Whether any of ``files`` (missing ones skipped), or what they include, names
        ``variable`` or includes a template whose name is computed."""
        seen: set[str] = set()
        while files:
            file = files.pop()
            if file in seen:
                continue
            seen.add(file)
            reads = self._file_reads(file)
            if reads is None:
                continue
            names, included = reads
            if variable in names or None in included:
                return True
            files.extend(name for name in included if name is not None)
        return False

    def _file_reads(self, file: str) -> tuple[frozenset[str], tuple[str | None, ...]] | None:
        """The variables ``file`` names and the templates it includes (None for a computed
        name), parsed once per file whatever variable is asked about; None when missing."""
        if file not in self._reads:
            loader = self.environment.loader
            assert loader is not None
            try:
                source = loader.get_source(self.environment, file)[0]
            except jinja2.TemplateNotFound:
                self._reads[file] = None
                return None
            tree = self.environment.parse(source)
            self._reads[file] = (
                frozenset(jinja2.meta.find_undeclared_variables(tree)),
                tuple(jinja2.meta.find_referenced_templates(tree)),
            )
        return self._reads[file]

    def _part(
        self, name: str, part: str, context: Mapping[str, object], optional: bool = False
    ) -> str | None:
        """One part rendered; None for a missing ``optional`` part. Templates are compiled and
        looked up once (a missing part too: no search of the folders per mail)."""
        file = f"{name}.{part}.j2"
        if file not in self._parts:
            try:
                self._parts[file] = self.environment.get_template(file)
            except jinja2.TemplateNotFound as exc:
                if not optional or exc.name != file:
                    raise
                self._parts[file] = None
        template = self._parts[file]
        return None if template is None else template.render(context)
