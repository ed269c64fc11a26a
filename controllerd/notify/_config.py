"""Notifier and escalation config: `[[notifiers]]` and `[escalation]` (also read by the sentinel).

```toml
[[notifiers]]
id = "oncall-mail"
type = "apprise"            # any Apprise URL: mailto://, ntfy://, pover://, pagerduty://, ...
url = "mailtos://user:pass@smtp.example.org?to=oncall@example.org"

[[notifiers]]
id = "pager-gateway"
type = "mqtt"               # BASE/pages (QoS 1), for a pager gateway subscribed there

[[notifiers]]
id = "script"
type = "exec"               # runs the command with the page as JSON on stdin
command = ["/usr/local/bin/page-oncall"]

[escalation]
renotify_every_s = 900      # until acknowledged, every level reached is paged again
levels = [
    { notifiers = ["pager-gateway", "oncall-mail"] },          # level 1: at once
    { notifiers = ["script"], after_s = 1800 },                # level 2: 30 min unacked
]
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from controllerd._config_base import Strict, check_id
from controllerd.alarms._rules import Severity


class _NotifierBase(Strict):
    id: str = Field(description="Notifier id (named by escalation levels).")
    retries: int = Field(default=3, ge=0, le=10, description="Extra attempts after a failure.")
    timeout_s: float = Field(default=20.0, gt=0, description="Longest one delivery may take.")

    _id = field_validator("id")(check_id)


class AppriseNotifierConfig(_NotifierBase):
    """Any channel Apprise supports, by URL (mail, ntfy, Pushover, PagerDuty, Slack, SMS, ...)."""

    type: Literal["apprise"]
    url: SecretStr | None = Field(default=None, description="An Apprise URL (holds secrets).")
    url_file: Path | None = Field(
        default=None, description="A file holding the Apprise URL, instead of `url`."
    )

    @model_validator(mode="after")
    def _one_url(self) -> AppriseNotifierConfig:
        if (self.url is None) == (self.url_file is None):
            raise ValueError("give exactly one of url and url_file")
        return self

    def resolved_url(self) -> str:
        if self.url is not None:
            return self.url.get_secret_value()
        assert self.url_file is not None
        return self.url_file.read_text(encoding="utf-8").strip()


class MqttNotifierConfig(_NotifierBase):
    """Pages published on an MQTT topic (QoS 1), for pager gateways."""

    type: Literal["mqtt"]
    topic: str | None = Field(default=None, description="Default: BASE/pages.")


class ExecNotifierConfig(_NotifierBase):
    """A command run with the page as JSON on stdin; exit status 0 means delivered."""

    type: Literal["exec"]
    command: tuple[str, ...] = Field(min_length=1, description="argv; no shell.")


NotifierConfig = Annotated[
    AppriseNotifierConfig | MqttNotifierConfig | ExecNotifierConfig, Field(discriminator="type")
]


class EscalationLevel(Strict):
    notifiers: tuple[str, ...] = Field(min_length=1, description="Notifier ids of this level.")
    after_s: float = Field(
        default=0.0, ge=0, description="Unacknowledged this long after it was raised: page."
    )


class EscalationSection(Strict):
    """`[escalation]`: the call tree."""

    levels: tuple[EscalationLevel, ...] = Field(
        default=(), description="Level 1 first; each level's `after_s` must grow."
    )
    renotify_every_s: float = Field(
        default=900.0, gt=0, description="Re-page every level reached until acknowledged."
    )
    min_severity: Severity = Field(default="low", description="Alarms below this page nobody.")

    @model_validator(mode="after")
    def _check_levels(self) -> EscalationSection:
        after = [level.after_s for level in self.levels]
        if after != sorted(after):
            raise ValueError("levels: after_s must not decrease from one level to the next")
        return self


def check_notifier_refs(
    notifiers: tuple[NotifierConfig, ...], escalation: EscalationSection
) -> list[str]:
    """Problems with duplicate notifier ids and levels naming unknown notifiers."""
    problems = []
    seen: dict[str, int] = {}
    for index, notifier in enumerate(notifiers):
        if notifier.id in seen:
            problems.append(
                f"notifiers[{index}].id: duplicate id '{notifier.id}' "
                f"(also notifiers[{seen[notifier.id]}])"
            )
        seen.setdefault(notifier.id, index)
    for index, level in enumerate(escalation.levels):
        for name in level.notifiers:
            if name not in seen:
                problems.append(
                    f"escalation.levels[{index}].notifiers: no notifier '{name}' "
                    f"(notifiers: {', '.join(seen) or 'none'})"
                )
    return problems
