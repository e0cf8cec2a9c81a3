"""Experiment tracking: TensorBoard and MLflow loggers, selected in the run config.

A run config lists its loggers in ``train.loggers``, each a registered name or a spec dict with
options::

    train:
      loggers: [tensorboard, {name: mlflow, tracking_uri: "file:mixerlab-runs/mlruns"}]

Every logger receives the run's config (as hyper-parameters), the training loss and learning
rate of every step, the evaluation metric (overall and per slice) after every epoch, the costs
of the trained model (parameters, FLOPs, state size, memory) and, for a sweep, the report's
PNGs. Progress on the terminal does not change. Logging changes no result, so the loggers are
not part of a run's key (:func:`mixerlab.train.config.config_key`).

Each logger needs its package (the ``track`` extra): a name whose package is missing is a
:class:`~mixerlab.errors.ConfigError` that says what to install, raised when the config is read,
before anything runs. A new logger is a class with the :class:`RunLogger` methods, registered in
:data:`~mixerlab.registry.LOGGERS` with its package in ``meta``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import struct
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from mixerlab.errors import ConfigError
from mixerlab.layers.spec import split_spec
from mixerlab.registry import LOGGERS

# Arguments every logger receives from the trainer, not from the user's options.
CONTEXT_ARGUMENTS = ("run_name", "group", "root", "resume_step")


class RunLogger(Protocol):
    """What the trainer and the sweep call; every method must be cheap enough to call every step."""

    def log_config(self, config: Mapping[str, Any]) -> None:
        """The run's config (nested dicts), once at the start."""

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Scalars after ``step`` optimiser updates (``train/loss``, ``eval/accuracy``, ``cost/params``)."""

    def log_images(self, images: Mapping[str, str | os.PathLike]) -> None:
        """PNG files by name (the report's plots)."""

    def flush(self) -> None:
        """Write what is buffered (after every epoch, so a killed run keeps what it logged)."""

    def close(self, status: str = "finished") -> None:
        """End the run; ``status`` is the trainer's (``finished``, ``diverged``, ``interrupted``, ...)."""


def check_logger_specs(specs: list[Any], owner: str = "train", field: str = "loggers") -> None:
    """Reject an unknown logger, an unknown option, or a logger whose package is not installed."""
    for spec in specs:
        name, options = split_spec(spec, "logger")
        if name not in LOGGERS:
            raise ConfigError(owner, field, name, f"registered loggers are {LOGGERS.list()}")
        entry = LOGGERS.entry(name)
        allowed = [p for p in entry.parameters() if p not in CONTEXT_ARGUMENTS]
        for key, value in options.items():
            if key not in allowed:
                raise ConfigError(owner, f"{field}.{name}.{key}", value, f"allowed options are {allowed}")
        package = entry.meta["package"]
        if importlib.util.find_spec(package) is None:
            raise ConfigError(
                owner,
                field,
                name,
                f"the {name} logger needs the {package!r} package: pip install 'mixerlab[track]'",
            )


class Loggers:
    """All of a run's loggers behind one :class:`RunLogger`; false when there are none."""

    def __init__(self, loggers: list[RunLogger] | None = None) -> None:
        self.loggers = list(loggers or [])

    def __bool__(self) -> bool:
        return bool(self.loggers)

    def log_config(self, config: Mapping[str, Any]) -> None:
        for logger in self.loggers:
            logger.log_config(config)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        for logger in self.loggers:
            logger.log_metrics(metrics, step)

    def log_images(self, images: Mapping[str, str | os.PathLike]) -> None:
        for logger in self.loggers:
            logger.log_images(images)

    def flush(self) -> None:
        for logger in self.loggers:
            logger.flush()

    def close(self, status: str = "finished") -> None:
        loggers, self.loggers = self.loggers, []
        for logger in loggers:
            logger.close(status)


def open_loggers(
    specs: list[Any],
    *,
    run_name: str,
    group: str,
    root: str | os.PathLike,
    resume_step: int = 0,
) -> Loggers:
    """Create the loggers of ``specs`` for one run.

    ``group`` gathers runs (the sweep's name: a TensorBoard folder, an MLflow experiment);
    ``root`` is the folder default locations go under; ``resume_step`` > 0 continues a run
    (TensorBoard hides what was logged after that step; MLflow appends to the same run).
    """
    check_logger_specs(specs)
    made = []
    for spec in specs:
        name, options = split_spec(spec, "logger")
        made.append(
            LOGGERS.create(
                name, run_name=run_name, group=group, root=Path(root), resume_step=resume_step, **options
            )
        )
    return Loggers(made)


def run_name(config: Any) -> str:
    """A readable, unique, path-safe name of a run: mixer, width, lr, seed and the run's key."""
    mixer, _ = split_spec(config.model.mixer, "token mixer") if config.model.mixer else ("none", {})
    text = (
        f"{config.model.name}-{mixer}-d{config.model.dim}-lr{config.train.lr:g}-seed{config.train.seed}-"
        f"{config.key()}"
    )
    return safe_name(text)


def safe_name(text: str) -> str:
    """``text`` with characters other than letters, digits and ``._=-`` replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9._=-]", "_", text)


def flat_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str | int | float | bool]:
    """Nested config dicts as dotted keys with scalar values (lists and None as JSON text)."""
    out: dict[str, str | int | float | bool] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flat_params(value, f"{name}."))
        elif isinstance(value, bool | int | float | str):
            out[name] = value
        else:
            out[name] = json.dumps(value, sort_keys=True, default=str)
    return out


def _png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's header chunk, so an image is logged without decoding it."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG file")
    return struct.unpack(">II", data[16:24])


@LOGGERS.register("tensorboard", meta={"package": "tensorboard"})
class TensorBoardLogger:
    """TensorBoard event files (``torch.utils.tensorboard.SummaryWriter``) under ``<dir>/<group>/<run>``.

    ``dir`` defaults to ``<root>/tensorboard``; view with ``tensorboard --logdir <dir>``. The
    config goes in as hyper-parameters (the HParams tab) and as JSON text.
    """

    def __init__(
        self,
        run_name: str,
        group: str,
        root: Path,
        resume_step: int = 0,
        dir: str | None = None,
    ) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.path = Path(dir if dir is not None else root / "tensorboard") / safe_name(group) / run_name
        # purge_step: what a killed run logged after its last checkpoint (steps after resume_step)
        # is hidden on resume, as the resumed run logs those steps again.
        self.writer = SummaryWriter(
            log_dir=str(self.path), purge_step=resume_step + 1 if resume_step else None
        )
        self.step = resume_step

    def log_config(self, config: Mapping[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams

        text = json.dumps(config, indent=2, sort_keys=True, default=str)
        self.writer.add_text("config", "    " + text.replace("\n", "\n    "), self.step)
        writer = self.writer._get_file_writer()
        for summary in hparams(flat_params(config), {}):
            writer.add_summary(summary)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.step = step
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)

    def log_images(self, images: Mapping[str, str | os.PathLike]) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary

        writer = self.writer._get_file_writer()
        for name, path in images.items():
            data = Path(path).read_bytes()
            width, height = _png_size(data)
            image = Summary.Image(height=height, width=width, colorspace=4, encoded_image_string=data)
            writer.add_summary(Summary(value=[Summary.Value(tag=name, image=image)]), self.step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self, status: str = "finished") -> None:
        self.writer.close()


# The trainer's statuses as MLflow run statuses (anything else ended normally).
_MLFLOW_STATUS = {"diverged": "FAILED", "interrupted": "KILLED", "failed": "FAILED"}


@LOGGERS.register("mlflow", meta={"package": "mlflow"})
class MLflowLogger:
    """An MLflow run per training run, in experiment ``experiment`` (default: the sweep's name).

    ``tracking_uri`` defaults to a local file store, ``file:<root>/mlruns`` (no server; view with
    ``mlflow ui --backend-store-uri <that uri>``); any MLflow URI (``sqlite:///...``, a server)
    works too. MLflow 3 keeps the file store in maintenance mode and refuses it unless
    ``MLFLOW_ALLOW_FILE_STORE`` is set: a ``file:`` URI sets it (unless the user set it already).
    Step metrics are buffered and written once per epoch, in one batch; a resumed run continues
    the MLflow run of the same name, from the step of its checkpoint.
    """

    def __init__(
        self,
        run_name: str,
        group: str,
        root: Path,
        resume_step: int = 0,
        tracking_uri: str | None = None,
        experiment: str | None = None,
    ) -> None:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        uri = tracking_uri or (Path(root) / "mlruns").resolve().as_uri()
        if uri.startswith("file:") or "://" not in uri:
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=uri)
        self.uri = uri
        name = experiment or group
        found = self.client.get_experiment_by_name(name)
        if found is None:
            try:
                experiment_id = self.client.create_experiment(name)
            except MlflowException:  # another worker of the sweep created it meanwhile
                experiment_id = self.client.get_experiment_by_name(name).experiment_id
        else:
            experiment_id = found.experiment_id
        previous = []
        if resume_step > 0:
            previous = self.client.search_runs(
                [experiment_id], filter_string=f"tags.`mixerlab.run` = '{run_name}'", max_results=1
            )
        if previous:
            self.run_id = previous[0].info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            tags = {"mixerlab.run": run_name}
            self.run_id = self.client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
        self.pending: list[Any] = []

    def log_config(self, config: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        # MLflow caps a parameter's value; the whole config is also kept as config.json.
        params = [Param(k, str(v)[:6000]) for k, v in flat_params(config).items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=params[start : start + 100])
        self.client.log_dict(self.run_id, dict(config), "config.json")

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.pending.extend(Metric(k, float(v), now, step) for k, v in metrics.items())

    def log_images(self, images: Mapping[str, str | os.PathLike]) -> None:
        for path in images.values():
            self.client.log_artifact(self.run_id, str(path), artifact_path="report")

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        for start in range(0, len(pending), 1000):  # MLflow takes at most 1000 metrics per batch
            self.client.log_batch(self.run_id, metrics=pending[start : start + 1000])

    def close(self, status: str = "finished") -> None:
        if status == "interrupted":
            # Steps after the last checkpoint: a resumed run trains and logs them again.
            self.pending = []
        self.flush()
        self.client.set_terminated(self.run_id, status=_MLFLOW_STATUS.get(status, "FINISHED"))
