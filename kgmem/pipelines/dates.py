"""Relative time in what people say, resolved against when they said it.

"I went to a support group yesterday", said on 8 May 2023, happened on 7 May 2023.
`resolve_dates` finds such expressions (yesterday, last week, two months ago, last
Friday, next year, …) and returns each with the date or period it means, written the
way people write dates ("7 May 2023", "the week before 8 May 2023", "April 2023",
"2022"). No model: a few patterns and calendar arithmetic.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
            "eight": 8, "nine": 9, "ten": 10, "a couple of": 2, "a few": 3, "couple of": 2, "few": 3}
_NUM = r"(\d{1,2}|a couple of|couple of|a few|few|an?|one|two|three|four|five|six|seven|eight|nine|ten)"

_PATTERNS = [
    ("ago", re.compile(rf"\b{_NUM}\s+(day|week|month|year)s?\s+ago\b", re.I)),
    ("rel", re.compile(r"\b(last|next|this|past)\s+(week|weekend|month|year)\b", re.I)),
    ("weekday", re.compile(r"\b(last|next|this|on)\s+(" + "|".join(WEEKDAYS) + r")\b", re.I)),
    ("day", re.compile(r"\b(yesterday|today|tonight|tomorrow|last night|this morning|this afternoon"
                       r"|this evening)\b", re.I)),
]


@dataclass(frozen=True)
class DateMention:
    start: int  # character span of the expression in the text
    end: int
    text: str  # as said: "yesterday"
    value: str  # what it means: "7 May 2023", "April 2023", "2022", "the week before 8 May 2023"
    day: str | None = None  # ISO date when the expression names one day

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def human(d: date) -> str:
    return f"{d.day} {d:%B} {d.year}"


def _month_shift(d: date, months: int) -> tuple[int, int]:
    n = d.year * 12 + d.month - 1 + months
    return n // 12, n % 12 + 1


def _month(d: date, months: int) -> str:
    y, m = _month_shift(d, months)
    return f"{date(y, m, 1):%B} {y}"


def _resolve(kind: str, m: re.Match[str], now: date) -> tuple[str, str | None] | None:
    if kind == "day":
        word = m.group(1).lower()
        shift = {"yesterday": -1, "last night": -1, "tomorrow": 1}.get(word, 0)
        d = now + timedelta(days=shift)
        return human(d), d.isoformat()
    if kind == "ago":
        n, unit = _NUMBERS.get(m.group(1).lower()) or int(m.group(1)), m.group(2).lower()
        if unit == "day":
            d = now - timedelta(days=n)
            return human(d), d.isoformat()
        if unit == "week":
            return f"the week of {human(now - timedelta(weeks=n))}", None
        if unit == "month":
            return _month(now, -n), None
        return str(now.year - n), None
    if kind == "rel":
        which, unit = m.group(1).lower(), m.group(2).lower()
        step = {"last": -1, "past": -1, "next": 1, "this": 0}[which]
        if unit == "year":
            return str(now.year + step), None
        if unit == "month":
            return _month(now, step), None
        if unit == "weekend":
            if step <= 0:
                sat = now - timedelta(days=(now.weekday() - 5) % 7 or 7)
            else:
                sat = now + timedelta(days=(5 - now.weekday()) % 7 or 7)
            return f"the weekend of {human(sat)}", sat.isoformat()
        if step == 0:
            return f"the week of {human(now)}", None
        return (f"the week before {human(now)}" if step < 0 else f"the week after {human(now)}"), None
    if kind == "weekday":
        which, target = m.group(1).lower(), WEEKDAYS.index(m.group(2).lower())
        if which in ("last", "on"):
            back = (now.weekday() - target) % 7 or 7
            d = now - timedelta(days=back)
        elif which == "next":
            d = now + timedelta(days=(target - now.weekday()) % 7 or 7)
        else:  # "this friday": the one in this week
            d = now + timedelta(days=target - now.weekday())
        return human(d), d.isoformat()
    return None


def resolve_dates(text: str, at: datetime | date | None) -> list[DateMention]:
    """Relative time expressions in `text`, resolved against `at` (when it was said);
    [] without `at`. Overlapping matches keep the first and longest."""
    if at is None:
        return []
    now = at.date() if isinstance(at, datetime) else at
    found: list[DateMention] = []
    taken: list[tuple[int, int]] = []
    for kind, pattern in _PATTERNS:
        for m in pattern.finditer(text):
            if any(s < m.end() and m.start() < e for s, e in taken):
                continue
            resolved = _resolve(kind, m, now)
            if resolved is not None:
                taken.append((m.start(), m.end()))
                found.append(DateMention(m.start(), m.end(), m.group(0), *resolved))
    return sorted(found, key=lambda d: d.start)


_SPOKEN = [
    "%I:%M %p on %d %B, %Y", "%I:%M %p on %d %b, %Y", "%d %B %Y", "%d %B, %Y", "%B %d, %Y", "%Y-%m-%d",
    "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M",
]


def parse_when(value: str | datetime | date | None) -> datetime | None:
    """A session's time: a datetime, an ISO string, or what a chat log writes
    ("1:56 pm on 8 May, 2023"). Raises ValueError naming the value it cannot read."""
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    text = " ".join(str(value).split())
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    for fmt in _SPOKEN:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    raise ValueError(f"cannot read the time {value!r}: use a datetime, ISO 8601 or e.g. '1:56 pm on 8 May, 2023'")
