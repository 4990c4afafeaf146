"""tune.json, tune.md and tune.html: every trial of the study (state, method, settings, validation accuracy, the epoch a
pruned one stopped at), the best recipe, and, once run, the best recipe against scratch over seeds on test."""
from __future__ import annotations

import html
import json
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from edgedistill.atomic import atomic_write_text
from edgedistill.cli.tune.rescore import chosen_mean
from edgedistill.cli.tune.study import PRUNING, RETRIES


def _note(t: FrozenTrial) -> str:
    notes = ["the config's own recipe"] if t.user_attrs.get("from_config") else []
    follows = [n for key in RETRIES for n in t.system_attrs.get(key, [])]
    if follows:
        notes.append(f"retry of #{max(follows)}")
    if "copy_of" in t.user_attrs:
        notes.append(f"not run: a second copy of trial #{t.user_attrs['copy_of']}'s queued recipe")
    elif t.user_attrs.get("surplus"):
        notes.append("surplus: started when the study already had its total")
    elif t.user_attrs.get("error"):
        notes.append(t.user_attrs["error"].split(";")[0])
    elif t.state == TrialState.FAIL:
        notes.append("its worker stopped (Ctrl-C, or no heartbeat)")
    return "; ".join(notes)


def trial_row(t: FrozenTrial) -> dict:
    done = t.datetime_complete or t.datetime_start
    return {"number": t.number, "state": t.state.name.lower(), "method": t.params.get("method"),
            "settings": t.user_attrs.get("settings", {}), "val_accuracy": t.value,
            "epochs_reported": len(t.intermediate_values),
            "pruned_at_epoch": t.last_step if t.state == TrialState.PRUNED else None,
            "seconds": (done - t.datetime_start).total_seconds() if done and t.datetime_start else None,
            "worker": t.user_attrs.get("worker"), "note": _note(t)}


def study_summary(study: optuna.Study, total: int, storage: str, space: dict, excluded: dict,
                  epochs: int) -> dict:
    trials = study.get_trials(deepcopy=False)
    rows = [trial_row(t) for t in trials]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = max(complete, key=lambda t: (t.value, -t.number)) if complete else None
    states = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    return {"study": study.study_name, "storage": storage, "trials_asked": total, "epochs_per_trial": epochs,
            "states": {k: v for k, v in states.items() if v}, "space": space, "excluded": excluded,
            "trials": rows, "best": trial_row(best) if best else None, "confirm": None, "pruning": PRUNING}


def _settings(settings: dict) -> str:
    return ", ".join(f"{k.removeprefix('distill.')}={v:.3g}" if isinstance(v, float) and not isinstance(v, bool)
                     else f"{k.removeprefix('distill.')}={v}" for k, v in settings.items()) or "defaults"


def trials_table(rows: list[dict]) -> str:
    lines = ["| trial | state | method | settings | validation acc | pruned at epoch | seconds | note |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        acc = f"{100 * r['val_accuracy']:.2f}%" if r["val_accuracy"] is not None else "-"
        secs = f"{r['seconds']:.1f}" if r["seconds"] is not None else "-"
        lines.append(f"| {r['number']} | {r['state']} | {r['method'] or '-'} | {_settings(r['settings'])} | {acc} "
                     f"| {r['pruned_at_epoch'] or '-'} | {secs} | {r['note']} |")
    return "\n".join(lines)


def trial_line(r: dict) -> str:
    """One trial as the worker that ran it prints it."""
    acc = f", validation {100 * r['val_accuracy']:.2f}%" if r["val_accuracy"] is not None else ""
    pruned = f" at epoch {r['pruned_at_epoch']}" if r["pruned_at_epoch"] else ""
    note = f" ({r['note']})" if r["note"] else ""
    return f"trial {r['number']}: {r['state']}{pruned}, {r['method']} ({_settings(r['settings'])}){acc}{note}"


def rescore_table(r: dict) -> str:
    """The best trials at each extra seed, their mean (the choice) and their own seed's score (`tune --rescore`)."""
    head = " | ".join(f"seed {seed}" for seed in r["seeds"])
    lines = [f"| trial | method | settings | seed {r['own_seed']} (picked on; not counted) | {head} | mean ± std |",
             "|---" * (len(r["seeds"]) + 5) + "|"]
    for row in r["rows"]:
        accs = " | ".join(f"{100 * a:.2f}%" for a in row["val_accuracies"])
        std = f" ± {100 * row['std']:.2f}" if row["std"] is not None else ""
        mark = " (chosen)" if row["number"] == r["chosen"] else ""
        lines.append(f"| {row['number']}{mark} | {row['method']} | {_settings(row['settings'])} | "
                     f"{100 * row['own_seed_accuracy']:.2f}% | {accs} | {100 * row['mean']:.2f}%{std} |")
    return "\n".join(lines)


def chosen_text(s: dict) -> str:
    """The chosen trial and the score it was chosen on: its mean over the extra seeds when rescored."""
    b, r = s["best"], s.get("rescore")
    how = (f"mean validation accuracy {100 * chosen_mean(r):.2f}% over {len(r['seeds'])} more seed(s)" if r
           else f"validation accuracy {100 * b['val_accuracy']:.2f}%")
    return f"trial {b['number']}, {b['method']} ({_settings(b['settings'])}), {how}"


def finished_text(s: dict) -> str:
    """How many trials finished against how many were asked for (an earlier worker may have asked for more)."""
    finished = s["states"].get("complete", 0) + s["states"].get("pruned", 0)
    states = ", ".join(f"{n} {k}" for k, n in s["states"].items())
    asked = (f"{finished} of {s['trials_asked']}" if finished <= s["trials_asked"]
             else f"{finished} ({s['trials_asked']} asked for by this worker)")
    return f"{asked} trials finished ({states})"


def best_line(s: dict) -> str:
    head = f"study {s['study']}: {finished_text(s)}"
    b = s["best"]
    if not b:
        return head + "; no trial completed"
    return f"{head}; best on validation: {chosen_text(s)}"


def stale_confirm(s: dict) -> str:
    """A warning when the seeds on test ran another trial than the study's best now (trials were added since)."""
    c, b = s["confirm"], s["best"]
    if b and c.get("trial") == b["number"]:
        return ""
    now = f"its best is now trial {b['number']}" if b else "it has no complete trial now"
    return (f"These seeds ran trial {c.get('trial')}, the study's choice when they ran; {now}. Run `tune` again with "
            "--seeds to confirm the present choice.\n\n")


def tune_markdown(s: dict) -> str:
    finished = finished_text(s)
    space = "\n".join(f"- {m}: " + (", ".join(f"{k.removeprefix('distill.')} {r}" for k, r in dims.items())
                                     or "its defaults") for m, dims in s["space"].items())
    left = "".join(f"\n- left out: {m}: {why}" for m, why in s["excluded"].items())
    parts = [f"# tune: {s['study']}\n",
             f"Storage {s['storage']}. {finished[0].upper()}{finished[1:]}. Each trial "
             f"trains the KD student for up to {s['epochs_per_trial']} epochs from the study's one teacher and is "
             "scored on the validation split, carved from the training split; the test split is not read. "
             f"{s.get('pruning', '')}\n", f"Searched:\n{space}{left}\n", "## Trials\n",
             trials_table(s["trials"]) + "\n"]
    if s.get("rescore"):
        r = s["rescore"]
        parts.append(f"## The best {len(r['rows'])} trials on {len(r['seeds'])} more seed(s) (validation split)\n\n"
                     f"Each trained again at seed(s) {', '.join(map(str, r['seeds']))}, on the same split, teacher and "
                     "validation rows; the best mean over those is chosen (the seed the trials were picked on is "
                     f"shown, not counted: the best few got there partly by luck on it).\n\n{rescore_table(r)}\n")
    if s["best"]:
        chosen = chosen_text(s)
        parts.append(f"## Best recipe\n\n{chosen[0].upper()}{chosen[1:]}.\n")
    if s["confirm"]:
        c = s["confirm"]
        parts.append(f"## The best recipe against scratch over {len(c['summary']['seeds'])} seeds (test split)\n\n"
                     f"{stale_confirm(s)}{c['table']}\n\nRuns: {c['folder']}/seed_*, summary {c['folder']}/seeds.md.\n")
    return "\n".join(parts)


def tune_html(s: dict) -> str:
    """tune.md as a page, linking to the report of the best recipe's first seed."""
    from edgedistill.report.html import md_table_to_html, page

    body = [f"<h1>edgedistill tune: {html.escape(s['study'])}</h1>",
            f"<p>{html.escape(best_line(s))}</p>", "<h2>Trials (validation split)</h2>",
            md_table_to_html(trials_table(s["trials"]))]
    if s.get("rescore"):
        body += [f"<h2>The best {len(s['rescore']['rows'])} trials on {len(s['rescore']['seeds'])} more seed(s) "
                 "(validation split)</h2>", md_table_to_html(rescore_table(s["rescore"]))]
    if s["confirm"]:
        c, seed = s["confirm"], s["confirm"]["summary"]["seeds"][0]
        body += [f"<h2>The best recipe against scratch over {len(c['summary']['seeds'])} seeds (test split)</h2>",
                 f"<p>{html.escape(stale_confirm(s).strip())}</p>" if stale_confirm(s) else "",
                 md_table_to_html(c["table"]), f"<p>{html.escape(c['table'].split(chr(10))[-1])}</p>",
                 f'<p><a href="{c["folder"]}/seed_{seed}/report.html">the first seed\'s run report</a></p>']
    return page(f"edgedistill tune: {s['study']}", "\n".join(body))


def write_report(out: Path, summary: dict) -> None:
    atomic_write_text(out / "tune.json", json.dumps(summary, indent=2, default=str))
    atomic_write_text(out / "tune.md", tune_markdown(summary))
    atomic_write_text(out / "tune.html", tune_html(summary))
