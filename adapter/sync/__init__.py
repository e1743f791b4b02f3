"""``trialbridge sync``: push a study's enrolments and lab results to a FHIR server, pull what changed.

One pass (:func:`adapter.sync.runner.run_pass`) reads the configured sources into a SQLite outbox
(:mod:`.outbox`), sends what is pending in transaction bundles (:mod:`.engine`), then pulls the
study's ResearchSubjects and Observations changed since the last checkpoint (:mod:`.pull`).

Modules: :mod:`.config` (the TOML job file), :mod:`.outbox` (the SQLite store: outbox, dead letter,
source files, checkpoints), :mod:`.sources` (source files to outbox records), :mod:`.records`
(enrolments and lab results to records, through the FHIR entry builders), :mod:`.engine` (sending,
isolating rejected records), :mod:`.pull` (the incremental pull), :mod:`.report` (``--report``),
:mod:`.progress` (progress bars or log lines), :mod:`.runner` (passes, the interval loop, signals),
:mod:`.command` (the command line).
"""
