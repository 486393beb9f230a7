"""The training panel's views of a job snapshot: the status (HTML with a progress bar), the loss and perplexity
plot frames and the sample texts of each evaluation."""

import math
import re
import time
from html import escape

import pandas as pd

from minigpt.monitoring import overfitting_turn
from space.jobs import JobSnapshot
from space.texts import (
    DATA_STAGES,
    MESSAGES,
    corpus_shown,
    fmt,
    fmt_int,
    fmt_num,
    format_duration,
    preset_shown,
    sampling_text,
)


def plot_frames(snap: JobSnapshot | None, lang: str) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """Long-format frames (step, value, curve) for the loss and perplexity plots; None before the first point.

    Every curve is always present (a NaN point stands in for one not logged yet): the browser's plot fixes its
    colour domain from the first data it gets, and would never draw a curve that was missing then. The third,
    "turn", is a vertical line at the step of the lowest validation loss once it has turned up while the training
    loss fell (minigpt.monitoring.overfitting_turn): overfitting."""
    if snap is None or not snap.points:
        return None
    m = MESSAGES[lang]
    names = {"train": m["train"], "validation": m["validation"], "turn": m["turn"]}
    points = list(snap.points)
    turn = validation_turn(snap)
    if turn is not None:
        losses = [p["loss"] for p in points if not math.isnan(p["loss"])]
        points += [{"step": turn, "curve": "turn", "loss": loss, "perplexity": math.exp(loss)}
                   for loss in (min(losses), max(losses))]
    for curve in names:
        if not any(p["curve"] == curve for p in points):
            points.append({"step": points[0]["step"], "curve": curve, "loss": math.nan, "perplexity": math.nan})
    # rounded as the status line shows them (a plot's tooltip writes every digit it gets)
    loss = pd.DataFrame([{"step": p["step"], "value": round(p["loss"], 3), "curve": names[p["curve"]]}
                         for p in points])
    ppl = pd.DataFrame([{"step": p["step"], "value": round(min(p["perplexity"], 1e6), 1), "curve": names[p["curve"]]}
                        for p in points])
    return loss, ppl


def validation_turn(snap: JobSnapshot) -> int | None:
    """The step after which validation loss rose while training loss fell (None: no such turn yet)."""
    curves = {curve: [(p["step"], p["loss"]) for p in snap.points if p["curve"] == curve and not math.isnan(p["loss"])]
              for curve in ("validation", "train")}
    return overfitting_turn(curves["validation"], curves["train"])


def error_text(error: str | None, lang: str) -> str:
    """A job's error for its owner: the codes the app sets (left, shutdown, stopped_early, killed:<exit code>,
    time_budget_data:<minutes>) in words."""
    if error in ("left", "shutdown", "stopped_early"):
        return MESSAGES[lang][f"err_{error}"]
    if error and error.startswith("killed:"):
        return MESSAGES[lang]["killed"].format(code=error.split(":", 1)[1])
    if error and error.startswith("time_budget_data:"):
        return MESSAGES[lang]["time_budget_data"].format(minutes=error.split(":", 1)[1])
    return error or ""


def status_html(snap: JobSnapshot | None, lang: str, note: str | None = None) -> str:
    m = MESSAGES[lang]
    if snap is None:
        return f'<div class="mg-status"><p>{md_inline(m["no_job"])}</p></div>'
    if snap.state == "queued":
        text = m["queued"].format(position=snap.position or 1, wait=format_duration(snap.wait_seconds or 0))
        return (f'<div class="mg-status mg-queued" id="queue-position" data-position="{snap.position or 1}">'
                f'{f"<p class=mg-note>{md_inline(note)}</p>" if note else ""}<p>{md_inline(text)}</p></div>')
    total = snap.max_steps if snap.max_steps and snap.max_steps > 0 else None
    fraction = 1.0 if snap.state in ("finished", "stopped") else (snap.step / total if total else 0.0)
    elapsed = (snap.ended or time.time()) - snap.started
    state_text = {
        "starting": data_progress_text(snap.data_progress, lang) or m["starting"], "running": m["running"],
        "stopping": m["stopping"],
        "finished": m["finished"].format(run=snap.run_name),
        "stopped": m["stopped"].format(run=snap.run_name, step=snap.step),
        "failed": m["left_line"] if snap.error == "left" else m["failed"].format(error=error_text(snap.error, lang)),
    }[snap.state]
    if snap.note == "time_budget" and snap.done:
        note = " ".join(filter(None, [note, m["time_budget"].format(minutes=round(elapsed / 60))]))
    parts = [f'<div class="mg-status mg-{snap.state}">']
    if note:
        parts.append(f'<p class="mg-note">{md_inline(note)}</p>')
    parts.append(f"<p><b>{md_inline(state_text)}</b></p>")
    parts.append(f'<div class="mg-bar" role="progressbar" aria-valuenow="{fraction * 100:.0f}" aria-valuemin="0" '
                 f'aria-valuemax="100"><div style="width:{fraction * 100:.1f}%"></div></div>')
    line = [f"{m['step']} {fmt_int(snap.step, lang)}" + (f" {m['of']} {fmt_int(total, lang)}" if total else "")]
    line.append(f"{m['epoch']} {fmt_num(snap.epoch, lang, 2)}")
    line.append(f"{fmt_int(snap.tokens_seen, lang)} {m['tokens_seen']}")
    if snap.tokens_per_second:
        line.append(f"{fmt_int(snap.tokens_per_second, lang)} {m['tokens_s']}")
    line.append(f"{m['elapsed']} {format_duration(elapsed)}")
    if snap.remaining_seconds() is not None:
        line.append(f"{m['remaining']} ~{format_duration(snap.remaining_seconds())}")
    parts.append(f"<p>{' · '.join(line)}</p>")
    last = {}
    for p in snap.points:
        last[p["curve"]] = p
    bits = []
    for curve in ("train", "validation"):
        if curve in last:
            p = last[curve]
            bits.append(f"{m[curve]}: {m['loss']} <b>{fmt_num(p['loss'], lang)}</b> "
                        f"({m['perplexity']} {fmt_num(p['perplexity'], lang, 1)})")
    if bits:
        parts.append(f"<p>{' · '.join(bits)}</p>")
    turn = validation_turn(snap)
    if turn is not None:
        parts.append(f"<p>{m['turn_note'].format(step=fmt_int(turn, lang))}</p>")
    parts.append(f'<p class="mg-settings">{escape(settings_text(snap.settings, lang), quote=False)}</p></div>')
    return "".join(parts)


def settings_text(s: dict, lang: str) -> str:
    """A job's settings (jobs.shown_settings) in the reader's words and number format."""
    m = MESSAGES[lang]
    return m["settings_line"].format(
        corpus=corpus_shown(s["corpus"], lang), preset=preset_shown(s["preset"], lang),
        tokenizer=m.get(f"tok_{s['tokenizer_type']}", s["tokenizer_type"]),
        batch=fmt_int(s["per_device_train_batch_size"], lang), lr=fmt(s["learning_rate"], lang, "g"),
        block=fmt_int(s["block_size"], lang), seed=s["seed"])


def data_progress_text(progress: dict | None, lang: str) -> str | None:
    """The data work under way, in words: "Preparing the corpus: training the tokenizer, 3.1 of 8.0 MB, 1.2 MB/s"."""
    if not progress:
        return None
    m = MESSAGES[lang]

    def mb(value: float) -> str:
        return fmt_num(value, lang, 2 if value < 10 else 1)

    stage = DATA_STAGES[lang].get(progress["stage"], progress["stage"])
    total = f" {m['of']} {mb(progress['total_mb'])}" if progress.get("total_mb") else ""
    return m["preparing_data"].format(stage=stage, done=mb(progress["done_mb"]), total=total,
                                      rate=mb(progress["mb_per_s"]))


def md_inline(text: str) -> str:
    """**bold** -> <b>, the rest escaped (status lines are HTML)."""
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", escape(text, quote=False))


def samples_html(snap: JobSnapshot | None, lang: str) -> str:
    """The sample text of each evaluation, newest first: prompt in bold, newlines as ⏎, blank runs collapsed."""
    if snap is None or not snap.samples:
        return ""
    m = MESSAGES[lang]

    def shown(prompt: str, text: str) -> str:
        text = re.sub(r"\n\s*\n+", "\n", text).replace("\n", "⏎\n")
        return f"<b>{escape(prompt, quote=False)}</b>{escape(text, quote=False)}"

    out = ['<div class="mg-samples">']
    for s in reversed(snap.samples[-16:]):
        out.append(f'<div class="mg-sample"><div class="mg-sample-head">{m["step"]} {fmt_int(s["step"], lang)} · '
                   f'{fmt_int(s["tokens_seen"], lang)} {m["tokens_seen"]} · {m["prompt"]} '
                   f'<code>{escape(s["prompt"], quote=False)}</code></div>'
                   f'<div class="mg-sample-kind">{m["greedy"]}</div><pre>{shown(s["prompt"], s["greedy"])}</pre>'
                   f'<div class="mg-sample-kind">{sampling_text(lang)}</div>'
                   f'<pre>{shown(s["prompt"], s["sampled"])}</pre>'
                   "</div>")
    out.append("</div>")
    return "".join(out)


# The training panel's styles (passed to launch()).
CSS = """
.mg-status { padding: 4px 2px; }
.mg-status p { margin: 4px 0; }
.mg-bar { height: 14px; background: var(--neutral-200, #e5e7eb); border-radius: 7px; overflow: hidden; margin: 6px 0; }
.mg-bar > div { height: 100%; background: linear-gradient(90deg, #f97316, #ea580c); transition: width .4s; }
.mg-finished .mg-bar > div, .mg-stopped .mg-bar > div { background: #16a34a; }
.mg-failed .mg-bar > div { background: #dc2626; }
.mg-note { color: #b45309; }
.mg-settings { color: var(--body-text-color-subdued, #6b7280); font-size: 0.9em; }
.mg-samples { max-height: 460px; overflow-y: auto; }
.mg-sample { border-bottom: 1px solid var(--border-color-primary, #e5e7eb); padding: 6px 0; }
.mg-sample-head { font-weight: 600; font-size: 0.92em; }
.mg-sample-kind { color: var(--body-text-color-subdued, #6b7280); font-size: 0.85em; margin-top: 2px; }
/* Gradio's status text is English whatever the page's language ("processing | 0.2s", "queue: 1/3"): its
   spinner and bar say enough */
.progress-text { display: none !important; }
.mg-sample pre { white-space: pre-wrap; word-break: break-word; margin: 2px 0; padding: 4px 8px;
  background: var(--block-background-fill, #f9fafb); border-radius: 4px; font-size: 0.88em; max-height: 9em;
  overflow-y: auto; }
"""
