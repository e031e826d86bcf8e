"""Alert handling: what people and systems do with the warnings detection raises — the handling
lifecycle, regional linkage (escalation, silences, inhibition), subscriptions, the notifier and
its delivery channels, their configuration (``alerting.yaml``), tables and command line."""
