"""Release notes of a model version, generated from what the store and the artifact store hold.

Data (per label, and what is new since the previous version), config changes, per-label metric
changes, the worst labels, known limits, and who approved what: base licenses, the data, the
sign-off and the promotion. `tuesday release-notes VERSION` prints them (Markdown).
"""

from __future__ import annotations

import json
from collections import Counter

from bot.store.runs import RetrainRun
from bot.trail.bases import version_licenses
from bot.trail.snapshots import version_rows
from inference.calibration import promise_lines

FEW_TRAINING_ROWS = 10  # below this a label is learned from too little
FEW_HOLDOUT_ROWS = 5  # below this a label's holdout figures move a lot with one ticket
WORST = 3


def _flat(config: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in (config or {}).items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _config(manifest: dict) -> dict:
    return {f"{family}.{k}": v for family, part in (manifest.get("families") or {}).items()
            for k, v in _flat(part.get("config") or {}).items()}


def _per_label(registry, name: str) -> dict:
    info = registry.fetch(name, ["metrics.json"])
    return json.loads((info.path / "metrics.json").read_text(encoding="utf-8")).get("per_label") or {}


def _previous(registry, name: str) -> str | None:
    """The version of the same task built before `name`."""
    task = registry.get(name).manifest.get("task")
    names = [n for n in registry.names() if registry.get(n).manifest.get("task") == task]
    index = names.index(name)
    return names[index - 1] if index > 0 else None


def gather(runtime, name: str) -> dict:
    """Everything the notes say, JSON-safe."""
    runtime = runtime.for_version(name)  # the version's task: its labels, its production history
    registry = runtime.registry
    info = registry.get(name)
    manifest = info.manifest
    previous = _previous(registry, name)
    before = registry.get(previous).manifest if previous else None
    rows = version_rows(registry, info) or []
    old_rows = (version_rows(registry, registry.get(previous)) or []) if previous else []
    old_ids = {row.get("id") for row in old_rows}
    train = [row for row in rows if row["split"] == "train"]
    counts = Counter(row["label"] for row in train)
    new = Counter(row["label"] for row in train if row.get("id") not in old_ids)
    per_label = _per_label(registry, name)
    old_per_label = _per_label(registry, previous) if previous else {}
    config, old_config = _config(manifest), _config(before) if before else {}
    changed = {key: [old_config.get(key), config.get(key)] for key in sorted(set(config) | set(old_config))
               if config.get(key) != old_config.get(key)} if before else {}
    run = None
    if manifest.get("run") is not None:
        with runtime.sessions() as session:
            row = session.get(RetrainRun, int(manifest["run"]))
            run = row.to_dict() if row is not None else None
    switches = [e for e in runtime.production.history() if e["version"] == name]
    holdout_support = {label: m.get("support", 0) for label, m in per_label.items()}
    limits = [f"{label}: {n} training rows" for label, n in sorted(counts.items()) if n < FEW_TRAINING_ROWS]
    limits += [f"{label}: {n} holdout tickets, so its figures move a lot with each one"
               for label, n in sorted(holdout_support.items()) if 0 < n < FEW_HOLDOUT_ROWS]
    limits += [f"{label}: no holdout tickets, so it is not measured" for label in runtime.task.labels
               if label in counts and not holdout_support.get(label)]
    cal = manifest.get("calibration") or {}
    if cal:
        limits.append(f"answers {cal['coverage']:.0%} of holdout tickets with a label (abstains below "
                      f"{cal['abstain_threshold']:.2f} confidence); hand-off below {cal['handoff_threshold']:.2f}")
        limits += [line[0].lower() + line[1:] for line in promise_lines(cal)]
    limits += [f"base {lic['name']} license restricts {', '.join(lic['restricted'])}"
               for lic in version_licenses(manifest) if lic["restricted"]]
    worst = sorted(((label, m) for label, m in per_label.items() if m.get("support")), key=lambda kv: kv[1]["f1"])
    return {
        "version": name, "previous": previous, "created_at": manifest.get("created_at"),
        "family": manifest.get("family"), "choice": manifest.get("choice"), "metrics": manifest.get("metrics") or {},
        "previous_metrics": (before or {}).get("metrics") or {},
        "data": {"train": len(train), "holdout": len(rows) - len(train), "per_label": dict(sorted(counts.items())),
                 "new_per_label": dict(sorted(new.items())), "new": sum(new.values()),
                 "snapshot": manifest.get("snapshot"), "data_approval": manifest.get("data_approval")},
        "config_changes": changed,
        "per_label": {label: {"f1": m["f1"], "precision": m["precision"], "recall": m["recall"],
                              "support": m.get("support"), "f1_before": (old_per_label.get(label) or {}).get("f1")}
                      for label, m in sorted(per_label.items())},
        "worst": [label for label, _ in worst[:WORST]],
        "limits": limits,
        "approvals": {"bases": version_licenses(manifest),
                      "data_approval": manifest.get("data_approval"),
                      "run": None if run is None else {"id": run["id"], "requested_by": run["requested_by"],
                                                       "signed_off_by": run.get("signed_off_by"),
                                                       "signed_off_at": run.get("signed_off_at")},
                      "switches": [{"action": e["action"], "by": e["by"], "at": e["at"], "reason": e["reason"]}
                                   for e in switches]},
    }


def _num(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def release_notes(runtime, name: str) -> str:
    """The notes as Markdown."""
    g = gather(runtime, name)
    d, m, pm = g["data"], g["metrics"], g["previous_metrics"]
    lines = [f"# Release notes: {name}", "",
             f"Built {(g['created_at'] or '')[:16].replace('T', ' ')} UTC; serves the {g['family']} family "
             f"({g['choice']}). Previous version: {g['previous'] or 'none'}.", "",
             "## Holdout", "",
             "| | " + name + " | " + (g["previous"] or "previous") + " |", "|---|---|---|"]
    for title, key in (("accuracy", "accuracy"), ("macro-F1", "macro_f1"), ("hand-off recall", "handoff_recall")):
        lines.append(f"| {title} | {_num(m.get(key))} | {_num(pm.get(key)) if pm else '–'} |")
    lines += ["", "## Data", "",
              f"{d['train']} training rows, {d['holdout']} holdout rows; {d['new']} training rows are new since "
              f"{g['previous'] or 'no earlier version'}. Snapshot `{d['snapshot'] or 'none'}`"
              + (f", data approval #{d['data_approval']}." if d["data_approval"] else "."), "",
              "| label | training rows | new |", "|---|---|---|"]
    lines += [f"| {label} | {n} | {d['new_per_label'].get(label, 0)} |" for label, n in d["per_label"].items()]
    lines += ["", "## Config changes", ""]
    if not g["previous"]:
        lines.append("First version: no earlier config to compare with.")
    elif g["config_changes"]:
        lines += [f"- `{key}`: {old!r} → {new!r}" for key, (old, new) in g["config_changes"].items()]
    else:
        lines.append("None.")
    lines += ["", "## Per label (holdout)", "", "| label | F1 | change | precision | recall | support |",
              "|---|---|---|---|---|---|"]
    for label, v in g["per_label"].items():
        change = "new" if v["f1_before"] is None else f"{v['f1'] - v['f1_before']:+.3f}"
        lines.append(f"| {label} | {v['f1']:.3f} | {change} | {v['precision']:.3f} | {v['recall']:.3f} | {v['support']} |")
    lines += ["", f"Worst labels: {', '.join(g['worst']) or 'none measured'}.", "", "## Known limits", ""]
    lines += [f"- {limit}" for limit in g["limits"]] or ["- none found"]
    a = g["approvals"]
    lines += ["", "## Approvals", ""]
    lines += [f"- base {lic['name']} ({lic['license']}): " + (f"approved by {lic['approved_by']}" if lic["approved_by"]
                                                               else "NOT APPROVED") for lic in a["bases"]]
    lines.append(f"- data: approval #{a['data_approval']}" if a["data_approval"]
                 else "- data: no data approval required when it was trained")
    if a["run"]:
        lines.append(f"- retrain run {a['run']['id']} requested by {a['run']['requested_by']}"
                     + (f"; promotion signed off by {a['run']['signed_off_by']} at {a['run']['signed_off_at']}"
                        if a["run"]["signed_off_by"] else ""))
    lines += [f"- {e['action']} by {e['by']} at {(e['at'] or '')[:16].replace('T', ' ')} UTC ({e['reason']})"
              for e in a["switches"]] or ["- never promoted to production"]
    return "\n".join(lines) + "\n"
