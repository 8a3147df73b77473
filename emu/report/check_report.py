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
from emu.checks.verdict import BOOT_FAILED, CLEAN, FINDINGS
from emu.machine.events import (
    EVENT_CATEGORIES,
    Event,
    MmuDisable,
    MmuEnable,
    SysRegWrite,
    TransitionWindow,
    TtbrWrite,
    WindowFetch,
)
from emu.machine.stop import StopKind
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
    target = run.target
    if run.failure is not None and run.stop.kind is StopKind.ARRIVED:
        # It arrived at the failure routine, not at its target.
        target = run.image.failure_symbol
    return RunEnd.of(run.stop, run.image, run.stop_pa, target)


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
    lines.append(f"Verdict: {verdict_line(run)}")
    return "\n".join(lines) + "\n"


def _window_heading(run: CheckRun, number: int, window: TransitionWindow) -> str:
    opened = window.opened_by
    what = "MMU off" if isinstance(opened, MmuDisable) else "MMU on"
    closed = (f"closed by {window.closed_by.describe()} at #{window.closed_by.index}"
              if window.closed_by is not None else "still open when the run ended")
    return (f"Transition window {number}: {what} at #{opened.index} "
            f"{run.image.symbolize(opened.pc, opened.pa)}, {closed}")


def verdict_words(run: CheckRun) -> str:
    """The verdict as the text's last line says it: the verdict token first
    (:mod:`emu.checks.verdict`, as in ``--json`` and ``bootemu sweep``), then
    why in words, e.g. ``findings - 2 findings (ttbr-switch-conflict,
    ttbr-switch-live)``."""
    verdict = run.verdict
    if verdict == CLEAN:
        why = "no rule fired"
    elif verdict == FINDINGS:
        rules = sorted({f.rule for f in run.findings})
        why = f"{counted(len(run.findings), 'finding')} ({', '.join(rules)})"
    elif verdict == BOOT_FAILED:
        why = ("the program exited with a non-zero status" if run.stop.kind is StopKind.EXIT
               else "the program stopped in its failure routine")
    else:
        why = "the run ended before reaching " + (run.target or "its end")
    return f"{verdict} - {why}"


def verdict_line(run: CheckRun) -> str:
    """The text report's last line without its ``Verdict:``: the verdict, where
    the run ended and why, and what was judged up to there."""
    return f"{verdict_words(run)}; {run_end(run).describe()}; {_proved_words(run)}"


def _identity(judged: dict[int, bool], va: int) -> bool | None:
    """Whether ``va``'s page is identity-mapped in a window's tables (None: not judged)."""
    return judged.get(va & PAGE_MASK)


def _fetch_json(run: CheckRun, disassembler: Disassembler, fetch: WindowFetch,
                window: TransitionWindow | None = None) -> dict[str, object]:
    """A window's instruction as the text shows it; ``window`` given, with
    whether its page is identity-mapped in the old and the new tables."""
    data: dict[str, object] = {
        "index": fetch.index, "va": fetch.va, "pa": fetch.pa,
        "identity": fetch.va == fetch.pa,
        "symbol": run.image.symbolize(fetch.va, fetch.pa),
        "encoding": f"{fetch.word:08x}",
        "disassembly": disassembler.text(fetch.word, fetch.va),
    }
    if window is not None:
        data["identity_old"] = _identity(window.identity_old, fetch.va)
        data["identity_new"] = _identity(window.identity_new, fetch.va)
    return data


def _window_json(run: CheckRun, disassembler: Disassembler, number: int,
                 window: TransitionWindow) -> dict[str, object]:
    opened, closed = window.opened_by, window.closed_by
    return {
        "number": number,
        "heading": _window_heading(run, number, window),
        "opened_by": opened.kind,
        "opened_at": opened.index,
        "opened_symbol": run.image.symbolize(opened.pc, opened.pa),
        "closed_by": closed.kind if closed is not None else None,
        "closed_at": closed.index if closed is not None else None,
        "closed_description": closed.describe() if closed is not None else None,
        "truncated": window.truncated,
        "fetches": [_fetch_json(run, disassembler, f, window) for f in window.fetches],
        "tail": [_fetch_json(run, disassembler, f) for f in window.tail],
    }


def to_json(run: CheckRun, events: frozenset[str] = DEFAULT_EVENTS,
            source: str = "") -> dict[str, object]:
    """The machine-readable report: all the text shows (``emu/report/schemas/
    check.schema.json`` says each key).  Its timeline holds the ``events``
    categories, folded as the text's is (rows of kind ``cache-loop``,
    ``maintenance-stretch`` and ``repeat``); its windows every instruction
    with its disassembly and whether its page is identity-mapped; ``verdict``
    is the text's verdict token and ``summary`` its last line.

    ``exit_status`` is the program's (a semihosting exit), as
    :attr:`CheckRun.exit_status` is; what ``bootemu check`` exits with
    follows from ``verdict`` (0 only when ``clean``)."""
    image = run.image
    flagged = _flagged(run)
    disassembler = Disassembler()
    return {
        "image": image.name,
        "source": source or image.name,
        "load_address": image.load_address,
        "link_address": image.link_address,
        "entry_el": run.board.el,
        "verdict": run.verdict,
        "summary": verdict_line(run),
        "reached": run.arrived,
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
            "routine": image.failure_symbol,
            "message": run.failure.describe(),
        },
        "rules": run.rules,
        "not_applicable": [skipped.to_dict() for skipped in run.not_applicable],
        "output": run.output,
        "exit_status": run.exit_status,
        "findings": [f.to_dict() for f in run.findings],
        "events": [name for name in EVENT_CATEGORIES if name in events],
        "timeline": [_row_json(run, row, flagged) for row in _timeline(run, events)],
        "windows": [_window_json(run, disassembler, number, window)
                    for number, window in enumerate(run.windows, 1)],
    }


def _row_json(run: CheckRun, row: Row, flagged: dict[int, list[str]]) -> dict[str, object]:
    if isinstance(row, CacheLoop):
        first = row.first
        return {"index": first.index, "kind": "cache-loop", "category": "cache",
                "pc": first.pc, "pa": first.pa, "identity": first.pa == first.pc,
                "el": first.el,
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
        "identity": event.pa == event.pc,
        "el": event.el,
        "symbol": run.image.symbolize(event.pc, event.pa),
        "description": event.describe(),
    }
    if isinstance(event, SysRegWrite):
        data.update(register=event.register, old=event.old, new=event.new,
                    regime=event.after.name.value, regime_after=regime_state(event.after))
    return data
