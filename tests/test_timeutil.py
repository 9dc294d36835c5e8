import pytest

from amoskys.errors import InputError
from amoskys.timeutil import NS, format_ns, parse_time

NOW = 1_767_225_600 * NS


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2026-01-01T00:00:00Z", NOW),
        ("2026-01-01T01:00:00+01:00", NOW),
        ("2026-01-01 00:00:00", NOW),  # naive means UTC
        ("1767225600", NOW),
        ("1767225600.5", NOW + NS // 2),
        ("15m", NOW - 900 * NS),
        ("2h", NOW - 7200 * NS),
        ("1d", NOW - 86400 * NS),
    ],
)
def test_parse_time(text, expected):
    assert parse_time(text, now_ns=NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", "5 minutes", ""])
def test_unreadable_time_is_one_clear_error(text):
    with pytest.raises(InputError, match="ISO 8601"):
        parse_time(text, now_ns=NOW)


def test_format_round_trips():
    assert parse_time(format_ns(NOW + 250_000_000)) == NOW + 250_000_000
