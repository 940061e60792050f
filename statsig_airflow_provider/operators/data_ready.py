"""DataReadyTriggerOperator: API-triggered runs shaped like Statsig's `mark_data_ready_dwh`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from statsig_airflow_provider.engine.plan import TRIGGER_INTERVAL, PlanError, admit_trigger, parse_trigger_conf
from statsig_airflow_provider.engine.spec import load_specs
from statsig_airflow_provider.settings import get_ledger


class DataReadyTriggerOperator(BaseOperator):
    """Validate a trigger's conf `{"datestamps", "type", "sources"}`, apply the rate limit per
    source × type (default once per two hours, as Statsig does), and return one
    `{"source", "days"}` per source and day to ingest — ready for `expand_kwargs`.

    Bad conf fails the run with a message naming the field; a trigger inside a source's interval
    is refused with the time the next one is allowed (the other sources still go ahead).
    """

    template_fields: Sequence[str] = ("conf",)
    ui_color = "#e5dbff"

    def __init__(self, *, specs_path: str | Path, conf: dict[str, Any] | str | None = None,
                 min_interval: dt.timedelta = TRIGGER_INTERVAL, ledger_conn_id: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.specs_path = str(specs_path)
        self.conf = conf
        self.min_interval = min_interval
        self.ledger_conn_id = ledger_conn_id

    def execute(self, context: Any) -> list[dict[str, str]]:
        conf = self.conf if isinstance(self.conf, dict) else dict(context["dag_run"].conf or {})
        conf = {k: v for k, v in conf.items() if v is not None}
        specs = load_specs(self.specs_path).specs
        now = dt.datetime.now(dt.timezone.utc)
        try:
            request = parse_trigger_conf(conf, specs, now)
        except PlanError as exc:
            raise AirflowFailException(f"statsig__data_ready: refused: {exc}") from None
        outcome = admit_trigger(get_ledger(self.ledger_conn_id), request, context["run_id"], now, self.min_interval)
        for name, allowed in sorted(outcome.refused.items()):
            self.log.warning("refused %s (%s): triggered less than %s ago; the next trigger is allowed from %s",
                             name, request.dataset, self.min_interval, f"{allowed:%Y-%m-%d %H:%M:%S} UTC")
        if not outcome.accepted:
            detail = "; ".join(f"source {n!r} ({request.dataset}): next trigger allowed from "
                               f"{allowed:%Y-%m-%d %H:%M:%S} UTC" for n, allowed in sorted(outcome.refused.items()))
            raise AirflowFailException(f"statsig__data_ready: refused by the rate limit (once per "
                                       f"{self.min_interval}): {detail}")
        days = ", ".join(d.isoformat() for d in request.days)
        self.log.info("accepted %s for %s (%s)", ", ".join(outcome.accepted), days, request.dataset)
        return [{"source": name, "days": day.isoformat()} for name in outcome.accepted for day in request.days]
