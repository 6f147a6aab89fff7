"""``emcoins``: submit jobs, watch them, and read their results and plots from the shell.

Talks to the API at ``EMCOINS_API_URL`` (default: the local stack) over HTTP, with
``Authorization: Bearer $EMCOINS_API_TOKEN`` when a token is set. Errors are one line
on stderr and a non-zero exit status.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from cli.client import DEFAULT_URL, FINAL, Client, ClientError, EventsUnavailable
from shared.status import JobStatus


class _Group(click.Group):
    """Turns :class:`ClientError` into click's one-line ``Error: ...`` and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ClientError as exc:
            raise click.ClickException(str(exc)) from None


class _Components(click.ParamType):
    name = "K|auto"

    def convert(self, value: Any, param, ctx) -> int | str:
        if value == "auto" or isinstance(value, int):
            return value
        try:
            k = int(value)
        except ValueError:
            self.fail(f'{value!r} is not a positive integer or "auto"', param, ctx)
        if k < 1:
            self.fail(f"{k} is not a positive integer", param, ctx)
        return k


@click.group(cls=_Group)
@click.option("--api-url", envvar="EMCOINS_API_URL", default=DEFAULT_URL, show_default=True,
              help="Base URL of the API (EMCOINS_API_URL).")
@click.option("--token", envvar="EMCOINS_API_TOKEN", default=None,
              help="Bearer token, if the API requires one (EMCOINS_API_TOKEN).")
@click.option("--events-url", envvar="EMCOINS_EVENTS_URL", default=None,
              help="Base URL of the job event streams (EMCOINS_EVENTS_URL); default: "
                   "http://127.0.0.1:8002 with the default API URL, else the API URL.")
@click.version_option(package_name="emcoins")
@click.pass_context
def cli(ctx: click.Context, api_url: str, token: str | None, events_url: str | None) -> None:
    """Estimate hidden coins' biases with the EM-Coins job service."""
    ctx.obj = Client(api_url, token=token, events_url=events_url)


def read_draws(path: Path) -> list[str]:
    """Flip strings, one per line; blank lines and ``#`` comments are skipped."""
    lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    draws = [line for line in lines if line]
    if not draws:
        raise click.BadParameter(f"{path} has no draws", param_hint="--file")
    return draws


def read_request(path: Path) -> dict[str, Any]:
    """A whole job request body from a JSON file."""
    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise click.BadParameter(
            f"{path} is not a JSON file: {exc}", param_hint="--request"
        ) from None
    if not isinstance(body, dict):
        raise click.BadParameter(f"{path} holds no JSON object", param_hint="--request")
    return body


def read_counts(path: Path) -> list[list[int]]:
    """``heads,flips`` or ``heads,flips,count`` rows, one per line; a header line is allowed.
    A count says how many draws the row stands for (a histogram in a few lines)."""
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = [field.strip() for field in line.split(",")]
        try:
            if len(fields) not in (2, 3):
                raise ValueError(line)
            row = [int(field) for field in fields]
        except ValueError:
            if number == 1 and not rows:
                continue  # a header such as "heads,flips,count"
            raise click.BadParameter(
                f"{path} line {number}: expected heads,flips or heads,flips,count as "
                f"integers, got {line!r}",
                param_hint="--counts",
            ) from None
        rows.append(row)
    if not rows:
        raise click.BadParameter(f"{path} has no heads,flips lines", param_hint="--counts")
    return rows


def _fixed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _interval(intervals: list[list[float | None]], i: int) -> str:
    # The API sends no intervals at all when every replicate failed.
    if i >= len(intervals):
        return "n/a"
    low, high = intervals[i]
    return f"[{_fixed(low)}, {_fixed(high)}]"


def _percent(level: float) -> str:
    return f"{level * 100:g}%"


def result_rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    """Rows of method, coin, bias or mean, weight, standard error or sigma; with EM's
    bootstrap, each bias and weight is followed by its interval (blank for GMM)."""
    rows = []
    em = result.get("em")
    boot = (em or {}).get("bootstrap")
    if em:
        for i, theta in enumerate(em["thetas"]):
            cells = ["EM", str(i + 1), _fixed(theta), _fixed(em["weights"][i]),
                     _fixed(em["standard_errors"][i])]
            if boot:
                cells[3:3] = [_interval(boot["thetas"], i)]
                cells[5:5] = [_interval(boot["weights"], i)]
            rows.append(tuple(cells))
    gmm = result.get("gmm")
    if gmm:
        for i, mean in enumerate(gmm["means"]):
            cells = ["GMM", str(i + 1), _fixed(mean), _fixed(gmm["weights"][i]),
                     _fixed(gmm["stds"][i])]
            if boot:
                cells[3:3] = [""]
                cells[5:5] = [""]
            rows.append(tuple(cells))
    return rows


def result_header(result: dict[str, Any]) -> tuple[str, ...]:
    """The estimates table's column names, matching :func:`result_rows`."""
    boot = (result.get("em") or {}).get("bootstrap")
    if not boot:
        return ("method", "coin", "bias/mean", "weight", "std err/sigma")
    interval = f"{_percent(boot['level'])} interval"
    return ("method", "coin", "bias/mean", interval, "weight", interval, "std err/sigma")


def bootstrap_lines(boot: dict[str, Any]) -> list[str]:
    """What the intervals rest on: how many replicates, and how many could not be used
    plainly."""
    return [
        f"intervals: {_percent(boot['level'])} percentile, from {boot['replicates']} "
        f"{boot['kind']} bootstrap replicates",
        f"  {boot['failed']} failed to fit; {boot['ambiguous']} ambiguous (two ways of matching "
        "their coins to the fit's were almost equally good)",
    ]


def components_test_lines(test: dict[str, Any], *, fitted: bool) -> list[str]:
    """The bootstrap likelihood-ratio tests of k against k+1 coins, and the K they select."""
    rows = [("coins", "statistic", "p-value", "")]
    for item in test["tests"]:
        k = item["k"]
        rows.append((f"{k} vs {k + 1}", f"{item['statistic']:.2f}", f"{item['p_value']:.3f}",
                     "selected" if k == test["selected"] else ""))
    if any(item["k"] == test["selected"] for item in test["tests"]):
        why = "the first test not significant at 0.05"
    else:
        why = "every test up to the largest K allowed was significant at 0.05"
    return [
        f"number of coins by bootstrap likelihood-ratio tests ({test['replicates']} replicates "
        "each):",
        *_table(rows),
        f"selected: {test['selected']} coins, {why} "
        f"({'fitted' if fitted else 'reported only; the fit keeps its K'})",
    ]


# Posterior rows the CLI prints; `emcoins result --json` or the API gives them all.
POSTERIOR_ROWS_SHOWN = 15


def format_result(job: dict[str, Any]) -> str:
    """A finished job's estimates and diagnostics as aligned text tables."""
    result = job["result"]
    lines = [
        f"job {job['id']}: {job['progress']['draws_total']} draws, "
        f"{result['n_components']} coins"
    ]
    lines += _table([result_header(result), *result_rows(result)])
    em = result.get("em")
    if em and em.get("bootstrap"):
        lines += bootstrap_lines(em["bootstrap"])
    test = result.get("components_test")
    # With K "auto", the test's K is the one fitted (the service's rule), not BIC's.
    auto = (job.get("spec") or {}).get("n_components") == "auto"
    if result.get("bic"):
        rows = [("K", "BIC", "ICL")]
        for k, bic in result["bic"].items():
            icl = (result.get("icl") or {}).get(k)
            rows.append((k, f"{bic:.1f}", "n/a" if icl is None else f"{icl:.1f}"))
        chooser = "the test below" if test and auto else "BIC"
        lines += ["", f"choosing K (lower is better; K is chosen by {chooser}):", *_table(rows)]
    if test:
        lines += ["", *components_test_lines(test, fitted=auto)]
    if em:
        lines += ["", *em_work(em)]
    for method, error in (result.get("errors") or {}).items():
        lines.append(f"{method} failed: {error['code']}: {error['message']}")
    for warning in result.get("warnings") or []:
        lines.append(f"warning {warning['code']}: {warning['message']}")
    return "\n".join(lines)


def em_work(em: dict[str, Any]) -> list[str]:
    """How EM got there: convergence, restarts, the trajectory, and which coin each draw
    came from."""
    lines = [f"EM: {em['iterations']} iterations, log-likelihood {em['log_likelihood']:.6f}, "
             f"{'converged' if em['converged'] else 'NOT converged'}"]
    summary = em.get("restart_summary")
    if summary:
        lines.append(f"restarts: {summary['at_best']} of {summary['restarts']} reached the best "
                     f"log-likelihood (within {summary['tolerance']:g}); spread "
                     f"{summary['spread']:.3g}")
    trajectory = em.get("trajectory")
    if trajectory and trajectory["log_likelihood"]:
        steps = trajectory["log_likelihood"]
        lines.append(f"trajectory: log-likelihood {steps[0]:.4f} -> {steps[-1]:.4f} "
                     f"over {len(steps)} iterations")
    posteriors = em.get("posteriors")
    if posteriors:
        k = len(em["thetas"])
        rows = [("heads", "flips", "count", *(f"P(coin {i + 1})" for i in range(k)))]
        shown = list(zip(posteriors["pairs"], posteriors["probabilities"], strict=True))
        for (heads, flips, count), probabilities in shown[:POSTERIOR_ROWS_SHOWN]:
            rows.append((str(heads), str(flips), str(count), *(f"{p:.3f}" for p in probabilities)))
        more = len(shown) - POSTERIOR_ROWS_SHOWN
        lines += ["which coin each draw came from (most frequent draws first):", *_table(rows)]
        if more > 0 or posteriors["truncated"]:
            lines.append("  ... more rows: emcoins result --json, or GET /jobs/<id>/posteriors")
    return lines


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join([row[0].ljust(widths[0])]
                      + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]).rstrip()
            for row in rows]


def _replicates(progress: dict[str, Any] | None) -> dict[str, Any] | None:
    """The ``{done, total, analysis}`` count of a job's progress or of a progress event,
    which may carry it bare."""
    if not progress:
        return None
    if "analysis" in progress and "done" in progress:
        return progress
    return progress.get("replicates")


def analysis_name(replicates: dict[str, Any]) -> str:
    """``bootstrap``, or ``test of 1 vs 2 coins`` for a stage of the components test."""
    if replicates["analysis"] == "components_test":
        k = replicates.get("stage")
        return f"test of {k} vs {k + 1} coins" if k else "components test"
    return replicates["analysis"]


def replicates_text(progress: dict[str, Any]) -> str:
    """``bootstrap: 120/2000 replicates``, or empty when the job has no replicates to run."""
    replicates = _replicates(progress)
    if not replicates:
        return ""
    return f"{analysis_name(replicates)}: {replicates['done']}/{replicates['total']} replicates"


class ReplicateBars:
    """Progress bars on stderr of the replicates done, one per analysis (and per stage of
    the components test, whose count starts again at each k)."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._analysis: tuple[str, int | None, int] | None = None
        self._shown = 0

    def update(self, progress: dict[str, Any] | None) -> None:
        """Move the bar to the progress given (a job's, or a progress event's data)."""
        replicates = _replicates(progress)
        if not replicates:
            return
        analysis = (replicates["analysis"], replicates.get("stage"), replicates["total"])
        done = replicates["done"]
        if analysis != self._analysis or done < self._shown:
            self.close()
            self._bar = click.progressbar(length=max(replicates["total"], 1),
                                          label=f"{analysis_name(replicates)}: replicates",
                                          file=sys.stderr, show_pos=True)
            self._bar.__enter__()
            self._analysis, self._shown = analysis, 0
        if done > self._shown:
            self._bar.update(done - self._shown)
            self._shown = done

    def close(self) -> None:
        """End the bar on show, if any."""
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
        self._bar, self._analysis, self._shown = None, None, 0


def _final_or_fail(job: dict[str, Any]) -> dict[str, Any]:
    if job["status"] == "succeeded":
        return job
    error = job.get("error") or {}
    why = f": {error.get('code')}: {error.get('message')}" if error else ""
    raise ClientError(f"job {job['id']} {job['status']}{why}")


def wait_for(client: Client, job_id: str, *, timeout: float, fetches: bool = True,
             interval: float = 0.25) -> dict:
    """Poll until the job is final, with a progress bar of draws fetched on stderr.

    ``fetches`` is False for inline draws, which arrive complete: no bar then.
    """
    deadline = time.monotonic() + timeout
    job = client.job(job_id)
    total = max(job["progress"]["draws_total"], 1)
    if not fetches:
        return _wait_fit(client, job, deadline=deadline, timeout=timeout, interval=interval)
    with click.progressbar(length=total, label="fetching draws", file=sys.stderr,
                           show_pos=True) as bar:
        shown = 0
        while True:
            fetched = job["progress"]["draws_fetched"]
            bar.update(fetched - shown)
            shown = fetched
            if job["status"] in FINAL or job["status"] == "fitting":
                break
            if time.monotonic() > deadline:
                raise ClientError(f"job {job_id} still {job['status']} after {timeout:.0f} s")
            time.sleep(interval)
            job = client.job(job_id)
    return _wait_fit(client, job, deadline=deadline, timeout=timeout, interval=interval)


def _wait_fit(client: Client, job: dict, *, deadline: float, timeout: float,
              interval: float) -> dict:
    """Poll a job whose draws are all in until its fits finish."""
    job_id = job["id"]
    if job["status"] not in FINAL:
        click.echo("fitting...", err=True)
    bars = ReplicateBars()
    try:
        while job["status"] not in FINAL:
            bars.update(job["progress"])
            if time.monotonic() > deadline:
                raise ClientError(f"job {job_id} still {job['status']} after {timeout:.0f} s")
            time.sleep(interval)
            job = client.job(job_id)
        bars.update(job["progress"])
    finally:
        bars.close()
    return job


def follow_job(client: Client, job_id: str, *, timeout: float) -> dict:
    """Follow the job's event stream until it ends and return the job, with a progress
    bar of draws fetched on stderr (none for inline draws, which arrive complete).

    Polls instead when there is no event stream at the client's events URL.
    """
    job = client.job(job_id)
    if job["status"] in FINAL:
        return job
    fetches = job["spec"].get("source") is not None
    started = time.monotonic()
    events = client.follow(job_id, timeout=timeout)
    try:
        first = next(events)
    except EventsUnavailable as exc:
        click.echo(f"{exc}; polling instead (EMCOINS_EVENTS_URL)", err=True)
        left = max(timeout - (time.monotonic() - started), 0.0)
        return wait_for(client, job_id, timeout=left, fetches=fetches)
    stream = itertools.chain([first], events)
    status = job["status"]
    if fetches:
        with click.progressbar(length=max(job["progress"]["draws_total"], 1),
                               label="fetching draws", file=sys.stderr, show_pos=True) as bar:
            shown = 0
            for event in stream:
                if event.name == "done":
                    return event.data
                if event.name == "progress" and "draws_fetched" in event.data:
                    bar.update(event.data["draws_fetched"] - shown)
                    shown = event.data["draws_fetched"]
                elif event.name == "status":
                    status = event.data["status"]
                if status == "fitting" or status in FINAL:
                    break
    if status not in FINAL:
        click.echo("fitting...", err=True)
    bars = ReplicateBars()
    try:
        for event in stream:
            if event.name == "done":
                return event.data
            if event.name == "progress":
                bars.update(event.data)
    finally:
        bars.close()
    raise ClientError(f"the event stream of job {job_id} ended without the job")


def _follow_until_stopped(client: Client, job_id: str, *, timeout: float) -> dict:
    try:
        return follow_job(client, job_id, timeout=timeout)
    except KeyboardInterrupt:
        raise click.ClickException(
            f"stopped waiting; job {job_id} goes on (emcoins cancel {job_id} stops it)"
        ) from None


def _add_analysis(body: dict[str, Any], field: str, options: dict[str, tuple[str, Any]], *,
                  needs: str) -> None:
    """Put the options typed for one analysis (``{field: (option, value)}``) into the
    request, over a request file's own. Without the option that asks for the analysis
    (``needs``) here or in the file, the others are a usage error."""
    given = {name: value for name, (_, value) in options.items() if value is not None}
    if not given:
        return
    analysis = body.get(field)
    if not isinstance(analysis, dict):
        if needs not in given:
            typed = " and ".join(options[name][0] for name in given)
            verb = "needs" if len(given) == 1 else "need"
            raise click.UsageError(f"{typed} {verb} {options[needs][0]}")
        analysis = {}
    body[field] = {**analysis, **given}


@cli.command()
@click.option("--source", metavar="URL", help="Draw source: one GET per draw.")
@click.option("--draws", type=click.IntRange(min=1), default=30, show_default=True,
              help="Draws to fetch from --source.")
@click.option("--file", "draws_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Flip strings (H/T), one draw per line.")
@click.option("--counts", "counts_file",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV of heads,flips (one draw) or heads,flips,count per line.")
@click.option("--request", "request_file",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A whole POST /jobs body as JSON (e.g. examples/geissler_counts.json); "
                   "fit options given on the command line replace its own.")
@click.option("--components", type=_Components(), default=2, show_default=True,
              help='Number of coins, or "auto" to choose it by BIC (by the test with '
                   '--test-components).')
@click.option("--max-components", type=click.IntRange(min=1), default=None,
              help="Largest K tried with --components auto.")
@click.option("--restarts", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--weights", type=click.Choice(["learn", "equal"]), default="learn",
              show_default=True)
@click.option("--seed", type=click.IntRange(min=0, max=2**32 - 1), default=None,
              help="Makes the fits repeatable.")
@click.option("--bootstrap", "bootstrap_replicates", type=click.IntRange(min=1), default=None,
              metavar="B", help="Bootstrap intervals for EM's biases and weights, from B refits "
                                "of resampled draws.")
@click.option("--bootstrap-kind", type=click.Choice(["parametric", "nonparametric"]),
              default=None, help="Resample the draws themselves (nonparametric) or simulate "
                                 "them from the fit (parametric); default: the API's.")
@click.option("--level", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=None, help="Confidence level of the bootstrap intervals; default: the "
                                 "API's (0.95).")
@click.option("--test-components", type=click.IntRange(min=2), default=None, metavar="K",
              help="Test k against k+1 coins by a bootstrap likelihood ratio, from k=1 up to "
                   "at most K coins.")
@click.option("--test-replicates", type=click.IntRange(min=1), default=None, metavar="B",
              help="Bootstrap replicates per test of --test-components.")
@click.option("--wait", is_flag=True, help="Show progress, then print the result table.")
@click.option("--timeout", type=float, default=600.0, show_default=True,
              help="Seconds to wait with --wait.")
@click.pass_obj
def submit(client: Client, source, draws, draws_file, counts_file, request_file, components,
           max_components, restarts, weights, seed, bootstrap_replicates, bootstrap_kind, level,
           test_components, test_replicates, wait, timeout) -> None:
    """Submit a job; print its id (or, with --wait, its result)."""
    given = [name for name, value in (("--source", source), ("--file", draws_file),
                                      ("--counts", counts_file), ("--request", request_file))
             if value]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --source, --file, --counts or --request")
    options = {"n_components": components, "restarts": restarts, "weights": weights}
    if request_file:
        body = read_request(request_file)
        # Only the options typed on the command line replace the file's own.
        context = click.get_current_context()
        for name, param in (("n_components", "components"), ("restarts", "restarts"),
                            ("weights", "weights")):
            if context.get_parameter_source(param) is click.core.ParameterSource.COMMANDLINE:
                body[name] = options[name]
    elif source:
        body = {**options, "source": {"url": source, "draws": draws}}
    elif draws_file:
        body = {**options, "draws": read_draws(draws_file)}
    else:
        body = {**options, "counts": read_counts(counts_file)}
    if max_components is not None:
        body["max_components"] = max_components
    if seed is not None:
        body["seed"] = seed
    _add_analysis(body, "bootstrap", {
        "replicates": ("--bootstrap", bootstrap_replicates),
        "kind": ("--bootstrap-kind", bootstrap_kind),
        "level": ("--level", level),
    }, needs="replicates")
    _add_analysis(body, "test_components", {
        "max_components": ("--test-components", test_components),
        "replicates": ("--test-replicates", test_replicates),
    }, needs="max_components")
    job_id = client.submit(body)["id"]
    if not wait:
        click.echo(job_id)
        return
    click.echo(f"job {job_id} submitted", err=True)
    job = _follow_until_stopped(client, job_id, timeout=timeout)
    click.echo(format_result(_final_or_fail(job)))


@cli.command()
@click.argument("job_id")
@click.option("--timeout", type=float, default=600.0, show_default=True,
              help="Seconds to wait.")
@click.pass_obj
def wait(client: Client, job_id: str, timeout: float) -> None:
    """Follow a job until it ends (progress on stderr), then print its result table."""
    job = _follow_until_stopped(client, job_id, timeout=timeout)
    click.echo(format_result(_final_or_fail(job)))


@cli.command()
@click.argument("job_id")
@click.pass_obj
def status(client: Client, job_id: str) -> None:
    """Print a job's status and progress."""
    job = client.job(job_id)
    progress = job["progress"]
    fetched, total = progress["draws_fetched"], progress["draws_total"]
    line = f"{job['id']}  {job['status']}  {fetched}/{total} draws"
    if replicates := replicates_text(progress):
        line += f"  {replicates}"
    if job.get("error"):
        line += f"  {job['error']['code']}: {job['error']['message']}"
    click.echo(line)


@cli.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def result(client: Client, job_id: str, as_json: bool) -> None:
    """Print a succeeded job's estimates."""
    job = client.job(job_id)
    if job["status"] not in FINAL:
        raise ClientError(f"job {job_id} is {job['status']}; it has no result yet")
    job = _final_or_fail(job)
    click.echo(json.dumps(job["result"], indent=2) if as_json else format_result(job))


@cli.command()
@click.argument("job_id")
@click.pass_obj
def cancel(client: Client, job_id: str) -> None:
    """Cancel a job that has not finished."""
    job = client.cancel(job_id)
    click.echo(f"{job['id']}  {job['status']}")


@cli.command()
@click.argument("job_id")
@click.pass_obj
def delete(client: Client, job_id: str) -> None:
    """Delete a job and everything kept for it (cancelling it first if unfinished)."""
    client.delete(job_id)
    click.echo(f"{job_id}  deleted")


@cli.command(name="list")
@click.option("--status", type=click.Choice(sorted(s.value for s in JobStatus)),
              help="Only jobs in this status.")
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True,
              help="How many jobs to show, newest first.")
@click.pass_obj
def list_jobs(client: Client, status: str | None, limit: int) -> None:
    """Your jobs, newest first."""
    page = client.jobs(status=status, page_size=limit)
    for job in page["jobs"]:
        progress = job["progress"]
        click.echo(f"{job['id']}  {job['status']:<9}  {job['created_at']}  "
                   f"{progress['draws_fetched']}/{progress['draws_total']} draws")
    if not page["jobs"]:
        click.echo("no jobs")


@cli.command()
@click.argument("job_id")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("fit.png"), show_default=True,
              help="File to write; .svg gives SVG, anything else PNG.")
@click.pass_obj
def plot(client: Client, job_id: str, output: Path) -> None:
    """Save a succeeded job's plot: the heads fractions and the fitted mixtures."""
    fmt = "svg" if output.suffix.lower() == ".svg" else "png"
    image = client.plot(job_id, fmt)
    try:
        output.write_bytes(image)
    except OSError as exc:
        raise ClientError(f"cannot write {output}: {exc.strerror}") from None
    click.echo(f"wrote {output} ({len(image)} bytes)")


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="emcoins")


if __name__ == "__main__":
    main()
