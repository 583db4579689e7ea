//! Auditor's tools: export, verify, replay as of a point, rebuild, checkpoints (issue 4).
