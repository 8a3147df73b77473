"""Check reports: the MMU timeline, the transition windows, the findings and
where and why the run ended, as text or JSON.

The timeline shows the event categories asked for (``--events``), with cache
maintenance loops and repeated stretches outside transition windows folded
(:mod:`emu.report.timeline`).
"""

from __future__ import annotations

from emu.arch.mmu.regime import TranslationRegime
from emu.arch.mmu.tlb import PAGE_MASK
from emu.checks.run import CheckRun
from emu.machine.events import (
    EVENT_CATEGORIES,
    Event,
    MmuDisable,
    MmuEnable,
    SysRegWrite,
    TransitionWindow,
    TtbrWrite,
)
from emu.report.ending import RunEnd, counted
from emu.report.timeline import (
    DEFAULT_EVENTS,
    CacheLoop,
    MaintenanceStretch,
    Repeat,
    Row,
    timeline_rows,
)
from emu.report.trace import Disassembler


def regime_state(regime: TranslationRegime) -> str:
    state = f"M={int(regime.mmu_enabled)} TTBR0={regime.ttbr0:#x}"
    if regime.name.value == "EL1&0":
        state += f" TTBR1={regime.ttbr1:#x}"
    return state


def _timeline(run: CheckRun, events: frozenset[str]) -> list[Row]:
    """The timeline's rows: the chosen categories, loops and repeats folded; the
    events findings point at keep rows of their own."""
    return timeline_rows(run.events, run.windows, events,
                         keep=frozenset(f.index for f in run.findings))


def _format_event_row(run: CheckRun, event: Event) -> str:
    row = _row_start(run, event.index, event.pc, event.pa) + event.describe()
    if isinstance(event, MmuEnable | MmuDisable | TtbrWrite):
        row += f"   [{event.after.name.value}: {regime_state(event.after)}]"
    return row


def _row_start(run: CheckRun, index: int, pc: int, pa: int | None) -> str:
    shown = f"{pa:#x}" if pa is not None else "-"
    mark = "VA==PA" if pa == pc else ""
    return (f"  {index:>8}  {pc:#018x}  {shown:>14} {mark:>6}  "
            f"{run.image.symbolize(pc, pa):<28}  ")


def _format_row(run: CheckRun, row: Row, flagged: dict[int, list[str]]) -> str:
    if isinstance(row, CacheLoop):
        first = row.first
        return _row_start(run, first.index, first.pc, first.pa) + row.describe()
    if isinstance(row, MaintenanceStretch):
        return f"  {row.first_index:>8}  {row.describe()}"
    if isinstance(row, Repeat):
        return f"  {'':>8}  {row.describe()}"
    text = _format_event_row(run, row)
    if row.index in flagged:
        # The findings are listed after the whole timeline; the mark finds them
        # in it without scrolling back and forth.
        text += f"   <== {', '.join(flagged[row.index])}"
    return text


def _flagged(run: CheckRun) -> dict[int, list[str]]:
    """The rules whose findings point at each instruction index."""
    flagged: dict[int, list[str]] = {}
    for finding in run.findings:
        rules = flagged.setdefault(finding.index, [])
        if finding.rule not in rules:
            rules.append(finding.rule)
    return flagged


def run_end(run: CheckRun) -> RunEnd:
    """Where and why the checked run ended."""
    return RunEnd.of(run.stop, run.image, run.stop_pa, run.target)


def proved(run: CheckRun) -> dict[str, object]:
    """What the run judged up to where it ended: instructions, MMU-transition
    windows, TTBR writes and MMU on/off switches, and the rules that judged."""
    return {
        "instructions": run.executed,
        "windows": len(run.windows),
        "ttbr_writes": sum(1 for e in run.events if isinstance(e, TtbrWrite)),
        "mmu_switches": sum(1 for e in run.events if isinstance(e, MmuEnable | MmuDisable)),
        "rules": list(run.rules),
    }


def _proved_words(run: CheckRun) -> str:
    facts = proved(run)
    windows, ttbr = facts["windows"], facts["ttbr_writes"]
    return (f"judged up to there: {counted(facts['instructions'], 'instruction')}, "
            f"{windows} MMU-transition window{'' if windows == 1 else 's'}, "
            f"{ttbr} TTBR write{'' if ttbr == 1 else 's'}, by {len(run.rules)} rules")


def _yes_no(judged: dict[int, bool], va: int) -> str:
    page = va & PAGE_MASK
    return "-" if page not in judged else ("yes" if judged[page] else "no")


def format_text(run: CheckRun, source: str = "",
                events: frozenset[str] = DEFAULT_EVENTS) -> str:
    """The human report: header, timeline (of the ``events`` categories),
    windows, findings, stop and verdict.

    The last line is the verdict with where the run ended (VA, PA, symbol),
    why, and what was judged up to there.
    """
    image = run.image
    lines = [
        f"bootemu check {source or image.name}: load {image.load_address:#x}, "
        f"link {image.link_address:#x}, entry at EL{run.board.el}",
        "",
        "MMU timeline",
        f"  {'#insn':>8}  {'PC (VA)':<18}  {'PA':>14} {'':>6}  {'symbol':<28}  event",
    ]
    flagged = _flagged(run)
    for row in _timeline(run, events):
        lines.append(_format_row(run, row, flagged))
    disassembler = Disassembler()
    for number, window in enumerate(run.windows, 1):
        lines += ["", _window_heading(run, number, window)]
        for fetch in window.fetches:
            idmap = (f"idmap old:{_yes_no(window.identity_old, fetch.va):<3} "
                     f"new:{_yes_no(window.identity_new, fetch.va)}")
            same = "VA==PA" if fetch.va == fetch.pa else "VA!=PA"
            lines.append(
                f"  {fetch.index:>8}  {fetch.va:#018x}  {fetch.pa:#14x} {same}  "
                f"{image.symbolize(fetch.va, fetch.pa):<28}  "
                f"{disassembler.text(fetch.word, fetch.va):<28}  {idmap}"
            )
        if window.tail:
            lines.append("    then, after the context synchronization:")
        for fetch in window.tail:
            same = "VA==PA" if fetch.va == fetch.pa else "VA!=PA"
            lines.append(
                f"  {fetch.index:>8}  {fetch.va:#018x}  {fetch.pa:#14x} {same}  "
                f"{image.symbolize(fetch.va, fetch.pa):<28}  "
                f"{disassembler.text(fetch.word, fetch.va)}"
            )
        if window.truncated:
            lines.append(f"  ... window longer than {len(window.fetches)} instructions; "
                         "every page was still checked")
    lines += ["", "Findings"]
    if not run.findings:
        lines.append(f"  none ({len(run.rules)} rules: {', '.join(run.rules)})")
    for finding in run.findings:
        lines.append(f"  [{finding.rule}] #{finding.index} {finding.pc:#x} {finding.symbol}: "
                     f"{finding.message}")
        lines += [f"      {evidence}" for evidence in finding.evidence]
    # A rule that could not judge this image is said to be so, never counted as silent.
    lines += [f"  not applicable: [{skipped.rule}] {skipped.reason}"
              for skipped in run.not_applicable]
    if run.output:
        lines += ["", "Guest output"]
        lines += [f"  | {line}" for line in run.output.splitlines()]
    lines += ["", f"Run: {run.stop.message} after {counted(run.executed, 'instruction')}"]
    lines += [f"      {detail}" for detail in run.stop.detail]
    if run.failure is not None:
        lines.append(f"Boot failed in {image.failure_symbol}: {run.failure.describe()}")
    lines.append(f"Verdict: {_verdict_words(run)}; {run_end(run).describe()}; "
                 f"{_proved_words(run)}")
    return "\n".join(lines) + "\n"


def _window_heading(run: CheckRun, number: int, window: TransitionWindow) -> str:
    opened = window.opened_by
    what = "MMU off" if isinstance(opened, MmuDisable) else "MMU on"
    closed = (f"closed by {window.closed_by.describe()} at #{window.closed_by.index}"
              if window.closed_by is not None else "still open when the run ended")
    return (f"Transition window {number}: {what} at #{opened.index} "
            f"{run.image.symbolize(opened.pc, opened.pa)}, {closed}")


def _verdict_words(run: CheckRun) -> str:
    verdict = run.verdict
    if verdict == "clean":
        return "clean - no rule fired"
    if verdict == "findings":
        rules = sorted({f.rule for f in run.findings})
        return f"{len(run.findings)} finding(s): {', '.join(rules)}"
    if verdict == "boot-failed":
        return "boot failed - the program stopped in its failure routine"
    return "incomplete - the run ended before reaching " + (run.target or "its end")


def to_json(run: CheckRun, events: frozenset[str] = DEFAULT_EVENTS) -> dict[str, object]:
    """The machine-readable report; its timeline holds the ``events`` categories,
    folded as the text's is (rows of kind ``cache-loop``, ``maintenance-stretch``
    and ``repeat``)."""
    image = run.image
    flagged = _flagged(run)
    return {
        "image": image.name,
        "load_address": image.load_address,
        "link_address": image.link_address,
        "verdict": run.verdict,
        "exit_code": run.exit_code,
        "target": run.target,
        "executed": run.executed,
        "stop": {"kind": run.stop.kind.value, "pc": run.stop.pc, "index": run.stop.index,
                 "message": run.stop.message, "detail": list(run.stop.detail)},
        "end": run_end(run).to_dict(),
        "proved": proved(run),
        "failure": None if run.failure is None else {
            "code": run.failure.code,
            "name": run.failure.meaning.name if run.failure.meaning else None,
            "description": run.failure.meaning.description if run.failure.meaning else None,
        },
        "rules": run.rules,
        "not_applicable": [skipped.to_dict() for skipped in run.not_applicable],
        "output": run.output,
        "exit_status": run.exit_status,
        "findings": [f.to_dict() for f in run.findings],
        "events": [name for name in EVENT_CATEGORIES if name in events],
        "timeline": [_row_json(run, row, flagged) for row in _timeline(run, events)],
        "windows": [
            {
                "opened_by": window.opened_by.kind,
                "opened_at": window.opened_by.index,
                "closed_at": window.closed_by.index if window.closed_by else None,
                "fetches": [{"index": f.index, "va": f.va, "pa": f.pa,
                             "symbol": image.symbolize(f.va, f.pa)} for f in window.fetches],
            }
            for window in run.windows
        ],
    }


def _row_json(run: CheckRun, row: Row, flagged: dict[int, list[str]]) -> dict[str, object]:
    if isinstance(row, CacheLoop):
        first = row.first
        return {"index": first.index, "kind": "cache-loop", "category": "cache",
                "pc": first.pc, "pa": first.pa, "el": first.el,
                "symbol": run.image.symbolize(first.pc, first.pa),
                "description": row.describe(), **row.to_dict()}
    if isinstance(row, MaintenanceStretch):
        return {"index": row.first_index, "kind": "maintenance-stretch",
                "category": "cache", "description": row.describe(), **row.to_dict()}
    if isinstance(row, Repeat):
        return {"index": None, "kind": "repeat", "period": len(row.rows), "times": row.times,
                "last_index": row.last_index, "events": row.events,
                "description": row.describe()}
    data = _event_json(run, row)
    if row.index in flagged:
        data["findings"] = flagged[row.index]
    return data


def _event_json(run: CheckRun, event: Event) -> dict[str, object]:
    data: dict[str, object] = {
        "index": event.index,
        "kind": event.kind,
        "category": event.category,
        "pc": event.pc,
        "pa": event.pa,
        "el": event.el,
        "symbol": run.image.symbolize(event.pc, event.pa),
        "description": event.describe(),
    }
    if isinstance(event, SysRegWrite):
        data.update(register=event.register, old=event.old, new=event.new,
                    regime_after=regime_state(event.after))
    return data
