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


_MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december"]
_MONTH = r"(" + "|".join(_MONTHS) + r")"
_WINDOW = [
    # "on October 13, 2023", "on 1 February, 2023": that day
    ("day", re.compile(rf"\b(?:on\s+)?{_MONTH}\s+(\d{{1,2}}),?\s+((?:19|20)\d\d)\b", re.I)),
    ("day", re.compile(rf"\b(?:on\s+)?(\d{{1,2}})\s+{_MONTH},?\s+((?:19|20)\d\d)\b", re.I)),
    # "in July 2023", "in June": that month (of any year when none is said)
    ("month", re.compile(rf"\b(?:in|during)\s+{_MONTH}(?:,?\s+((?:19|20)\d\d))?\b", re.I)),
    # "in 2022"
    ("year", re.compile(r"\b(?:in|during)\s+((?:19|20)\d\d)\b", re.I)),
]


@dataclass(frozen=True)
class Window:
    """When a question asks about: a day, a month (of one year, or of any) or a year."""

    text: str  # as asked: "in June"
    year: int | None
    month: int | None = None
    day: int | None = None

    def holds(self, d: date) -> bool:
        return ((self.year is None or d.year == self.year) and (self.month is None or d.month == self.month)
                and (self.day is None or d.day == self.day))

    def meets(self, at: str | None, dates: list[dict[str, object]]) -> bool:
        """Whether a turn said at `at` (ISO), holding these resolved dates, falls in the window."""
        days = [date.fromisoformat(str(d["day"])) for d in dates if d.get("day")]
        if at:
            days.append(datetime.fromisoformat(at).date())
        if any(self.holds(d) for d in days):
            return True
        if self.day is not None:
            return False
        for d in dates:  # "last month" = "April 2023", "last year" = "2022"
            for fmt, whole in (("%B %Y", self.month is not None), ("%Y", self.month is None)):
                try:
                    if whole and self.holds(datetime.strptime(str(d["value"]), fmt).date()):
                        return True
                except ValueError:
                    continue
        return False


def question_window(question: str) -> Window | None:
    """The time a question is constrained to ("in 2022", "in June", "on 13 October, 2023"), or None."""
    for kind, pattern in _WINDOW:
        m = pattern.search(question)
        if m is None:
            continue
        g = m.groups()
        if kind == "day":
            month_first = g[0].lower() in _MONTHS
            month, day = (g[0], g[1]) if month_first else (g[1], g[0])
            return Window(m.group(0), int(g[2]), _MONTHS.index(month.lower()) + 1, int(day))
        if kind == "month":
            if not g[1] and not g[0][0].isupper():
                continue  # "in may": a verb, not a month, without a year or a capital
            return Window(m.group(0), int(g[1]) if g[1] else None, _MONTHS.index(g[0].lower()) + 1)
        return Window(m.group(0), int(g[0]))
    return None
