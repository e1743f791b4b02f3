"""The ``trialbridge`` command line: map protocols to FHIR and back, push them to FHIR servers and
pull them again.

Every failure prints one line, ``trialbridge: error: ...``, to standard error and exits non-zero
(2 for bad input or usage, 1 for anything else trialbridge raised); never a traceback.  Mapping
issues (values kept as text) are printed as ``trialbridge: warning: ...`` lines.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import io
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

from adapter import enrolments, lab_results, observations
from adapter.client import VERSION_PREFIXES, FhirClient
from adapter.cohort_command import add_cohort_arguments, run_cohort
from adapter.config import FhirVersion, ServerConfig, load_config
from adapter.definitions import DEFINITIONS, push_definitions, write_definitions
from adapter.errors import ConfigError
from adapter.prescreen import check_nct, format_table, parse_patient, prescreen
from adapter.private_files import open_private
from adapter.pull import pull_study
from adapter.push import push_bundle, push_protocol
from adapter.registry import RegistryClient
from adapter.row_results import TrialPushResult
from adapter.sync.command import add_sync_parser
from mappings import fhirjson
from mappings.errors import InputError, MappingError, MappingIssue, TrialbridgeError, combine_issues
from mappings.fhir import SUPPORTED_VERSIONS, read_bundle, write_bundle
from mappings.model import to_dict
from mappings.outcomes import parse_time_frame
from mappings.sources import decode, detect_format, read_protocol
from mappings.sources.ctgov_json import parse_json

EXIT_INPUT = 2
EXIT_FAILURE = 1

Command = Callable[[argparse.Namespace], int]


def _read_source(source: str) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read()
    path = Path(source)
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise InputError(f"no such file: {source}") from exc
    except IsADirectoryError as exc:
        raise InputError(f"is a directory, not a file: {source}") from exc
    except OSError as exc:
        raise InputError(f"cannot read {source}: {exc.strerror}") from exc


def _record_source(source: str, config: str | None) -> bytes:
    """A record file, standard input, or (an NCT number that names no file) the registry's record."""
    if source.upper().startswith("NCT") and not Path(source).exists():
        with RegistryClient(load_config(config).registry) as registry:  # adapter/registry.py
            return registry.record(source)
    return _read_source(source)


def _write_json(data: Any, out: str | None) -> None:
    text = fhirjson.dumps(data, indent=2) + "\n"
    if out is None or out == "-":
        sys.stdout.write(text)
        return
    try:
        with open_private(out) as handle:  # 0600: patient data (adapter/private_files.py)
            handle.write(text)
    except OSError as exc:
        raise TrialbridgeError(f"cannot write {out}: {exc.strerror}") from exc


def _warn(issues: Sequence[MappingIssue], stream: TextIO | None = None) -> None:
    for issue in issues:
        print(f"trialbridge: {issue}", file=stream or sys.stderr)  # str(issue) starts with its severity


def cmd_map(args: argparse.Namespace) -> int:
    """``trialbridge map SOURCE``: a protocol record -> FHIR transaction Bundle JSON."""
    read = read_protocol(_record_source(args.source, args.config))
    written = write_bundle(read.protocol, args.fhir_version)
    _warn(combine_issues(read.issues, written.issues))
    _write_json(written.bundle, args.out)
    return 0


def cmd_protocol(args: argparse.Namespace) -> int:
    """``trialbridge protocol BUNDLE``: a FHIR study Bundle -> the neutral protocol model as JSON."""
    data = parse_json(decode(_read_source(args.bundle)))
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        raise InputError("expected a FHIR Bundle (resourceType 'Bundle')", field="resourceType")
    read = read_bundle(data, args.fhir_version)
    _warn(read.issues)
    _write_json(to_dict(read.protocol), args.out)
    return 0


def _server(args: argparse.Namespace) -> ServerConfig:
    """``--server``: a name from the configuration, or an http(s) URL (version from ``/metadata``)."""
    value = args.server
    if value.startswith(("http://", "https://")):
        return ServerConfig.from_url(value, _version(args.fhir_version or detect_version(value)))
    server = load_config(args.config).server(value)
    if args.fhir_version and args.fhir_version != server.fhir_version:
        raise InputError(
            f"server {value!r} is configured as {server.fhir_version}, not {args.fhir_version}",
            field="--fhir-version",
        )
    return server


def _version(name: str) -> FhirVersion:
    """``name`` as a FHIR version the configuration accepts (R4, R5); ConfigError otherwise."""
    upper = name.upper()
    if upper == "R4":
        return "R4"
    if upper == "R5":
        return "R5"
    raise ConfigError(f"unsupported FHIR version {name!r} (supported: R4, R5)")


def detect_version(url: str) -> str:
    """The FHIR version (R4/R5) a server says it speaks in its CapabilityStatement."""
    with FhirClient(ServerConfig.from_url(url, "R4")) as probe:
        declared = str(probe.capabilities().get("fhirVersion", ""))
    for version, prefix in VERSION_PREFIXES.items():
        if tuple(declared.split(".")[:2]) == prefix:
            return version
    raise TrialbridgeError(f"{url} speaks FHIR {declared or '(unknown)'}; trialbridge speaks R4 and R5")


def cmd_push(args: argparse.Namespace) -> int:
    """``trialbridge push SOURCE --server S``: a protocol record or a transaction Bundle -> the server."""
    server = _server(args)
    data = _record_source(args.source, args.config)
    with FhirClient(server) as client:
        client.check_version()
        text = decode(data)
        if detect_format(text) == "ctgov-json" and '"resourceType"' in text[:2000]:
            bundle = parse_json(text)
            if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
                raise InputError("a FHIR resource to push must be a transaction Bundle", field="resourceType")
            result = push_bundle(client, bundle)
        else:
            read = read_protocol(text)
            result = push_protocol(client, read.protocol, replace=args.replace)
            result.issues = combine_issues(read.issues, result.issues)
    _warn(result.issues)
    for entry in result.entries:
        print(
            f"{entry.outcome:9} {entry.reference or entry.resource_type}"
            + (f" (version {entry.version})" if entry.version else "")
        )
    for kept in result.kept:
        print(f"kept      {kept}")
    print(
        f"{server.name}: {result.count('created')} created, {result.count('updated')} updated, "
        f"{result.count('unchanged') + result.count('matched')} matched"
    )
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    """``trialbridge pull NCT --server S``: the study and what it references, as a collection Bundle."""
    server = _server(args)
    with FhirClient(server) as client:
        client.check_version()
        bundle = pull_study(client, args.nct)
    _write_json(bundle, args.out)
    return 0


def cmd_prescreen(args: argparse.Namespace) -> int:
    """``trialbridge prescreen --study NCT --patient ID --server S``: one patient against a study's
    criteria (adapter/prescreen.py); a table, or JSON with ``--json``.  Exit 0 whatever the verdict."""
    try:
        as_of = datetime.date.fromisoformat(args.as_of) if args.as_of else None
    except ValueError:
        raise InputError(f"--as-of: {args.as_of!r} is not a date (YYYY-MM-DD)", field="--as-of") from None
    check_nct(args.study)
    parse_patient(args.patient)
    server = _server(args)
    with FhirClient(server) as client:
        client.check_version()
        result = prescreen(client, args.study, args.patient, as_of=as_of)
    if args.json:
        _write_json(result.to_json(), None)
    else:
        sys.stdout.write(format_table(result))
    return 0


def cmd_cohort(args: argparse.Namespace) -> int:
    """``trialbridge cohort --study NCT --server S``: screen every patient (adapter/cohort_command.py)."""
    return run_cohort(args, _server(args))


def _csv_lines(source: str) -> Iterator[str]:
    """A UTF-8 CSV file (or - for standard input) as lines, read as they come (opened now)."""
    try:
        handle = sys.stdin.buffer if source == "-" else Path(source).open("rb")  # noqa: SIM115 (closed below)
    except FileNotFoundError as exc:
        raise InputError(f"no such file: {source}") from exc
    except OSError as exc:
        raise InputError(f"cannot read {source}: {exc.strerror}") from exc

    def lines() -> Iterator[str]:
        text = io.TextIOWrapper(handle, encoding="utf-8-sig", newline="")
        try:
            yield from text
        except UnicodeDecodeError as exc:
            raise InputError(f"{source} is not valid UTF-8 (byte {exc.start} of a chunk)") from exc
        finally:
            if source != "-":
                text.close()

    return lines()


def _print_trial_push(result: TrialPushResult, server: str) -> None:
    _warn(result.issues)
    for row in result.outcomes:
        version = f" (version {row.version})" if row.version else ""
        print(f"{row.outcome:10} {row.key} {row.reference or ''}{version}".rstrip())
    for rejected in result.rejected:
        where = " ".join(x for x in (f"row {rejected.row}" if rejected.row else None, rejected.key) if x)
        print(f"{'rejected':10} {where}: {rejected.reason}")
    counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(result.counts.items())) or "nothing"
    print(f"{server}: {counts}")
    if result.rejected:
        print(f"trialbridge: warning: {len(result.rejected)} row(s) rejected, see above", file=sys.stderr)


def cmd_enrol(args: argparse.Namespace) -> int:
    """``trialbridge enrol CSV --study NCT --server S [--create-patients]``: subjects -> ResearchSubjects."""
    check_nct(args.study)
    lines = _csv_lines(args.csv)
    server = _server(args)
    with FhirClient(server) as client:
        client.check_version()
        result = enrolments.enrol(client, args.study, lines, create_patients=args.create_patients)
    _print_trial_push(result, server.name)
    return 0


def cmd_labs(args: argparse.Namespace) -> int:
    """``trialbridge labs CSV --study NCT --server S``: lab results -> Observations, in transactions."""
    check_nct(args.study)
    lines = _csv_lines(args.csv)
    server = _server(args)
    with FhirClient(server) as client:
        client.check_version()
        result = lab_results.push_labs(client, args.study, lines)
    _print_trial_push(result, server.name)
    return 0


def cmd_observations(args: argparse.Namespace) -> int:
    """``trialbridge observations NCT --server S --format ndjson|csv``: the study's outcome labs."""
    check_nct(args.nct)
    window = None
    if args.time_frame:
        window = parse_time_frame(args.time_frame)
        if window is None:
            raise InputError(f"{args.time_frame!r} names no duration such as '96 weeks'",
                             field="--time-frame")
    tests = [t.strip() for t in args.tests.split(",") if t.strip()] if args.tests else None
    server = _server(args)
    with FhirClient(server) as client:
        client.check_version()
        plan = observations.plan_pull(client, args.nct, tests=tests, window=window,
                                      grace_days=args.grace_days)
        skipped: list[observations.Skipped] = []
        items = observations.iter_outcome_observations(client, plan, bulk=args.bulk, skipped=skipped)
        if args.out is None or args.out == "-":
            count = observations.write_observations(items, sys.stdout, args.format)
        else:
            try:
                with open_private(args.out, newline="") as out:  # 0600: patient data
                    count = observations.write_observations(items, out, args.format)
            except OSError as exc:
                raise TrialbridgeError(f"cannot write {args.out}: {exc.strerror}") from exc
    window_text = f"{plan.window} + {plan.grace_days} days" if plan.window else "no end"
    for skip in skipped:
        print(f"trialbridge: warning: {skip}; skipped", file=sys.stderr)
    print(f"trialbridge: {count} observations of {', '.join(plan.tests)} (window {window_text})"
          + (f", {len(skipped)} could not be read" if skipped else ""), file=sys.stderr)
    return 0


def cmd_definitions(args: argparse.Namespace) -> int:
    """``trialbridge definitions push --server NAME`` / ``definitions write``: our CodeSystems,
    ValueSets and extension StructureDefinitions onto a server, or regenerated from the tables."""
    if args.action == "write":
        written = write_definitions()
        print(f"wrote {len(written)} definitions under {DEFINITIONS}")
        return 0
    if args.server is None:
        raise InputError("definitions push needs --server", field="--server")
    server = _server(args)
    with FhirClient(server) as client:
        client.check_version()
        loaded = push_definitions(client, server.fhir_version)
    print(f"{server.name}: {len(loaded)} definitions loaded ({server.fhir_version})")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """``trialbridge serve``: the web service under gunicorn (configuration from the environment)."""
    if args.config:
        os.environ["TRIALBRIDGE_CONFIG"] = args.config
    config = load_config()  # fail here, in one line, rather than in every worker
    if not config.api_keys():
        source = config.api_keys_file or f"${config.api_keys_env}"
        raise ConfigError(f"no API keys configured (looked in {source}); the service would refuse every call")
    from adapter.serve import serve

    serve(bind=args.bind, workers=args.workers, threads=args.threads, log_format=args.log_format)
    return 0


def package_version() -> str:
    """trialbridge's version, from the installed package's metadata."""
    try:
        return metadata.version("trialbridge")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _parent(*adders: Callable[[argparse.ArgumentParser], None]) -> argparse.ArgumentParser:
    """A parent parser holding shared options: each option is declared once, here."""
    parent = argparse.ArgumentParser(add_help=False)
    for add in adders:
        add(parent)
    return parent


def _server_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", required=True, metavar="NAME|URL",
                   help="a server named in the configuration, or a base URL (FHIR version from /metadata)")
    p.add_argument("--fhir-version", choices=SUPPORTED_VERSIONS, default=None,
                   help="the server's FHIR version (default: configured, or asked of the server)")
    _config_option(p)


def _definitions_server_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", help="server name from the configuration, or a base URL (push)")
    p.add_argument("--fhir-version", choices=SUPPORTED_VERSIONS,
                   help="FHIR version (checked; default: the server's)")
    _config_option(p)


def _config_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="TOML configuration (else $TRIALBRIDGE_CONFIG)")


def _out_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", metavar="FILE", help="write here instead of standard output")


def _study_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--study", required=True, metavar="NCT", help="the study's NCT number (on the server)")


def _nct_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("nct", metavar="NCT", help="the study's NCT number")


def _csv_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("csv", metavar="CSV", help="CSV file, or - for standard input")


def _version_option(default: str | None, help_text: str) -> Callable[[argparse.ArgumentParser], None]:
    def add(p: argparse.ArgumentParser) -> None:
        p.add_argument("--fhir-version", choices=SUPPORTED_VERSIONS, default=default, help=help_text)

    return add


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``trialbridge`` command (sub-commands register here)."""
    parser = argparse.ArgumentParser(
        prog="trialbridge",
        description="Clinical-trial protocols, enrolments and observations to and from FHIR R4/R5 servers.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    server, out, config = _parent(_server_options), _parent(_out_option), _parent(_config_option)
    study, nct, csv_file = _parent(_study_option), _parent(_nct_argument), _parent(_csv_argument)

    p = sub.add_parser(
        "map", parents=[_parent(_version_option("R4", "the FHIR version to write (default R4)")), config,
                        out],
        help="map a ClinicalTrials.gov record (v2 JSON, legacy XML, page text) to a FHIR transaction Bundle",
    )
    p.add_argument("source", metavar="SOURCE",
                   help="record file, - for standard input, or an NCT number (fetched from the registry)")
    p.set_defaults(func=cmd_map)

    detected = _version_option(None, "FHIR version of the Bundle (detected when left out)")
    p = sub.add_parser("protocol", parents=[_parent(detected), out],
                       help="read a FHIR study Bundle back into the neutral protocol model")
    p.add_argument("bundle", metavar="BUNDLE", help="Bundle JSON file, or - for standard input")
    p.set_defaults(func=cmd_protocol)

    p = sub.add_parser("push", parents=[server],
                       help="push a protocol record or a transaction Bundle to a FHIR server")
    p.add_argument("source", metavar="SOURCE",
                   help="record or Bundle file, - for standard input, or an NCT number (from the registry)")
    p.add_argument("--replace", action="store_true",
                   help="take over the server's study (by default the record is merged into it and what "
                   "the record does not own is kept)")
    p.set_defaults(func=cmd_push)

    p = sub.add_parser("pull", parents=[nct, server, out],
                       help="pull a study and what it references from a FHIR server")
    p.set_defaults(func=cmd_pull)

    p = sub.add_parser("prescreen", parents=[study, server],
                       help="pre-screen a patient of a FHIR server against a study's criteria")
    p.add_argument("--patient", required=True, metavar="ID", help="the patient's id (or Patient/ID)")
    p.add_argument("--as-of", metavar="YYYY-MM-DD", help="evaluation date (default: today)")
    p.add_argument("--json", action="store_true", help="answer JSON instead of the table")
    p.set_defaults(func=cmd_prescreen)

    p = sub.add_parser("cohort", parents=[study, server],
                       help="screen every patient of a FHIR server for a study: funnel, candidates, report")
    add_cohort_arguments(p)
    p.set_defaults(func=cmd_cohort)

    p = sub.add_parser("serve", parents=[_parent(_config_option)], help="run the web service under gunicorn")
    p.add_argument("--bind", default="127.0.0.1:8000", help="address:port (default 127.0.0.1:8000)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: CPU count, min 2)")
    p.add_argument("--threads", type=int, default=4,
                   help="ignored: gevent workers serve a connection per greenlet (kept for old scripts)")
    p.add_argument("--log-format", choices=("json", "text"), default="json",
                   help="log lines on standard error: JSON objects (default) or text")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("enrol", parents=[csv_file, study, server],
                       help="enrol the subjects of an enrolments CSV in a study on a FHIR server")
    p.add_argument("--create-patients", action="store_true",
                   help="create a Patient for an unknown MRN (synthetic data only); else the row is rejected")
    p.set_defaults(func=cmd_enrol)

    p = sub.add_parser("labs", parents=[csv_file, study, server],
                       help="push the results of a lab CSV as Observations for a study's subjects")
    p.set_defaults(func=cmd_labs)

    p = sub.add_parser("observations", parents=[nct, server, out],
                       help="pull a study's outcome labs as NDJSON or tidy CSV")
    p.add_argument("--format", choices=("ndjson", "csv"), default="ndjson")
    p.add_argument("--tests", metavar="CODES",
                   help="test codes, comma-separated (default: those the primary outcomes name)")
    p.add_argument("--time-frame", metavar="TEXT",
                   help="window, e.g. '96 weeks' (default: the primary outcomes' time frame)")
    p.add_argument("--grace-days", type=int, default=observations.DEFAULT_GRACE_DAYS, metavar="N",
                   help="days added to the window for the last visit (default %(default)s)")
    p.add_argument("--bulk", choices=("auto", "never", "always"), default=None,
                   help="read by Bulk Data $export: where offered (auto), never, always "
                        "(default: the server's 'bulk' setting, else auto)")
    p.set_defaults(func=cmd_observations)

    p = sub.add_parser("definitions", parents=[_parent(_definitions_server_options)],
                       help="push our CodeSystems, ValueSets and extension definitions to a FHIR server "
                       "(push), or regenerate them from the tables (write)")
    p.add_argument("action", choices=("push", "write"))
    p.set_defaults(func=cmd_definitions)

    add_sync_parser(sub)  # trialbridge sync: adapter/sync/command.py
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``trialbridge`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    gc.freeze()  # the imported model graph is permanent: keep it out of every cyclic collection
    func: Command = args.func
    try:
        return func(args)
    except (InputError, MappingError) as exc:
        print(f"trialbridge: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_INPUT
    except TrialbridgeError as exc:
        print(f"trialbridge: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("trialbridge: interrupted", file=sys.stderr)
        return 130


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
