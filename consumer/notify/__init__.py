"""The webhook bridge `stockwatch notify`: anomaly events POSTed to a webhook (Slack-compatible).

* :mod:`.webhook` — one POST with urllib, its outcome (delivered / retry / dead), the masked URL;
* :mod:`.bridge` — :class:`NotifyBridge`, the consume-POST-commit loop (at least once, deduplicated
  within a run).
"""

from consumer.notify.bridge import NotifyBridge, NotifyStats
from consumer.notify.webhook import Outcome, PostResult, Webhook, mask_url, payload, slack_text

__all__ = [
    "NotifyBridge",
    "NotifyStats",
    "Outcome",
    "PostResult",
    "Webhook",
    "mask_url",
    "payload",
    "slack_text",
]
