"""How alarms reach people: channels (Apprise, MQTT pager topic, exec) and the call tree.

The package exports the config models; the channels are in `controllerd.notify.channels` and
the call tree in `controllerd.notify.pager` (the config imports this package, and those
modules import the MQTT session, which imports the config).
"""

from controllerd.notify._config import (
    AppriseNotifierConfig,
    EscalationLevel,
    EscalationSection,
    ExecNotifierConfig,
    MqttNotifierConfig,
    NotifierConfig,
    check_notifier_refs,
)

__all__ = [
    "AppriseNotifierConfig",
    "EscalationLevel",
    "EscalationSection",
    "ExecNotifierConfig",
    "MqttNotifierConfig",
    "NotifierConfig",
    "check_notifier_refs",
]
