"""Check reports: the MMU timeline, the transition windows and the findings, as text or JSON."""

from __future__ import annotations

from emu.arch.mmu.regime import TranslationRegime
from emu.arch.mmu.tlb import PAGE_MASK
from emu.checks.run import CheckRun
from emu.machine.events import (
    Event,
    MmuDisable,
    MmuEnable,
    SysRegWrite,
    TransitionWindow,
    TtbrWrite,
)
from emu.report.trace import Disassembler


def regime_state(regime: TranslationRegime) -> str:
    state = f"M={int(regime.mmu_enabled)} TTBR0={regime.ttbr0:#x}"
    if regime.name.value == "EL1&0":
        state += f" TTBR1={regime.ttbr1:#x}"
    return state


def _timeline_events(run: CheckRun) -> list[Event]:
    """The events worth a timeline row: register writes and TLB/cache maintenance."""
    return [e for e in run.events if e.kind not in ("barrier",)]


def _format_event_row(run: CheckRun, event: Event) -> str:
    pa = f"{event.pa:#x}" if event.pa is not None else "-"
    mark = "VA==PA" if event.pa == event.pc else ""
    row = (f"  {event.index:>8}  {event.pc:#018x}  {pa:>14} {mark:>6}  "
           f"{run.image.symbolize(event.pc, event.pa):<28}  {event.describe()}")
    if isinstance(event, MmuEnable | MmuDisable | TtbrWrite):
        row += f"   [{event.after.name.value}: {regime_state(event.after)}]"
    return row


def _yes_no(judged: dict[int, bool], va: int) -> str:
    page = va & PAGE_MASK
    return "-" if page not in judged else ("yes" if judged[page] else "no")


def format_text(run: CheckRun, source: str = "") -> str:
    """The human report: header, timeline, windows, findings, stop and verdict."""
    image = run.image
    lines = [
        f"bootemu check {source or image.name}: load {image.load_address:#x}, "
        f"link {image.link_address:#x}, entry at EL{run.board.el}",
        "",
        "MMU timeline",
        f"  {'#insn':>8}  {'PC (VA)':<18}  {'PA':>14} {'':>6}  {'symbol':<28}  event",
    ]
    for event in _timeline_events(run):
        lines.append(_format_event_row(run, event))
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
    lines += ["", f"Run: {run.stop.message} after {run.executed} instructions"]
    lines += [f"      {detail}" for detail in run.stop.detail]
    if run.failure is not None:
        lines.append(f"Boot failed in {image.failure_symbol}: {run.failure.describe()}")
    lines.append(f"Verdict: {_verdict_words(run)}")
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
        return f"clean - arrived at {run.target} with no rule firing"
    if verdict == "findings":
        rules = sorted({f.rule for f in run.findings})
        return f"{len(run.findings)} finding(s): {', '.join(rules)}"
    if verdict == "boot-failed":
        return "boot failed - the program stopped in its failure routine"
    return "incomplete - the run ended before reaching " + (run.target or "its end")


def to_json(run: CheckRun) -> dict[str, object]:
    """The machine-readable report."""
    image = run.image
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
        "timeline": [_event_json(run, e) for e in _timeline_events(run)],
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


def _event_json(run: CheckRun, event: Event) -> dict[str, object]:
    data: dict[str, object] = {
        "index": event.index,
        "kind": event.kind,
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
