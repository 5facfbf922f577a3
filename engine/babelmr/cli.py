"""The ``babelmr`` command."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, TypeVar

import botocore.exceptions
import click
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Column, Table

from babelmr import __version__
from babelmr.backends import BACKENDS, get_backend
from babelmr.errors import BabelMRError, InputError, JobFileError
from babelmr.images import BASE_IMAGE
from babelmr.job import job_schema, load_job
from babelmr.job.model import OutputFormat
from babelmr.settings import help_text, settings
from babelmr.spec import RunOutput
from babelmr.store import Store, filesystem_for, list_input_files, open_store
from babelmr.store.s3 import describe_s3_error
from babelmr.units import parse_size


def console(stderr: bool = False) -> Console:
    """A console for humans; piped output gets a wide fixed width instead of 80 columns."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=None if stream.isatty() else 160)


err = console(stderr=True)


class Group(click.Group):
    """Turns babelmr's own errors into a message and exit code 1, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except JobFileError as e:
            err.print(f"[red]error:[/] {e.path}: {len(e.problems)} problem(s) in the job file:", markup=True)
            for p in e.problems:
                err.print(f"  - {p}", markup=False)
            sys.exit(1)
        except BabelMRError as e:
            err.print("[red]error:[/] ", end="")
            err.print(str(e), markup=False)
            sys.exit(1)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
            # An AWS call the command did not expect to fail (S3 stores are checked first): still no traceback.
            err.print("[red]error:[/] ", end="")
            err.print(f"AWS request failed: {e}: check the AWS credentials (AWS_ACCESS_KEY_ID and "
                      "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE), the region (AWS_REGION) and their permissions "
                      "(docs/aws.md)", markup=False)
            sys.exit(1)
        except KeyboardInterrupt:
            err.print("[red]interrupted[/]")
            sys.exit(130)


class _CliLogHandler(RichHandler):
    """The handler configure_logging adds (a type of its own, so a second call finds and replaces it)."""


def configure_logging(verbosity: int) -> None:
    """Show babelmr's log on stderr: warnings by default, -v info (its decisions), -vv debug."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    logger = logging.getLogger("babelmr")
    for handler in [h for h in logger.handlers if isinstance(h, _CliLogHandler)]:
        logger.removeHandler(handler)  # called again in one process (tests, the API after the CLI)
    # the console the progress bars draw on, so log lines print above them
    handler = _CliLogHandler(console=err, show_path=False, markup=False, rich_tracebacks=False)
    handler.setLevel(level)  # the level on the handler too: a worker thread may lower the logger's
    logger.addHandler(handler)
    logger.setLevel(level)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]},
             epilog="\b\nSettings (environment variables, docs/settings.md):\n" + help_text())
@click.version_option(__version__, prog_name="babelmr")
@click.option("--verbose", "-v", count=True, help="Log babelmr's decisions on stderr: -v info, -vv debug.")
def main(verbose: int) -> None:
    """babelmr: run any program as a map or reduce step over Parquet/CSV data, locally or in containers."""
    configure_logging(verbose)
    settings()  # an invalid BABELMR_* variable fails here, named, before any work


@main.command()
@click.argument("job_file", type=click.Path())
@click.option("--backend", "-b", type=click.Choice(BACKENDS), default="local", show_default=True,
              help="Where tasks run (inline: in this process, one task at a time unless -c, for debugging).")
@click.option("--store", help="Override the job's store: a local folder or s3://bucket/prefix.")
@click.option("--concurrency", "-c", type=click.IntRange(min=1), help="Tasks at once (default: cores).")
@click.option("--memory", default="2GiB", show_default=True,
              help="docker/lambda: memory per task unless the stage sets 'memory' (CPU share follows, as on Lambda).")
@click.option("--ephemeral-storage", default="512MiB", show_default=True,
              help="docker/lambda emulators: size of each task's /tmp, like Lambda's ephemeral storage.")
@click.option("--workdir", type=click.Path(file_okay=False), help="local/inline: where the tasks' working "
              "directories go (default: $BABELMR_WORKDIR, else the system's temporary folder).")
@click.option("--emulators", type=click.IntRange(min=1),
              help="lambda: start this many AWS Lambda emulator containers per image instead of calling AWS.")
@click.option("--output", "-o", "output", help="Publish the result here (a folder or s3://bucket/prefix/) as "
              "part-*.<ext> and _SUCCESS; overrides the job's 'output'.")
@click.option("--output-format", type=click.Choice(["parquet", "csv", "jsonl"]),
              help="Format of the published result (default: the job's, else parquet).")
@click.option("--overwrite", is_flag=True, help="Replace an earlier babelmr result at the output location.")
@click.option("--json", "as_json", is_flag=True, help="Print the run record as JSON on stdout.")
@click.option("--resume", "resume_run", metavar="RUN", help="Continue run RUN of this job: skip its finished "
              "stages and committed tasks (see `babelmr resume`).")
@click.option("--force", is_flag=True, help="With --resume: continue although the inputs or partitioning changed.")
@click.option("--detach", is_flag=True, help="Run the coordinator in the background (surviving this terminal), "
              "print the run id and return; then `babelmr status/logs/wait/stop RUN`.")
@click.option("--run-id", hidden=True, help="The id of the new run (used by --detach).")
def run(job_file: str, backend: str, store: str | None, concurrency: int | None, memory: str,
        ephemeral_storage: str, workdir: str | None, emulators: int | None, output: str | None,
        output_format: OutputFormat | None, overwrite: bool, as_json: bool, resume_run: str | None = None,
        force: bool = False, detach: bool = False, run_id: str | None = None) -> None:
    """Validate JOB_FILE, run its stages and print where the result is."""
    from babelmr.backends.containers import ContainerLimits
    from babelmr.coordinator.run import run_job
    from babelmr.report import RichProgress, summary_table

    job = load_job(job_file, store=store, output=output, output_format=output_format, overwrite=overwrite)
    if job.output is None and (output_format or overwrite):
        raise click.UsageError("--output-format and --overwrite need an output: give --output URI or the job's "
                               "'output'")
    try:
        limits = ContainerLimits(parse_size(memory), parse_size(ephemeral_storage))
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    if detach:
        from babelmr.cli_runs import run_detached

        run_detached(job, backend, concurrency, memory, ephemeral_storage, emulators, resume_run, force)
        return
    from babelmr.cli_runs import prepare_coordinator

    prepare_coordinator()
    err.print(f"running [bold]{job.name}[/] ({len(job.stages)} stages) on backend {backend}, store {job.store}")
    with get_backend(backend, concurrency=concurrency, limits=limits, emulators=emulators, workdir=workdir) as b, \
            RichProgress(err) as progress:
        record = run_job(job, b, progress=progress, run_id=run_id, resume=resume_run, force=force)
    err.print(summary_table(record))
    if record.output is not None:
        _print_output(err, record.output)
    err.print(f"run record: babelmr show {record.run_id} --store {record.store}", markup=False)
    if as_json:
        click.echo(record.to_json(indent=2))


@main.command()
@click.argument("job_file", type=click.Path())
def validate(job_file: str) -> None:
    """Check JOB_FILE against the schema; print every problem with its JSON path."""
    job = load_job(job_file)
    err.print(f"[green]ok[/]: {job_file} is a valid job: {len(job.stages)} stage(s): "
              + " -> ".join(s.name for s in job.stages))


@main.command()
def schema() -> None:
    """Print the JSON Schema of job files."""
    click.echo(json.dumps(job_schema(), indent=2))


@main.command()
@click.argument("uris", nargs=-1, required=True)
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV instead of a table.")
@click.option("--limit", "-n", type=int, default=50, show_default=True, help="Rows to show in a table (0: all).")
def cat(uris: tuple[str, ...], as_csv: bool, limit: int) -> None:
    """Print Parquet files (paths, globs or s3:// URIs) as a table or CSV."""
    for bucket in sorted({uri[5:].split("/", 1)[0] for uri in uris if uri.startswith("s3://")}):
        open_store(f"s3://{bucket}").check()  # credentials, bucket and endpoint, before "matches no files"
    files = [f.path for uri in uris for f in list_input_files(uri)]
    if as_csv:
        writer = None
        for uri in files:
            fs, path = filesystem_for(uri)
            with _reading(uri), fs.open_input_file(path) as f:
                for batch in pq.ParquetFile(f).iter_batches():
                    if writer is None:
                        writer = pacsv.CSVWriter(sys.stdout.buffer, batch.schema)
                    writer.write_batch(batch)
        if writer:
            writer.close()
        return
    tables = []
    for uri in files:
        fs, path = filesystem_for(uri)
        with _reading(uri):
            tables.append(pq.read_table(path, filesystem=fs))
    try:
        data = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise InputError(f"the files given have conflicting schemas ({e}): cat them one at a time") from None
    shown = data if limit == 0 else data.slice(0, limit)
    table = Table(*data.schema.names, caption=f"{data.num_rows} rows" + (
        f" (first {limit})" if 0 < limit < data.num_rows else ""))
    for row in shown.to_pylist():
        table.add_row(*("" if v is None else str(v) for v in row.values()))
    console().print(table)


@contextlib.contextmanager
def _reading(uri: str) -> Iterator[None]:
    """Turn a file that is not Parquet, or cannot be read, into an `InputError` naming it."""
    try:
        yield
    except (pa.ArrowInvalid, OSError) as e:
        if uri.startswith("s3://") and not isinstance(e, pa.ArrowInvalid):
            raise InputError(f"cannot read {uri}: {describe_s3_error(e)}") from None
        raise InputError(f"cannot read {uri} as Parquet ({e}): `babelmr cat` prints Parquet files; "
                         "read CSV or other files with a text tool") from None


def _open_store(uri: str) -> Store:
    """The store at ``uri``; an S3 store is checked first, so a bad bucket or key fails with the fix."""
    store = open_store(uri)
    store.check()
    return store


FC = TypeVar("FC", bound=Callable[..., Any])  # a click command function


def _store_option(f: FC) -> FC:
    return click.option("--store", default=".babelmr", show_default=True,
                        help="The store: a local folder or s3://bucket/prefix.")(f)


@main.command()
@_store_option
def runs(store: str) -> None:
    """List the runs recorded in a store."""
    from babelmr.coordinator.records import list_runs, read_record

    s = _open_store(store)
    table = Table("status", "started", "seconds", "stages", "backend")
    table.columns.insert(0, Column("run", no_wrap=True))
    for run_id in list_runs(s):
        r = read_record(s, run_id)
        started = datetime.fromtimestamp(r.started_at).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(run_id, r.status, started, f"{r.seconds or 0:.1f}", str(len(r.stages)), r.backend)
    console().print(table)


@main.command()
@click.argument("run_id")
@_store_option
@click.option("--json", "as_json", is_flag=True, help="Print the whole run record as JSON.")
@click.option("--timeline", type=click.Path(dir_okay=False),
              help="Also draw the run's timeline (one bar per task attempt) into this .png or .svg file.")
def show(run_id: str, store: str, as_json: bool, timeline: str | None) -> None:
    """Show a run: its stages, timings, cost and output files."""
    from babelmr.coordinator.records import read_record
    from babelmr.cost import run_cost
    from babelmr.report import cost_table, summary_table

    record = read_record(_open_store(store), run_id)
    if timeline:
        from babelmr.timeline import save

        err.print(f"timeline: {save(record, timeline)}", markup=False, highlight=False)
    if as_json:
        click.echo(record.to_json(indent=2))
        return
    out = console()
    out.print(summary_table(record))
    report = run_cost(record)
    out.print(cost_table(report))
    out.print(report.summary(), markup=False, highlight=False)
    if record.error:
        out.print("[red]error:[/]", record.error, markup=True, highlight=False)
    cli_runs.show_resumes_and_tolerated(out, record)
    if record.output is not None:
        _print_output(out, record.output)


def _print_output(out: Console, output: RunOutput) -> None:
    """Where a run's result is: the published output location, else the final stage's files in the store."""
    if output.uri:
        out.print(f"result: {output.rows} rows in {len(output.parts or [])} {output.format} part(s) and "
                  f"_SUCCESS at {output.uri}", markup=False, highlight=False)
        return
    files = output.files
    out.print(f"result: {len(files)} Parquet file(s) of stage {output.stage!r}:", markup=False)
    for f in files:
        out.print(f"  {f}", markup=False, highlight=False)


@main.group()
def image() -> None:
    """Build container images: the babelmr base image and your job's image (needs a Docker engine)."""


@image.command("base")
@click.option("--tag", "-t", default=BASE_IMAGE, show_default=True, help="Name of the base image.")
def image_base(tag: str) -> None:
    """Build the base image (engine, Python, pyarrow, pandas, Lambda runtime) from this checkout's Dockerfile."""
    from babelmr.images import build_base_image

    report = build_base_image(tag=tag)
    err.print(f"[green]built[/] {report.describe()}", highlight=False)


@image.command("build")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--tag", "-t", help="Name of the image (default: babelmr-<folder>:latest).")
def image_build(directory: str, tag: str | None) -> None:
    """Build a job's image from DIRECTORY/Dockerfile (FROM babelmr-base:latest, built first if missing)."""
    from babelmr.images import build_image

    report = build_image(directory, tag)
    err.print(f"[green]built[/] {report.describe()}", highlight=False)
    err.print(f"use it in a job: \"image\": \"{report.tag}\" (with --backend docker)", markup=False)


@main.command()
@click.argument("image")
@click.option("--function", "function", help="Function name (default: the image's repository name).")
@click.option("--role", help="Execution role ARN (needed to create the function).")
@click.option("--memory", default="2048MB", show_default=True, help="Lambda memory (CPU share follows).")
@click.option("--timeout", type=click.IntRange(1, 900), default=900, show_default=True, help="Seconds per task.")
@click.option("--ephemeral-storage", default="2048MB", show_default=True, help="Size of /tmp (512MB to 10240MB).")
@click.option("--create-role", "role_name", help="Create (or update) an execution role of this name for the job "
              "given with --job, and use it.")
@click.option("--job", "job_file", type=click.Path(), help="The job whose buckets --create-role allows.")
def deploy(image: str, function: str | None, role: str | None, memory: str, timeout: int, ephemeral_storage: str,
           role_name: str | None, job_file: str | None) -> None:
    """Push IMAGE to ECR and create or update its Lambda function (see docs/aws.md)."""
    import boto3

    from babelmr import deploy as d
    from babelmr.backends.aws_lambda import function_name
    from babelmr.images import docker_client

    if role_name:
        if not job_file:
            raise click.UsageError("--create-role needs --job JOB (the job whose buckets the role may use)")
        role = d.create_role(boto3.client("iam"), role_name, d.task_policy(load_job(job_file)))
        err.print(f"role {role}")
    settings = d.FunctionSettings(parse_size(memory) // 10**6, timeout, parse_size(ephemeral_storage) // 10**6, role)
    ecr, lam = boto3.client("ecr"), boto3.client("lambda")
    repository = d.ensure_repository(ecr, d.repository_name(image))
    uri = d.push_image(docker_client(1), ecr, image, repository, lambda line: err.print(line, markup=False))
    arn = d.deploy_function(lam, function or function_name(image), uri, settings)
    err.print(f"[green]deployed[/] {uri} as {arn}")


@main.command()
@click.argument("job_file", type=click.Path())
@click.option("--store", help="The store the job will use, if not the job file's.")
@click.option("--account", default="ACCOUNT", show_default=True, help="AWS account id for the ARNs.")
@click.option("--region", default="REGION", show_default=True, help="AWS region for the ARNs.")
def policy(job_file: str, store: str | None, account: str, region: str) -> None:
    """Print least-privilege IAM policies for a job: its tasks' role and the coordinator."""
    from babelmr import deploy as d

    job = load_job(job_file, store=store)
    click.echo(json.dumps({"task_role_policy": d.task_policy(job),
                           "coordinator_policy": d.coordinator_policy(job, region, account)}, indent=2))


@main.command()
@_store_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (loopback: only this machine can see the dashboard).")
@click.option("--port", "-p", type=click.IntRange(0, 65535), default=8765, show_default=True, help="Port (0: any).")
def ui(store: str, host: str, port: int) -> None:
    """Serve a read-only web dashboard of the runs in a store (local folder or s3://)."""
    from babelmr.ui import serve

    s = _open_store(store)  # an unreachable bucket is an error now, not on every page
    serve(s, host, port, lambda url: err.print(f"dashboard of {s.uri} on {url} (Ctrl-C stops it)", markup=False))


from babelmr import cli_runs  # noqa: E402 - registers resume, status, wait, logs and stop on `main`

cli_runs.register(main, run)
