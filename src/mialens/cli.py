"""The ``mialens`` command line."""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table
from rich.text import Text

from mialens import __version__
from mialens.errors import ConfigError, MialensError
from mialens.folders import writable_folder

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Audit machine-learning classifiers for membership-inference leakage.",
)
console = Console()
err_console = Console(stderr=True)

OutOption = Annotated[Path, typer.Option("--out", "-o", help="output folder (created if needed)")]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="override a config value: KEY=VALUE on a dotted path"),
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars or info logs")]


def _setup_logging(quiet: bool) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False, show_time=False)],
        force=True,
    )


def _fail(exc: MialensError) -> None:
    message = Text.assemble(("error: ", "bold red"), str(exc))  # no markup in the message
    err_console.print(message, highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def _version(value: bool) -> None:
    if value:
        console.print(f"mialens {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="show the version")
    ] = False,
) -> None:
    """Audit machine-learning classifiers for membership-inference leakage."""


def _print_summary(result, out: Path) -> None:
    from mialens.audit.results import UNREACHABLE_MARK, UNREACHABLE_NOTE

    table = Table(title="Membership leakage (mean over targets)")
    table.add_column("attack")
    table.add_column("AUC", justify="right")
    levels = result.fpr_levels
    for lv in levels:
        table.add_column(f"TPR@{lv:g}", justify="right")
    for name, m in result.metrics.items():
        cells = [name, f"{m.auc.mean:.3f} ± {m.auc.std:.3f}"]
        for lv in levels:
            entry = m.at(lv)
            cells.append(_tpr_cell(entry.resolved, entry.reachable, f"{entry.mean:.3f}"))
        table.add_row(*cells)
    _blind_baseline_row(table, result.blind_baseline, len(levels))
    console.print(table)
    _print_blind_baseline(result.blind_baseline)
    entries = [m.at(lv) for m in result.metrics.values() for lv in levels]
    if any(not e.resolved for e in entries):
        console.print("[dim]* too few non-members to resolve this FPR: TPR at FPR 0[/]")
    if any(e.resolved and not e.reachable for e in entries):
        console.print(f"{UNREACHABLE_MARK} {UNREACHABLE_NOTE}", highlight=False)
    u = result.utility
    kind, train, test = (
        ("accuracy", "train_accuracy", "test_accuracy")
        if "train_accuracy" in u
        else ("mean token loss (nats)", "train_loss", "test_loss")  # a text audit's LMs
    )
    console.print(f"target {kind}: train {u[train]['mean']:.3f}, test {u[test]['mean']:.3f}")
    console.print(f"outputs in {out}/: metrics.json, samples.csv, report.html")


def _blind_baseline_row(table: Table, gate: dict | None, levels: int) -> None:
    """A text audit's blind-baseline AUC under the attacks' (its TPR cells left empty)."""
    if gate:
        auc = f"{gate['auc']:.3f} [{gate['ci_low']:.3f}, {gate['ci_high']:.3f}]"
        table.add_row("blind baseline (no model)", auc, *["" for _ in range(levels)])


def _print_blind_baseline(gate: dict | None) -> None:
    """The gate's verdict: a warning when members and non-members are distinguishable."""
    if gate:
        style = "bold yellow" if gate["fires"] else "dim"
        console.print(f"[{style}]{gate['message']}[/]", highlight=False, soft_wrap=True)


def _tpr_cell(resolved: bool, reachable: bool, text: str) -> str:
    """A TPR cell: dim with ``*`` when unresolved, ``†`` when a tie makes it unreachable."""
    from mialens.audit.results import UNREACHABLE_MARK

    if not resolved:
        return f"[dim]{text}*[/]"
    return text if reachable else f"{text}{UNREACHABLE_MARK}"


def _print_study(doc: dict, out: Path) -> None:
    """The study's table of settings, its footnotes and findings."""
    level = doc["figure_level"]
    table = Table(title=f"Study {doc['name']} ({doc['attack']})")
    columns = ("setting", "train acc", "test acc", "AUC", f"TPR@{level}", "ε", "geometric AUC",
               "outliers")  # fmt: skip
    for col in columns:
        table.add_column(col, justify="left" if col in ("setting", "outliers") else "right")
    unreachable = False
    for row in doc["settings"]:
        geo = (row.get("groups") or {}).get("geometric") or {}
        resolved = row["tpr_resolved"].get(level, True)
        reachable = row.get("tpr_reachable", {}).get(level, True)
        unreachable |= resolved and not reachable
        table.add_row(
            row["name"],
            f"{row['train_acc']:.3f}",
            f"{row['test_acc']:.3f}",
            f"{row['auc']:.3f}",
            _tpr_cell(resolved, reachable, f"{row['tpr_at_fpr'][level]:.4f}"),
            "" if row["epsilon"] is None else f"{row['epsilon']:.3g}",
            "n/a" if geo.get("auc") is None else f"{geo['auc']:.3f} ({geo['measure']})",
            "supported" if row.get("intra_class_outliers_supported") else "not supported",
        )
    console.print(table)
    if unreachable:
        from mialens.audit.results import UNREACHABLE_MARK, UNREACHABLE_NOTE

        console.print(f"{UNREACHABLE_MARK} {UNREACHABLE_NOTE}", highlight=False)
    for line in doc["findings"]:
        console.print(line, highlight=False, soft_wrap=True)
    console.print(f"outputs in {out}/: study.json, report.html, settings/")


def _run(config_path: Path | None, overrides: list[str], out: Path, quiet: bool, raw=None) -> None:
    from mialens.workflows.audit import run_audit
    from mialens.workflows.config import apply_overrides, load_config, validate_config

    _setup_logging(quiet)
    try:
        if raw is not None:
            config = validate_config(apply_overrides(raw, overrides))
        else:
            config = load_config(config_path, overrides)
        writable_folder(out, "--out")
        result = run_audit(config, out, progress=not quiet)
    except MialensError as exc:
        _fail(exc)
    _print_summary(result, out)
    if getattr(config, "analysis", None) is not None:  # a text audit has neither section
        _print_analysis(out)
    if getattr(config, "defenses", None) is not None:
        _defend(config, out, quiet)


def _defend(config, out: Path, quiet: bool) -> None:
    from mialens.workflows.defend import evaluate_defenses

    try:
        writable_folder(out, "--out")
        report = evaluate_defenses(config, out, progress=not quiet)
    except MialensError as exc:
        _fail(exc)
    level = report["privacy_level"]
    table = Table(title=f"Defences: privacy (TPR at FPR {level}, strongest attack) vs utility")
    columns = ("defence", "kind", "test acc", "AUC", f"TPR@{level}", "attack", "epsilon",
               "ε lower bound")  # fmt: skip
    for col in columns:
        table.add_column(col, justify="left" if col in ("defence", "kind", "attack") else "right")
    for name, e in report["defenses"].items():
        t = e["tpr_at_fpr"][level]
        eps = "" if e["epsilon"] is None else f"{e['epsilon']:.2f}"
        audit = e["dp_audit"]
        bounds = ", ".join(
            f"{method} {b['epsilon_lower']:.2f}" for method, b in audit.get("bounds", {}).items()
        )
        table.add_row(
            name, e["kind"], f"{e['test_acc']:.3f}", f"{e['auc']['value']:.3f}",
            f"{t['value']:.4f}", t["attack"], eps, bounds if audit["valid"] else "none valid",
        )  # fmt: skip
    console.print(table)
    if any(not e["dp_audit"]["valid"] for e in report["defenses"].values()):
        console.print(
            "none valid: the membership audit's complementary halves give no valid epsilon "
            "bound; a dp_audit: section audits DP-SGD defences with independent canaries",
            highlight=False,
            soft_wrap=True,
        )
    console.print(f"outputs in {out}/: defenses.json, defenses.html, defenses/<name>/")


def _print_analysis(run_dir: Path, text_summary: dict | None = None) -> None:
    from mialens.report.analysis_page import analysis_brief
    from mialens.report.text_analysis_page import text_analysis_brief
    from mialens.workflows.outputs import read_summary

    brief = (
        analysis_brief(read_summary(run_dir))
        if text_summary is None
        else text_analysis_brief(text_summary)
    )
    for line in brief:
        console.print(line, highlight=False, soft_wrap=True)
    console.print(f"analysis in {run_dir}/analysis/: samples.csv, summary.json, report.html")


@app.command()
def audit(
    config: Annotated[Path, typer.Argument(help="YAML audit configuration")],
    out: OutOption,
    overrides: SetOption = None,
    quiet: QuietOption = False,
) -> None:
    """Run the audit described by CONFIG and write metrics.json, samples.csv, report.html."""
    _run(config, overrides or [], out, quiet)


def _demo_text() -> str:
    return resources.files("mialens.configs").joinpath("demo.yaml").read_text(encoding="utf-8")


def demo_config() -> dict:
    """The embedded demo configuration (digits, bundled with scikit-learn)."""
    from mialens.workflows.config import parse_yaml

    return parse_yaml(_demo_text(), "the demo configuration")


@app.command()
def demo(
    out: OutOption = Path("runs/demo"),
    overrides: SetOption = None,
    quiet: QuietOption = False,
    show_config: Annotated[
        bool, typer.Option("--show-config", help="print the demo configuration and exit")
    ] = False,
) -> None:
    """Audit 16 MLPs on scikit-learn's digits with ten score-based attacks (offline; under a
    minute on two CPU cores)."""
    if show_config:  # verbatim (no markup, no wrapping): `> demo.yaml` is a valid audit file
        typer.echo(_demo_text(), nl=False)
        return
    _run(None, overrides or [], out, quiet, raw=demo_config())


@app.command()
def datasets() -> None:
    """List the registered data sets."""
    from mialens.data.catalog import list_datasets

    for info in list_datasets():
        line = f"[bold]{info.name:<14}[/] {info.description}"
        console.print(line, highlight=False, soft_wrap=True)


@app.command()
def attacks() -> None:
    """List the available attacks."""
    from mialens.attacks.registry import ATTACKS

    for name, cls in ATTACKS.items():
        console.print(f"[bold]{name:<14}[/] {cls.summary}", highlight=False, soft_wrap=True)


@app.command()
def defend(
    config: Annotated[Path, typer.Argument(help="YAML audit configuration with `defenses:`")],
    out: OutOption,
    overrides: SetOption = None,
    quiet: QuietOption = False,
) -> None:
    """Evaluate every defence of CONFIG as a privacy-utility point against adaptive attacks;
    writes OUT/defenses.json, OUT/defenses.html and one audit per defence."""
    from mialens.workflows.config import load_config

    _setup_logging(quiet)
    try:
        parsed = load_config(config, overrides or [])
    except MialensError as exc:
        _fail(exc)
    if getattr(parsed, "defenses", None) is None:  # a text audit has no defences
        _fail(
            ConfigError(
                f"{config} has no `defenses:` section; see examples/defenses_location30.yaml"
            )
        )
    _defend(parsed, out, quiet)


def _print_dp_audit(doc: dict, out: Path) -> None:
    """The accountant's epsilon and each method's bound (or estimate), as a table."""
    table = Table(title=f"DP audit: accountant ε = {doc['accountant_epsilon']:.3f} at "
                  f"δ = {doc['delta']:g} ({doc['canaries']['m']} {doc['canaries']['kind']} "
                  "canaries)")  # fmt: skip
    for col in ("method", "ε", "kind", "ε / accountant", "ceiling", "correct / guesses"):
        table.add_column(col, justify="left" if col in ("method", "kind") else "right")
    for name, e in doc["methods"].items():
        estimate = e["kind"] == "estimate"
        value = e["epsilon_estimate" if estimate else "epsilon_lower"]
        table.add_row(
            name,
            "n/a" if value is None else f"{value:.3f}",
            "estimate" if estimate else f"{100 * (1 - e['beta']):g}% lower bound",
            "n/a" if e["ratio"] is None else f"{e['ratio']:.3f}",
            "n/a" if e["ceiling"] is None else f"{e['ceiling']:.3f}",
            "n/a" if e["correct"] is None else f"{e['correct']} / {e['guesses']}",
        )
    console.print(table)
    for name, e in doc["methods"].items():
        if e.get("note"):
            console.print(f"{name}: {e['note']}", highlight=False, soft_wrap=True)
    console.print(f"outputs in {out}/: dp_audit.json, canaries.npz, dp_audit.html")


@app.command("dp-audit")
def dp_audit(
    config: Annotated[Path, typer.Argument(help="YAML DP audit: data, model, train.dp, dp_audit")],
    out: OutOption,
    overrides: SetOption = None,
    quiet: QuietOption = False,
) -> None:
    """Audit a DP-SGD training with canaries included independently (one or more runs):
    epsilon lower bounds against the accountant's epsilon. Writes OUT/dp_audit.json,
    OUT/canaries.npz and OUT/dp_audit.html; a rerun reuses the cached models."""
    from mialens.workflows.config import DPAuditConfig, load_config
    from mialens.workflows.dp_audit import run_dp_audit

    _setup_logging(quiet)
    try:
        parsed = load_config(config, overrides or [], model=DPAuditConfig)
        writable_folder(out, "--out")
        report = run_dp_audit(parsed, out)
    except MialensError as exc:
        _fail(exc)
    _print_dp_audit(report.doc, out)


@app.command()
def analyze(
    run_dir: Annotated[Path, typer.Argument(help="folder of an audit (mialens audit --out)")],
    overrides: SetOption = None,
    quiet: QuietOption = False,
) -> None:
    """Explain the leakage of the audit in RUN_DIR: which samples leak, and whether they are
    intra-class outliers. Writes RUN_DIR/analysis/ (samples.csv, summary.json, report.html);
    --set changes analysis.* settings."""
    from mialens.workflows.analyse import analyze_run

    _setup_logging(quiet)
    try:
        if run_dir.is_dir():  # else analyze_run says it is not an audit run folder
            writable_folder(run_dir, "RUN_DIR")
        analysis = analyze_run(run_dir, overrides or [])
    except MialensError as exc:
        _fail(exc)
    _print_analysis(run_dir, analysis.summary if isinstance(analysis.summary, dict) else None)


@app.command()
def study(
    config: Annotated[Path, typer.Argument(help="YAML study: a base audit and its settings")],
    out: OutOption,
    overrides: SetOption = None,
    only: Annotated[
        list[str] | None,
        typer.Option("--setting", help="run only this setting (repeatable)"),
    ] = None,
    quiet: QuietOption = False,
) -> None:
    """Audit and analyse the same model under every training setting of CONFIG (e.g. the
    grid of "Membership Inference Attacks Beyond Overfitting"); writes OUT/study.json,
    OUT/report.html and one audit folder per setting in OUT/settings/."""
    from mialens.workflows.study import load_study, run_study

    _setup_logging(quiet)
    try:
        spec, configs = load_study(config, overrides or [], only or [])
        writable_folder(out, "--out")
        doc = run_study(spec, configs, out, progress=not quiet)
    except MialensError as exc:
        _fail(exc)
    _print_study(doc, out)


def _print_dataset_inference(run, out: Path) -> None:
    """The test's verdict, its features' weights and the blind baseline's verdict."""
    result, record = run.inference, run.record
    table = Table(title=f"Dataset inference on LM {record['model']} (Maini et al. 2024)")
    table.add_column("feature")
    table.add_column("weight", justify="right")
    for name, weight in result.weights.items():
        table.add_row(name, f"{weight:+.3f}")
    console.print(table)
    console.print(
        f"{result.n_suspect} suspect and {result.n_validation} validation texts; tested "
        f"{result.n_suspect_tested} against {result.n_validation_tested}: Welch t = "
        f"{result.statistic:.3f} (df {result.df:.1f}), one-sided p = {result.p_value:.3g}",
        highlight=False,
        soft_wrap=True,
    )
    if result.rejects:
        verdict = (f"[bold]rejects[/] at alpha {result.alpha:g}: evidence that LM "
                   f"{record['model']} trained on the suspect texts (as a whole)")  # fmt: skip
    else:
        verdict = (f"does not reject at alpha {result.alpha:g}: no evidence that LM "
                   f"{record['model']} trained on the suspect texts")  # fmt: skip
    console.print(verdict, highlight=False, soft_wrap=True)
    gate = result.blind_baseline
    if result.shift_allowed:
        warning = (
            f"SHIFTED SETS (--allow-shift): {gate.message} The verdict says nothing about training."
        )
        console.print(f"[bold red]{warning}[/]", highlight=False, soft_wrap=True)
    else:
        console.print(f"[dim]{gate.message}[/]", highlight=False, soft_wrap=True)
    console.print(f"result in {out}/dataset_inference.json")


@app.command("dataset-inference")
def dataset_inference(
    run_dir: Annotated[Path, typer.Argument(help="folder of a text audit (mialens audit --out)")],
    suspect: Annotated[
        Path, typer.Option("--suspect", help="suspect texts: .txt (one a line) or .jsonl")
    ],
    validation: Annotated[
        Path,
        typer.Option("--validation", help="texts known to be out, drawn like the suspect ones"),
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="output folder [RUN_DIR/dataset_inference]")
    ] = None,
    alpha: Annotated[float, typer.Option("--alpha", help="level of the test")] = 0.05,
    seed: Annotated[int, typer.Option("--seed", help="seed of the halves and folds")] = 0,
    model: Annotated[int, typer.Option("--model", help="the target LM's index")] = 0,
    allow_shift: Annotated[
        bool, typer.Option("--allow-shift", help="run on sets the blind baseline tells apart")
    ] = False,
    reference: Annotated[
        bool, typer.Option("--reference", help="add the reference ratio (the other LMs)")
    ] = False,
    text_field: Annotated[str, typer.Option("--text-field", help="the .jsonl text field")] = "text",
    quiet: QuietOption = False,
) -> None:
    """Test whether the target LM of the text audit in RUN_DIR trained on the SUSPECT texts
    as a whole, against VALIDATION texts known to be out (Maini et al. 2024); refuses sets
    that a model-free classifier tells apart. Writes OUT/dataset_inference.json."""
    from mialens.workflows.dataset_inference import DEFAULT_DIR, run_dataset_inference

    _setup_logging(quiet)
    out = run_dir / DEFAULT_DIR if out is None else out
    try:
        run = run_dataset_inference(
            run_dir, suspect, validation, out, alpha=alpha, seed=seed, model=model,
            allow_shift=allow_shift, reference=reference, text_field=text_field,
        )  # fmt: skip
    except MialensError as exc:
        _fail(exc)
    _print_dataset_inference(run, out)
