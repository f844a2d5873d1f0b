"""The one Jinja2 environment of every page: templates from ``templates/``, autoescaping
on, undefined names an error, and the shared formatters as globals, so that the partials
(``_style.html``, ``_figures.html``, ``_captions.html``) and every page can use them."""

from __future__ import annotations

from functools import lru_cache

from jinja2 import Environment, PackageLoader, StrictUndefined

from mialens.report.format import _num, _pct, _plural


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The environment, built once, with the globals ``num``, ``pct`` and ``plural``."""
    env = Environment(
        loader=PackageLoader("mialens.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(num=_num, pct=_pct, plural=_plural)
    return env


def render(template: str, **context) -> str:
    """The page ``template`` rendered with ``context``."""
    return environment().get_template(template).render(**context)
