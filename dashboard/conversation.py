"""A call's transcript as the session page shows it: the caller's and the agent's turns as a
conversation, tool calls as small rows, and the call's records at the place they were saved.

Turns and records share the store's one `seq`, so sorting by it puts a record saved between two
turns between them. A turn kept in parts (`part`/`parts`, over 10,000 characters) is one item,
its parts' text joined; the store writes a turn's parts together, so an update never holds half
of one. Each item is a dict the template renders and the page's script fills in with textContent
(`kind` turn|tool|saved, `seq` of its first entry, `last_seq` of its last)."""

from __future__ import annotations

import json
from typing import Any

from dashboard import formatting as fmt

SPEAKER_LABELS = {"caller": "Caller", "agent": "Agent"}
ARGUMENTS_SHOWN = 120  # characters of a tool call's arguments on its row
RESULT_SHOWN = 200


def conversation(turns: list[dict], records: list[dict]) -> list[dict[str, Any]]:
    """The call's turns (parts joined) and records, in the order they were saved."""
    items = _joined(turns) + [_saved(r) for r in records]
    return sorted(items, key=lambda item: item["seq"])


def items_after(items: list[dict], after_seq: int, cap: int) -> tuple[list[dict], bool]:
    """The items saved after `after_seq`, at most `cap` of them, and whether more wait."""
    fresh = [item for item in items if item["last_seq"] > after_seq]
    return fresh[:cap], len(fresh) > cap


def _joined(turns: list[dict]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for turn in turns:
        previous = items[-1] if items else None
        if turn.get("part", 1) > 1 and previous and previous.get("next_part") == (turn["speaker"], turn["part"]):
            previous["text"] += turn["text"]
            previous["last_seq"] = turn["seq"]
            previous["next_part"] = (turn["speaker"], turn["part"] + 1)
            continue
        item = _tool(turn) if turn["speaker"] == "tool" else _turn(turn)
        if turn.get("parts"):
            item["next_part"] = (turn["speaker"], turn.get("part", 1) + 1)
        items.append(item)
    for item in items:
        item.pop("next_part", None)
    return items


def _common(turn: dict, kind: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "seq": turn["seq"],
        "last_seq": turn["seq"],
        "start_s": turn["start_s"],
        "time_display": fmt.call_clock(turn["start_s"]),
        "after_call_log": bool(turn.get("after_call_log")),
    }


def _turn(turn: dict) -> dict[str, Any]:
    return {
        **_common(turn, "turn"),
        "speaker": turn["speaker"],
        "speaker_label": SPEAKER_LABELS.get(turn["speaker"], turn["speaker"]),
        "text": turn["text"],
        "interrupted": bool(turn.get("interrupted")),
    }


def _tool(turn: dict) -> dict[str, Any]:
    tool = turn.get("tool") or {}
    return {
        **_common(turn, "tool"),
        "text": turn["text"],
        "name": str(tool.get("name") or "tool"),
        "arguments_display": shorten(arguments_text(tool.get("arguments")), ARGUMENTS_SHOWN),
        "result_display": shorten(str(tool.get("result") or ""), RESULT_SHOWN),
        "is_error": bool(tool.get("is_error")),
    }


def _saved(record: dict) -> dict[str, Any]:
    return {
        "kind": "saved",
        "seq": record["seq"],
        "last_seq": record["seq"],
        "category": record["category"],
        "category_label": fmt.CATEGORY_LABELS.get(record["category"], record["category"]),
        "information": record["information"],
    }


def arguments_text(arguments: Any) -> str:
    """`{"category": "debt_info", "information": "Owes $12,000"}` -> `category: debt_info,
    information: Owes $12,000` (empty values left out; nested values as compact JSON)."""
    if isinstance(arguments, dict):
        shown = [(k, v) for k, v in arguments.items() if v not in (None, "", [], {})]
        return ", ".join(f"{k}: {_value(v)}" for k, v in shown)
    return "" if arguments is None else _value(arguments)


def _value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\N{HORIZONTAL ELLIPSIS}"
